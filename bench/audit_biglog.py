"""The `verify` scenario of bench_audit.py: a large audit log, `rempart audit verify` and
`rempart breach-report` on it, each timed as the operator runs it (the CLI, in its own process,
wall time).

The log: N records written through the real writer in 20,000-record transactions (1% of them
by one real account, so that `breach-report --user` finds it), a signed head every 10,000
records. Building 10 million records takes a while (~15 min on a quiet machine); `--keep DIR`
keeps the data directory so that later runs (`--reuse DIR`) only time the commands.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_ingest import REMPART_CMD

from rempart.access.roles import Role
from rempart.bootstrap import initialise
from rempart.config import load_settings
from rempart.wiring import Services, open_services

TARGET_USER = "bench.target.clinician"
BATCH, HEAD_EVERY = 20_000, 10_000


def _children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def build_log(home: Path, n: int) -> tuple[str, float]:
    """A fresh home holding a log of `n` records; (the target's account id, seconds taken)."""
    from bench_audit import record

    initialise(load_settings(home))
    svc: Services = open_services(load_settings(home), pool_size=4)
    try:
        target = svc.identity.create_account(
            username=TARGET_USER,
            password="Vx9!" + os.urandom(12).hex() + "-Qz",
            role=Role.CLINICIAN,
            display_name="Bench Target",
        )
        rng = random.Random(5)
        at = int(time.time() * 1_000_000) - n  # the records end now, one microsecond apart
        took = time.perf_counter()
        for start in range(0, n, BATCH):
            size = min(BATCH, n - start)
            recs = [
                record(rng, start + i, at, target if rng.random() < 0.01 else None)
                for i in range(size)
            ]
            svc.audit._writer.append(recs)  # the writer's own transaction, without the queue
            if (start + size) % HEAD_EVERY == 0 or start + size == n:
                svc.audit.sign_now()
            if (start + size) % 500_000 == 0 or start + size == n:
                print(f"  log: {start + size:,} / {n:,} records", file=sys.stderr, flush=True)
        return target, time.perf_counter() - took
    finally:
        svc.close()


def timed_cli(home: Path, *args: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and its workers, stdout) of one CLI run."""
    cpu = _children_cpu()
    wall = time.perf_counter()
    done = subprocess.run(
        [*REMPART_CMD, "--home", str(home), *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - wall
    if done.returncode != 0:
        raise RuntimeError(f"rempart {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return wall, _children_cpu() - cpu, done.stdout


def bench_verify(home: Path, n: int, *, reuse: bool) -> list[str]:
    lines: list[str] = []
    if not reuse:
        _, took = build_log(home, n)
        lines.append(
            f"| write the log (20,000 per transaction) | {n:,} records | {took:.0f} s, "
            f"{n / took:,.0f} records/s |"
        )
    for workers in ("1", "2"):
        wall, cpu, out = timed_cli(home, "audit", "verify", "--json", "--workers", workers)
        report = json.loads(out)
        lines.append(
            f"| `rempart audit verify --json --workers {workers}` | "
            f"{report['records_checked']:,} records, "
            f"{report['heads_in_database']:,} heads (x2 copies), "
            f"ok={report['ok']} | **{wall:.1f} s wall** (CPU {cpu:.1f} s, "
            f"{cpu / max(1, report['records_checked']) * 1e6:.2f} us/record) |"
        )
    wall, _, _ = timed_cli(home, "audit", "public-key")
    lines.append(
        f"| `rempart audit public-key` (process start and service opening alone) | | "
        f"{wall:.2f} s wall |"
    )
    for attempt in ("first", "second"):  # the second run shows the warm page cache
        wall, _, out = timed_cli(home, "breach-report", "--user", TARGET_USER, "--json")
        patients = json.loads(out)["patients"]
        accesses = sum(p["accesses"] for p in patients)
        lines.append(
            f"| `rempart breach-report --user {TARGET_USER} --json` ({attempt} run) | "
            f"{accesses:,} accesses to {len(patients):,} patients | **{wall:.2f} s wall** "
            "(process start included) |"
        )
    lines.append(_breach_in_process(home))
    return lines


def _breach_in_process(home: Path) -> str:
    """The report's query alone, as the HTTP endpoint runs it in a running server."""
    from rempart.audit.query import account_ids_for, breach_report

    svc = open_services(load_settings(home), pool_size=2)
    try:
        ids = account_ids_for(svc.engine, TARGET_USER)
        wall = time.perf_counter()
        patients = breach_report(svc.engine, ids, None, None)
        wall = time.perf_counter() - wall
    finally:
        svc.close()
    accesses = sum(p.accesses for p in patients)
    return (
        f"| breach report query in a running process (what `GET /audit/breach-report` runs) | "
        f"{accesses:,} accesses to {len(patients):,} patients | **{wall:.2f} s** |"
    )
