"""Per-unit thresholds: an emergency unit's clinicians legitimately open more distinct patients
an hour than a geriatrics ward's.

An override is a `guard-settings` value like any other (four eyes: an administrator and a
security officer; never config.toml), under a key naming the unit and the window:

    guard.unit.<unit id>.patients_short | patients_hour | patients_day

with the bounds of the clinician's own thresholds. It applies to clinicians who are members
of that unit (`unit_membership`, as added by an approved `add-unit-membership` request), and a
clinician of several units gets the most permissive of them, a unit without an override
counting with the role's threshold. The unit id is the Organization's or Location's id (ids
are compared case-insensitively: a key is lower case).

A clinician who is a member of several units (a doctor on call for a pair of wards) has the
role's short and hour thresholds multiplied by the number of its units, at most
`guard.clinician.cover_units` (3; 1 turns this off): see `covering`.

Cost on a read: the account's units come from a cache refreshed every `UNITS_SECONDS` (a dict
lookup; one query per account every 30 s), and the overrides are reloaded with each new
snapshot of the policy settings (every 5 s at most, at once after an approved change).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time

from sqlalchemy import Engine, select

from rempart.access.membership import memberships
from rempart.access.settings import PolicySettings, bounded_int
from rempart.access.tables import access_setting
from rempart.errors import InvalidResource
from rempart.guard.settings import COVER_UNITS, ROLE_LIMITS, Thresholds

PREFIX = "guard.unit."
KEY = re.compile(r"^guard\.unit\.([a-z0-9][a-z0-9.\-]{0,37})\.patients_(short|hour|day)$")
WINDOWS = ("short", "hour", "day")
ROLE = "clinician"
UNITS_SECONDS = 30.0
ACCOUNTS = 10_000

Limits = tuple[int | None, int | None, int | None]


def is_unit_key(key: str) -> bool:
    return key.startswith(PREFIX)


def check_unit_value(key: str, raw: object) -> int:
    found = KEY.match(key)
    if found is None:
        raise InvalidResource(
            f"{key}: a unit threshold is guard.unit.<unit id>.patients_short, patients_hour "
            "or patients_day (the unit id in lower case, at most 38 characters)"
        )
    definition = ROLE_LIMITS[ROLE][WINDOWS.index(found.group(2))]
    return bounded_int(key, raw, definition.low, definition.high)


def parse(rows: list[tuple[str, str]]) -> dict[str, Limits]:
    """unit id -> (short, hour, day) overrides, from access_setting rows; values outside the
    bounds (a row edited in the database) are clamped, like every policy setting."""
    out: dict[str, list[int | None]] = {}
    for key, raw in rows:
        found = KEY.match(key)
        if found is None or not raw.lstrip("-").isdigit():
            continue
        index = WINDOWS.index(found.group(2))
        definition = ROLE_LIMITS[ROLE][index]
        value = max(definition.low, min(definition.high, int(raw)))
        out.setdefault(found.group(1), [None, None, None])[index] = value
    return {unit: (v[0], v[1], v[2]) for unit, v in out.items()}


def most_permissive(
    overrides: dict[str, Limits], units: list[str], defaults: tuple[int, int, int]
) -> tuple[int, int, int] | None:
    """The account's limits from its units, or None when none of them has an override."""
    mine = [overrides[u] for u in units if u in overrides]
    if not mine:
        return None
    plain = len(mine) < len(units)  # a unit without any override: the role's thresholds
    out: list[int] = []
    for i in range(3):
        values: list[int] = [d if (d := o[i]) is not None else defaults[i] for o in mine]
        if plain:
            values.append(defaults[i])
        out.append(max(values))
    return out[0], out[1], out[2]


def covering(t: Thresholds, units: int) -> tuple[int, int, int]:
    """The clinician's thresholds for a member of `units` units: a doctor on call for two
    wards opens both ward lists at the start of a night (two 30-bed wards: 60-80 patients in
    minutes), so the short and hour windows scale with the wards covered, up to
    `guard.clinician.cover_units`; the 24-hour one (a lock) does not."""
    short, hour, day = t.role_limits(ROLE)
    wards = max(1, min(units, t(COVER_UNITS)))
    return (
        min(short * wards, ROLE_LIMITS[ROLE][0].high),
        min(hour * wards, ROLE_LIMITS[ROLE][1].high),
        day,
    )


class UnitLimits:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._snapshot: PolicySettings | None = None
        self._overrides: dict[str, Limits] = {}
        self._units: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        # account -> (the thresholds given, its units list, the answer): the same snapshot and
        # the same cached units give the same answer, without a new Thresholds per read.
        self._applied: dict[str, tuple[Thresholds, list[str], Thresholds]] = {}

    def apply(self, t: Thresholds, account: str, role: str) -> Thresholds:
        """`t` with the account's unit thresholds, if it has any: its units' overrides, and
        the role's short and hour thresholds times the wards it covers (`covering`)."""
        if role != ROLE:
            return t
        overrides = self._current(t.values)
        units = self._units_of(account)
        memo = self._applied.get(account)
        if memo is not None and memo[0] is t and memo[1] is units:
            return memo[2]
        defaults = covering(t, len(units))
        limits = most_permissive(overrides, units, defaults) if overrides else None
        if limits is None:
            out = t if len(units) < 2 else dataclasses.replace(t, unit_limits=defaults)
        else:
            out = dataclasses.replace(t, unit_limits=limits)
        if len(self._applied) > ACCOUNTS:
            self._applied.clear()
        self._applied[account] = (t, units, out)
        return out

    def _current(self, values: PolicySettings) -> dict[str, Limits]:
        if values is not self._snapshot:
            with self._lock:
                if values is not self._snapshot:
                    with self.engine.connect() as conn:
                        rows = conn.execute(
                            select(access_setting.c.key, access_setting.c.value).where(
                                access_setting.c.key.startswith(PREFIX)
                            )
                        ).all()
                    self._overrides = parse([(r.key, r.value) for r in rows])
                    self._snapshot = values
        return self._overrides

    def _units_of(self, account: str) -> list[str]:
        cached = self._units.get(account)
        if cached is not None and time.monotonic() - cached[0] < UNITS_SECONDS:
            return cached[1]
        # One lookup at a time: concurrent first reads of an account (a ward list opened in
        # several tabs) check out one connection, not one each, and then share the answer.
        with self._lock:
            cached = self._units.get(account)
            if cached is not None and time.monotonic() - cached[0] < UNITS_SECONDS:
                return cached[1]
            with self.engine.connect() as conn:
                units = [u.rpartition("/")[2].lower() for u in memberships(conn, account)]
            if len(self._units) > ACCOUNTS:
                self._units.clear()
            self._units[account] = (time.monotonic(), units)
        return units

    def listing(self, values: PolicySettings) -> dict[str, dict[str, int | None]]:
        """The overrides, for `rempart guard status`."""
        return {
            unit: dict(zip(WINDOWS, limits, strict=True))
            for unit, limits in sorted(self._current(values).items())
        }
