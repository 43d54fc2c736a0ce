"""Policy settings: defaults in code, changes only through an approved four-eyes request.

There is deliberately no configuration-file or environment switch for these: whoever could edit
`config.toml` could otherwise widen the care window or lift the break-the-glass cap without a
second approver. Every setting has bounds, so even an approved change cannot turn the policy
off (a care window of ten years, an unlimited break-the-glass). Other packages (the guard)
register their own keys with `register`.

Processes read the table at most every `CACHE_SECONDS`, so a read does not pay a query for it;
an approved change reaches every process within that delay.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from rempart.access.tables import access_setting
from rempart.errors import InvalidResource

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class SettingDef:
    key: str
    default: int
    low: int
    high: int
    doc: str


_DEFS: dict[str, SettingDef] = {}


def register(key: str, default: int, low: int, high: int, doc: str) -> SettingDef:
    if not low <= default <= high:
        raise ValueError(f"{key}: default {default} outside [{low}, {high}]")
    definition = SettingDef(key, default, low, high, doc)
    _DEFS[key] = definition
    return definition


CARE_WINDOW_DAYS = register(
    "policy.care_window_days", 30, 1, 365, "days a finished encounter or care team still counts"
)
BREAK_GLASS_MINUTES = register(
    "policy.break_glass_minutes", 60, 5, 8 * 60, "how long a break-the-glass grant lasts"
)
BREAK_GLASS_DAILY_CAP = register(
    "policy.break_glass_daily_cap", 5, 1, 20, "break-the-glass grants per clinician per 24 h"
)
EXPORT_MAX_PATIENTS = register(
    "policy.export_max_patients", 10_000, 1, 100_000, "largest cohort one export may hold"
)


def definitions() -> dict[str, SettingDef]:
    return dict(_DEFS)


def check_value(key: str, raw: object) -> int:
    definition = _DEFS.get(key)
    if definition is None:
        raise InvalidResource(f"unknown setting {key!r}; known: {', '.join(sorted(_DEFS))}")
    return bounded_int(key, raw, definition.low, definition.high)


def bounded_int(key: str, raw: object, low: int, high: int) -> int:
    """`raw` as an integer within [low, high], or a 4xx naming the setting."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidResource(f"{key} takes an integer")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidResource(f"{key} takes an integer") from None
    if not low <= value <= high:
        raise InvalidResource(f"{key} must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class PolicySettings:
    values: dict[str, int]

    def get(self, definition: SettingDef) -> int:
        return self.values.get(definition.key, definition.default)

    @property
    def care_window_micros(self) -> int:
        return self.get(CARE_WINDOW_DAYS) * 86_400_000_000


DEFAULTS = PolicySettings({})


def load(conn: Connection) -> PolicySettings:
    values: dict[str, int] = {}
    for row in conn.execute(select(access_setting.c.key, access_setting.c.value)):
        definition = _DEFS.get(row.key)
        if definition is not None and row.value.lstrip("-").isdigit():
            # Bounds are enforced again on read: a row edited in the database cannot lift them.
            values[row.key] = max(definition.low, min(definition.high, int(row.value)))
    return PolicySettings(values)


class SettingsCache:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._value = DEFAULTS
        self._loaded_at = -CACHE_SECONDS

    def current(self) -> PolicySettings:
        if time.monotonic() - self._loaded_at < CACHE_SECONDS:
            return self._value
        with self._lock:
            if time.monotonic() - self._loaded_at >= CACHE_SECONDS:
                with self._engine.connect() as conn:
                    self._value = load(conn)
                self._loaded_at = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        self._loaded_at = -CACHE_SECONDS
