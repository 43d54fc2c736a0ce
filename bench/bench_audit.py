"""Audit log benchmark: append throughput (group commit), the cost of auditing a protected read
(in process and over HTTP), `audit verify` on a large log, and the breach report on it.

Scenarios (each in a fresh temporary home; PostgreSQL in a scratch database that is dropped):
- `append`: durable appends as the product makes them. "tickets": the read routes' path
  (`run_audited`): callers queue their records and their tickets are awaited on an event loop
  (producer threads submit batches of one-record calls, as request threads do); "threads": P
  threads each calling `AuditLog.record()` and waiting in place (sign-ins, administration).
  Records/s, records per transaction, CPU per record.
- `read`: `RecordService.read` (decide -> scoped store read -> decrypt -> audit record) the way
  the route runs it: C concurrent coroutines on one event loop, each read in the thread pool
  through `run_audited`; then the same with the audit log replaced by a no-op sink *in this
  benchmark process only* (the guard, when wired in front of the log, stays in both).
- `http`: the same over HTTP: two uvicorn processes on one seeded home, one with the audit log
  and one with the no-op sink, loaded by `wrk` in turns (with, without, with, ...) in one run.
- `verify`: a log of N records, then `rempart audit verify` and `rempart breach-report` timed as
  the operator runs them (see audit_biglog.py).

Every table line carries the load average: the machine is shared, so CPU time per operation is
the steadier figure and is printed next to each rate.

    .venv/bin/python bench/bench_audit.py                          # SQLite, 1M-record verify
    .venv/bin/python bench/bench_audit.py --only verify --verify-records 10000000
    .venv/bin/python bench/bench_audit.py --only http --read-seconds 10 --read-rounds 3
    .venv/bin/python bench/bench_audit.py --backend postgresql --only append read http
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_ingest import code_under_test, machine_facts, pg_available, scratch_database
from sqlalchemy import func, select

from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.audit.durable import Ticket, run_audited
from rempart.audit.records import AuditRecord
from rempart.audit.tables import audit_batch
from rempart.bootstrap import initialise
from rempart.config import load_settings
from rempart.context import RequestContext
from rempart.errors import RempartError
from rempart.identity.tables import account
from rempart.wiring import Services, open_services

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


def record(rng: random.Random, i: int, at: int, account_id: str | None = None) -> AuditRecord:
    return AuditRecord(
        action="read",
        outcome="success",
        ip="10.20.30.40",
        user_agent=UA,
        account_id=account_id or f"{rng.getrandbits(128):032x}"[:8] + "-acct",
        username="j.martin",
        role="clinician",
        practitioner=f"Practitioner/{rng.getrandbits(64):016x}",
        session_id="4f1c2a9e-0b8e-4a0c-9b7e-1c2d3e4f5a6b",
        request_id=f"{rng.getrandbits(128):032x}",
        resource_type="Observation",
        resource_id=f"{rng.getrandbits(128):032x}",
        patient=f"{rng.randrange(750_000):012d}",
        reason="care relationship: encounter participant",
        at=at + i,
    )


def open_home(tmp: Path, url: str | None) -> Services:
    initialise(load_settings(tmp, url))
    return open_services(load_settings(tmp, url), pool_size=20)


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _batches(svc: Services) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_batch)).scalar_one())


# ---- append -----------------------------------------------------------------------------------


def bench_append_threads(svc: Services, threads: int, total: int, per_call: int = 1) -> str:
    """P threads, each waiting in place for its records (`record()`)."""
    per = total // threads // per_call
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start_at = time.time_ns() // 1000

    def work(k: int) -> None:
        rng = random.Random(k)
        own = latencies[k]
        for i in range(per):
            recs = [record(rng, i * per_call + j, start_at) for j in range(per_call)]
            t = time.perf_counter()
            svc.audit.record(*recs)
            own.append(time.perf_counter() - t)

    batches_before = _batches(svc)
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = per * threads * per_call
    flat = [x for lst in latencies for x in lst]
    return (
        f"| append, threads waiting in place: {threads} x {per_call} record(s) per call | "
        f"{done:,} | **{done / wall:,.0f} records/s** | "
        f"{done / max(1, _batches(svc) - batches_before):,.0f} records/commit | "
        f"p50 {statistics.median(flat) * 1000:.1f} ms, p99 {percentile(flat, 0.99) * 1000:.1f} ms "
        f"| CPU {cpu / done * 1e6:.1f} us/record | {load()} |"
    )


def bench_append_tickets(svc: Services, inflight: int, total: int, per_call: int) -> str:
    """The read routes' path: calls queue their records from worker threads (a hop carries 50
    calls, so the hop's cost does not hide the log's); their tickets are awaited on one event
    loop, `inflight` hops at a time. Records are built beforehand (a request builds its own)."""
    rng, at = random.Random(1), time.time_ns() // 1000
    calls = [
        [record(rng, i * per_call + j, at) for j in range(per_call)]
        for i in range(total // per_call)
    ]
    hops = [calls[i : i + 50] for i in range(0, len(calls), 50)]

    def submit(hop: list[list[AuditRecord]]) -> list[Ticket]:
        return [svc.audit.submit(*c) for c in hop]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(inflight)

        async def one(hop: list[list[AuditRecord]]) -> None:
            async with gate:
                for ticket in await loop.run_in_executor(None, submit, hop):
                    await ticket.wait(60)

        await asyncio.gather(*(one(h) for h in hops))

    batches_before = _batches(svc)
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = len(calls) * per_call
    return (
        f"| append, tickets awaited on the event loop: {per_call} record(s) per call, "
        f"{inflight * 50} calls in flight | {done:,} | **{done / wall:,.0f} records/s** | "
        f"{done / max(1, _batches(svc) - batches_before):,.0f} records/commit | | "
        f"CPU {cpu / done * 1e6:.1f} us/record | {load()} |"
    )


# ---- protected read with and without the audit record -----------------------------------------


class _NoAudit:
    """The baseline's sink, in this process only: what the read costs without its record."""

    def record(self, *records: AuditRecord) -> None:
        return None


def without_audit(svc: Services) -> None:
    """Replace the audit log by the no-op sink; a wrapper in front of it (the guard) stays."""
    sink: Any = svc.records.audit
    if hasattr(sink, "inner"):
        sink.inner = _NoAudit()
    else:
        svc.records.audit = _NoAudit()  # type: ignore[assignment]


def _readers(svc: Services) -> list[tuple[Principal, list[str]]]:
    """Clinicians and the patients their care relationships let them read."""
    with svc.engine.connect() as conn:
        rows = conn.execute(select(account).where(account.c.role == "clinician").limit(60)).all()
    ctx = RequestContext.local("bench")
    out = []
    for row in rows:
        who = Principal(row.id, row.username, Role.CLINICIAN, row.practitioner, None, "bench")
        try:
            bundle = svc.records.search(who, ctx, "Patient", [("_count", "50")], "http://b/fhir")
        except RempartError:
            continue
        ids = [e["resource"]["id"] for e in bundle.get("entry", [])]
        if ids:
            out.append((who, ids))
    return out


def _read_rate(
    svc: Services, readers: list[tuple[Principal, list[str]]], concurrency: int, seconds: float
) -> tuple[float, float]:
    """Reads/s and CPU us/read with `concurrency` requests in flight, each as the route runs
    it: the sync service in the thread pool, the audit commit awaited on the loop."""
    ctx = RequestContext("10.0.0.9", "bench")
    counts = [0] * concurrency

    async def client(k: int, stop: float) -> None:
        rng = random.Random(k)
        while time.perf_counter() < stop:
            who, ids = readers[rng.randrange(len(readers))]
            await run_audited(svc.records.read, who, ctx, "Patient", ids[rng.randrange(len(ids))])
            counts[k] += 1

    async def run() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(client(k, stop) for k in range(concurrency)))

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = sum(counts)
    return total / wall, cpu / total * 1e6


def bench_read(svc: Services, patients: int, concurrency: int, seconds: float, rounds: int) -> str:
    from rempart.ingest.seeding import seed_hospital

    seed_hospital(svc, patients=patients, seed=3, credentials_out=None)
    readers = _readers(svc)
    if not readers:
        return "| read | no clinician with a readable patient: cannot run |"
    real_records, real_inner = svc.records.audit, getattr(svc.records.audit, "inner", None)
    with_audit: list[tuple[float, float]] = []
    without: list[tuple[float, float]] = []
    started = load()
    for _ in range(rounds):  # interleaved, so drifting machine load hits both alike
        svc.records.audit = real_records
        if real_inner is not None:
            svc.records.audit.inner = real_inner  # type: ignore[attr-defined]
        with_audit.append(_read_rate(svc, readers, concurrency, seconds))
        without_audit(svc)
        without.append(_read_rate(svc, readers, concurrency, seconds))
    svc.records.audit = real_records
    if real_inner is not None:
        svc.records.audit.inner = real_inner  # type: ignore[attr-defined]
    best_with = max(r for r, _ in with_audit)
    best_without = max(r for r, _ in without)
    cpu_with = min(c for _, c in with_audit)
    cpu_without = min(c for _, c in without)
    return (
        f"| protected read in process, {concurrency} in flight, {len(readers)} clinicians | "
        f"with audit {best_with:,.0f} reads/s ({cpu_with:.0f} us CPU/read) | "
        f"without {best_without:,.0f} reads/s ({cpu_without:.0f} us CPU/read) | "
        f"throughput ratio **{best_with / best_without:.2f}**, CPU ratio "
        f"**{cpu_with / cpu_without:.2f}** (best of {rounds} x {seconds:.0f} s, interleaved) | "
        f"{started} -> {load()} |"
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["_serve"]:
        from audit_http import serve_for_bench

        serve_for_bench(*argv[1:5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--only", nargs="*", choices=["append", "read", "http", "verify"])
    parser.add_argument("--threads", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--append-records", type=int, default=100_000)
    parser.add_argument(
        "--append-repeat", type=int, default=1, help="append: runs, each in a fresh home"
    )
    parser.add_argument(
        "--append-log", type=int, default=0, help="append: records in the log beforehand"
    )
    parser.add_argument(
        "--append-first-only",
        action="store_true",
        help="append: only the read routes' path, 1 record per call",
    )
    parser.add_argument("--read-patients", type=int, default=300)
    parser.add_argument("--read-concurrency", type=int, default=16)
    parser.add_argument("--read-seconds", type=float, default=10)
    parser.add_argument("--read-rounds", type=int, default=3)
    parser.add_argument("--http-connections", type=int, default=32)
    parser.add_argument("--bare", action="store_true", help="http: also without the guard")
    parser.add_argument(
        "--commit-window-ms", type=float, help="read/http: [audit] commit_window_ms (default 8)"
    )
    parser.add_argument("--verify-records", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="verify: build the log in DIR and keep it")
    parser.add_argument("--reuse", type=Path, help="verify: time the commands on DIR's log")
    args = parser.parse_args(argv)
    if args.backend == "postgresql" and not pg_available():
        print("PostgreSQL not reachable: skipping", file=sys.stderr)
        return 0
    wanted = set(args.only or ["append", "read", "http", "verify"])
    print(f"- machine: {machine_facts()}")
    print(f"- code: {code_under_test()}")
    print(f"- command: `.venv/bin/python bench/bench_audit.py {' '.join(argv)}`".rstrip())
    print(f"- backend: {args.backend}\n")
    print("| scenario | size | result | | | | |")
    print("|---|---|---|---|---|---|---|")
    if "http" in wanted:
        from audit_http import bench_http

        scratch = Path(tempfile.mkdtemp(prefix="rempart-bench-audit-db-"))
        try:
            with scratch_database(args.backend, scratch) as url:
                rows = bench_http(
                    args.read_patients,
                    int(args.read_seconds),
                    args.read_rounds,
                    args.http_connections,
                    bare=args.bare,
                    window_ms=args.commit_window_ms,
                    url=url,
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for row in rows:
            print(row, flush=True)
    if "verify" in wanted and args.backend == "sqlite":
        from audit_biglog import bench_verify

        home = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="rempart-bench-log-"))
        try:
            for row in bench_verify(home, args.verify_records, reuse=args.reuse is not None):
                print(row, flush=True)
        finally:
            if args.keep is None and args.reuse is None:
                shutil.rmtree(home, ignore_errors=True)
    runs = [("append", k) for k in range(args.append_repeat)] if "append" in wanted else []
    runs += [("read", 0)] if "read" in wanted else []
    first_rows: list[str] = []
    for name, _ in runs:
        tmp = Path(tempfile.mkdtemp(prefix=f"rempart-bench-audit-{name}-"))
        try:
            with scratch_database(args.backend, tmp) as url:
                svc = open_home(tmp / "home", url)
                try:
                    rows: list[str] = []
                    if name == "append":
                        n = args.append_records
                        if args.append_log:
                            prefill(svc, args.append_log)
                        rows = [bench_append_tickets(svc, 8, n, 1)]
                        first_rows.append(rows[0])
                        if not args.append_first_only:
                            rows.append(bench_append_tickets(svc, 8, n, 20))
                            rows += [bench_append_threads(svc, t, n) for t in args.threads]
                            # A search page: one call records one event per patient returned.
                            rows.append(bench_append_threads(svc, 32, n, per_call=20))
                    else:
                        if args.commit_window_ms is not None:
                            svc.audit._window = args.commit_window_ms / 1000
                        rows = [
                            bench_read(
                                svc,
                                args.read_patients,
                                args.read_concurrency,
                                args.read_seconds,
                                args.read_rounds,
                            )
                        ]
                    for row in rows:
                        print(row, flush=True)
                finally:
                    svc.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(first_rows) > 1:
        print(spread(first_rows), flush=True)
    return 0


def spread(rows: list[str]) -> str:
    """Min, median and max of the first scenario's rate over the repeated runs."""

    def number(pattern: str, row: str) -> float:
        found = re.search(pattern, row)
        return float(found.group(1).replace(",", "")) if found else float("nan")

    rates = [number(r"\*\*([\d,]+) records/s", r) for r in rows]
    cpus = [number(r"CPU ([\d.]+) us/record", r) for r in rows]
    return (
        f"| append, 1 record per call, {len(rows)} runs (each in a fresh home) | | "
        f"min **{min(rates):,.0f}**, median **{statistics.median(rates):,.0f}**, "
        f"max {max(rates):,.0f} records/s | | | "
        f"CPU median {statistics.median(cpus):.1f} us/record | {load()} |"
    )


def prefill(svc: Services, n: int) -> None:
    """A log of `n` records before the timed part (a running server's log is not empty:
    random-key index inserts cost more as the indexes outgrow the caches)."""
    rng, at = random.Random(7), time.time_ns() // 1000 - n
    for start in range(0, n, 20_000):
        size = min(20_000, n - start)
        svc.audit._writer.append([record(rng, start + i, at) for i in range(size)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
