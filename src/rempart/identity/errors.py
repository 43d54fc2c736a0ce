"""Identity failures as the client sees them. One message for every failed sign-in: it never
says whether the username, the password or the second factor was wrong."""

from __future__ import annotations

from rempart.errors import Forbidden, NotAuthenticated, RempartError

FAILED = "authentication failed"


class Throttled(RempartError):
    """Too many attempts from this address, network or for this username: wait `retry_after`."""

    status = 429
    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many sign-in attempts; wait {retry_after} seconds before trying again"
        )
        self.retry_after = max(1, retry_after)


class AccountLocked(Forbidden):
    """After 100 failed attempts. Same answer whether the username exists or not."""

    code = "lock-error"

    def __init__(self) -> None:
        super().__init__(
            "this account is locked after too many failed sign-in attempts; ask your security "
            "officer to unlock it"
        )


class StepUpRequired(Forbidden):
    """A sensitive action needs a second factor passed in the last few minutes."""

    def __init__(self) -> None:
        super().__init__(
            "confirm it is you: pass your second factor again (POST /auth/step-up), then retry"
        )


class LoginFailed(NotAuthenticated):
    def __init__(self) -> None:
        super().__init__(FAILED)


class KeyRequired(Forbidden):
    """A TOTP code offered where the account confirms with its security key."""

    def __init__(self) -> None:
        super().__init__(
            "this account holds a security key and confirms with it: ask POST "
            "/auth/step-up/options, then send the key's assertion to POST /auth/step-up"
        )
