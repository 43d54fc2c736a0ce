"""What the access services share: step-up, permission checks, audit records, refusals."""

from __future__ import annotations

import re
from typing import Any

from rempart.access.pdp import Principal
from rempart.access.permissions import Permission
from rempart.audit.records import AuditRecord, AuditSink
from rempart.clock import now_micros
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource, RempartError
from rempart.identity.errors import StepUpRequired

SECOND = 1_000_000
# A "fresh" second factor: passed within the last five minutes (login or POST /auth/step-up).
FRESH_FACTOR_SECONDS = 5 * 60
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class Throttled(RempartError):
    status = 429
    code = "throttled"


class RequestNotFound(RempartError):
    status = 404
    code = "not-found"


class RequestConflict(RempartError):
    status = 409
    code = "conflict"


def require(who: Principal, *permissions: Permission) -> None:
    """At least one of `permissions`, else 403 (the role is in the message, the data is not)."""
    if not any(who.may(p) for p in permissions):
        names = " or ".join(p.value for p in permissions)
        raise Forbidden(f"the {who.role.value} role does not hold {names}")


def require_fresh_factor(who: Principal, *, now: int | None = None) -> None:
    if (now or now_micros()) - who.factor_at > FRESH_FACTOR_SECONDS * SECOND:
        raise StepUpRequired()


def local_ref(value: str, *types: str) -> tuple[str, str]:
    """("Type", "id") of a local reference of one of `types`, else 400."""
    kind, _, ident = value.partition("/")
    if kind not in types or not ID.fullmatch(ident):
        raise InvalidResource(f"{value!r} is not a reference to {' or '.join(types)}/<id>")
    return kind, ident


def audit(
    sink: AuditSink,
    who: Principal | None,
    ctx: RequestContext,
    action: str,
    outcome: str,
    **fields: Any,
) -> None:
    """One durable audit record (identifiers only; never a name or a reason's text)."""
    sink.record(
        AuditRecord(
            action=action,
            outcome=outcome,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            account_id=who.account_id if who else None,
            username=who.username if who else None,
            role=who.role.value if who else None,
            practitioner=who.practitioner if who else None,
            session_id=who.session_id if who else None,
            request_id=ctx.request_id,
            **fields,
        )
    )
