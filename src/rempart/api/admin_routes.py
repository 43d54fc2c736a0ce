"""`/admin`: accounts, units, policy settings and four-eyes requests (JSON, in the OpenAPI doc).

Nothing here reads a patient. Every change that could open clinical data is a request that
another person approves (`POST /admin/requests/{id}/approve`); the only immediate changes are
those that close access (disable an account, remove a unit membership).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from rempart.access.kinds import AdminRequest
from rempart.access.requests import RequestView
from rempart.api.auth_deps import JsonDep, PrincipalDep, parse
from rempart.api.deps import ContextDep, ServicesDep
from rempart.errors import InvalidResource
from rempart.identity.admin import AccountView

router = APIRouter(prefix="/admin", tags=["administration"])

_REQUEST = TypeAdapter(AdminRequest)
_REQUEST_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _REQUEST.json_schema()}},
    }
}
AccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{1,36}$")]
RequestPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{1,36}$")]
STATUSES = r"^(pending|approved|done|failed|rejected|withdrawn|expired)$"


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Annotated[str, Field(max_length=500)] | None = None


_DECISION_SCHEMA = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": Decision.model_json_schema()}},
    }
}


@router.get("/accounts")
async def accounts(
    svc: ServicesDep,
    who: PrincipalDep,
    after: Annotated[str, Query(max_length=150)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AccountView]:
    """Accounts by username: role, practitioner link, units, disabled or locked. No names."""
    return await run_in_threadpool(svc.access.accounts, who, after=after, limit=limit)


@router.get("/accounts/{account_id}")
async def account(svc: ServicesDep, who: PrincipalDep, account_id: AccountPath) -> AccountView:
    return await run_in_threadpool(svc.access.account, who, account_id)


@router.post("/accounts/{account_id}/disable")
async def disable(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, account_id: AccountPath
) -> AccountView:
    """Immediate (it closes access): every session of the account ends."""
    return await run_in_threadpool(svc.access.disable, who, ctx, account_id)


@router.delete("/accounts/{account_id}/units")
async def remove_unit(
    svc: ServicesDep,
    ctx: ContextDep,
    who: PrincipalDep,
    account_id: AccountPath,
    unit: Annotated[str, Query(pattern=r"^(Organization|Location)/[A-Za-z0-9\-.]{1,64}$")],
) -> AccountView:
    """Immediate (it closes access). Adding a unit is a four-eyes request."""
    return await run_in_threadpool(svc.access.remove_unit, who, ctx, account_id, unit)


@router.get("/roles")
async def roles(svc: ServicesDep, who: PrincipalDep) -> dict[str, list[str]]:
    """Every role and its permissions. Roles change only through a request."""
    return await run_in_threadpool(svc.access.roles, who)


@router.get("/units")
async def units(svc: ServicesDep, who: PrincipalDep) -> list[dict[str, Any]]:
    """Units and establishments with their members (adding one: a request)."""
    return await run_in_threadpool(svc.access.units, who)


@router.get("/settings")
async def settings(svc: ServicesDep, who: PrincipalDep) -> list[dict[str, Any]]:
    """The access policy's settings, their bounds and current values (change: a request)."""
    return await run_in_threadpool(svc.access.settings, who)


@router.post("/requests", status_code=202, openapi_extra=_REQUEST_SCHEMA)
async def submit(svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, raw: JsonDep) -> RequestView:
    """Ask for a change; it takes effect only once another person approved it."""
    try:
        payload = _REQUEST.validate_python(raw)
    except ValueError as exc:
        raise InvalidResource(_first_error(exc)) from None
    return await run_in_threadpool(svc.access.requests.submit, who, ctx, payload)


@router.get("/requests")
async def requests(
    svc: ServicesDep,
    who: PrincipalDep,
    status: Annotated[str | None, Query(pattern=STATUSES)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RequestView]:
    return await run_in_threadpool(svc.access.requests.list, who, status=status, limit=limit)


@router.get("/requests/{request_id}")
async def request(svc: ServicesDep, who: PrincipalDep, request_id: RequestPath) -> RequestView:
    return await run_in_threadpool(svc.access.requests.get, who, request_id)


@router.post("/requests/{request_id}/approve", openapi_extra=_DECISION_SCHEMA)
async def approve(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, request_id: RequestPath, raw: JsonDep
) -> RequestView:
    """Needs a second factor passed in the last 5 minutes; never your own request."""
    body = parse(Decision, raw)
    return await run_in_threadpool(svc.access.requests.approve, who, ctx, request_id, body.comment)


@router.post("/requests/{request_id}/reject", openapi_extra=_DECISION_SCHEMA)
async def reject(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, request_id: RequestPath, raw: JsonDep
) -> RequestView:
    """One rejection ends a request; its requester may withdraw it the same way."""
    body = parse(Decision, raw)
    return await run_in_threadpool(svc.access.requests.reject, who, ctx, request_id, body.comment)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return "; ".join(parts)
    return str(exc)
