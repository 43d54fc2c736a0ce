"""Baselines: what an account, and its peer group, usually do in a day.

From `guard_daily` (one row per account and local day): the account's own 99th percentile of
distinct patients a day over the last 30 days, its peer group's (same role, same first unit),
and the hours of the day each has been active (a unit whose doctors take turns on call at night
has nights among its peer group's days, so a doctor's first night on the rota is not unusual).
Answers are cached per process for a few minutes: a baseline moves by days, not by requests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Connection, select

from rempart.access.tables import unit_membership
from rempart.guard.tables import guard_daily

HISTORY_DAYS = 30
CACHE_SECONDS = 300.0
PEER_MIN_DAYS = 20  # account-days a peer group needs before it means anything

# A peer group's account-days: how many, their p99 of distinct patients, (hours mask, days).
PeerDays = tuple[int, int, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class Baseline:
    days: int  # active days in the history
    p99: int  # own 99th percentile of distinct patients per day (0 without history)
    hour_days: tuple[int, ...]  # per local hour, on how many of those days it was active
    peer_days: int
    peer_p99: int
    # the peer group's account-days by the hours they were active: (24-bit mask, days)
    peer_hours: tuple[tuple[int, int], ...] = ()

    def peer_days_within(self, hours: int) -> int:
        """The peer group's account-days active at any hour of the mask `hours`."""
        return sum(days for mask, days in self.peer_hours if mask & hours)


def p99(values: list[int]) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)]


class Baselines:
    def __init__(self) -> None:
        self._own: dict[tuple[str, int], tuple[float, Baseline]] = {}
        self._groups: dict[tuple[str, int], tuple[float, PeerDays]] = {}
        self._peer: dict[str, str] = {}
        self._lock = threading.Lock()

    def peer_of(self, conn: Connection, account: str, role: str) -> str:
        found = self._peer.get(account)
        if found is None:
            unit = conn.execute(
                select(unit_membership.c.unit)
                .where(unit_membership.c.account_id == account)
                .order_by(unit_membership.c.unit)
                .limit(1)
            ).scalar()
            found = f"{role}:{unit}" if unit else role
            self._peer[account] = found
        return found

    def cached(self, account: str, today: int) -> Baseline | None:
        """The account's baseline if this process knows it (no query), else None."""
        found = self._own.get((account, today))
        if found is None or time.monotonic() - found[0] >= CACHE_SECONDS:
            return None
        return found[1]

    def of(self, conn: Connection, account: str, peer: str, today: int) -> Baseline:
        key = (account, today)
        cached = self._own.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        d = guard_daily.c
        since = today - HISTORY_DAYS
        rows = conn.execute(
            select(d.patients, d.hours).where(
                d.account_id == account, d.day >= since, d.day < today
            )
        ).all()
        hour_days = tuple(sum(1 for r in rows if r.hours >> h & 1) for h in range(24))
        peer_days, peer_p99, peer_hours = self._peer_baseline(conn, peer, today)
        found = Baseline(
            days=len(rows),
            p99=p99([int(r.patients) for r in rows]),
            hour_days=hour_days,
            peer_days=peer_days,
            peer_p99=peer_p99,
            peer_hours=peer_hours,
        )
        with self._lock:
            if len(self._own) > 10_000:
                self._own.clear()
            self._own[key] = (time.monotonic(), found)
        return found

    def _peer_baseline(self, conn: Connection, peer: str, today: int) -> PeerDays:
        key = (peer, today)
        cached = self._groups.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        d = guard_daily.c
        rows = conn.execute(
            select(d.patients, d.hours).where(
                d.peer == peer, d.day >= today - HISTORY_DAYS, d.day < today
            )
        ).all()
        hours = tuple(sorted(Counter(int(r.hours) for r in rows).items()))
        found = (len(rows), p99([int(r.patients) for r in rows]), hours)
        with self._lock:
            if len(self._groups) > 1_000:
                self._groups.clear()
            self._groups[key] = (time.monotonic(), found)
        return found

    def forget(self, account: str) -> None:
        with self._lock:
            for key in [k for k in self._own if k[0] == account]:
                del self._own[key]
