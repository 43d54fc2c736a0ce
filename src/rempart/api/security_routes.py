"""`/security`: the security officer's side of the guard (issue #7).

- `GET /security/alerts`: the alert queue, newest first, filtered by kind (`guard-` for every
  guard alert), severity, account, acknowledgement and time, paged with `before`;
- `POST /security/alerts/{id}/acknowledge`;
- `GET /security/containments`: what the guard did (step-ups, suspensions, locks) and who
  released it;
- `POST /security/accounts/{id}/unlock {"reason": "..."}`: unlocks an account and closes its
  containments; a written reason and a fresh second factor, audited and alerted.

Security officers only (every other role gets 403); identifiers only, never patient content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rempart.api.auth_deps import JsonDep, PrincipalDep, parse
from rempart.api.deps import ContextDep, ServicesDep
from rempart.clock import datetime_to_micros
from rempart.errors import InvalidResource

router = APIRouter(prefix="/security", tags=["security"])

IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{1,36}$")]
AccountQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9\-]{1,64}$")]
KindQuery = Annotated[str | None, Query(pattern=r"^[a-z0-9\-]{1,64}$")]


class Unlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=2000)]


def _micros(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return datetime_to_micros(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidResource(f"{name} is an ISO 8601 instant or microseconds") from None


@router.get("/alerts")
async def alerts(
    svc: ServicesDep,
    who: PrincipalDep,
    kind: KindQuery = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    account: AccountQuery = None,
    pending: bool = False,
    since: Annotated[str | None, Query(max_length=40)] = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """`{"alerts": [...], "next_before": <micros> | null}`; pass `before=next_before` for the
    next (older) page."""
    start, end = _micros(since, "since"), _micros(before, "before")

    def run() -> dict[str, Any]:
        page = svc.security.alerts(
            who,
            kind=kind,
            severity=severity,
            account_id=account,
            pending_only=pending,
            since=start,
            before=end,
            limit=limit,
        )
        return {"alerts": page.alerts, "next_before": page.next_before}

    return await run_in_threadpool(run)


@router.post("/alerts/{alert_id}/acknowledge", status_code=204)
async def acknowledge(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, alert_id: IdPath
) -> None:
    await run_in_threadpool(svc.security.acknowledge, who, ctx, alert_id)


@router.get("/containments")
async def containments(
    svc: ServicesDep,
    who: PrincipalDep,
    account: AccountQuery = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return await run_in_threadpool(
        lambda: svc.security.containments(who, account_id=account, open_only=open_only, limit=limit)
    )


@router.post("/accounts/{account_id}/unlock")
async def unlock(
    svc: ServicesDep, ctx: ContextDep, who: PrincipalDep, account_id: IdPath, raw: JsonDep
) -> dict[str, Any]:
    """Unlock an account the guard (or failed sign-ins) locked, and close its containments."""
    body = parse(Unlock, raw)
    return await run_in_threadpool(svc.security.release, who, ctx, account_id, body.reason)
