"""The audit log over HTTP: AuditEvent (read-only), breach report, signed heads and proofs.

`/fhir/AuditEvent` is registered before the generic FHIR routes so it wins over
`/fhir/{res_type}`. Writes to AuditEvent are refused here with 405: no API creates, edits or
deletes an audit record. Every handler makes one hop to the thread pool, like the FHIR routes.
"""

from __future__ import annotations

import weakref
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from rempart.access.roles import Role
from rempart.api.deps import ContextDep, ServicesDep, TokenDep
from rempart.api.responses import fhir_response, outcome_response
from rempart.audit.events import Trail
from rempart.audit.proofs import consistency_proof, inclusion_proof, latest_head
from rempart.audit.query import instant
from rempart.audit.service import AuditService
from rempart.audit.who import Directory
from rempart.context import RequestContext
from rempart.errors import Forbidden
from rempart.identity.tables import account
from rempart.wiring import Services

router = APIRouter(tags=["audit"])

_SERVICES: weakref.WeakKeyDictionary[object, AuditService] = weakref.WeakKeyDictionary()


def audit_service(svc: Services) -> AuditService:
    """One AuditService per process (its name cache lives as long as the audit log)."""
    found = _SERVICES.get(svc.audit)
    if found is None:
        found = AuditService(svc.audit, Directory(svc.store, svc.policy, _display_names(svc)))
        _SERVICES[svc.audit] = found
    return found


def _display_names(svc: Services) -> Any:
    """account id -> display name, through the identity package's sealed profile if it offers
    a reader; the username otherwise."""

    def name(account_id: str) -> str | None:
        with svc.engine.connect() as conn:
            row = conn.execute(select(account).where(account.c.id == account_id)).first()
        if row is None:
            return None
        reader = getattr(getattr(svc.identity, "core", None), "read_profile", None)
        if callable(reader):
            try:
                shown = reader(row.id, row.profile_sealed).get("display_name")
            except Exception:
                shown = None
            if shown:
                return str(shown)
        return str(row.username)

    return name


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


# ---- FHIR AuditEvent --------------------------------------------------------------------------


@router.get("/fhir/AuditEvent")
async def search_audit_events(
    request: Request, svc: ServicesDep, ctx: ContextDep, token: TokenDep
) -> Response:
    params = list(request.query_params.multi_items())
    base = _base(request)

    def run() -> dict[str, Any]:
        who = svc.identity.authenticate(token)
        return audit_service(svc).search(who, ctx, params, base)

    return fhir_response(await run_in_threadpool(run))


@router.get("/fhir/AuditEvent/{event_id}")
async def read_audit_event(
    event_id: str, svc: ServicesDep, ctx: ContextDep, token: TokenDep
) -> Response:
    def run() -> dict[str, Any]:
        return audit_service(svc).read(svc.identity.authenticate(token), ctx, event_id)

    return fhir_response(await run_in_threadpool(run))


# Refusals, not operations: left out of the OpenAPI document (one route for four methods would
# otherwise give four operations the same operationId).
_WRITES = ["POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/fhir/AuditEvent", methods=_WRITES, include_in_schema=False)
@router.api_route("/fhir/AuditEvent/{event_id}", methods=_WRITES, include_in_schema=False)
@router.api_route(
    "/fhir/AuditEvent/{event_id}/{rest:path}", methods=_WRITES, include_in_schema=False
)
async def refuse_audit_write() -> Response:
    return outcome_response(
        405, "not-supported", "audit records cannot be created, edited or deleted through the API"
    )


# ---- the security officer's tools -------------------------------------------------------------


@router.get("/audit/breach-report")
async def http_breach_report(
    svc: ServicesDep,
    ctx: ContextDep,
    token: TokenDep,
    user: Annotated[str, Query(min_length=1, max_length=150)],
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    def run() -> dict[str, Any]:
        who = svc.identity.authenticate(token)
        lo, hi = instant(since, "since"), instant(until, "until")
        return audit_service(svc).breach_report(who, ctx, user, lo, hi)

    return fhir_response(await run_in_threadpool(run))


@router.get("/audit/head")
async def http_head(svc: ServicesDep, ctx: ContextDep, token: TokenDep) -> Response:
    return fhir_response(
        await run_in_threadpool(_officer_call, svc, ctx, token, "audit-head", latest_head_of)
    )


@router.get("/audit/proof/inclusion")
async def http_inclusion(
    svc: ServicesDep,
    ctx: ContextDep,
    token: TokenDep,
    seq: Annotated[int, Query(ge=0, le=2**62)],
    tree_size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    def proof(s: Services) -> dict[str, Any]:
        return inclusion_proof(s.engine, seq, tree_size)

    return fhir_response(
        await run_in_threadpool(_officer_call, svc, ctx, token, "audit-proof", proof)
    )


@router.get("/audit/proof/consistency")
async def http_consistency(
    svc: ServicesDep,
    ctx: ContextDep,
    token: TokenDep,
    old: Annotated[int, Query(ge=1, le=2**62)],
    new: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    def proof(s: Services) -> dict[str, Any]:
        return consistency_proof(s.engine, old, new)

    return fhir_response(
        await run_in_threadpool(_officer_call, svc, ctx, token, "audit-proof", proof)
    )


def latest_head_of(svc: Services) -> dict[str, Any]:
    return latest_head(svc.engine, svc.audit.signer)


def _officer_call(svc: Services, ctx: RequestContext, token: str, action: str, fn: Any) -> Any:
    who = svc.identity.authenticate(token)
    with Trail(svc.audit, who, ctx, action) as trail:
        if who.role is not Role.SECURITY_OFFICER:
            raise Forbidden("this is for the security officer")
        result = fn(svc)
        svc.audit.record(trail.make("success"))
    return result
