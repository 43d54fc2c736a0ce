"""Four-eyes requests: made by one person, approved by others, executed only then.

Rules (each pinned by `tests/unit/access/test_access_requests.py` and the admin proof tests):
- a request is approved by one person per role its kind needs (`kinds.SPECS`): another
  administrator, and for exports, policy changes, erasure and audit pruning also a security
  officer;
- nobody approves their own request, nor a request about their own account;
- an approval needs a second factor passed in the last five minutes;
- one rejection ends the request; the requester may withdraw it; it expires after 7 days;
- every request, approval, rejection and execution is audited and sent to the security
  officer's alert queue; the person a reset or a role change is about is told out of band.

An approval first writes `touched` on the request row: on PostgreSQL that row lock serialises
two approvers racing, on SQLite the write takes the database's single writer lock, so the
second approver always sees the first approval and a request executes exactly once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, insert, select, update

from rempart.access import notify
from rempart.access.checks import check
from rempart.access.common import (
    RequestConflict,
    RequestNotFound,
    audit,
    require,
    require_fresh_factor,
)
from rempart.access.execute import Env, execute
from rempart.access.kinds import SPECS, AnyRequest, CohortExport, details
from rempart.access.pdp import Principal
from rempart.access.permissions import Permission
from rempart.access.roles import Role
from rempart.access.tables import access_approval, access_request
from rempart.audit.records import AuditSink
from rempart.clock import micros_to_iso, now_micros
from rempart.context import RequestContext
from rempart.crypto import open_sealed, seal
from rempart.errors import Forbidden, InvalidResource, RempartError
from rempart.identity.tables import account

log = logging.getLogger("rempart.access")
DAY = 86_400_000_000
PENDING_DAYS = 7
_ANY = TypeAdapter(AnyRequest)
_APPROVER = {
    Role.ADMIN: Permission.ADMIN_REQUEST_APPROVE,
    Role.SECURITY_OFFICER: Permission.SECURITY_REQUEST_APPROVE,
}


@dataclass(frozen=True)
class Approval:
    account_id: str
    username: str
    role: str
    verdict: str
    at: str
    comment: str | None


@dataclass(frozen=True)
class RequestView:
    id: str
    kind: str
    status: str
    summary: str
    details: dict[str, Any]
    requested_by: str
    requester_username: str
    needs: list[str]
    approvals: list[Approval]
    created: str
    expires: str
    result: str | None


def _aad(request_id: str, kind: str) -> bytes:
    return f"rempart/access-request/{request_id}/{kind}".encode()


class Requests:
    def __init__(self, env: Env, audit_sink: AuditSink) -> None:
        self._env = env
        self._engine = env.engine
        self._audit = audit_sink

    # ---- making a request ----------------------------------------------------------------

    def submit(self, who: Principal, ctx: RequestContext, payload: Any) -> RequestView:
        spec = SPECS[payload.kind]
        if isinstance(payload, CohortExport):
            require(who, Permission.ACCESS_EXPORT_REQUEST)
        else:
            require(who, Permission.ADMIN_REQUEST_CREATE)
        if who.role not in spec.requesters:
            raise Forbidden(f"a {who.role.value} cannot ask for {payload.kind}")
        request_id = str(uuid.uuid4())
        now = now_micros()
        target = spec.target(payload)
        summary = spec.summary(payload)[:300]
        with self._engine.begin() as conn:
            check(self._env.store, conn, payload)
            conn.execute(
                insert(access_request).values(
                    id=request_id,
                    kind=payload.kind,
                    status="pending",
                    requested_by=who.account_id,
                    requester_role=who.role.value,
                    target_account=target,
                    payload_sealed=seal(
                        self._env.key,
                        payload.model_dump_json().encode(),
                        _aad(request_id, payload.kind),
                    ),
                    summary=summary,
                    needs=",".join(r.value for r in spec.needs),
                    created=now,
                    expires=now + PENDING_DAYS * DAY,
                    touched=now,
                )
            )
        audit(self._audit, who, ctx, "access-request", "success", detail=f"{request_id}: {summary}")
        notify.alert_officer(
            self._engine,
            "access-request",
            f"four-eyes request made: {summary}"[:500],
            {"request_id": request_id, "kind": payload.kind, "requested_by": who.account_id},
        )
        return self.get(who, request_id)

    # ---- deciding ------------------------------------------------------------------------

    def approve(
        self, who: Principal, ctx: RequestContext, request_id: str, comment: str | None
    ) -> RequestView:
        permission = _APPROVER.get(who.role)
        if permission is None or not who.may(permission):
            raise Forbidden(f"the {who.role.value} role approves no request")
        require_fresh_factor(who)
        now = now_micros()
        with self._engine.begin() as conn:
            row, problem = self._lock(conn, request_id, now)
            if problem is None:
                complete = self._approve(conn, who, row, comment, now)
        if problem is not None:
            raise RequestConflict(problem)
        audit(self._audit, who, ctx, "access-approve", "success", detail=request_id)
        notify.alert_officer(
            self._engine,
            "access-approval",
            f"four-eyes request approved by {who.username} ({who.role.value}): {row.summary}"[:500],
            {"request_id": request_id, "kind": row.kind, "approved_by": who.account_id},
        )
        if complete:
            self._run(who, ctx, row)
        return self.get(who, request_id)

    def _approve(
        self, conn: Connection, who: Principal, row: Any, comment: str | None, now: int
    ) -> bool:
        """Records one approval; True when it was the last one needed."""
        request_id = row.id
        self._may_decide(who, row)
        needs = [Role(r) for r in row.needs.split(",")]
        if who.role not in needs:
            raise Forbidden(f"{row.kind} is not approved by a {who.role.value}")
        done = self._verdicts(conn, request_id)
        if any(v.role == who.role.value for v in done):
            raise RequestConflict(
                f"a {who.role.value} already approved this request; it waits for "
                + ", ".join(r.value for r in needs if r.value not in {v.role for v in done})
            )
        conn.execute(
            insert(access_approval).values(
                request_id=request_id,
                account_id=who.account_id,
                role=who.role.value,
                verdict="approve",
                comment=(comment or None) and comment[:500],
                at=now,
            )
        )
        complete = {v.role for v in done} | {who.role.value} >= {r.value for r in needs}
        if complete:
            conn.execute(
                update(access_request)
                .where(access_request.c.id == request_id, access_request.c.status == "pending")
                .values(status="approved", decided_at=now)
            )
        return complete

    def reject(
        self, who: Principal, ctx: RequestContext, request_id: str, comment: str | None
    ) -> RequestView:
        """A rejection by an eligible approver, or the requester withdrawing."""
        now = now_micros()
        with self._engine.begin() as conn:
            row, problem = self._lock(conn, request_id, now)
            if problem is None:
                status = self._reject(conn, who, row, comment, now)
        if problem is not None:
            raise RequestConflict(problem)
        audit(self._audit, who, ctx, f"access-{status}", "success", detail=request_id)
        notify.alert_officer(
            self._engine,
            "access-rejection",
            f"four-eyes request {status} by {who.username}: {row.summary}"[:500],
            {"request_id": request_id, "kind": row.kind, "by": who.account_id},
        )
        return self.get(who, request_id)

    def _reject(
        self, conn: Connection, who: Principal, row: Any, comment: str | None, now: int
    ) -> str:
        request_id = row.id
        if any(v.account_id == who.account_id for v in self._verdicts(conn, request_id)):
            raise RequestConflict("you already approved this request; another person may reject it")
        withdraw = row.requested_by == who.account_id
        if not withdraw:
            permission = _APPROVER.get(who.role)
            if permission is None or not who.may(permission):
                raise Forbidden(f"the {who.role.value} role decides no request")
            self._may_decide(who, row)
        conn.execute(
            insert(access_approval).values(
                request_id=request_id,
                account_id=who.account_id,
                role=who.role.value,
                verdict="withdraw" if withdraw else "reject",
                comment=(comment or None) and comment[:500],
                at=now,
            )
        )
        status = "withdrawn" if withdraw else "rejected"
        conn.execute(
            update(access_request)
            .where(access_request.c.id == request_id)
            .values(status=status, decided_at=now)
        )
        return status

    def _lock(self, conn: Connection, request_id: str, now: int) -> tuple[Any, str | None]:
        """The request row, locked; and why it cannot be decided, if so (an expired request is
        marked expired in the same transaction, which the caller commits)."""
        touched = conn.execute(
            update(access_request).where(access_request.c.id == request_id).values(touched=now)
        ).rowcount
        row = conn.execute(select(access_request).where(access_request.c.id == request_id)).first()
        if touched != 1 or row is None:
            raise RequestNotFound(f"no request {request_id}")
        if row.status == "pending" and row.expires < now:
            conn.execute(
                update(access_request)
                .where(access_request.c.id == request_id)
                .values(status="expired", decided_at=now)
            )
            return row, f"request {request_id} expired unapproved"
        if row.status != "pending":
            return row, f"request {request_id} is {row.status}, not pending"
        return row, None

    @staticmethod
    def _may_decide(who: Principal, row: Any) -> None:
        if row.requested_by == who.account_id:
            raise Forbidden("you cannot approve your own request: another person must")
        if row.target_account == who.account_id:
            raise Forbidden("you cannot decide a request about your own account")

    def _run(self, who: Principal, ctx: RequestContext, row: Any) -> None:
        payload = self._payload(row)
        try:
            message = execute(self._env, payload, row.id, row.requested_by)
            status, outcome = "done", "success"
        except (RempartError, ValueError) as exc:
            message = f"failed: {getattr(exc, 'message', None) or exc}"
            status, outcome = "failed", "failed"
        except Exception:
            # The approval stands and is recorded; the request must not stay "approved" with no
            # outcome, and the approver gets an answer rather than a 500.
            log.exception("executing approved request %s (%s) failed", row.id, row.kind)
            message, status, outcome = (
                "failed: internal error (see the server log)",
                "failed",
                "error",
            )
        with self._engine.begin() as conn:
            conn.execute(
                update(access_request)
                .where(access_request.c.id == row.id)
                .values(status=status, result=message[:300], decided_at=now_micros())
            )
        audit(self._audit, who, ctx, f"access-{row.kind}", outcome, detail=f"{row.id}: {message}")
        notify.alert_officer(
            self._engine,
            "access-executed",
            f"four-eyes request {status}: {row.summary} -> {message}"[:500],
            {"request_id": row.id, "kind": row.kind, "status": status},
            warning=status == "failed",
        )

    def _payload(self, row: Any) -> Any:
        raw = open_sealed(self._env.key, row.payload_sealed, _aad(row.id, row.kind))
        try:
            return _ANY.validate_json(raw)
        except ValidationError as exc:  # pragma: no cover - we sealed it ourselves
            raise InvalidResource(f"request {row.id} holds an unreadable payload") from exc

    # ---- reading -------------------------------------------------------------------------

    def _verdicts(self, conn: Connection, request_id: str) -> list[Approval]:
        rows = conn.execute(
            select(access_approval, account.c.username)
            .join(account, account.c.id == access_approval.c.account_id)
            .where(access_approval.c.request_id == request_id)
            .order_by(access_approval.c.at)
        ).all()
        return [
            Approval(r.account_id, r.username, r.role, r.verdict, micros_to_iso(r.at), r.comment)
            for r in rows
        ]

    def get(self, who: Principal, request_id: str) -> RequestView:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(access_request, account.c.username)
                .join(account, account.c.id == access_request.c.requested_by)
                .where(access_request.c.id == request_id)
            ).first()
            if row is None or not self._may_see(who, row):
                raise RequestNotFound(f"no request {request_id}")
            return self._view(conn, row)

    def list(self, who: Principal, *, status: str | None, limit: int = 100) -> list[RequestView]:
        query = select(access_request, account.c.username).join(
            account, account.c.id == access_request.c.requested_by
        )
        if not who.may(Permission.ADMIN_REQUEST_READ):
            require(who, Permission.ACCESS_EXPORT_REQUEST)
            query = query.where(access_request.c.requested_by == who.account_id)
        if status:
            query = query.where(access_request.c.status == status)
        query = query.order_by(access_request.c.created.desc()).limit(max(1, min(limit, 500)))
        with self._engine.connect() as conn:
            return [self._view(conn, r) for r in conn.execute(query).all()]

    @staticmethod
    def _may_see(who: Principal, row: Any) -> bool:
        return who.may(Permission.ADMIN_REQUEST_READ) or row.requested_by == who.account_id

    def _view(self, conn: Connection, row: Any) -> RequestView:
        payload = self._payload(row)
        return RequestView(
            id=row.id,
            kind=row.kind,
            status=row.status,
            summary=row.summary,
            details=details(payload),
            requested_by=row.requested_by,
            requester_username=row.username,
            needs=row.needs.split(","),
            approvals=self._verdicts(conn, row.id),
            created=micros_to_iso(row.created),
            expires=micros_to_iso(row.expires),
            result=row.result,
        )
