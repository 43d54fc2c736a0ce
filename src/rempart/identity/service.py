"""Sign-in in two steps (a password or a federated login, then a second factor the role allows),
opaque bearer sessions, and the security officer's levers on an account.

Contract: POST /auth/login -> an MFA challenge, never a session; POST /auth/mfa -> a bearer
token; every failure is the same 401 whatever went wrong, with the same work done (and so the
same timing) for unknown and known usernames.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.alerts import WARNING, raise_alert
from rempart.audit.records import AuditSink
from rempart.clock import now_micros
from rempart.context import RequestContext
from rempart.identity import passkeys
from rempart.identity.accounts import NewAccount, prepare_account, store_account
from rempart.identity.core import Core, InvalidFactor, Proof
from rempart.identity.errors import AccountLocked, LoginFailed
from rempart.identity.factors import FactorService
from rempart.identity.officer import SecurityOfficerActions, code_digest
from rempart.identity.oidc import OidcLogin
from rempart.identity.password_policy import PasswordOwner, check_password
from rempart.identity.sessions import ENROL, FULL, Session, digest
from rempart.identity.settings import IdentityConfig
from rempart.identity.tables import (
    account,
    enrolment_code,
    mfa_challenge,
)
from rempart.identity.throttle import Alert, subject_of

SECOND = 1_000_000
MAX_MFA_ATTEMPTS = 5
ENROLMENT_CODE_SECONDS = 72 * 3600


@dataclass(frozen=True)
class LoginChallenge:
    mfa_token: str
    methods: list[str]
    webauthn: dict[str, Any] | None = None  # PublicKeyCredentialRequestOptions, if a key exists


def _default_alert(engine: Engine) -> Alert:
    def alert(kind: str, message: str, details: dict[str, str | int]) -> None:
        raise_alert(engine, kind, WARNING, message, details)

    return alert


class IdentityService(SecurityOfficerActions):
    def __init__(
        self,
        engine: Engine,
        directory_key: bytes,
        *,
        audit: AuditSink,
        config: IdentityConfig | None = None,
        profile: str = "production",
        alert: Alert | None = None,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self.core = Core(
            engine,
            directory_key,
            config or IdentityConfig(),
            profile,
            audit,
            alert or _default_alert(engine),
            clock,
        )
        self.factors = FactorService(self.core)
        self.oidc = OidcLogin(self.core, self.begin_second_factor)
        self._engine = engine

    @property
    def profile(self) -> str:
        return self.core.profile

    # ---- accounts ----------------------------------------------------------------------------

    def create_account(
        self,
        *,
        username: str,
        password: str,
        role: Role,
        display_name: str,
        totp_secret: str | None = None,
        practitioner: str | None = None,
        patient: str | None = None,
        rpps: str | None = None,
    ) -> str:
        return self.store_account(
            prepare_account(
                self.core,
                username=username,
                password=password,
                role=role,
                display_name=display_name,
                totp_secret=totp_secret,
                practitioner=practitioner,
                patient=patient,
                rpps=rpps,
            )
        )

    def store_account(self, new: NewAccount) -> str:
        """An account checked and hashed beforehand by `accounts.prepare_account`."""
        return store_account(self.core, self._engine, new)

    def set_password(
        self, account_id: str, new_password: str, *, by: str, ctx: RequestContext | None = None
    ) -> None:
        """An administrator's reset: every session of the account ends."""
        self._store_password(account_id, new_password, keep_session=None)
        self.core.record(
            "password-reset", "success", ctx, account_id=account_id, detail=f"by {by}"[:200]
        )

    def change_password(
        self, who: Principal, current: str, new_password: str, ctx: RequestContext | None = None
    ) -> None:
        """The holder's own change: needs the current password; other sessions end."""
        with self._engine.connect() as conn:
            acct = self.core.account_row(conn, who.account_id)
        if not self.core.passwords.verify(acct.password_hash, current):
            self.core.throttle.failed(ctx.ip if ctx else "local", subject_of(acct.username))
            self.core.record("password-change", "failed", ctx, account_id=who.account_id)
            raise LoginFailed()
        self._store_password(who.account_id, new_password, keep_session=who.session_id)
        self.core.record(
            "password-change", "success", ctx, account_id=who.account_id, session_id=who.session_id
        )

    def _store_password(self, account_id: str, password: str, *, keep_session: str | None) -> None:
        with self._engine.connect() as conn:
            acct = self.core.account_row(conn, account_id)
        name = self.core.read_profile(acct.id, acct.profile_sealed).get("display_name", "")
        check_password(password, PasswordOwner(acct.username, name))
        new_hash = self.core.passwords.hash(password)
        with self._engine.begin() as conn:
            conn.execute(
                update(account)
                .where(account.c.id == account_id)
                .values(password_hash=new_hash, password_changed=self.core.clock())
            )
            self.core.sessions.revoke_all(
                conn, account_id, reason="password-change", keep_session_id=keep_session
            )

    # ---- first factor ------------------------------------------------------------------------

    def login(
        self, username: str, password: str, ctx: RequestContext | None = None
    ) -> LoginChallenge:
        """Checks the password; returns a short-lived challenge for the second factor."""
        ip = ctx.ip if ctx else "local"
        subject = subject_of(username)
        self.core.throttle.admit(ip, subject)  # 429 / locked, before any Argon2 work
        with self._engine.connect() as conn:
            row = conn.execute(
                select(account.c.id, account.c.password_hash).where(account.c.username == username)
            ).first()
        # Unknown users are checked against a dummy hash: same work, same time, same answer.
        ok = self.core.passwords.verify(row.password_hash if row else None, password)
        if row is None or not ok:
            self._failed(ip, subject, ctx, "login", row.id if row else None)
            raise LoginFailed()
        if self.core.passwords.needs_rehash(row.password_hash):
            with self._engine.begin() as conn:  # cost raised in config: upgrade on this login
                conn.execute(
                    update(account)
                    .where(account.c.id == row.id)
                    .values(password_hash=self.core.passwords.hash(password))
                )
        return self.begin_second_factor(row.id, "password", ctx)

    def begin_second_factor(
        self, account_id: str, first_factor: str, ctx: RequestContext | None
    ) -> LoginChallenge:
        """After a first factor (password or federated login): the challenge for the second."""
        with self._engine.connect() as conn:
            acct = self.core.account_row(conn, account_id)
            methods = self.core.enrolled(conn, acct)
            keys = [c.credential_id for c in passkeys.active_credentials(conn, acct.id)]
        if acct.disabled:
            self.core.record("login", "denied", ctx, account_id=acct.id, detail="disabled")
            raise LoginFailed()
        if acct.locked_at is not None:
            self.core.record("login", "denied", ctx, account_id=acct.id, detail="locked")
            raise AccountLocked()
        options = None
        challenge = None
        if "webauthn" in methods:
            challenge, options = self.core.passkeys.authentication_options(keys)
        token = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                insert(mfa_challenge).values(
                    token_hash=digest(token),
                    account_id=acct.id,
                    expires=self.core.clock()
                    + self.core.config.sessions.challenge_seconds * SECOND,
                    attempts=0,
                    used=False,
                    first_factor=first_factor,
                    webauthn_challenge=challenge,
                )
            )
        self.core.record(
            "login",
            "success",
            ctx,
            account_id=acct.id,
            username=acct.username,
            role=acct.role,
            detail=f"first factor: {first_factor}; second factor pending",
        )
        return LoginChallenge(token, list(methods), options)

    def _failed(
        self,
        ip: str,
        subject: bytes,
        ctx: RequestContext | None,
        action: str,
        account_id: str | None,
        why: str = "",
    ) -> None:
        outcome = self.core.throttle.failed(ip, subject)
        who = "" if account_id else "; unknown username"
        self.core.record(
            action,
            "failed",
            ctx,
            account_id=account_id,
            detail=f"{why}{'; ' if why else ''}consecutive failures: {outcome.failures}{who}"[:200],
        )
        if outcome.locked_now:
            self._locked_by_failures(account_id, outcome.failures, ctx)

    def _locked_by_failures(self, account_id: str | None, failures: int, ctx: Any) -> None:
        if account_id is not None:
            with self._engine.begin() as conn:
                conn.execute(
                    update(account)
                    .where(account.c.id == account_id)
                    .values(locked_at=self.core.clock())
                )
                self.core.sessions.revoke_all(conn, account_id, reason="lock")
        self.core.record("lockout", "success", ctx, account_id=account_id, detail=str(failures))
        self.core.alert(
            "account-locked",
            f"{failures} failed sign-ins in a row: the username is locked until a security "
            "officer unlocks it",
            {"account_id": account_id or "unknown username"},
        )

    # ---- second factor -----------------------------------------------------------------------

    def verify_mfa(
        self,
        mfa_token: str,
        code: str | None = None,
        *,
        proof: Proof | None = None,
        ctx: RequestContext | None = None,
    ) -> Session:
        proof = proof or Proof(code=code)
        ip = ctx.ip if ctx else "local"
        self.core.throttle.check_network(ip)
        now = self.core.clock()
        with self._engine.begin() as conn:
            challenge = conn.execute(
                select(mfa_challenge).where(mfa_challenge.c.token_hash == digest(mfa_token))
            ).first()
            if (
                challenge is None
                or challenge.used
                or challenge.expires < now
                or challenge.attempts >= MAX_MFA_ATTEMPTS
            ):
                raise LoginFailed()
            conn.execute(
                update(mfa_challenge)
                .where(mfa_challenge.c.token_hash == challenge.token_hash)
                .values(attempts=mfa_challenge.c.attempts + 1)
            )
            acct = self.core.account_row(conn, challenge.account_id)
        subject = subject_of(acct.username)
        if acct.disabled or acct.locked_at is not None or self.core.throttle.is_locked(subject):
            raise LoginFailed()
        try:
            with self._engine.begin() as conn:
                if proof.enrolment_code is not None:
                    factor, scope = "enrolment-code", ENROL
                    if not self._burn_enrolment_code(conn, acct.id, proof.enrolment_code):
                        raise InvalidFactor("enrolment code")
                else:
                    factor = self.core.check_factor(conn, acct, proof, challenge.webauthn_challenge)
                    scope = FULL
                burned = conn.execute(
                    update(mfa_challenge)
                    .where(
                        mfa_challenge.c.token_hash == challenge.token_hash, ~mfa_challenge.c.used
                    )
                    .values(used=True)
                ).rowcount
                if burned != 1:
                    raise InvalidFactor("challenge already used")
                opened = self.core.sessions.open(
                    conn,
                    account_id=acct.id,
                    role=Role(acct.role),
                    factors=f"{challenge.first_factor}+{factor}",
                    now=now,
                    scope=scope,
                    keyed=challenge.webauthn_challenge is not None,
                )
        except InvalidFactor as exc:
            self._failed(ip, subject, ctx, "mfa", acct.id, str(exc))
            raise LoginFailed() from None
        if scope == FULL:
            self.core.throttle.succeeded(subject)
        self.core.record(
            "mfa",
            "success",
            ctx,
            account_id=acct.id,
            username=acct.username,
            role=acct.role,
            session_id=opened.session_id,
            detail=f"{challenge.first_factor}+{factor}; session {scope}",
        )
        return opened

    def _burn_enrolment_code(self, conn: Connection, account_id: str, code: str) -> bool:
        return (
            conn.execute(
                update(enrolment_code)
                .where(
                    enrolment_code.c.digest == code_digest(code),
                    enrolment_code.c.account_id == account_id,
                    enrolment_code.c.used_at.is_(None),
                    enrolment_code.c.expires > self.core.clock(),
                )
                .values(used_at=self.core.clock())
            ).rowcount
            == 1
        )

    # ---- sessions ----------------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        return self.core.sessions.authenticate(token)

    def authenticate_for_factors(self, token: str) -> Principal:
        """A full session, or one opened with an enrolment code (which may only register a
        factor): the factor-management endpoints accept both."""
        return self.core.sessions.authenticate(token, scopes=(FULL, ENROL))

    def logout(self, token: str, ctx: RequestContext | None = None) -> None:
        revoked = self.core.sessions.revoke(token, "logout")
        if revoked is not None:
            self.core.record(
                "logout",
                "success",
                ctx,
                account_id=revoked.account_id,
                session_id=revoked.session_id,
            )
