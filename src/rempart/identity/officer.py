"""The security officer's levers on an account (issue #4 exposes them through approvals and
its own endpoints; `rempart identity ...` gives them to the operator): lock, unlock, end every
session, remove every second factor, and issue a one-time enrolment code."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Engine, delete, insert, update

from rempart.context import RequestContext
from rempart.identity.core import Core
from rempart.identity.tables import (
    account,
    enrolment_code,
    recovery_code,
    webauthn_credential,
)
from rempart.identity.throttle import subject_of

SECOND = 1_000_000
ENROLMENT_CODE_SECONDS = 72 * 3600


def code_digest(code: str) -> bytes:
    return hashlib.sha256(b"rempart/enrolment/" + code.strip().encode()).digest()


class SecurityOfficerActions:
    core: Core
    _engine: Engine

    def revoke_all_sessions(
        self, account_id: str, *, by: str | None = None, ctx: RequestContext | None = None
    ) -> int:
        with self._engine.begin() as conn:
            ids = self.core.sessions.revoke_all(conn, account_id, reason="revoke-all")
        self.core.record(
            "session-revoke",
            "success",
            ctx,
            account_id=account_id,
            detail=f"{len(ids)} sessions; by {by or 'system'}"[:200],
        )
        return len(ids)

    def lock(
        self, account_id: str, *, by: str, reason: str, ctx: RequestContext | None = None
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(account)
                .where(account.c.id == account_id)
                .values(locked_at=self.core.clock())
            )
            self.core.sessions.revoke_all(conn, account_id, reason="lock")
        self.core.record("lock", "success", ctx, account_id=account_id, detail=f"{by}: {reason}")

    def unlock(
        self, account_id: str, by: str, reason: str, ctx: RequestContext | None = None
    ) -> None:
        with self._engine.begin() as conn:
            acct = self.core.account_row(conn, account_id)
            conn.execute(update(account).where(account.c.id == account_id).values(locked_at=None))
        self.core.throttle.unlock(subject_of(acct.username))
        self.core.record(
            "unlock", "success", ctx, account_id=account_id, detail=f"{by}: {reason}"[:200]
        )

    def reset_factors(
        self, account_id: str, *, by: str = "security officer", ctx: RequestContext | None = None
    ) -> None:
        """Removes every second factor and ends every session; the holder then needs an
        enrolment code (`issue_enrolment_code`) to register a new one."""
        with self._engine.begin() as conn:
            acct = self.core.account_row(conn, account_id)
            profile = self.core.read_profile(acct.id, acct.profile_sealed)
            profile.pop("totp_secret", None)
            profile.pop("totp_pending", None)
            self.core.write_profile(conn, acct.id, profile)
            conn.execute(
                delete(webauthn_credential).where(webauthn_credential.c.account_id == account_id)
            )
            conn.execute(delete(recovery_code).where(recovery_code.c.account_id == account_id))
            self.core.sessions.revoke_all(conn, account_id, reason="factor-reset")
        self.core.record("factor-reset", "success", ctx, account_id=account_id, detail=f"by {by}")

    def issue_enrolment_code(
        self, account_id: str, *, by: str, ctx: RequestContext | None = None
    ) -> str:
        """A one-time code, valid 72 h, that stands in for the second factor once, to open a
        session that may only register a factor. Hand it over in person or by phone."""
        code = secrets.token_urlsafe(18)
        with self._engine.begin() as conn:
            self.core.account_row(conn, account_id)
            conn.execute(
                insert(enrolment_code).values(
                    digest=code_digest(code),
                    account_id=account_id,
                    issued_by=by[:150],
                    expires=self.core.clock() + ENROLMENT_CODE_SECONDS * SECOND,
                )
            )
        self.core.record("enrolment-code", "success", ctx, account_id=account_id, detail=by)
        return code
