"""The guard's rules: explainable signals over the counts, each with the numbers that fired it.

Pure functions of the counts, the thresholds and the baseline, so every rule is tested without
a database, and every alert says in words what happened ("account dr.martin read 41 distinct
patients in 5 min; clinician threshold 30; own 30-day p99 6").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from rempart.audit.records import AuditRecord
from rempart.guard import settings as s
from rempart.guard.baselines import PEER_MIN_DAYS, Baseline
from rempart.guard.counters import Counts
from rempart.guard.settings import Level, Thresholds


@dataclass(frozen=True)
class Firing:
    signal: str
    level: Level
    message: str
    details: dict[str, int | str] = field(default_factory=dict)


class Subject(NamedTuple):  # a tuple: built on every request the guard scores
    account: str
    username: str
    role: str
    session: str


def _own(base: Baseline | None) -> str:
    if base is None or not base.days:
        return "no baseline yet"
    return f"own 30-day p99 {base.p99}/day over {base.days} active days"


def velocity(c: Counts, t: Thresholds, who: Subject, base: Baseline | None) -> list[Firing]:
    short, hour, day = t.role_limits(who.role)
    minutes = t(s.SHORT_WINDOW)
    whose = f"{who.role} threshold" if t.unit_limits is None else "its units' threshold"
    out: list[Firing] = []
    checks = (
        ("session-velocity", c.session_short, short, f"in {minutes} min in one session"),
        ("account-velocity", c.account_short, short, f"in {minutes} min across its sessions"),
        ("account-hour", c.account_hour, hour, "in 1 h"),
        ("account-day", c.account_day, day, "in 24 h"),
    )
    for signal, value, limit, where in checks:
        if signal == "account-velocity" and value <= c.session_short:
            continue  # one session did it all: that is the session's signal, not this one
        if value > limit:
            out.append(
                Firing(
                    signal,
                    t.response(signal),
                    f"account {who.username} read {value} distinct patients {where}; "
                    f"{whose} {limit}; {_own(base)}",
                    {"count": value, "threshold": limit},
                )
            )
    return out


def baseline_limit(t: Thresholds, base: Baseline) -> int | None:
    """Distinct patients a day above which the baseline signal fires (None: no baseline yet)."""
    if base.days < t(s.BASELINE_DAYS):
        return None
    factor = t(s.BASELINE_FACTOR)
    own_limit = max(t(s.BASELINE_FLOOR), factor * base.p99)
    peer_limit = factor * base.peer_p99 if base.peer_days >= PEER_MIN_DAYS else 0
    return max(own_limit, peer_limit)


def headroom(
    c: Counts, t: Thresholds, who: Subject, base: Baseline | None, margin: int, searches: int
) -> bool:
    """Whether every count a read or a search can raise is at least `margin` under the
    threshold it is compared with (`searches`: the margin for the search count, when the
    request searched); the guard may then count in memory (engine.py)."""
    if searches and c.searches_minute + searches > t(s.SEARCH_RATE):
        return False
    return slack(c, t, who, base, margin) >= 0


def slack(c: Counts, t: Thresholds, who: Subject, base: Baseline | None, margin: int) -> int:
    """How far the nearest count a new patient raises is from its threshold, less `margin`:
    each new patient read raises each of them by one at most."""
    short, hour, day = t.role_limits(who.role)
    room = min(
        short - max(c.session_short, c.account_short),
        hour - c.account_hour,
        day - c.account_day,
    )
    limit = None if base is None else baseline_limit(t, base)
    if limit is not None:
        room = min(room, limit - c.today)
    return room - margin


def baseline(c: Counts, t: Thresholds, who: Subject, base: Baseline) -> list[Firing]:
    """Today's distinct patients far above both the account's own habit and its peers'."""
    limit = baseline_limit(t, base)
    if limit is None or c.today <= limit:
        return []
    factor = t(s.BASELINE_FACTOR)
    peer = f"peer p99 {base.peer_p99}" if base.peer_days >= PEER_MIN_DAYS else "no peer group"
    return [
        Firing(
            "baseline",
            t.response("baseline"),
            f"account {who.username} read {c.today} distinct patients today; {_own(base)}, "
            f"{peer}; limit {factor}x = {limit}",
            {"count": c.today, "threshold": limit, "own_p99": base.p99, "peer_p99": base.peer_p99},
        )
    ]


def enumeration(c: Counts, t: Thresholds, who: Subject) -> list[Firing]:
    out: list[Firing] = []
    minutes = t(s.SHORT_WINDOW)
    if c.denied_short > t(s.DENIALS):
        out.append(
            Firing(
                "denials",
                t.response("denials"),
                f"session of {who.username} was refused {c.denied_short} times in {minutes} "
                f"min; threshold {t(s.DENIALS)}",
                {"count": c.denied_short, "threshold": t(s.DENIALS)},
            )
        )
    if c.denied_day > t(s.DENIALS_DAY):
        out.append(
            Firing(
                "denials-day",
                t.response("denials-day"),
                f"account {who.username} was refused {c.denied_day} times in 24 h; "
                f"threshold {t(s.DENIALS_DAY)}",
                {"count": c.denied_day, "threshold": t(s.DENIALS_DAY)},
            )
        )
    if c.missing_short > t(s.MISSES):
        out.append(
            Firing(
                "not-found",
                t.response("not-found"),
                f"session of {who.username} asked for {c.missing_short} records that do not "
                f"exist in {minutes} min; threshold {t(s.MISSES)}",
                {"count": c.missing_short, "threshold": t(s.MISSES)},
            )
        )
    return out


def searching(c: Counts, t: Thresholds, who: Subject, widest: int) -> list[Firing]:
    out: list[Firing] = []
    if c.searches_minute > t(s.SEARCH_RATE):
        out.append(
            Firing(
                "search-rate",
                t.response("search-rate"),
                f"session of {who.username} ran {c.searches_minute} searches in 1 min; "
                f"threshold {t(s.SEARCH_RATE)}",
                {"count": c.searches_minute, "threshold": t(s.SEARCH_RATE)},
            )
        )
    if widest > t(s.SEARCH_BREADTH):
        out.append(
            Firing(
                "search-breadth",
                t.response("search-breadth"),
                f"one search by {who.username} returned {widest} patients; threshold "
                f"{t(s.SEARCH_BREADTH)}",
                {"count": widest, "threshold": t(s.SEARCH_BREADTH)},
            )
        )
    return out


def outside_care(c: Counts, t: Thresholds, who: Subject) -> list[Firing]:
    out: list[Firing] = []
    if c.break_glass_day > t(s.BREAK_GLASS):
        out.append(
            Firing(
                "break-glass",
                t.response("break-glass"),
                f"account {who.username} reached {c.break_glass_day} patients through "
                f"break-the-glass in 24 h; threshold {t(s.BREAK_GLASS)}",
                {"count": c.break_glass_day, "threshold": t(s.BREAK_GLASS)},
            )
        )
    accesses = c.account_day + c.denied_day
    without = c.break_glass_day + c.denied_day
    if accesses >= t(s.NO_CARE_MIN) and 100 * without > t(s.NO_CARE_PERCENT) * accesses:
        share = 100 * without // accesses
        out.append(
            Firing(
                "no-care",
                t.response("no-care"),
                f"{share}% of the {accesses} accesses of {who.username} in 24 h had no care "
                f"relationship (break-the-glass or refused); threshold {t(s.NO_CARE_PERCENT)}%",
                {"percent": share, "threshold": t(s.NO_CARE_PERCENT), "accesses": accesses},
            )
        )
    return out


def off_hours(t: Thresholds, who: Subject, base: Baseline, hour: int) -> list[Firing]:
    """Activity outside working hours at an hour this account has not worked in 30 days
    (night shifts have a history of night hours and do not fire), unless its peer group works
    outside working hours on a fair share of its days (a ward whose doctors take the night in
    turn: on call, one is woken at any hour of it)."""
    start, end = t(s.WORK_START), t(s.WORK_END)
    if start <= hour < end or base.days < t(s.BASELINE_DAYS) or base.hour_days[hour] > 0:
        return []
    peers, peer_share = base.peer_days >= PEER_MIN_DAYS, 0
    if peers:
        off = sum(1 << h for h in range(24) if not start <= h < end)
        peer_share = base.peer_days_within(off) * 100 // base.peer_days
        if peer_share >= t(s.OFF_HOURS_PEERS):
            return []
    group = (
        f"its peer group worked outside them on {peer_share}% of its {base.peer_days} days "
        f"(usual from {t(s.OFF_HOURS_PEERS)}%)"
        if peers
        else "it has no peer group to compare with"
    )
    return [
        Firing(
            "off-hours",
            t.response("off-hours"),
            f"account {who.username} read patient data at {hour:02d}:00 local time, outside "
            f"working hours ({start:02d}-{end:02d}) and at an hour it has not worked in its "
            f"last {base.days} active days; {group}",
            {"hour": hour, "days": base.days, "peer_percent": peer_share},
        )
    ]


def decoy(t: Thresholds, who: Subject, patient: str, action: str, outcome: str) -> Firing:
    return Firing(
        "decoy",
        t.response("decoy"),
        f"account {who.username} touched decoy patient Patient/{patient} ({action}, "
        f"{outcome}): no legitimate workflow leads there",
        {"patient": f"Patient/{patient}"},
    )


def unconfirmed(t: Thresholds, who: Subject, refused: AuditRecord) -> Firing:
    what = (
        f"{refused.resource_type}/{refused.resource_id}"
        if refused.resource_type and refused.resource_id
        else f"Patient/{refused.patient}"
        if refused.patient
        else "patient data"
    )
    action = refused.action
    return Firing(
        "unconfirmed",
        t.response("unconfirmed"),
        f"account {who.username} signed in without its security key (a TOTP code) and was "
        f"refused {what} ({action}): no more data to its sessions that have not presented "
        "the key",
        {"action": action},
    )


def rules(
    c: Counts,
    t: Thresholds,
    who: Subject,
    widest: int,
    base: Baseline | None,
    hour: int,
    read: bool,
    *,
    headroom: bool = False,
) -> list[Firing]:
    """Every rule that applies to a request's counts (`headroom`: velocity and baseline are
    known not to fire, see engine.py)."""
    out = enumeration(c, t, who) + searching(c, t, who, widest)
    if read and base is not None:
        if not headroom:
            out += velocity(c, t, who, base)
            out += baseline(c, t, who, base)
        out += outside_care(c, t, who)
        out += off_hours(t, who, base, hour)
    return out
