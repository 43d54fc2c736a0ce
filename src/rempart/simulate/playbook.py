"""One attack as the scorecard sees it: who attacked, what reached them, when they were cut off.

Containment is judged from the attacker's own exchanges, the same way whatever the server's
mechanism (a revoked session, a locked account, a 429, a fresh-factor demand the attacker cannot
pass): the attacker is contained when, after its last successful exchange, a request it is
entitled to (a *canary*: its own worklist, its own record, its own admin console), tried again
after any recovery it is able to make, is refused too. The moment of containment is the first
refusal of that final run that is not an ordinary policy "no" on someone else's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rempart import clock
from rempart.simulate.actor import Actor, Exchange
from rempart.simulate.oracle import Legitimate, ScopeOracle


@dataclass
class Playbook:
    name: str
    attacker: str  # who, and what they hold
    actor: Actor | None
    legit: Legitimate | None  # None: nothing of any patient is legitimate for this attacker
    scrape: bool  # the 60-second containment target applies
    started: int | None = None  # simulated micros of the first request of the attack
    never_authenticated: bool = False  # refused from the start (no session ever obtained)
    offline_leaks: set[str] = field(default_factory=set)  # db-file playbook
    offline_requests: int = 0
    notes: list[str] = field(default_factory=list)

    def begin(self, oracle: ScopeOracle) -> None:
        if self.started is None:
            self.started = clock.now_micros()
        if self.legit is not None:
            self.legit.sample(oracle)

    def sample(self, oracle: ScopeOracle) -> None:
        if self.legit is not None:
            self.legit.sample(oracle)

    # ---- the scorecard ---------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self.actor.requests if self.actor is not None else self.offline_requests

    def leaked(self) -> set[str]:
        if self.actor is None:
            return set(self.offline_leaks)
        allowed = self.legit.patients if self.legit is not None else set()
        return self.actor.ledger.beyond(allowed)

    def contained_at(self) -> int | None:
        if self.actor is None:
            return None
        log = [e for e in self.actor.log if self.started is None or e.at >= self.started]
        if self.never_authenticated:
            first = next((e for e in log if e.status in (401, 403, 423, 429)), None)
            return first.at if first is not None else None
        return containment_time(log)

    def seconds_to_containment(self) -> float | None:
        at = self.contained_at()
        if at is None or self.started is None:
            return None
        return round(max(0, at - self.started) / clock.SECOND, 1)


def containment_time(log: list[Exchange]) -> int | None:
    last_ok = max((i for i, e in enumerate(log) if 200 <= e.status < 300), default=-1)
    after = log[last_ok + 1 :]
    if not any(e.canary for e in after):
        return None  # never refused something it was entitled to: still served
    cut = next((e for e in after if e.canary or e.step_up or e.status in (401, 423, 429)), after[0])
    return cut.at
