"""The guard: scores the audit records of each request before its data leaves, and acts.

`observe(records)` groups the records by session, writes what the sliding windows need, runs
the rules (`signals.py`) and, when one fires, decides the strongest response among those that
fired (`respond.py`): step-up, suspension (the session is revoked) or lock (the account is
locked and every session revoked). It returns a `Verdict`; `GuardedSink` writes the records,
applies the response and raises the verdict's error so the request's data does not leave.

The common case costs no query: a record of a patient this session already opened within the
last minute, no decoy, no pending step-up (the pending set is reloaded once a second). A newly
opened patient costs no query either while every count is clearly under its threshold: it is
counted in this process's copy of the windows and written in the ledger's next batch
(`ledger.py`); near a threshold the guard counts in the database, exactly, as before. A count
that finds every threshold far also grants the session that many more new patients without a
count (`grantable`), until anything else reaches the account's window or the minute ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from rempart import clock
from rempart.access.settings import SettingsCache
from rempart.audit.records import AuditRecord
from rempart.errors import RempartError
from rempart.guard import contain, counters, signals
from rempart.guard import settings as gs
from rempart.guard.baselines import Baseline, Baselines
from rempart.guard.counters import Seen, Touch
from rempart.guard.decoys import Decoys
from rempart.guard.errors import GuardContained, GuardStepUpRequired
from rempart.guard.ledger import Ledger
from rempart.guard.notify import Notifier
from rempart.guard.respond import Responder
from rempart.guard.settings import GuardConfig, Level, Thresholds
from rempart.guard.signals import Firing, Subject
from rempart.guard.units import UnitLimits

log = logging.getLogger("rempart.guard")

READ_ACTIONS = frozenset({"read", "vread", "history", "search"})
# Records whose success means patient data is about to leave (or was just written).
DATA_ACTIONS = READ_ACTIONS | {"create", "update", "transaction", "batch"}
# Counted in memory unless a count plus a margin would pass a threshold (then exactly, in the
# database). The margin covers what this process may not know yet of other processes' touches
# (their unwritten ones, those written since its last poll: at most LAG_MICROS old): MARGIN,
# plus what the account's current pace (distinct patients in the last RATE_MICROS, in this
# process's view) reads in LAG_MICROS. A scraper's pace puts it on the exact path early.
MARGIN = 16
LAG_MICROS = 200_000  # ledger: FLUSH_SECONDS + the write + MAX_STALE_SECONDS, rounded up
RATE_MICROS = 1_000_000
FAST_KINDS = frozenset({"read", "search"})  # refusals, misses, break-the-glass: always exact
UNCOUNTED = frozenset({"off-hours", "search-breadth"})  # fire on the request alone


def grantable(room: int) -> int:
    """New patients a session may read without a count, from `room` (the slack at twice
    the margin, `signals.slack`): each raises every count by one at most, and twice the
    margin, through the pace, by 2 * LAG_MICROS / RATE_MICROS at most (+2 for rounding); so
    each of them would have found the headroom the count finds now."""
    return max(0, (room - 2) * RATE_MICROS // (RATE_MICROS + 2 * LAG_MICROS))


@dataclass
class Verdict:
    level: Level
    signal: str
    error: RempartError | None = None
    records: list[AuditRecord] = field(default_factory=list)  # the guard's own audit records
    apply: Callable[[], None] | None = None  # containment rows and alerts, not yet written


class Guard:
    def __init__(
        self,
        engine: Engine,
        settings: SettingsCache,
        decoys: Decoys,
        notifier: Notifier,
        config: GuardConfig,
        *,
        counting: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.counting = counting or engine  # touches and counts (see factory.counting_engine)
        self.decoys = decoys
        self.config = config
        self._settings = settings
        self._zone = config.zone
        self._seen = Seen()
        self._thresholds = Thresholds(settings.current())
        self.units = UnitLimits(engine)
        self._baselines = Baselines()
        self._respond = Responder(engine, notifier)
        self.ledger = Ledger(self.counting, self._write_days)
        self.step_ups = contain.StepUps(engine)
        self.held = contain.Held()  # what this process just contained, refused at once
        self._pruned_at = 0

    def thresholds(self) -> Thresholds:
        values = self._settings.current()
        if self._thresholds.values is not values:  # a new snapshot of the settings
            self._thresholds = Thresholds(values)
        return self._thresholds

    # ---- scoring -------------------------------------------------------------------------

    def observe(
        self, records: Sequence[AuditRecord], conn: Connection | None = None
    ) -> Verdict | None:
        """The verdict on one request's records; `conn`: the caller's open transaction (a
        write), which the guard's counting joins (nothing is written beside it)."""
        if len(records) == 1:  # a read: one record, no grouping
            r = records[0]
            if not (r.account_id and r.session_id):
                return None
            return self._observe(r.account_id, r.session_id, [r], conn)
        groups: dict[tuple[str, str], list[AuditRecord]] = {}
        for r in records:
            if r.account_id and r.session_id:
                groups.setdefault((r.account_id, r.session_id), []).append(r)
        verdict: Verdict | None = None
        for (account, session), group in groups.items():
            found = self._observe(account, session, group, conn)
            if found is not None and (verdict is None or found.level > verdict.level):
                verdict = found
        return verdict

    def _observe(
        self, account: str, session: str, recs: list[AuditRecord], conn: Connection | None
    ) -> Verdict | None:
        now = clock.now_micros()
        first = recs[0]
        who = Subject(account, first.username or account, first.role or "unknown", session)
        t = self.units.apply(self.thresholds(), account, who.role)
        data = False
        for r in recs:
            if r.outcome == "success" and r.action in DATA_ACTIONS:
                data = True
                break
        if data:
            held = self.held.of(session, account)
            if held is not None:
                return Verdict(Level.SUSPEND, "contained", GuardContained(held))
            if self.step_ups.pending(session, account, now, conn):
                return Verdict(Level.STEP_UP, "step-up", GuardStepUpRequired())
        firings: list[Firing] = []
        hit = self.decoys.hit(recs)
        if hit is not None:
            patient, named = hit
            firings.append(signals.decoy(t, who, patient, named.action, named.outcome))
        refused = self.step_ups.refused_unconfirmed(recs, session, DATA_ACTIONS, conn)
        if refused is not None:
            firings.append(signals.unconfirmed(t, who, refused))
        touches, widest = self._touches(session, recs, now)
        if touches:
            firings.extend(self._score(who, touches, widest, t, now, conn))
        if not firings:
            return None
        return self._verdict(who, firings, t, now, conn)

    def _touches(self, session: str, recs: list[AuditRecord], now: int) -> tuple[list[Touch], int]:
        touches: list[Touch] = []
        per_search: dict[str | None, int] = {}
        for r in recs:
            if r.outcome == "success" and r.action in READ_ACTIONS:
                if r.action == "search":
                    if r.request_id not in per_search:
                        touches.append(Touch("search", None))
                        per_search[r.request_id] = 0
                    if r.patient:
                        per_search[r.request_id] += 1
                if r.patient and self._seen.fresh(session, r.patient, now):
                    glass = "break-the-glass" in (r.reason or "")
                    touches.append(Touch("bg" if glass else "read", r.patient))
            elif r.outcome == "denied":
                touches.append(Touch("denied", None))
            elif r.outcome == "failed" and r.action in DATA_ACTIONS:
                touches.append(Touch("missing", None))
        return touches, max(per_search.values()) if per_search else 0

    def _score(
        self,
        who: Subject,
        touches: list[Touch],
        widest: int,
        t: Thresholds,
        now: int,
        outer: Connection | None,
    ) -> list[Firing]:
        """Counts in memory (the ledger's window) when every count is clearly under its
        threshold; else writes the touches and counts in the database, exactly."""
        day, hour, midnight = counters.local_day_and_hour(now, self._zone)
        ledger = self.ledger
        # Inside a write's transaction (writes, Bundles: not the hot path) the guard counts in
        # the database, in that transaction; the ledger's poll brings the rows once committed.
        window = None if outer is not None else ledger.window(who.account)
        if outer is None and now - self._pruned_at >= counters.PRUNE_EVERY:
            self._prune(now)  # old touches, once an hour
        # One new patient read (no search, no break-the-glass): the session's grant may count
        # it with an insort and no count; a count far from every threshold grants the next.
        single = touches[0] if len(touches) == 1 and not widest else None
        plain = single.patient if single is not None and single.kind == "read" else None
        if window is not None:
            if ledger.crowded(who.account):
                ledger.sync()  # at most MAX_PENDING unwritten touches per account
            if plain is not None and ledger.spend(
                window, who, t, plain, now, (day, hour, midnight)
            ):
                return []
        read = any(x.kind in counters.READ_KINDS for x in touches)
        if window is not None:
            counts, pace, version = ledger.count_in(
                window, who.session, touches, now, t.short_micros, midnight
            )
            if all(x.kind in FAST_KINDS for x in touches):
                base = self._baseline_now(who, day) if read else None
                margin = MARGIN + pace * LAG_MICROS // RATE_MICROS
                searched = MARGIN if any(x.kind == "search" for x in touches) else 0
                # In memory only while every count is twice the margin under its threshold:
                # two processes' views differ by less than one margin, so once the account is
                # within one margin of a threshold in any view, every process counts in the
                # database and writes each touch before its data leaves (none stays queued).
                if signals.headroom(counts, t, who, base, 2 * margin, searched):
                    # Velocity and baseline cannot fire with that headroom: the other rules,
                    # unless nothing they count is there (the usual case, no call at all).
                    quiet = not (
                        counts.denied_short
                        or counts.missing_short
                        or counts.denied_day
                        or counts.break_glass_day
                        or widest
                        or counts.searches_minute > t(gs.SEARCH_RATE)
                        or (
                            base is not None
                            and base.days >= t(gs.BASELINE_DAYS)
                            and not t(gs.WORK_START) <= hour < t(gs.WORK_END)
                        )
                    )
                    out = (
                        []
                        if quiet
                        else signals.rules(counts, t, who, widest, base, hour, read, headroom=True)
                    )
                    if all(f.signal in UNCOUNTED for f in out):
                        ledger.queue(who.account, who.session, touches, now)
                        if read and counts.today:
                            ledger.note_day(who.account, who.role, day, hour, counts.today)
                        if plain is not None and quiet:
                            room = signals.slack(counts, t, who, base, 2 * margin)
                            ledger.grant(window, who.session, t, version, grantable(room), now)
                        return out
        return self._exact(who, touches, widest, t, now, outer, window is not None)

    def _exact(
        self,
        who: Subject,
        touches: list[Touch],
        widest: int,
        t: Thresholds,
        now: int,
        outer: Connection | None,
        counted: bool,
    ) -> list[Firing]:
        """The touches written now and every window counted by one aggregate in the database.
        Outside a write, with the ledger's queue written first (under its lock, so its poll
        does not count these rows twice); inside a write, in the write's transaction."""
        day, hour, midnight = counters.local_day_and_hour(now, self._zone)
        read = any(x.kind in counters.READ_KINDS for x in touches)
        ledger = self.ledger
        # Outside a write the window holds these touches already (`counted`) and the rows are
        # noted as ours before they commit; inside one, the poll brings them once committed.
        loaded = counted and outer is None
        with ledger.writing() if outer is None else nullcontext():
            if outer is None:
                ledger.flush_only()  # the queue first: the count below must include it
            try:
                with self._transaction(outer, self.counting) as conn:
                    ids = counters.write(conn, who.account, who.session, touches, now)
                    if loaded:
                        ledger.own(ids, proof=False)  # before the commit: polls skip them
                    counts = counters.count(
                        conn, who.account, who.session, now, t.short_micros, midnight
                    )
                    peer = self._baselines.peer_of(conn, who.account, who.role)
                    if read and counts.today:
                        counters.record_day(conn, who.account, peer, day, hour, counts.today)
                    base = self._baselines.of(conn, who.account, peer, day) if read else None
            except BaseException:
                if loaded:
                    ledger.forget_all()  # ids noted as ours that may never be committed
                raise
        return signals.rules(counts, t, who, widest, base, hour, read)

    def _baseline_now(self, who: Subject, day: int) -> Baseline:
        found = self._baselines.cached(who.account, day)
        if found is None:
            with self.counting.connect() as conn:
                peer = self._baselines.peer_of(conn, who.account, who.role)
                found = self._baselines.of(conn, who.account, peer, day)
        return found

    def _write_days(self, conn: Connection, rows: list[tuple[str, str, int, int, int]]) -> None:
        """The ledger's batch of daily baseline rows (distinct patients today, hours active)."""
        for account, role, day, hours, patients in rows:
            peer = self._baselines.peer_of(conn, account, role)
            counters.record_day_hours(conn, account, peer, day, hours, patients)

    # ---- responses -----------------------------------------------------------------------

    def _verdict(
        self, who: Subject, firings: list[Firing], t: Thresholds, now: int, conn: Connection | None
    ) -> Verdict:
        top = max(firings, key=lambda f: f.level)
        level = top.level
        since = now - t.cooldown_micros
        if level == Level.STEP_UP and self.step_ups.passed_since(who.session, since, conn):
            level = Level.ALERT  # a step-up was passed for this episode already: alert only
        apply = self._respond.plan(who, firings, top, level, t, now)
        if level == Level.ALERT:
            return Verdict(level, top.signal, apply=apply)
        if level == Level.STEP_UP:
            held = who.account if top.signal == contain.UNCONFIRMED else None
            self.step_ups.asked(who.session, now, held)
        elif level == Level.SUSPEND:
            self.held.hold_session(who.session, level.label)
        else:
            self.held.hold_account(who.account, level.label)
        error: RempartError = (
            GuardStepUpRequired() if level == Level.STEP_UP else GuardContained(level.label)
        )
        trace = AuditRecord(
            action=f"guard-{level.label}",
            outcome="success",
            ip="guard",
            user_agent="rempart-guard",
            account_id=who.account,
            username=who.username,
            role=who.role,
            session_id=who.session,
            detail=f"{top.signal}: {top.message}"[:300],
        )
        return Verdict(level, top.signal, error, [trace], apply)

    # ---- housekeeping --------------------------------------------------------------------------

    @contextmanager
    def _transaction(
        self, outer: Connection | None, engine: Engine | None = None
    ) -> Iterator[Connection]:
        if outer is not None:
            yield outer
            return
        with (engine or self.engine).begin() as conn:
            yield conn

    def released(self, account: str, since: int | None = None) -> None:
        """A security officer released `account`: forget what this process held against it
        (and count from `since`, the reset; other processes read it from `guard_reset`)."""
        self._baselines.forget(account)
        self.step_ups.released(account)
        if since is not None:
            self.ledger.released(account, since)
        self.held.release(account)

    def notify(self, kind: str, severity: str, message: str, details: dict[str, Any]) -> None:
        self._respond.notifier.alert(kind, severity, message, details)

    def _prune(self, now: int) -> None:
        self._pruned_at = now
        try:
            counters.prune(self.counting, now)
        except Exception:  # pragma: no cover - pruning is housekeeping, never a request failure
            log.exception("guard: pruning old touches failed")

    def close(self) -> None:
        self.ledger.close()
        self._respond.notifier.close()
        if self.counting is not self.engine:
            self.counting.dispose()
