"""The security officer's side of the guard: the alert queue (filtered, paged), the
containments, and the release of an account (unlock, with a written reason, audited).

Only the security officer role acts here: an administrator who could unlock what the guard
locked would undo the guard with a stolen administrator session.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, select, update

from rempart import clock
from rempart.access.common import require_fresh_factor
from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.alerts import INFO, SEVERITIES, acknowledge_alert, security_alert
from rempart.audit.records import AuditRecord, AuditSink
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource, ResourceNotFound
from rempart.guard import counters
from rempart.guard.engine import Guard
from rempart.guard.tables import guard_containment
from rempart.identity.service import IdentityService
from rempart.identity.tables import account

MIN_REASON = 10
MAX_REASON = 500


@dataclass(frozen=True)
class AlertPage:
    alerts: list[dict[str, Any]]
    next_before: int | None  # pass as `before` for the next (older) page


def require_officer(who: Principal) -> None:
    if who.role is not Role.SECURITY_OFFICER:
        raise Forbidden(f"the {who.role.value} role does not handle security alerts")


class GuardService:
    def __init__(
        self, engine: Engine, guard: Guard, identity: IdentityService, audit: AuditSink
    ) -> None:
        self._engine = engine
        self._guard = guard
        self._identity = identity
        self._audit = audit

    def alerts(
        self,
        who: Principal,
        *,
        kind: str | None = None,
        severity: str | None = None,
        account_id: str | None = None,
        pending_only: bool = False,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> AlertPage:
        require_officer(who)
        if severity is not None and severity not in SEVERITIES:
            raise InvalidResource(f"severity is one of {', '.join(SEVERITIES)}")
        a = security_alert.c
        query = select(security_alert)
        if kind is not None:
            # "guard-" (a prefix ending in "-") selects every guard alert.
            query = query.where(a.kind.startswith(kind) if kind.endswith("-") else a.kind == kind)
        if severity is not None:
            query = query.where(a.severity == severity)
        if account_id is not None:
            query = query.where(a.details.contains(json.dumps({"account_id": account_id})[1:-1]))
        if pending_only:
            query = query.where(a.acknowledged.is_(None))
        if since is not None:
            query = query.where(a.created >= since)
        if before is not None:
            query = query.where(a.created < before)
        limit = max(1, min(limit, 500))
        query = query.order_by(a.created.desc(), a.id).limit(limit + 1)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        page = [
            {
                "id": r.id,
                "created": clock.micros_to_iso(r.created),
                "created_micros": r.created,
                "kind": r.kind,
                "severity": r.severity,
                "message": r.message,
                "details": json.loads(r.details),
                "acknowledged": clock.micros_to_iso(r.acknowledged) if r.acknowledged else None,
                "acknowledged_by": r.acknowledged_by,
            }
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return AlertPage(page, page[-1]["created_micros"] if more and page else None)

    def acknowledge(self, who: Principal, ctx: RequestContext, alert_id: str) -> None:
        require_officer(who)
        if not acknowledge_alert(self._engine, alert_id, who.account_id):
            raise ResourceNotFound(f"no unacknowledged alert {alert_id}")
        self._record(who, ctx, "alert-acknowledge", detail=alert_id)

    def containments(
        self, who: Principal, *, account_id: str | None, open_only: bool, limit: int = 100
    ) -> list[dict[str, Any]]:
        require_officer(who)
        c = guard_containment.c
        query = select(guard_containment)
        if account_id is not None:
            query = query.where(c.account_id == account_id)
        if open_only:
            query = query.where(c.released_at.is_(None))
        query = query.order_by(c.at.desc()).limit(max(1, min(limit, 500)))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r.id,
                "at": clock.micros_to_iso(r.at),
                "account_id": r.account_id,
                "session_id": r.session_id,
                "level": r.level,
                "signal": r.signal,
                "message": r.message,
                "released_at": clock.micros_to_iso(r.released_at) if r.released_at else None,
                "released_by": r.released_by,
                "released_reason": r.released_reason,
            }
            for r in rows
        ]

    def release(
        self, who: Principal, ctx: RequestContext, account_id: str, reason: str
    ) -> dict[str, Any]:
        """Unlocks the account, closes its containments and restarts the guard's counts for it
        (so it is not contained again for what was just reviewed). A written reason and a
        second factor passed in the last five minutes are required."""
        require_officer(who)
        text = " ".join(reason.split())
        if len(text) < MIN_REASON:
            raise InvalidResource(
                f"say why in at least {MIN_REASON} characters: the release is audited",
                expression="reason",
            )
        if len(text) > MAX_REASON:
            raise InvalidResource(f"the reason is at most {MAX_REASON} characters")
        if account_id == who.account_id:
            raise Forbidden("a security officer does not release their own account")
        require_fresh_factor(who)
        with self._engine.connect() as conn:
            row = conn.execute(
                select(account.c.id, account.c.locked_at).where(account.c.id == account_id)
            ).first()
        if row is None:
            raise ResourceNotFound(f"no account {account_id}")
        was_locked = row.locked_at is not None
        self._identity.unlock(account_id, who.username, text, ctx)
        released = self._close(account_id, who.account_id, text)
        self._record(who, ctx, "guard-release", target=account_id, detail=text)
        self._guard.notify(
            "guard-release",
            INFO,
            f"security officer {who.username} released account {account_id} "
            f"({'unlocked; ' if was_locked else ''}{released} containments closed)",
            {"account_id": account_id, "by": who.account_id, "containments": released},
        )
        return {"account_id": account_id, "unlocked": was_locked, "containments_released": released}

    def release_by_operator(self, account_id: str, by: str, reason: str) -> int:
        """`rempart identity unlock` (the operator on the server, after `identity.unlock`):
        closes the guard's containments of the account and restarts its counts, as the
        security officer's release does; audited and alerted. The number closed."""
        text = " ".join(reason.split())[:MAX_REASON] or "no reason given"
        released = self._close(account_id, f"operator:{by}"[:64], text)
        self._audit.record(
            AuditRecord(
                action="guard-release",
                outcome="success",
                ip="cli",
                user_agent="rempart identity unlock",
                username=by[:150],
                resource_type="Account",
                resource_id=account_id,
                detail=text[:300],
            )
        )
        self._guard.notify(
            "guard-release",
            INFO,
            f"operator {by} unlocked account {account_id} on the server "
            f"({released} guard containments closed)",
            {"account_id": account_id, "by": f"operator:{by}"[:64], "containments": released},
        )
        return released

    def _close(self, account_id: str, by: str, reason: str) -> int:
        now = clock.now_micros()
        c = guard_containment.c
        with self._engine.begin() as conn:
            released = int(
                conn.execute(
                    update(guard_containment)
                    .where(c.account_id == account_id, c.released_at.is_(None))
                    .values(released_at=now, released_by=by, released_reason=reason)
                ).rowcount
            )
            counters.reset(conn, account_id, now)
        self._guard.released(account_id, now)
        return released

    def _record(
        self,
        who: Principal,
        ctx: RequestContext,
        action: str,
        *,
        detail: str,
        target: str | None = None,
    ) -> None:
        self._audit.record(
            AuditRecord(
                action=action,
                outcome="success",
                ip=ctx.ip,
                user_agent=ctx.user_agent,
                account_id=who.account_id,
                username=who.username,
                role=who.role.value,
                session_id=who.session_id,
                resource_type="Account" if target else None,
                resource_id=target,
                request_id=ctx.request_id,
                detail=detail[:300],
            )
        )


def alert_page_json(page: AlertPage) -> dict[str, Any]:
    return asdict(page)
