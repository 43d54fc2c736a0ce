"""Account administration: the operations an approved four-eyes request executes.

Nothing here is reachable by one administrator alone: `rempart.access.kinds` calls these
functions only after a second, distinct approver (and for some kinds a security officer)
approved the request. Removing access (disabling an account) is the exception: it closes
access, so it is immediate.

No function returns a credential to an administrator. A new account gets a random password
nobody sees; its holder receives, out of band (`user_notice`), a one-time code to set their own
password and an enrolment code to register their own second factor. A reset works the same way.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from rempart.access.roles import Role
from rempart.access.tables import account_activation, unit_membership
from rempart.clock import now_micros
from rempart.errors import InvalidResource, NotAuthenticated
from rempart.identity.password_policy import WeakPassword
from rempart.identity.service import IdentityService
from rempart.identity.tables import account

SECOND = 1_000_000
PASSWORD_CODE_SECONDS = 72 * 3600  # long enough to reach someone on leave for a weekend
MAX_CODE_ATTEMPTS = 5
_FAILED = "the code is wrong, used or expired"


@dataclass(frozen=True)
class AccountView:
    """What an administrator sees of an account: no name, no patient link, no secret."""

    id: str
    username: str
    role: str
    practitioner: str | None
    disabled: bool
    locked: bool
    created: int
    units: tuple[str, ...]


def _view(row: Any, units: tuple[str, ...]) -> AccountView:
    return AccountView(
        id=row.id,
        username=row.username,
        role=str(row.role),
        practitioner=row.practitioner,  # a patient account's link is never shown
        disabled=bool(row.disabled),
        locked=row.locked_at is not None,
        created=row.created,
        units=units,
    )


_COLUMNS = (
    account.c.id,
    account.c.username,
    account.c.role,
    account.c.practitioner,
    account.c.disabled,
    account.c.locked_at,
    account.c.created,
)


def list_accounts(conn: Connection, *, limit: int = 500, after: str = "") -> list[AccountView]:
    rows = conn.execute(
        select(*_COLUMNS)
        .where(account.c.username > after)
        .order_by(account.c.username)
        .limit(limit)
    ).all()
    units: dict[str, list[str]] = {}
    if rows:
        for m in conn.execute(
            select(unit_membership.c.account_id, unit_membership.c.unit).where(
                unit_membership.c.account_id.in_([r.id for r in rows])
            )
        ):
            units.setdefault(m.account_id, []).append(m.unit)
    return [_view(r, tuple(sorted(units.get(r.id, [])))) for r in rows]


def get_account(conn: Connection, account_id: str) -> AccountView | None:
    row = conn.execute(select(*_COLUMNS).where(account.c.id == account_id)).first()
    if row is None:
        return None
    units = conn.execute(
        select(unit_membership.c.unit).where(unit_membership.c.account_id == account_id)
    ).scalars()
    return _view(row, tuple(sorted(units)))


def username_taken(conn: Connection, username: str) -> bool:
    return (
        conn.execute(select(account.c.id).where(account.c.username == username)).first() is not None
    )


# ---- changes (executed by approved requests) -------------------------------------------------


def create_account(
    identity: IdentityService,
    *,
    username: str,
    role: Role,
    display_name: str,
    practitioner: str | None,
) -> str:
    """A new account with a random password nobody is shown and no second factor yet."""
    return identity.create_account(
        username=username,
        password=secrets.token_urlsafe(32),  # unusable: its holder sets their own with a code
        role=role,
        display_name=display_name,
        practitioner=practitioner,
    )


def set_role(conn: Connection, account_id: str, role: Role) -> None:
    conn.execute(update(account).where(account.c.id == account_id).values(role=role.value))


def set_practitioner(conn: Connection, account_id: str, practitioner: str | None) -> None:
    conn.execute(
        update(account).where(account.c.id == account_id).values(practitioner=practitioner)
    )


def set_disabled(conn: Connection, account_id: str, disabled: bool) -> bool:
    return (
        conn.execute(
            update(account).where(account.c.id == account_id).values(disabled=disabled)
        ).rowcount
        == 1
    )


def revoke_sessions(
    identity: IdentityService, conn: Connection, account_id: str, reason: str
) -> int:
    """Every session of the account ends: a changed role or link takes effect at once."""
    return len(identity.core.sessions.revoke_all(conn, account_id, reason=reason))


# ---- one-time password codes -----------------------------------------------------------------


def _digest(code: str) -> bytes:
    return hashlib.sha256(b"rempart/password-code/" + code.strip().encode()).digest()


def issue_password_code(conn: Connection, account_id: str, request_id: str) -> str:
    """A one-time code that lets the account's holder choose a new password (72 h)."""
    code = secrets.token_urlsafe(18)
    conn.execute(
        update(account_activation)
        .where(account_activation.c.account_id == account_id, ~account_activation.c.used)
        .values(used=True)  # an older code stops working when a new one is issued
    )
    conn.execute(
        account_activation.insert().values(
            digest=_digest(code),
            account_id=account_id,
            purpose="password",
            request_id=request_id,
            expires=now_micros() + PASSWORD_CODE_SECONDS * SECOND,
            attempts=0,
            used=False,
        )
    )
    return code


def redeem_password_code(
    engine: Engine, identity: IdentityService, username: str, code: str, new_password: str
) -> str:
    """Sets the password of `username` if `code` is its live code; the account id.

    Every failure gives the same answer, so the endpoint does not tell which usernames exist;
    a code stops working after MAX_CODE_ATTEMPTS wrong tries on its account.
    """
    now = now_micros()
    with engine.begin() as conn:
        row = conn.execute(select(account.c.id).where(account.c.username == username)).first()
        if row is None:
            raise NotAuthenticated(_FAILED)
        live = (
            account_activation.c.account_id == row.id,
            ~account_activation.c.used,
            account_activation.c.expires > now,
            account_activation.c.attempts < MAX_CODE_ATTEMPTS,
        )
        taken = conn.execute(
            update(account_activation)
            .where(*live, account_activation.c.digest == _digest(code))
            .values(used=True)
        ).rowcount
        if taken != 1:
            conn.execute(
                update(account_activation)
                .where(*live)
                .values(attempts=account_activation.c.attempts + 1)
            )
    if taken != 1:
        raise NotAuthenticated(_FAILED)
    try:
        identity.set_password(row.id, new_password, by="one-time code from an approved request")
    except WeakPassword as exc:
        with engine.begin() as conn:  # the code was not spent on a refused password
            conn.execute(
                update(account_activation)
                .where(account_activation.c.digest == _digest(code))
                .values(used=False)
            )
        raise InvalidResource(str(exc)) from None
    return str(row.id)
