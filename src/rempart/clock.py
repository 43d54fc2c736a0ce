"""Time as the store keeps it: integer microseconds since the epoch, UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_micros() -> int:
    return time.time_ns() // 1000


def micros_to_iso(micros: int) -> str:
    dt = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def datetime_to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)
