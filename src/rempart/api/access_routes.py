"""`/access`: the caller's own access (what they hold), break-the-glass and its review queue,
cohort exports for their recipient, and the one-time code that sets a password."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rempart.access.breakglass import Grant
from rempart.access.export import ExportView
from rempart.access.kinds import CohortExport
from rempart.access.requests import RequestView
from rempart.access.service import Me
from rempart.api.auth_deps import JsonDep, PrincipalDep, parse
from rempart.api.deps import ContextDep, ServicesDep
from rempart.clock import micros_to_iso

router = APIRouter(prefix="/access", tags=["access"])

IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{1,36}$")]


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


class BreakGlassRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient: Annotated[str, Field(max_length=80, examples=["Patient/3f2a..."])]
    reason: Annotated[str, Field(max_length=2000)]


class BreakGlassGranted(BaseModel):
    id: str
    patient: str
    expires_at: str


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["justified", "unjustified"]


class ExportRequest(BaseModel):
    """A cohort export for the caller: see `CohortExport` (the `kind` is implied)."""

    model_config = ConfigDict(extra="forbid")
    cohort_name: str
    purpose: str
    query: str | None = None
    patients: list[str] = Field(default_factory=list)
    types: list[str]
    identified: bool = False


class SetPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=150)]
    code: Annotated[str, Field(min_length=1, max_length=100)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class PasswordSet(BaseModel):
    password_set: Literal[True] = True


@router.get("/me")
async def me(svc: ServicesDep, who: PrincipalDep) -> Me:
    """Your role, permissions, units and the scope of patients the policy gives you."""

    def run() -> Me:
        return svc.access.me(who, svc.policy.decide(who).patients.describe())

    return await run_in_threadpool(run)


@router.post("/break-glass", status_code=201, openapi_extra=_schema(BreakGlassRequest))
async def break_glass(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, raw: JsonDep
) -> BreakGlassGranted:
    """Emergency access to one patient for a limited time (default 1 h): a fresh second
    factor, a written reason (10+ characters), a daily cap; the security officer is alerted
    and reviews it. The answer does not say whether the patient exists."""
    body = parse(BreakGlassRequest, raw)
    grant_id, expires = await run_in_threadpool(
        svc.access.break_glass.grant, who, ctx, body.patient, body.reason
    )
    return BreakGlassGranted(id=grant_id, patient=body.patient, expires_at=micros_to_iso(expires))


@router.get("/break-glass")
async def break_glass_queue(
    svc: ServicesDep,
    who: PrincipalDep,
    pending: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Grant]:
    """Security officers: the review queue. Clinicians: their own grants."""
    return await run_in_threadpool(
        lambda: svc.access.break_glass.list(who, pending_only=pending, limit=limit)
    )


@router.post("/break-glass/{grant_id}/review", openapi_extra=_schema(Review))
async def review(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, grant_id: IdPath, raw: JsonDep
) -> Grant:
    body = parse(Review, raw)
    return await run_in_threadpool(svc.access.break_glass.review, who, ctx, grant_id, body.verdict)


@router.get("/alerts")
async def alert_queue(
    svc: ServicesDep,
    who: PrincipalDep,
    pending: bool = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The security officer's alert queue, newest first (identifiers only, no patient data)."""
    return await run_in_threadpool(
        lambda: svc.access.alerts(who, pending_only=pending, limit=limit)
    )


@router.post("/alerts/{alert_id}/acknowledge", status_code=204)
async def acknowledge(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, alert_id: IdPath
) -> None:
    await run_in_threadpool(svc.access.acknowledge, who, ctx, alert_id)


@router.post("/exports", status_code=202, openapi_extra=_schema(ExportRequest))
async def request_export(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, raw: JsonDep
) -> RequestView:
    """Ask for a cohort export for yourself; an administrator and a security officer approve."""
    data = raw if isinstance(raw, dict) else {}
    payload = parse(CohortExport, {**data, "kind": "export"})
    return await run_in_threadpool(svc.access.requests.submit, who, ctx, payload)


@router.get("/exports")
async def my_exports(svc: ServicesDep, who: PrincipalDep) -> list[RequestView]:
    return await run_in_threadpool(lambda: svc.access.requests.list(who, status=None, limit=100))


@router.get("/exports/{export_id}")
async def export_status(svc: ServicesDep, who: PrincipalDep, export_id: IdPath) -> ExportView:
    return await run_in_threadpool(svc.access.exports.view, who, export_id)


@router.get(
    "/exports/{export_id}/data",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/fhir+ndjson": {}}}},
)
async def export_data(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, export_id: IdPath
) -> StreamingResponse:
    """The approved cohort as FHIR NDJSON, once, by its recipient, after a fresh factor."""
    lines: Iterator[bytes] = await run_in_threadpool(
        svc.access.exports.download, who, ctx, export_id
    )
    return StreamingResponse(lines, media_type="application/fhir+ndjson")


@router.post("/set-password", openapi_extra=_schema(SetPassword))
async def set_password(svc: ServicesDep, ctx: ContextDep, raw: JsonDep) -> PasswordSet:
    """With the one-time code sent (out of band) after an approved account creation or reset."""
    body = parse(SetPassword, raw)
    await run_in_threadpool(svc.access.set_password, ctx, body.username, body.code, body.password)
    return PasswordSet()
