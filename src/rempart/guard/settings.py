"""The guard's thresholds and responses, and the `[guard]` table of config.toml.

Thresholds, windows, working hours and the response to each signal are policy settings
(`rempart.access.settings`): defaults here, bounded, changed at run time only by an approved
four-eyes request (`guard-settings`: another administrator and a security officer). They are
deliberately not in config.toml: whoever can edit that file could otherwise raise a threshold
out of sight of a second person. Every bound keeps the guard on: a threshold cannot be made
infinite, and the weakest response to a signal is an alert (to a decoy, a suspension).

config.toml holds where alerts go and the hospital's time zone:

[guard]
timezone = "Europe/Paris"              # working hours and days are local (default: UTC)
webhook_url = "https://siem.example/x"  # optional: each alert POSTed as JSON, off the request path
webhook_timeout_seconds = 3
syslog = "/dev/log"                    # optional: each alert as a syslog line (path or host:port)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rempart.access import settings as policy
from rempart.access.settings import PolicySettings, SettingDef, register
from rempart.config import CONFIG_FILE

MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


class Level(IntEnum):
    """Graded responses; each includes an alert."""

    ALERT = 0
    STEP_UP = 1  # the session must pass its second factor again before it reads more
    SUSPEND = 2  # the session is revoked
    LOCK = 3  # the account is locked, every session revoked; a security officer unlocks

    @property
    def label(self) -> str:
        return {0: "alert", 1: "step-up", 2: "suspend", 3: "lock"}[int(self)]


# Signals: name -> (default response, weakest response allowed, what it means).
SIGNALS: dict[str, tuple[Level, Level, str]] = {
    "decoy": (Level.LOCK, Level.SUSPEND, "any access to a decoy patient"),
    "session-velocity": (Level.SUSPEND, Level.STEP_UP, "distinct patients per session, short"),
    "account-velocity": (Level.SUSPEND, Level.STEP_UP, "distinct patients per account, short"),
    "account-hour": (Level.SUSPEND, Level.STEP_UP, "distinct patients per account, 1 h"),
    "account-day": (Level.LOCK, Level.STEP_UP, "distinct patients per account, 24 h"),
    "baseline": (Level.STEP_UP, Level.ALERT, "above own and peer-group baseline"),
    "denials": (Level.SUSPEND, Level.STEP_UP, "refusals per session, short window"),
    "denials-day": (Level.LOCK, Level.STEP_UP, "refusals per account, 24 h (slow probing)"),
    "not-found": (Level.SUSPEND, Level.STEP_UP, "misses (404/410) per session, short window"),
    "search-rate": (Level.STEP_UP, Level.ALERT, "searches per session per minute"),
    "search-breadth": (Level.ALERT, Level.ALERT, "patients in one search page"),
    "break-glass": (Level.SUSPEND, Level.ALERT, "patients reached by break-the-glass, 24 h"),
    "no-care": (Level.STEP_UP, Level.ALERT, "share of accesses without a care relationship"),
    # A refusal to a session signed in without the account's security key: a thief holding
    # the password and the TOTP secret (an infostealer's haul) is asked for the key at once.
    "unconfirmed": (Level.STEP_UP, Level.STEP_UP, "refused without the account's key"),
    "off-hours": (Level.ALERT, Level.ALERT, "activity at an hour unusual for the account"),
}

RESPONSES: dict[str, SettingDef] = {
    name: register(
        f"guard.response.{name}",
        int(default),
        int(low),
        int(Level.LOCK),
        f"guard response to '{name}' ({doc}): 0 alert, 1 step-up, 2 suspend, 3 lock",
    )
    for name, (default, low, doc) in SIGNALS.items()
}

# Distinct patients per role: (short window, hour, 24 h). Roles that read no patient data
# (administrators, security officers, integration clients) get the patient-account limits.
# A clinician listing a ward (one search page of its current stays) stays under the short one.
_ROLE_LIMITS = {"clinician": (50, 100, 250), "secretary": (80, 200, 600), "patient": (3, 3, 5)}
ROLE_LIMITS: dict[str, tuple[SettingDef, SettingDef, SettingDef]] = {
    role: (
        register(f"guard.{role}.patients_short", short, 2, 2_000, f"{role}: patients per window"),
        register(f"guard.{role}.patients_hour", hour, 2, 5_000, f"{role}: patients per hour"),
        register(f"guard.{role}.patients_day", day, 3, 20_000, f"{role}: patients per 24 h"),
    )
    for role, (short, hour, day) in _ROLE_LIMITS.items()
}

SHORT_WINDOW = register("guard.short_window_minutes", 5, 1, 60, "the guard's short window")
# A doctor on call for two wards lists both at the start of a night (units.py, `covering`).
COVER_UNITS = register(
    "guard.clinician.cover_units", 3, 1, 10, "units a clinician's short/hour thresholds scale by"
)
DENIALS = register("guard.denials_short", 10, 2, 500, "refusals per session per short window")
# A clinician is refused a handful of times a month (before a break-the-glass); a slow scraper
# holding stolen factors is refused all day, below every per-window rate.
DENIALS_DAY = register("guard.denials_day", 5, 2, 5_000, "refusals per account per 24 h")
MISSES = register("guard.not_found_short", 20, 2, 1_000, "misses per session per short window")
SEARCH_RATE = register("guard.searches_minute", 30, 2, 1_000, "searches per session per minute")
SEARCH_BREADTH = register("guard.search_patients", 100, 5, 1_000, "patients in one search page")
BREAK_GLASS = register("guard.break_glass_patients_day", 3, 1, 50, "break-glass patients, 24 h")
NO_CARE_PERCENT = register("guard.no_care_percent", 50, 5, 100, "accesses without care, %")
NO_CARE_MIN = register("guard.no_care_min", 10, 3, 1_000, "accesses before no-care applies")
BASELINE_FACTOR = register("guard.baseline_factor", 4, 2, 100, "x own and peer daily p99")
BASELINE_FLOOR = register("guard.baseline_floor", 20, 3, 5_000, "patients/day never unusual")
BASELINE_DAYS = register("guard.baseline_min_days", 7, 3, 60, "active days before a baseline")
WORK_START = register("guard.work_start_hour", 7, 0, 23, "working hours start (local)")
WORK_END = register("guard.work_end_hour", 20, 1, 24, "working hours end (local)")
# Off hours are unusual for an account that never worked that hour *and* whose peer group
# (role, unit) rarely works outside working hours: a ward's doctors on call at night in turn
# share its nights, and on call one is woken at any hour of them (baselines.py).
OFF_HOURS_PEERS = register(
    "guard.off_hours_peer_percent", 5, 1, 100, "peer days with off-hours work that make it usual, %"
)
COOLDOWN = register("guard.alert_cooldown_minutes", 30, 1, 1_440, "one alert per episode")


def guard_keys() -> list[str]:
    return sorted(k for k in policy.definitions() if k.startswith("guard."))


@dataclass(frozen=True)
class Thresholds:
    """One snapshot of the guard's settings (from the policy settings cache)."""

    values: PolicySettings
    # A clinician's thresholds from its units (units.py), when one of them has an override.
    unit_limits: tuple[int, int, int] | None = None

    def __call__(self, definition: SettingDef) -> int:
        return self.values.get(definition)

    def response(self, signal: str) -> Level:
        return Level(self.values.get(RESPONSES[signal]))

    def role_limits(self, role: str) -> tuple[int, int, int]:
        if self.unit_limits is not None and role == "clinician":
            return self.unit_limits
        short, hour, day = ROLE_LIMITS.get(role, ROLE_LIMITS["patient"])
        return self(short), self(hour), self(day)

    @property
    def short_micros(self) -> int:
        return self(SHORT_WINDOW) * MINUTE

    @property
    def cooldown_micros(self) -> int:
        return self(COOLDOWN) * MINUTE


@dataclass(frozen=True)
class GuardConfig:
    timezone: str = "UTC"
    webhook_url: str | None = None
    webhook_timeout_seconds: float = 3.0
    syslog: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_guard_config(home: Path) -> GuardConfig:
    path = home / CONFIG_FILE
    data: dict[str, object] = {}
    if path.is_file():
        with path.open("rb") as fh:
            section = tomllib.load(fh).get("guard", {})
        if not isinstance(section, dict):
            raise ValueError(f"{path}: [guard] must be a table")
        data = section
    unknown = set(data) - {"timezone", "webhook_url", "webhook_timeout_seconds", "syslog"}
    if unknown:
        raise ValueError(
            f"{path}: [guard] takes timezone, webhook_url, webhook_timeout_seconds, syslog; "
            f"not {', '.join(sorted(unknown))} (thresholds change through a guard-settings "
            "request)"
        )
    zone = str(data.get("timezone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{path}: [guard] timezone {zone!r} is unknown") from None
    url = data.get("webhook_url")
    if url is not None and not str(url).startswith(("https://", "http://")):
        raise ValueError(f"{path}: [guard] webhook_url must be an http(s) URL")
    timeout = data.get("webhook_timeout_seconds", 3.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0.1 <= timeout <= 30
    ):
        raise ValueError(f"{path}: [guard] webhook_timeout_seconds must be between 0.1 and 30")
    syslog = data.get("syslog")
    return GuardConfig(
        timezone=zone,
        webhook_url=str(url) if url else None,
        webhook_timeout_seconds=float(timeout),
        syslog=str(syslog) if syslog else None,
    )
