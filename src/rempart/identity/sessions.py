"""Opaque bearer sessions: 256-bit random tokens stored as SHA-256 digests, checked on every
request against the database, so a revocation (logout, password or factor change, lock, a
security officer's "revoke all") takes effect on the very next request.

`authenticate` is on the hot path of every protected read: one indexed SELECT joining the
account, and a `last_seen` write at most every 30 seconds.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.errors import NotAuthenticated
from rempart.identity.errors import FAILED, LoginFailed
from rempart.identity.settings import SessionLimits
from rempart.identity.tables import account, session
from rempart.store.db import autocommit
from rempart.store.prepared import Prepared
from rempart.store.writegate import gate_for

SECOND = 1_000_000
TOUCH_EVERY = 30 * SECOND  # last_seen is rewritten at most this often: a read is not a write
FULL = "full"
ENROL = "enrol"  # opened with an enrolment code: may register a factor, nothing else


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# Built once: every request authenticates, and building the statement cost more than running it.
_AUTHENTICATE = Prepared(
    select(
        session.c.id.label("session_id"),
        session.c.expires,
        session.c.last_seen,
        session.c.revoked,
        session.c.factor_at,
        session.c.keyed,
        session.c.key_at,
        session.c.scope,
        account.c.id,
        account.c.username,
        account.c.role,
        account.c.practitioner,
        account.c.patient,
        account.c.disabled,
        account.c.locked_at,
    )
    .select_from(session.join(account, account.c.id == session.c.account_id))
    .where(session.c.token_hash == bindparam("token_hash"))
)


@dataclass(frozen=True)
class Session:
    access_token: str
    expires_in: int
    session_id: str
    scope: str = FULL


@dataclass(frozen=True)
class Revoked:
    session_id: str
    account_id: str


class Sessions:
    def __init__(self, engine: Engine, limits: SessionLimits, clock: Callable[[], int]) -> None:
        self._engine = engine
        self._gate = gate_for(engine)
        self._reader = autocommit(engine)
        self._limits = limits
        self._clock = clock

    def open(
        self,
        conn: Connection,
        *,
        account_id: str,
        role: Role,
        factors: str,
        now: int,
        scope: str = FULL,
        keyed: bool = False,
    ) -> Session:
        """`keyed`: the account holds a security key (`factors` ending in "+webauthn": the
        key was presented at this sign-in)."""
        token = secrets.token_urlsafe(32)
        lifetime = self._limits.absolute[role] * SECOND
        if scope == ENROL:
            lifetime = min(lifetime, 15 * 60 * SECOND)
        session_id = str(uuid.uuid4())
        conn.execute(
            insert(session).values(
                token_hash=digest(token),
                id=session_id,
                account_id=account_id,
                created=now,
                expires=now + lifetime,
                last_seen=now,
                revoked=False,
                factor_at=now,
                factors=factors[:80],
                keyed=keyed,
                key_at=now if factors.endswith("+webauthn") else 0,
                scope=scope,
            )
        )
        return Session(token, lifetime // SECOND, session_id, scope)

    def authenticate(self, token: str, *, scopes: tuple[str, ...] = (FULL,)) -> Principal:
        now = self._clock()
        token_hash = digest(token)
        with self._reader.connect() as conn:
            row = _AUTHENTICATE.first(conn, {"token_hash": token_hash})
        if (
            row is None
            or row.revoked
            or row.disabled
            or row.locked_at is not None
            or row.expires < now
            or row.scope not in scopes
        ):
            raise LoginFailed()
        role = Role(row.role)
        if now - row.last_seen > self._limits.idle[role] * SECOND:
            raise NotAuthenticated("session expired after inactivity; log in again")
        if now - row.last_seen > TOUCH_EVERY:
            with self._gate.held(), self._engine.begin() as conn:
                conn.execute(
                    update(session).where(session.c.token_hash == token_hash).values(last_seen=now)
                )
        return Principal(
            account_id=row.id,
            username=row.username,
            role=role,
            practitioner=row.practitioner,
            patient=row.patient,
            session_id=row.session_id,
            factor_at=row.key_at if row.keyed else row.factor_at,
            keyed=row.keyed,
        )

    def revoke(self, token: str, reason: str) -> Revoked | None:
        now = self._clock()
        with self._engine.begin() as conn:
            row = conn.execute(
                update(session)
                .where(session.c.token_hash == digest(token), ~session.c.revoked)
                .values(revoked=True, revoked_at=now, revoked_reason=reason)
                .returning(session.c.id, session.c.account_id)
            ).first()
        return Revoked(row.id, row.account_id) if row else None

    def revoke_all(
        self,
        conn: Connection,
        account_id: str,
        *,
        reason: str,
        keep_session_id: str | None = None,
    ) -> list[str]:
        """Revokes every live session of the account (but `keep_session_id`); their ids."""
        where = [session.c.account_id == account_id, ~session.c.revoked]
        if keep_session_id is not None:
            where.append(session.c.id != keep_session_id)
        rows = conn.execute(
            update(session)
            .where(*where)
            .values(revoked=True, revoked_at=self._clock(), revoked_reason=reason)
            .returning(session.c.id)
        ).all()
        return [r.id for r in rows]

    def mark_factor(self, session_id: str, *, key: bool = False, keyed: bool | None = None) -> None:
        """Step-up: this session passed a second factor just now (`key`: its security key;
        `keyed`, when given: whether the account holds a key from now on)."""
        now = self._clock()
        values: dict[str, object] = {"factor_at": now, "last_seen": now}
        if key:
            values["key_at"] = now
        if keyed is not None:
            values["keyed"] = keyed
        with self._engine.begin() as conn:
            done = conn.execute(
                update(session)
                .where(session.c.id == session_id, ~session.c.revoked)
                .values(**values)
            ).rowcount
        if done != 1:
            raise NotAuthenticated(FAILED)

    def is_fresh(self, principal: Principal) -> bool:
        return self._clock() - principal.factor_at <= self._limits.step_up_seconds * SECOND
