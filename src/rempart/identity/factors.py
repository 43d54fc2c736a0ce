"""Second factors of a signed-in account: step-up, and adding TOTP, a security key or a new set
of recovery codes. Every change needs a second factor passed in the last few minutes (or a
session opened with an enrolment code), is audited, and ends the account's other sessions:
whoever changed a factor behind the holder's back is signed out with everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import insert, select, update

from rempart.access.pdp import Principal
from rempart.context import RequestContext
from rempart.errors import Forbidden
from rempart.identity import passkeys, recovery
from rempart.identity.core import Core, InvalidFactor, Proof
from rempart.identity.errors import KeyRequired, LoginFailed, StepUpRequired
from rempart.identity.passkeys import InvalidAssertion
from rempart.identity.sessions import ENROL
from rempart.identity.tables import session, webauthn_challenge, webauthn_credential
from rempart.identity.throttle import subject_of
from rempart.identity.totp import matching_step

SECOND = 1_000_000
CHALLENGE_SECONDS = 5 * 60


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    uri: str  # otpauth:// for a QR code


class FactorService:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._engine = core.engine

    # ---- step-up -----------------------------------------------------------------------------

    def require_fresh(self, who: Principal) -> None:
        """For sensitive actions: raises StepUpRequired unless a factor was passed lately."""
        if not self._core.sessions.is_fresh(who):
            raise StepUpRequired()

    def step_up_options(self, who: Principal) -> dict[str, Any] | None:
        """WebAuthn request options bound to this session, or None without a security key."""
        with self._engine.connect() as conn:
            keys = [c.credential_id for c in passkeys.active_credentials(conn, who.account_id)]
        if not keys:
            return None
        challenge, options = self._core.passkeys.authentication_options(keys)
        self._store_challenge(who, challenge, "step-up")
        return options

    def step_up(self, who: Principal, proof: Proof, ctx: RequestContext | None = None) -> int:
        """A fresh TOTP code or WebAuthn assertion; returns the session's new `factor_at`.
        An account holding a security key confirms with the key: its TOTP secret is what an
        infostealer carries away with the password, the key is not."""
        if who.keyed and proof.webauthn is None and self._holds_key(who.account_id):
            self._failed(who, ctx, "step-up", "a security key is required")
            raise KeyRequired()
        try:
            with self._engine.begin() as conn:
                acct = self._core.account_row(conn, who.account_id)
                challenge = None
                if proof.webauthn is not None:
                    challenge = self._take_challenge(conn, who, "step-up")
                factor = self._core.check_factor(conn, acct, proof, challenge, allow_recovery=False)
        except InvalidFactor as exc:
            self._failed(who, ctx, "step-up", str(exc))
            raise LoginFailed() from None
        key = factor == "webauthn"
        # A session whose account no longer holds a key (its last one disabled, e.g. as cloned)
        # confirms with what it has left, and is no longer held to the key.
        self._core.sessions.mark_factor(
            who.session_id or "", key=key, keyed=False if who.keyed and not key else None
        )
        self._core.record(
            "step-up",
            "success",
            ctx,
            account_id=who.account_id,
            role=who.role.value,
            session_id=who.session_id,
            detail=factor,
        )
        return self._core.clock()

    def _holds_key(self, account_id: str) -> bool:
        with self._engine.connect() as conn:
            return bool(passkeys.active_credentials(conn, account_id))

    def _failed(self, who: Principal, ctx: RequestContext | None, action: str, why: str) -> None:
        outcome = self._core.throttle.failed(ctx.ip if ctx else "local", subject_of(who.username))
        self._core.record(
            action,
            "failed",
            ctx,
            account_id=who.account_id,
            session_id=who.session_id,
            detail=f"{why}; consecutive failures: {outcome.failures}"[:200],
        )

    # ---- what the account has ----------------------------------------------------------------

    def summary(self, who: Principal) -> dict[str, Any]:
        with self._engine.connect() as conn:
            acct = self._core.account_row(conn, who.account_id)
            methods = self._core.enrolled(conn, acct)
            keys = conn.execute(
                select(
                    webauthn_credential.c.label,
                    webauthn_credential.c.created,
                    webauthn_credential.c.last_used,
                ).where(
                    webauthn_credential.c.account_id == who.account_id,
                    webauthn_credential.c.disabled_at.is_(None),
                )
            ).all()
            left = recovery.remaining(conn, who.account_id)
        return {
            "methods": methods,
            "allowed": sorted(self._core.allowed(acct.role)),
            "security_keys": [
                {"label": k.label, "created": k.created, "last_used": k.last_used} for k in keys
            ],
            "recovery_codes_left": left,
            "profile": self._core.profile,
        }

    # ---- TOTP --------------------------------------------------------------------------------

    def totp_begin(self, who: Principal) -> TotpEnrolment:
        self._may_change(who, "totp")
        secret = pyotp.random_base32(32)
        with self._engine.begin() as conn:
            acct = self._core.account_row(conn, who.account_id)
            profile = self._core.read_profile(acct.id, acct.profile_sealed)
            profile["totp_pending"] = secret
            self._core.write_profile(conn, acct.id, profile)
        uri = pyotp.TOTP(secret).provisioning_uri(name=who.username, issuer_name="rempart")
        return TotpEnrolment(secret, uri)

    def totp_confirm(self, who: Principal, code: str, ctx: RequestContext | None = None) -> None:
        """The first code from the app proves it holds the secret; only then is it active."""
        self._may_change(who, "totp")
        with self._engine.begin() as conn:
            acct = self._core.account_row(conn, who.account_id)
            profile = self._core.read_profile(acct.id, acct.profile_sealed)
            pending = profile.get("totp_pending")
            step = matching_step(pending, code) if pending else None
            if step is None or not self._core.take_totp_step(conn, acct.id, step):
                raise LoginFailed()
            profile["totp_secret"] = profile.pop("totp_pending", "")
            self._core.write_profile(conn, acct.id, profile)
        self._changed(who, "totp", ctx)

    # ---- WebAuthn ----------------------------------------------------------------------------

    def webauthn_begin(self, who: Principal) -> dict[str, Any]:
        self._may_change(who, "webauthn")
        with self._engine.connect() as conn:
            acct = self._core.account_row(conn, who.account_id)
            exclude = [c.credential_id for c in passkeys.active_credentials(conn, acct.id)]
        name = self._core.read_profile(acct.id, acct.profile_sealed).get("display_name", "")
        challenge, options = self._core.passkeys.registration_options(
            account_id=acct.id, username=acct.username, display_name=name, exclude=exclude
        )
        self._store_challenge(who, challenge, "register")
        return options

    def webauthn_finish(
        self,
        who: Principal,
        credential: dict[str, Any],
        label: str,
        ctx: RequestContext | None = None,
    ) -> None:
        self._may_change(who, "webauthn")
        try:
            with self._engine.begin() as conn:
                challenge = self._take_challenge(conn, who, "register")
                new = self._core.passkeys.verify_registration(credential, challenge)
                conn.execute(
                    insert(webauthn_credential).values(
                        credential_id=new.credential_id,
                        account_id=who.account_id,
                        public_key=new.public_key,
                        sign_count=new.sign_count,
                        aaguid=new.aaguid,
                        transports="",
                        label=label[:100],
                        created=self._core.clock(),
                    )
                )
        except (InvalidFactor, InvalidAssertion) as exc:
            self._core.record(
                "factor-add", "failed", ctx, account_id=who.account_id, detail=str(exc)[:200]
            )
            raise LoginFailed() from None
        # The key was just presented here; from now on this session confirms with it.
        self._core.sessions.mark_factor(who.session_id or "", key=True, keyed=True)
        self._changed(who, "webauthn", ctx)

    # ---- recovery codes ----------------------------------------------------------------------

    def new_recovery_codes(self, who: Principal, ctx: RequestContext | None = None) -> list[str]:
        """Ten new codes, shown once; the previous set stops working."""
        self._may_change(who, "recovery")
        with self._engine.begin() as conn:
            codes = recovery.replace_codes(conn, who.account_id, self._core.clock())
        self._changed(who, "recovery", ctx)
        return codes

    # ---- shared ------------------------------------------------------------------------------

    def _may_change(self, who: Principal, factor: str) -> None:
        if factor not in self._core.allowed(who.role.value):
            raise Forbidden(
                f"the {who.role.value} role may not use {factor} here; register a security key"
            )
        self.require_fresh(who)

    def _changed(self, who: Principal, factor: str, ctx: RequestContext | None) -> None:
        with self._engine.begin() as conn:
            ended = self._core.sessions.revoke_all(
                conn, who.account_id, reason="factor-change", keep_session_id=who.session_id
            )
            # A session opened with an enrolment code has done its one job.
            conn.execute(
                update(session)
                .where(session.c.id == who.session_id, session.c.scope == ENROL)
                .values(revoked=True, revoked_at=self._core.clock(), revoked_reason="enrolled")
            )
        self._core.record(
            "factor-add",
            "success",
            ctx,
            account_id=who.account_id,
            session_id=who.session_id,
            detail=f"{factor}; {len(ended)} other sessions ended",
        )

    def _store_challenge(self, who: Principal, challenge: bytes, purpose: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(webauthn_challenge).values(
                    challenge=challenge,
                    account_id=who.account_id,
                    session_id=who.session_id or "",
                    purpose=purpose,
                    expires=self._core.clock() + CHALLENGE_SECONDS * SECOND,
                    used=False,
                )
            )

    def _take_challenge(self, conn: Any, who: Principal, purpose: str) -> bytes:
        """The session's latest unused challenge for `purpose`, burnt as it is taken."""
        row = conn.execute(
            select(webauthn_challenge.c.challenge)
            .where(
                webauthn_challenge.c.session_id == (who.session_id or ""),
                webauthn_challenge.c.purpose == purpose,
                ~webauthn_challenge.c.used,
                webauthn_challenge.c.expires > self._core.clock(),
            )
            .order_by(webauthn_challenge.c.expires.desc())
            .limit(1)
        ).first()
        if row is None:
            raise InvalidFactor("no pending challenge")
        taken = conn.execute(
            update(webauthn_challenge)
            .where(webauthn_challenge.c.challenge == row.challenge, ~webauthn_challenge.c.used)
            .values(used=True)
        ).rowcount
        if taken != 1:
            raise InvalidFactor("challenge already used")
        return bytes(row.challenge)
