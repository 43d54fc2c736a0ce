"""Applying a verdict: the containment rows (what every process enforces on the next request)
and the alerts, one per signal per episode (`guard_fired`, shared by the processes), except
containments, which always alert.

`plan` returns the work as a closure: `GuardedSink` runs it at once for a read, and for a write
after the write's own transaction has rolled back (on SQLite that transaction holds the one
writer lock; the containment must not be rolled back with it).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError

from rempart.alerts import CRITICAL, INFO, WARNING
from rempart.guard import contain
from rempart.guard.notify import Notifier
from rempart.guard.settings import Level, Thresholds
from rempart.guard.signals import Firing, Subject
from rempart.guard.tables import guard_fired

_SEVERITY = {
    Level.ALERT: INFO,
    Level.STEP_UP: WARNING,
    Level.SUSPEND: CRITICAL,
    Level.LOCK: CRITICAL,
}


class Responder:
    def __init__(self, engine: Engine, notifier: Notifier) -> None:
        self.engine = engine
        self.notifier = notifier

    def plan(
        self,
        who: Subject,
        firings: list[Firing],
        top: Firing,
        level: Level,
        t: Thresholds,
        now: int,
    ) -> Callable[[], None]:
        def apply() -> None:
            if level > Level.ALERT:
                with self.engine.begin() as conn:
                    contain.record(
                        conn,
                        account_id=who.account,
                        session_id=who.session,
                        level=level.label,
                        signal=top.signal,
                        message=top.message,
                        now=now,
                    )
                    if level == Level.SUSPEND:
                        contain.suspend_session(conn, who.session, now)
                    elif level == Level.LOCK:
                        contain.lock_account(conn, who.account, now)
            for f in firings:
                if (f is top and level > Level.ALERT) or self._first(who.account, f.signal, now, t):
                    self._alert(who, f, level if f is top else Level.ALERT)

        return apply

    def _alert(self, who: Subject, f: Firing, level: Level) -> None:
        details: dict[str, int | str] = {
            "account_id": who.account,
            "username": who.username[:150],
            "role": who.role,
            "session_id": who.session,
            "signal": f.signal,
            "response": level.label,
            **f.details,
        }
        severity = CRITICAL if f.signal == "decoy" else _SEVERITY[level]
        self.notifier.alert(
            f"guard-{f.signal}", severity, f"{f.message}; response: {level.label}", details
        )

    def _first(self, account: str, signal: str, now: int, t: Thresholds) -> bool:
        """At most one alert per account and signal per cooldown, across processes."""
        scope = f"account:{account}"[:80]
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(guard_fired)
                .where(
                    guard_fired.c.scope == scope,
                    guard_fired.c.signal == signal,
                    guard_fired.c.at < now - t.cooldown_micros,
                )
                .values(at=now)
            ).rowcount
        if moved:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(guard_fired.insert().values(scope=scope, signal=signal, at=now))
        except IntegrityError:
            return False  # fired within the cooldown, here or in another process
        return True
