"""`/me`: what a signed-in patient may ask about their own record's accesses."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rempart.api.audit_routes import audit_service
from rempart.api.deps import ContextDep, ServicesDep, TokenDep

router = APIRouter(prefix="/me", tags=["patient"])


@router.get("/access-history")
async def access_history(
    svc: ServicesDep,
    ctx: ContextDep,
    token: TokenDep,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    """Who accessed my record: when, who (name and role), which unit, what kind of data, why."""

    def run() -> dict[str, Any]:
        who = svc.identity.authenticate(token)
        return audit_service(svc).access_history(who, ctx, count, before)

    body = await run_in_threadpool(run)
    return Response(orjson.dumps(body), media_type="application/json")
