"""Discrete-event scheduling of many actors on one simulated clock.

Each actor is a generator: one step makes one exchange (or a login's two), then yields how many
simulated seconds its person thinks, walks or sleeps before the next one. The scheduler always
runs the earliest step next, moving the process clock forward to its time, so a scraper's
requests interleave with the clinicians' ward rounds exactly as their times say. Real time
spent serving a request is part of simulated time too (the clock never stops), so a response
that takes 20 ms of CPU also takes 20 ms of simulated time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from rempart import clock
from rempart.access.roles import Role
from rempart.identity.settings import SessionLimits
from rempart.simulate.actor import Actor
from rempart.simulate.leaks import PatientIndex
from rempart.simulate.oracle import ScopeOracle
from rempart.simulate.world import Credentials, World

SECOND = clock.SECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Steps = Iterator[float]  # an actor's life: seconds to wait before each next step


@dataclass
class Sim:
    """What every actor shares: the hospital, the clock, the harness's ground truth."""

    world: World
    index: PatientIndex
    oracle: ScopeOracle
    url: str
    time: clock.SimulatedTime
    rng: random.Random
    limits: SessionLimits
    day0: int = 0  # simulated micros of midnight UTC on the first simulated day
    census: int = 3  # patients staying in each unit
    seed: int = 0
    admitted: dict[str, int] = field(default_factory=dict)  # patient id -> admission time
    leaving: dict[str, int] = field(default_factory=dict)  # patient id -> planned discharge
    _clients: list[httpx.Client] = field(default_factory=list)

    def actor(self, name: str, creds: Credentials, ip: str, **kwargs: bool | str | None) -> Actor:
        client = httpx.Client(
            base_url=self.url,
            transport=httpx.HTTPTransport(local_address=ip, retries=0),
            timeout=120.0,
        )
        self._clients.append(client)
        actor = Actor(name, creds, client, self.index, **kwargs)  # type: ignore[arg-type]
        actor.rng = random.Random(f"{self.seed}/{name}")  # noqa: S311 - traffic, not secrets
        return actor

    def idle_seconds(self, role: str) -> int:
        return int(self.limits.idle[Role(role)])

    def absolute_seconds(self, role: str) -> int:
        return int(self.limits.absolute[Role(role)])

    def at(self, day: int, hours: float) -> int:
        return self.day0 + day * DAY + int(hours * HOUR)

    def weekend(self, day: int) -> bool:
        """Whether simulated day `day` is a Saturday or a Sunday."""
        return datetime.fromtimestamp(self.at(day, 12) / SECOND, tz=UTC).weekday() >= 5

    def close(self) -> None:
        for client in self._clients:
            client.close()


def until(when: int) -> float:
    """Seconds from now to `when` (never negative)."""
    return max(0.0, (when - clock.now_micros()) / SECOND)


def next_midnight(micros: int) -> int:
    return (micros // DAY + 1) * DAY


def iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / SECOND, tz=UTC).isoformat(timespec="seconds")


class Scheduler:
    def __init__(self, time: clock.SimulatedTime) -> None:
        self._time = time
        self._heap: list[tuple[int, int, Steps]] = []
        self._seq = 0
        self.steps = 0

    def add(self, start: int, steps: Steps) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (start, self._seq, steps))

    def run(self, tick: Callable[[int], None] | None = None) -> None:
        while self._heap:
            when, seq, steps = heapq.heappop(self._heap)
            self._time.advance_to(when)
            try:
                delay = next(steps)
            except StopIteration:
                continue
            self.steps += 1
            if tick is not None:
                tick(clock.now_micros())
            heapq.heappush(self._heap, (clock.now_micros() + int(delay * SECOND), seq, steps))
