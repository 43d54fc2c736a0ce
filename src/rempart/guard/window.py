"""The guard's sliding windows in memory: one account's touches (this process's and, polled
from `guard_touch`, every other process's), counted without a query.

Every count the rules need is "how many since t": distinct patients (a patient counts in a
window when its latest touch is in it) or events (refusals, misses, searches). Both are kept
as sorted lists of times, so a count is one `bisect` (C code, O(log n)) and a touch is one
`insort`; a remote touch that arrives late (another process's batch) slots in at its time.
Merging is idempotent for patients (the latest time wins); events are deduplicated by row id
by the caller (`ledger.py`).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

from rempart.guard.counters import Counts
from rempart.guard.settings import DAY, MINUTE, Thresholds

SESSION_KEEP = 60 * MINUTE  # the longest short window a setting allows


class Events:
    """Times of events, sorted."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: list[int] = []

    def add(self, when: int) -> None:
        insort(self.times, when)

    def since(self, when: int) -> int:
        return len(self.times) - bisect_left(self.times, when)

    def drop_before(self, when: int) -> int:
        """Forget what happened before `when`; how many were forgotten."""
        cut = bisect_left(self.times, when)
        if cut:
            del self.times[:cut]
        return cut


class Lasts(Events):
    """Distinct patients by their latest touch."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, int] = {}

    def touch(self, patient: str, when: int) -> None:
        old = self.at.get(patient)
        if old is not None:
            if old >= when:
                return
            del self.times[bisect_left(self.times, old)]
        self.at[patient] = when
        insort(self.times, when)

    def drop_before(self, when: int) -> int:
        cut = super().drop_before(when)
        if cut:
            self.at = {p: t for p, t in self.at.items() if t >= when}
        return cut


@dataclass
class SessionWindow:
    patients: Lasts = field(default_factory=Lasts)
    denied: Events = field(default_factory=Events)
    missing: Events = field(default_factory=Events)
    searches: Events = field(default_factory=Events)
    last: int = 0


@dataclass
class Grant:
    """New patients one session may still read with an `insort` and no count (engine.py,
    `Guard._score`): while nothing else reaches the window (`version`), under the same
    thresholds, within the minute it was granted in (the hour and the day, hence the
    off-hours rule and the daily baseline, do not change within a minute)."""

    session: str
    thresholds: Thresholds  # the snapshot it was computed under (compared by identity)
    version: int  # the window's version after the last touch the grant counted
    left: int
    until: int  # micros: the end of that minute


@dataclass
class AccountWindow:
    """Everything counted for one account since `floor` (a security officer's release) and
    within the last 24 h."""

    floor: int = 0
    patients: Lasts = field(default_factory=Lasts)
    glass: Lasts = field(default_factory=Lasts)
    denied: Events = field(default_factory=Events)
    sessions: dict[str, SessionWindow] = field(default_factory=dict)
    pruned: int = 0
    version: int = 0  # one more at every touch added and every reset
    grant: Grant | None = None
    # Reads spent under a grant, not yet in the sorted lists: (session, patient, at). Taken in
    # by `settle`, in a batch (the ledger's flusher) or before any count, so a granted read
    # costs the request an append, not two `insort`s and their dict updates (about a third
    # of the guard's CPU on a first touch, docs/benchmarks.md).
    unsettled: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, session: str, kind: str, patient: str | None, when: int) -> None:
        if when < self.floor:
            return
        self.version += 1
        s = self.sessions.get(session)
        if s is None:
            s = self.sessions[session] = SessionWindow()
        s.last = max(s.last, when)
        if kind in ("read", "bg") and patient is not None:
            self.patients.touch(patient, when)
            s.patients.touch(patient, when)
            if kind == "bg":
                self.glass.touch(patient, when)
        elif kind == "denied":
            self.denied.add(when)
            s.denied.add(when)
        elif kind == "missing":
            s.missing.add(when)
        elif kind == "search":
            s.searches.add(when)

    def give(
        self, session: str, thresholds: Thresholds, version: int, left: int, until: int
    ) -> None:
        """A grant of `left` new patients to `session`, unless the window moved since the
        counts it was computed from were taken (at `version`)."""
        ok = version == self.version and left > 0
        self.grant = Grant(session, thresholds, version, left, until) if ok else None

    def spend(self, session: str, thresholds: Thresholds, patient: str, now: int) -> bool:
        """`patient` read by `session`, added under its grant; False (nothing added) when the
        grant is not this session's, is spent or expired, or anything else reached the window
        or the thresholds changed since."""
        g = self.grant
        if (
            g is None
            or g.session != session
            or g.thresholds is not thresholds
            or g.version != self.version
            or g.left < 1
            or now >= g.until
        ):
            return False
        self.unsettled.append((session, patient, now))
        g.left -= 1
        return True

    def settle(self) -> int:
        """Takes in the reads spent under grants; the latest time taken in (0: none). The
        version does not move: the grant that let them through had counted them already."""
        items, self.unsettled = self.unsettled, []
        latest = 0
        floor = self.floor
        sessions = self.sessions
        for session, patient, when in items:
            if when < floor:
                continue  # before a release
            s = sessions.get(session)
            if s is None:
                s = sessions[session] = SessionWindow()
            s.last = max(s.last, when)
            self.patients.touch(patient, when)
            s.patients.touch(patient, when)
            latest = max(latest, when)
        if latest:
            self.prune(latest)
        return latest

    def counts(self, session: str, now: int, short: int, midnight: int) -> Counts:
        if self.unsettled:
            self.settle()
        s = self.sessions.get(session) or SessionWindow()
        floor = self.floor
        short_at = max(now - short, floor)
        day_at = max(now - DAY, floor)
        return Counts(
            session_short=s.patients.since(short_at),
            account_short=self.patients.since(short_at),
            account_hour=self.patients.since(max(now - 60 * MINUTE, floor)),
            account_day=self.patients.since(day_at),
            break_glass_day=self.glass.since(day_at),
            denied_short=s.denied.since(short_at),
            missing_short=s.missing.since(short_at),
            denied_day=self.denied.since(day_at),
            searches_minute=s.searches.since(max(now - MINUTE, floor)),
            today=self.patients.since(max(midnight, day_at)),
        )

    def reset(self, since: int) -> None:
        """Counting restarts at `since` (a release): everything before it is forgotten."""
        if since <= self.floor:
            return
        self.floor = since
        self.version += 1
        self.grant = None
        self.prune(since, force=True)

    def prune(self, now: int, *, force: bool = False) -> None:
        """Drops what no window can count any more (at most once a minute)."""
        if not force and now - self.pruned < MINUTE:
            return
        self.pruned = now
        keep = max(now - DAY, self.floor)
        self.patients.drop_before(keep)
        self.glass.drop_before(keep)
        self.denied.drop_before(keep)
        for sid in [k for k, s in self.sessions.items() if s.last < now - SESSION_KEEP]:
            del self.sessions[sid]
        session_keep = max(now - SESSION_KEEP, self.floor)
        for s in self.sessions.values():
            s.patients.drop_before(session_keep)
            s.denied.drop_before(session_keep)
            s.missing.drop_before(session_keep)
            s.searches.drop_before(session_keep)

    @property
    def active(self) -> int:
        if self.unsettled:
            self.settle()
        return max((s.last for s in self.sessions.values()), default=0)
