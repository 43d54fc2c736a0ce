"""What the identity services share: collaborators, the sealed profile, the audit trail, the role
factor policy and the check of one second factor (TOTP, WebAuthn or a recovery code)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from rempart.access.roles import Role
from rempart.audit.records import AuditRecord, AuditSink
from rempart.context import RequestContext
from rempart.crypto import IntegrityError, open_sealed, seal
from rempart.identity import passkeys, recovery
from rempart.identity.errors import LoginFailed
from rempart.identity.passkeys import ClonedKey, InvalidAssertion, Passkeys
from rempart.identity.passwords import Passwords
from rempart.identity.sessions import Sessions
from rempart.identity.settings import FACTORS, Factor, IdentityConfig
from rempart.identity.tables import account
from rempart.identity.throttle import Alert, Throttle
from rempart.identity.totp import matching_step

LOCAL = RequestContext.local("identity")


class InvalidFactor(Exception):
    """The second factor did not verify (any reason: the client is told only "failed")."""


@dataclass(frozen=True)
class Proof:
    """One second factor as the client sent it; exactly one field is set."""

    code: str | None = None  # TOTP
    webauthn: dict[str, Any] | None = None  # a PublicKeyCredential from navigator.credentials
    recovery_code: str | None = None
    enrolment_code: str | None = None

    @property
    def kind(self) -> str:
        given = [
            name
            for name, value in (
                ("totp", self.code),
                ("webauthn", self.webauthn),
                ("recovery", self.recovery_code),
                ("enrolment", self.enrolment_code),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise InvalidFactor("send exactly one second factor")
        return given[0]


@dataclass
class Core:
    engine: Engine
    key: bytes
    config: IdentityConfig
    profile: str
    audit: AuditSink
    alert: Alert
    clock: Callable[[], int]
    passwords: Passwords = field(init=False)
    throttle: Throttle = field(init=False)
    sessions: Sessions = field(init=False)
    passkeys: Passkeys = field(init=False)

    def __post_init__(self) -> None:
        self.passwords = Passwords(self.config.argon2)
        self.throttle = Throttle(self.engine, self.config.throttle, self.clock, self.alert)
        self.sessions = Sessions(self.engine, self.config.sessions, self.clock)
        self.passkeys = Passkeys(self.config.webauthn)
        for role in Role:  # a policy that breaks the production rules stops the process here
            self.config.factors_for(role, self.profile)

    # ---- sealed profile (display name, TOTP secret) ------------------------------------------

    @staticmethod
    def aad(account_id: str) -> bytes:
        return b"rempart/account/" + account_id.encode()

    def read_profile(self, account_id: str, sealed: bytes) -> dict[str, str]:
        try:
            parsed: dict[str, str] = orjson.loads(
                open_sealed(self.key, sealed, self.aad(account_id))
            )
        except IntegrityError:
            raise LoginFailed() from None
        return parsed

    def seal_profile(self, account_id: str, profile: dict[str, str]) -> bytes:
        return seal(self.key, orjson.dumps(profile), self.aad(account_id))

    def write_profile(self, conn: Connection, account_id: str, profile: dict[str, str]) -> None:
        conn.execute(
            update(account)
            .where(account.c.id == account_id)
            .values(profile_sealed=self.seal_profile(account_id, profile))
        )

    # ---- audit -------------------------------------------------------------------------------

    def record(
        self,
        action: str,
        outcome: str,
        ctx: RequestContext | None,
        *,
        account_id: str | None = None,
        username: str | None = None,
        role: str | None = None,
        session_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        ctx = ctx or LOCAL
        self.audit.record(
            AuditRecord(
                action=action,
                outcome=outcome,
                ip=ctx.ip,
                user_agent=ctx.user_agent,
                account_id=account_id,
                username=username,
                role=role,
                session_id=session_id,
                detail=detail,
                request_id=ctx.request_id,
                at=self.clock(),
            )
        )

    # ---- factors -----------------------------------------------------------------------------

    def allowed(self, role: str) -> frozenset[Factor]:
        return self.config.factors_for(Role(role), self.profile)

    def enrolled(self, conn: Connection, acct: Any) -> list[Factor]:
        """The factors this account has and its role may use, strongest first."""
        allowed = self.allowed(acct.role)
        have: set[str] = set()
        if passkeys.active_credentials(conn, acct.id):
            have.add("webauthn")
        if self.read_profile(acct.id, acct.profile_sealed).get("totp_secret"):
            have.add("totp")
        if recovery.remaining(conn, acct.id):
            have.add("recovery")
        return [f for f in FACTORS if f in have and f in allowed]

    def check_factor(
        self,
        conn: Connection,
        acct: Any,
        proof: Proof,
        webauthn_challenge: bytes | None,
        *,
        allow_recovery: bool = True,
    ) -> str:
        """Verifies and consumes one second factor inside `conn`'s transaction; its name."""
        kind = proof.kind
        allowed = self.allowed(acct.role)
        if kind not in allowed or (kind == "recovery" and not allow_recovery):
            raise InvalidFactor(f"{kind} is not allowed for the {acct.role} role")
        now = self.clock()
        if kind == "totp" and proof.code is not None:
            secret = self.read_profile(acct.id, acct.profile_sealed).get("totp_secret")
            step = matching_step(secret, proof.code) if secret else None
            if step is None or not self.take_totp_step(conn, acct.id, step):
                raise InvalidFactor("totp")
            return "totp"
        if kind == "recovery" and proof.recovery_code is not None:
            if not recovery.burn(conn, acct.id, proof.recovery_code, now):
                raise InvalidFactor("recovery")
            return "recovery"
        if kind == "webauthn" and proof.webauthn is not None and webauthn_challenge:
            self.check_assertion(conn, acct.id, proof.webauthn, webauthn_challenge)
            return "webauthn"
        raise InvalidFactor(kind)

    @staticmethod
    def take_totp_step(conn: Connection, account_id: str, step: int) -> bool:
        # Compare-and-set on the last step: a code (or an older one) is accepted once.
        return (
            conn.execute(
                update(account)
                .where(account.c.id == account_id, account.c.totp_last_step < step)
                .values(totp_last_step=step)
            ).rowcount
            == 1
        )

    def check_assertion(
        self, conn: Connection, account_id: str, credential: dict[str, Any], challenge: bytes
    ) -> None:
        try:
            wanted = passkeys.credential_id_of(credential)
        except InvalidAssertion as exc:
            raise InvalidFactor(str(exc)) from None
        stored = next(
            (c for c in passkeys.active_credentials(conn, account_id) if c.credential_id == wanted),
            None,
        )
        if stored is None:
            raise InvalidFactor("unknown credential")
        try:
            count = self.passkeys.verify_assertion(credential, challenge, stored)
        except ClonedKey:
            self.cloned_key(account_id, stored.credential_id)
            raise InvalidFactor("cloned key") from None
        except InvalidAssertion as exc:
            raise InvalidFactor(str(exc)) from None
        if not passkeys.advance_counter(conn, stored, count, self.clock()):
            raise InvalidFactor("counter raced")

    def cloned_key(self, account_id: str, credential_id: bytes) -> None:
        """Disabled in its own transaction: it must stick although the sign-in fails."""
        with self.engine.begin() as conn:
            passkeys.disable(conn, credential_id, self.clock())
        self.record("factor-disable", "success", None, account_id=account_id, detail="cloned key")
        self.alert(
            "webauthn-cloned-key",
            "a security key answered with a signature counter that went backwards: a copy of "
            "the key exists. The key is disabled; contact the holder.",
            {"account_id": account_id, "credential": credential_id.hex()[:64]},
        )

    def account_row(self, conn: Connection, account_id: str) -> Any:
        row = conn.execute(select(account).where(account.c.id == account_id)).first()
        if row is None:
            raise LoginFailed()
        return row
