"""The access package as the API and the CLI hold it: one object built in `wiring.py`.

Break-the-glass, four-eyes requests, exports, and the few immediate administrative acts that
only ever *close* access (disabling an account, removing a unit membership).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from rempart import alerts
from rempart.access import membership, notify
from rempart.access.breakglass import BreakGlass
from rempart.access.common import RequestNotFound, audit, require
from rempart.access.execute import Env
from rempart.access.export import Exports
from rempart.access.pdp import Principal
from rempart.access.permissions import Permission
from rempart.access.requests import Requests
from rempart.access.roles import PERMISSIONS
from rempart.access.settings import definitions
from rempart.access.tables import unit_membership
from rempart.audit.records import AuditSink
from rempart.context import RequestContext
from rempart.errors import Forbidden
from rempart.identity import admin
from rempart.identity.tables import account


@dataclass(frozen=True)
class Me:
    account_id: str
    username: str
    role: str
    permissions: list[str]
    practitioner: str | None
    units: list[str]
    scope: str


class AccessService:
    def __init__(self, env: Env, audit_sink: AuditSink) -> None:
        self.env = env
        self._audit = audit_sink
        self.break_glass = BreakGlass(env.engine, env.key, env.settings, audit_sink)
        self.requests = Requests(env, audit_sink)
        self.exports = Exports(env.store, audit_sink)

    # ---- the caller's own view -----------------------------------------------------------

    def me(self, who: Principal, scope: str) -> Me:
        with self.env.engine.connect() as conn:
            units = membership.memberships(conn, who.account_id)
        return Me(
            who.account_id,
            who.username,
            who.role.value,
            sorted(p.value for p in PERMISSIONS[who.role]),
            who.practitioner,
            units,
            scope,
        )

    # ---- accounts (read, and the acts that only close access) ------------------------------

    def accounts(
        self, who: Principal, *, after: str = "", limit: int = 500
    ) -> list[admin.AccountView]:
        require(who, Permission.ADMIN_ACCOUNT_READ)
        with self.env.engine.connect() as conn:
            return admin.list_accounts(conn, after=after, limit=max(1, min(limit, 500)))

    def account(self, who: Principal, account_id: str) -> admin.AccountView:
        require(who, Permission.ADMIN_ACCOUNT_READ)
        with self.env.engine.connect() as conn:
            found = admin.get_account(conn, account_id)
        if found is None:
            raise RequestNotFound(f"no account {account_id}")
        return found

    def disable(self, who: Principal, ctx: RequestContext, account_id: str) -> admin.AccountView:
        """Immediate: disabling closes access (re-enabling is a four-eyes request)."""
        require(who, Permission.ADMIN_ACCOUNT_DISABLE)
        if account_id == who.account_id:
            raise Forbidden("you cannot disable your own account")
        with self.env.engine.begin() as conn:
            if not admin.set_disabled(conn, account_id, True):
                raise RequestNotFound(f"no account {account_id}")
            ended = admin.revoke_sessions(self.env.identity, conn, account_id, "disabled")
            notify.notify_user(
                conn,
                self.env.key,
                account_id,
                "account-disabled",
                {"message": f"Your account was disabled by {who.username}."},
            )
        audit(self._audit, who, ctx, "account-disable", "success", detail=account_id)
        notify.alert_officer(
            self.env.engine,
            "account-disabled",
            f"account disabled by {who.username}; {ended} sessions ended",
            {"account_id": account_id, "by": who.account_id},
        )
        return self.account(who, account_id)

    def remove_unit(
        self, who: Principal, ctx: RequestContext, account_id: str, unit: str
    ) -> admin.AccountView:
        """Immediate: a membership removed closes access to that unit's patients."""
        require(who, Permission.ADMIN_ACCOUNT_DISABLE)
        with self.env.engine.begin() as conn:
            if not membership.remove(conn, account_id, unit):
                raise RequestNotFound(f"account {account_id} is not a member of {unit}")
        audit(self._audit, who, ctx, "unit-remove", "success", detail=f"{account_id} {unit}")
        notify.alert_officer(
            self.env.engine,
            "unit-membership-removed",
            f"unit membership removed by {who.username}",
            {"account_id": account_id, "unit": unit, "by": who.account_id},
        )
        return self.account(who, account_id)

    def roles(self, who: Principal) -> dict[str, list[str]]:
        """Every role and its permissions (the table of `access/roles.py`)."""
        require(who, Permission.ADMIN_ACCOUNT_READ)
        return {role.value: sorted(p.value for p in perms) for role, perms in PERMISSIONS.items()}

    def units(self, who: Principal) -> list[dict[str, Any]]:
        """Each unit or establishment with the accounts that belong to it."""
        require(who, Permission.ADMIN_ACCOUNT_READ)
        with self.env.engine.connect() as conn:
            rows = conn.execute(
                select(unit_membership.c.unit, account.c.id, account.c.username)
                .join(account, account.c.id == unit_membership.c.account_id)
                .order_by(unit_membership.c.unit, account.c.username)
            ).all()
        found: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            found.setdefault(row.unit, []).append({"id": row.id, "username": row.username})
        return [{"unit": unit, "members": members} for unit, members in found.items()]

    # ---- the security officer's alert queue (rempart.alerts) --------------------------------

    def alerts(self, who: Principal, *, pending_only: bool, limit: int) -> list[dict[str, Any]]:
        require(who, Permission.SECURITY_ALERT_READ)
        found = alerts.list_alerts(self.env.engine, limit=limit, unacknowledged_only=pending_only)
        return [asdict(a) for a in found]

    def acknowledge(self, who: Principal, ctx: RequestContext, alert_id: str) -> None:
        require(who, Permission.SECURITY_ALERT_READ)
        if not alerts.acknowledge_alert(self.env.engine, alert_id, who.account_id):
            raise RequestNotFound(f"no unacknowledged alert {alert_id}")
        audit(self._audit, who, ctx, "alert-acknowledge", "success", detail=alert_id)

    def settings(self, who: Principal) -> list[dict[str, Any]]:
        require(who, Permission.ADMIN_REQUEST_READ)
        current = self.env.settings.current()
        return [
            {
                "key": d.key,
                "value": current.get(d),
                "default": d.default,
                "low": d.low,
                "high": d.high,
                "doc": d.doc,
            }
            for d in sorted(definitions().values(), key=lambda d: d.key)
        ]

    # ---- one-time password codes (no session: the holder proves the code) ------------------

    def set_password(self, ctx: RequestContext, username: str, code: str, password: str) -> None:
        account_id = admin.redeem_password_code(
            self.env.engine, self.env.identity, username, code, password
        )
        audit(self._audit, None, ctx, "password-set", "success", detail=account_id)
