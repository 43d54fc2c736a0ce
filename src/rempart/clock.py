"""Time as the store keeps it: integer microseconds since the epoch, UTC.

Every time-dependent security decision (sessions' idle and absolute expiry, TOTP steps, sign-in
throttling, break-the-glass expiry, care windows, the guard's windows) reads the time here, so
that the attack simulator (`rempart simulate`, which runs the server in its own process) can
play days of hospital life in minutes by moving this process's clock forward.

The offset is a module global of this process: nothing in the configuration, the environment
or the HTTP API reads or sets it, so a deployed server always runs on the system clock (offset
zero). Only Python code running in the same process, i.e. the simulator, can move it, and only
forward, inside a `SimulatedTime` block that restores it on exit.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import formatdate
from types import TracebackType

SECOND = 1_000_000


class _Offset:
    """Microseconds added to the system clock; 0 outside a simulation."""

    micros = 0
    lock = threading.Lock()


def now_micros() -> int:
    return time.time_ns() // 1000 + _Offset.micros


def now_seconds() -> float:
    """The same clock as `now_micros`, in (float) seconds: for TOTP steps."""
    return time.time() + _Offset.micros / SECOND


def micros_to_iso(micros: int) -> str:
    dt = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def micros_to_http_date(micros: int) -> str:
    """RFC 9110's IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), as Last-Modified wants it
    (FHIR's http page: "the HTTP Last-Modified header", not an instant)."""
    return formatdate(micros // SECOND, usegmt=True)


def datetime_to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def now_datetime() -> datetime:
    """Now, as an aware UTC datetime, on this module's clock."""
    return datetime.fromtimestamp(now_micros() / SECOND, tz=UTC)


class SimulatedTime:
    """Moves this process's clock forward for a simulation; restores it on exit.

    Forward only: time going backwards would reopen what already expired (a session, a grant, a
    used TOTP step), which no real clock does.
    """

    def __init__(self) -> None:
        self._saved: int | None = None

    def __enter__(self) -> SimulatedTime:
        with _Offset.lock:
            self._saved = _Offset.micros
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with _Offset.lock:
            _Offset.micros = self._saved or 0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("simulated time only moves forward")
        if self._saved is None:
            raise RuntimeError("advance() only inside `with SimulatedTime()`")
        with _Offset.lock:
            _Offset.micros += int(seconds * SECOND)

    def advance_to(self, micros: int) -> None:
        """Forward to `micros` (no-op when the clock is already past it)."""
        ahead = micros - now_micros()
        if ahead > 0:
            self.advance(ahead / SECOND)

    @property
    def offset_seconds(self) -> float:
        return _Offset.micros / SECOND
