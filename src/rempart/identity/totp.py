"""RFC 6238 TOTP with single use: each accepted code's time step is remembered."""

from __future__ import annotations

import hmac

import pyotp

from rempart import clock

STEP_SECONDS = 30


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step (current, previous or next) whose code equals `code`, else None."""
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int((now if now is not None else clock.now_seconds()) // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None
