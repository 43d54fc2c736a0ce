"""Login in two steps (password, then a second factor), opaque bearer sessions, logout.

Contract (kept by later identity work): POST /auth/login -> an MFA challenge token, never a
session; POST /auth/mfa -> a bearer token; every failure is the same 401 whatever went wrong.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, insert, select, update

from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.clock import now_micros
from rempart.crypto import IntegrityError, open_sealed, seal
from rempart.errors import InvalidResource, NotAuthenticated
from rempart.identity.passwords import hash_password, verify_password
from rempart.identity.tables import account, mfa_challenge, session
from rempart.identity.totp import matching_step

SECOND = 1_000_000  # microseconds
MAX_MFA_ATTEMPTS = 5
ABSOLUTE_LIFETIME = 12 * 3600 * SECOND
# Idle timeouts: shorter for the roles whose sessions can change who may read what.
IDLE = {
    Role.ADMIN: 15 * 60 * SECOND,
    Role.SECURITY_OFFICER: 15 * 60 * SECOND,
}
DEFAULT_IDLE = 30 * 60 * SECOND
# last_seen is rewritten at most this often, so a read is not a write on every request.
TOUCH_EVERY = 30 * SECOND

_FAILED = "authentication failed"  # one message for every failure: it names no culprit


@dataclass(frozen=True)
class Session:
    access_token: str
    expires_in: int


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _aad(account_id: str) -> bytes:
    return b"rempart/account/" + account_id.encode()


class IdentityService:
    def __init__(self, engine: Engine, directory_key: bytes, *, mfa_seconds: int = 300) -> None:
        self._engine = engine
        self._key = directory_key
        self._mfa_ttl = mfa_seconds * SECOND

    # ---- accounts ----------------------------------------------------------------------------

    def create_account(
        self,
        *,
        username: str,
        password: str,
        role: Role,
        totp_secret: str,
        display_name: str,
        practitioner: str | None = None,
        patient: str | None = None,
    ) -> str:
        if not username or len(username) > 150:
            raise InvalidResource("a username is 1 to 150 characters")
        account_id = str(uuid.uuid4())
        profile = orjson.dumps({"display_name": display_name, "totp_secret": totp_secret})
        with self._engine.begin() as conn:
            conn.execute(
                insert(account).values(
                    id=account_id,
                    username=username,
                    password_hash=hash_password(password),
                    role=role.value,
                    practitioner=practitioner,
                    patient=patient,
                    profile_sealed=seal(self._key, profile, _aad(account_id)),
                    totp_last_step=0,
                    created=now_micros(),
                    disabled=False,
                )
            )
        return account_id

    def _profile(self, account_id: str, sealed: bytes) -> dict[str, str]:
        try:
            parsed: dict[str, str] = orjson.loads(open_sealed(self._key, sealed, _aad(account_id)))
        except IntegrityError:
            raise NotAuthenticated(_FAILED) from None
        return parsed

    # ---- login -------------------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        """Checks the password; returns a short-lived challenge for the second factor."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(account.c.id, account.c.password_hash, account.c.disabled).where(
                    account.c.username == username
                )
            ).first()
        # Unknown users are checked against a dummy hash: same time, same answer.
        ok = verify_password(row.password_hash if row else None, password)
        if row is None or not ok or row.disabled:
            raise NotAuthenticated(_FAILED)
        token = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                insert(mfa_challenge).values(
                    token_hash=_digest(token),
                    account_id=row.id,
                    expires=now_micros() + self._mfa_ttl,
                    attempts=0,
                    used=False,
                )
            )
        return token

    def verify_mfa(self, mfa_token: str, code: str) -> Session:
        now = now_micros()
        with self._engine.begin() as conn:
            challenge = conn.execute(
                select(mfa_challenge).where(mfa_challenge.c.token_hash == _digest(mfa_token))
            ).first()
            if (
                challenge is None
                or challenge.used
                or challenge.expires < now
                or challenge.attempts >= MAX_MFA_ATTEMPTS
            ):
                raise NotAuthenticated(_FAILED)
            conn.execute(
                update(mfa_challenge)
                .where(mfa_challenge.c.token_hash == challenge.token_hash)
                .values(attempts=mfa_challenge.c.attempts + 1)
            )
            acct = conn.execute(select(account).where(account.c.id == challenge.account_id)).one()
        secret = self._profile(acct.id, acct.profile_sealed)["totp_secret"]
        step = matching_step(secret, code)
        if step is None or acct.disabled:
            raise NotAuthenticated(_FAILED)
        with self._engine.begin() as conn:
            # Compare-and-set on the last step: two concurrent uses of one code, one wins.
            taken = conn.execute(
                update(account)
                .where(account.c.id == acct.id, account.c.totp_last_step < step)
                .values(totp_last_step=step)
            ).rowcount
            burned = conn.execute(
                update(mfa_challenge)
                .where(mfa_challenge.c.token_hash == challenge.token_hash, ~mfa_challenge.c.used)
                .values(used=True)
            ).rowcount
            if taken != 1 or burned != 1:
                raise NotAuthenticated(_FAILED)
            token = secrets.token_urlsafe(32)
            conn.execute(
                insert(session).values(
                    token_hash=_digest(token),
                    id=str(uuid.uuid4()),
                    account_id=acct.id,
                    created=now,
                    expires=now + ABSOLUTE_LIFETIME,
                    last_seen=now,
                    revoked=False,
                )
            )
        return Session(token, ABSOLUTE_LIFETIME // SECOND)

    # ---- sessions ----------------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        now = now_micros()
        digest = _digest(token)
        with self._engine.connect() as conn:
            row = conn.execute(
                select(
                    session.c.id.label("session_id"),
                    session.c.expires,
                    session.c.last_seen,
                    session.c.revoked,
                    session.c.created,
                    account.c.id,
                    account.c.username,
                    account.c.role,
                    account.c.practitioner,
                    account.c.patient,
                    account.c.disabled,
                )
                .select_from(session.join(account, account.c.id == session.c.account_id))
                .where(session.c.token_hash == digest)
            ).first()
        if row is None or row.revoked or row.disabled or row.expires < now:
            raise NotAuthenticated(_FAILED)
        role = Role(row.role)
        if now - row.last_seen > IDLE.get(role, DEFAULT_IDLE):
            raise NotAuthenticated("session expired after inactivity; log in again")
        if now - row.last_seen > TOUCH_EVERY:
            with self._engine.begin() as conn:
                conn.execute(
                    update(session).where(session.c.token_hash == digest).values(last_seen=now)
                )
        return Principal(
            account_id=row.id,
            username=row.username,
            role=role,
            practitioner=row.practitioner,
            patient=row.patient,
            session_id=row.session_id,
            factor_at=row.created,
        )

    def logout(self, token: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(session).where(session.c.token_hash == _digest(token)).values(revoked=True)
            )
