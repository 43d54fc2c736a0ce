"""Where the guard's first touch spends its CPU, per part, in the same run as `guard_api.py`.

The blocks' CPU per read (guard_api.py) is what the issue's target is about, but on a shared VM
it moves by ±10 points from block to block. The thread CPU spent inside the guard's own calls
is far steadier, so this probe times, during the guarded blocks of new patients only:
- `GuardedSink._observe` on the request path (thread CPU per first touch);
- the ledger's batch insert (`Wire._insert`: the rows and their commit, thread CPU per row).
A harness wrapper (class attributes swapped for the run, then restored), not a product switch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rempart.guard.sink import GuardedSink
from rempart.guard.wire import Wire


class Probe:
    def __init__(self) -> None:
        self.on = False
        self.observe: list[int] = []  # ns of thread CPU per call
        self.insert_ns = 0
        self.rows = 0
        self.batches = 0

    @contextmanager
    def installed(self) -> Iterator[Probe]:
        observe, insert = GuardedSink._observe, Wire._insert
        probe = self

        def timed_observe(sink: GuardedSink, *args: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return observe(sink, *args)
            finally:
                if probe.on:
                    probe.observe.append(time.thread_time_ns() - started)

        def timed_insert(wire: Wire, rows: Any, *args: Any) -> Any:
            started = time.thread_time_ns()
            try:
                return insert(wire, rows, *args)
            finally:
                if probe.on:
                    probe.insert_ns += time.thread_time_ns() - started
                    probe.rows += len(rows)
                    probe.batches += 1

        GuardedSink._observe = timed_observe  # type: ignore[method-assign]
        Wire._insert = timed_insert  # type: ignore[method-assign]
        try:
            yield self
        finally:
            GuardedSink._observe = observe  # type: ignore[method-assign]
            Wire._insert = insert  # type: ignore[method-assign]

    def lines(self) -> list[str]:
        if not self.observe:
            return []
        rows = max(1, self.rows)
        return [
            "",
            "The guard's own calls in the guarded blocks of new patients (thread CPU; steadier "
            "than the blocks' totals above):",
            f"- `GuardedSink._observe` on the request path: mean "
            f"{statistics.mean(self.observe) / 1000:,.1f} µs, median "
            f"{statistics.median(self.observe) / 1000:,.1f} µs per read "
            f"({len(self.observe):,} reads)",
            f"- the ledger's batch insert (`Wire._insert`, rows and commit): "
            f"{self.insert_ns / 1000 / rows:,.1f} µs per row ({self.rows:,} rows in "
            f"{self.batches:,} batches)",
        ]
