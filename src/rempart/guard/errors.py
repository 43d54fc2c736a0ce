"""What a client sees when the guard acts on its request: the data of that request does not
leave. Neither is a `Forbidden`: the audit trail already holds the request's records (marked
withheld) and the guard's own, so `Trail` must not add a third."""

from __future__ import annotations

from rempart.errors import RempartError


class GuardStepUpRequired(RempartError):
    """Unusual activity: the session must pass its second factor again (POST /auth/step-up)."""

    status = 403
    code = "security"

    def __init__(self) -> None:
        super().__init__(
            "unusual activity on this session: confirm it is you by passing your second factor "
            "again (POST /auth/step-up; your security key if you hold one: ask "
            "POST /auth/step-up/options first), then retry; the security officer was alerted"
        )


class GuardContained(RempartError):
    """The session was revoked (suspend) or the account locked: log in again, or, for a lock,
    ask the security officer, who alone unlocks it."""

    status = 401
    code = "security"

    def __init__(self, level: str) -> None:
        message = (
            "this account was locked by the security guard; only a security officer can unlock it"
            if level == "lock"
            else "this session was ended by the security guard; the security officer was alerted"
        )
        super().__init__(message)
        self.level = level
