"""Audit log benchmark: append throughput (group commit), the cost of auditing a protected read,
`audit verify` on a large log, and the breach report on it.

Scenarios (each in a fresh temporary home; PostgreSQL in a scratch database that is dropped):
- `append`: P threads, each calling `AuditLog.record()` with one record at a time, as P
  concurrent requests would; records/s, average records per transaction, p50/p99 latency.
- `read`: `RecordService.read` (decide -> store read with the care-relationship scope ->
  decrypt -> durable audit record) from T threads over a seeded hospital, then the same with
  the service's sink swapped for a no-op *in this benchmark process only* (there is no switch
  in rempart for that). Service level, no HTTP: the audit share of an HTTP request is smaller.
- `verify`: a log of N records (1% of them by one account, a signed head every 10,000),
  written through the real writer in 20,000-record transactions; `audit verify` with 1 and 2
  processes; then the breach report for that account (N/100 accesses) through the covering
  index. Wall and CPU seconds are both printed: the machine is shared, CPU time is the steadier.

    .venv/bin/python bench/bench_audit.py                          # SQLite, 1M-record verify
    .venv/bin/python bench/bench_audit.py --verify-records 10000000
    .venv/bin/python bench/bench_audit.py --backend postgresql --only append read
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_ingest import code_under_test, machine_facts, pg_available, scratch_database
from sqlalchemy import func, select

from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.audit.heads import HeadVerifier
from rempart.audit.query import breach_report
from rempart.audit.records import AuditRecord
from rempart.audit.tables import audit_batch
from rempart.audit.verify import verify_log
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- append -----------------------------------------------------------------------------------


def bench_append(svc: Services, threads: int, total: int, per_call: int = 1) -> str:
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

    with svc.engine.connect() as conn:
        batches_before = conn.execute(select(func.count()).select_from(audit_batch)).scalar_one()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with svc.engine.connect() as conn:
        batches = conn.execute(select(func.count()).select_from(audit_batch)).scalar_one()
    done = per * threads * per_call
    flat = [x for lst in latencies for x in lst]
    return (
        f"| append, {threads} threads x {per_call} record(s) per call | {done:,} | "
        f"{done / wall:,.0f} "
        f"records/s | {done / max(1, batches - batches_before):,.0f} records/commit | "
        f"p50 {statistics.median(flat) * 1000:.1f} ms, p99 {percentile(flat, 0.99) * 1000:.1f} ms "
        f"| CPU {cpu / done * 1e6:.1f} us/record |"
    )


# ---- protected read with and without the audit record -----------------------------------------


class _NoAudit:
    """The baseline's sink, in this process only: what the read costs without its record."""

    def record(self, *records: AuditRecord) -> None:
        return None


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
    svc: Services, readers: list[tuple[Principal, list[str]]], threads: int, seconds: float
) -> tuple[float, float]:
    stop = time.perf_counter() + seconds
    counts = [0] * threads
    ctx = RequestContext("10.0.0.9", "bench")

    def work(k: int) -> None:
        rng = random.Random(k)
        n = 0
        while time.perf_counter() < stop:
            who, ids = readers[rng.randrange(len(readers))]
            svc.records.read(who, ctx, "Patient", ids[rng.randrange(len(ids))])
            n += 1
        counts[k] = n

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = sum(counts)
    return total / wall, cpu / total * 1e6


def bench_read(svc: Services, patients: int, threads: int, seconds: float, rounds: int) -> str:
    from rempart.ingest.seeding import seed_hospital

    seed_hospital(svc, patients=patients, seed=3, credentials_out=None)
    readers = _readers(svc)
    if not readers:
        return "| read | no clinician with a readable patient: cannot run |"
    real = svc.records.audit
    with_audit: list[tuple[float, float]] = []
    without: list[tuple[float, float]] = []
    for _ in range(rounds):  # interleaved, so drifting machine load hits both alike
        svc.records.audit = real
        with_audit.append(_read_rate(svc, readers, threads, seconds))
        svc.records.audit = _NoAudit()
        without.append(_read_rate(svc, readers, threads, seconds))
    svc.records.audit = real
    best_with = max(r for r, _ in with_audit)
    best_without = max(r for r, _ in without)
    cpu_with = min(c for _, c in with_audit)
    cpu_without = min(c for _, c in without)
    return (
        f"| protected read, {threads} threads, {len(readers)} clinicians | "
        f"with audit {best_with:,.0f} reads/s ({cpu_with:.0f} us CPU/read) | "
        f"without {best_without:,.0f} reads/s ({cpu_without:.0f} us CPU/read) | "
        f"throughput ratio {best_with / best_without:.2f}, CPU ratio "
        f"{cpu_with / cpu_without:.2f} (best of {rounds} x {seconds:.0f} s each) |"
    )


# ---- verify and breach report on a large log --------------------------------------------------


def _cpu() -> float:
    """User + system seconds of this process and of its finished children (verify workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def build_log(svc: Services, n: int, progress: Callable[[int], None]) -> float:
    rng = random.Random(5)
    at = 1_700_000_000_000_000
    batch, head_every = 20_000, 10_000
    t = time.perf_counter()
    for start in range(0, n, batch):
        size = min(batch, n - start)
        recs = [
            record(rng, start + i, at, "target-account" if rng.random() < 0.01 else None)
            for i in range(size)
        ]
        svc.audit._writer.append(recs)  # the writer's own transaction, without the queue
        if (start + size) % head_every == 0 or start + size == n:
            svc.audit.sign_now()
        progress(start + size)
    return time.perf_counter() - t


def bench_verify(svc: Services, n: int) -> list[str]:
    def progress(done: int) -> None:
        if done % 500_000 == 0 or done == n:
            print(f"  log: {done:,} / {n:,} records", file=sys.stderr, flush=True)

    took = build_log(svc, n, progress)
    lines = [f"| write the log (20,000 per transaction) | {n:,} | {n / took:,.0f} records/s |"]
    verifier = HeadVerifier(svc.audit.signer.public)
    for workers in (1, 2):
        before = _cpu()
        wall = time.perf_counter()
        report = verify_log(svc.engine, verifier, svc.audit.heads_file, workers=workers)
        wall = time.perf_counter() - wall
        cpu = _cpu() - before
        assert report.ok, report.problems
        lines.append(
            f"| audit verify, {workers} process(es) | {report.records:,} records, "
            f"{report.heads_in_database:,} heads (x2 copies) | {wall:.1f} s wall "
            f"({n / wall:,.0f} records/s); CPU {cpu:.1f} s in all processes "
            f"({cpu / n * 1e6:.2f} us/record) |"
        )
    for _ in range(2):  # the second run shows the warm page cache
        wall = time.perf_counter()
        patients = breach_report(svc.engine, ["target-account"], None, None)
        wall = time.perf_counter() - wall
        accesses = sum(p.accesses for p in patients)
        lines.append(
            f"| breach report, one account | {accesses:,} accesses to {len(patients):,} "
            f"patients in a log of {n:,} | {wall:.2f} s |"
        )
    return lines


# ---- the same over HTTP: a real server, wrk, with and without the audit record ----------------


def serve_for_bench(home: str, port: str, mode: str) -> None:
    """`bench_audit.py _serve HOME PORT with|without`: one uvicorn process on the app; for
    "without", this process's RecordService gets the no-op sink (the baseline only)."""
    import uvicorn

    from rempart.api.app import create_app

    svc = open_services(load_settings(Path(home)), pool_size=20)
    if mode == "without":
        svc.records.audit = _NoAudit()
    uvicorn.run(create_app(svc), host="127.0.0.1", port=int(port), log_level="warning")


def _clinician(base: str, credentials: Path) -> str:
    """A token of a clinician whose care relationships reach some patients (the policy
    narrows each to their own), logged in as a client would."""
    import json

    import pyotp
    from bench_http import collect_paths

    accounts = json.loads(credentials.read_text())["accounts"]
    clinicians = [a for a in accounts if a["role"] == "clinician"][2:]  # tests log in the first
    best, best_count = "", 0
    for acct in clinicians[-12:]:
        first = httpx_post(
            base, "/auth/login", {"username": acct["username"], "password": acct["password"]}
        )
        code = pyotp.TOTP(acct["totp_secret"]).now()
        body = {"mfa_token": first["mfa_token"], "code": code}
        token = str(httpx_post(base, "/auth/mfa", body)["access_token"])
        count = len(collect_paths(base, token, 200)["read"])
        if count > best_count:
            best, best_count = token, count
    if best_count < 3:
        raise RuntimeError("no clinician reaches 3 patients; seed more patients")
    return best


def httpx_post(base: str, path: str, body: dict[str, str]) -> dict[str, Any]:
    import httpx

    response = httpx.post(base + path, json=body, timeout=30)
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


def bench_http(patients: int, seconds: int, rounds: int, connections: int) -> list[str]:
    import contextlib
    import json
    import os
    import signal
    import subprocess

    import httpx
    from bench_http import LUA, collect_paths, free_port, run_wrk
    from bench_ingest import rempart

    tmp = Path(tempfile.mkdtemp(prefix="rempart-bench-audit-http-"))
    home, creds = tmp / "home", tmp / "credentials.json"
    rempart(home, None, "seed", "--patients", str(patients), "--credentials-out", str(creds))
    token = ""
    results: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    try:
        for _ in range(rounds):
            for mode in ("with", "without"):
                port = free_port()
                proc = subprocess.Popen(
                    [sys.executable, __file__, "_serve", str(home), str(port), mode],
                    start_new_session=True,
                    stderr=subprocess.DEVNULL,
                )
                base = f"http://127.0.0.1:{port}"
                try:
                    for _wait in range(200):
                        with contextlib.suppress(httpx.HTTPError):
                            if httpx.get(base + "/fhir/metadata").status_code == 200:
                                break
                        time.sleep(0.2)
                    token = token or _clinician(base, creds)
                    paths = collect_paths(base, token, 400)["read"]
                    (tmp / "read.paths").write_text("\n".join(paths) + "\n")
                    (tmp / "rotate.lua").write_text(LUA)
                    args = (base, tmp / "rotate.lua", tmp / "read.paths", token, connections)
                    run_wrk(*args, 2, proc.pid, None)  # warm-up
                    r = run_wrk(*args, seconds, proc.pid, None)
                    rps = r["requests"] / (r["duration_us"] / 1e6)
                    results[mode].append((rps, 1000 * r["server_cpu"] / rps))
                    print(f"  {mode}: {json.dumps(r)}", file=sys.stderr, flush=True)
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w, wo = max(results["with"]), max(results["without"])
    cpu_w = min(c for _, c in results["with"])
    cpu_wo = min(c for _, c in results["without"])
    return [
        f"| protected read over HTTP (GET /fhir/Patient/{{id}}, 1 server process, wrk -c"
        f"{connections}) | with audit {w[0]:,.0f} req/s ({cpu_w:.2f} ms server CPU/req) | "
        f"without {wo[0]:,.0f} req/s ({cpu_wo:.2f} ms) | throughput ratio {w[0] / wo[0]:.2f}, "
        f"CPU ratio {cpu_w / cpu_wo:.2f} (best of {rounds} x {seconds} s, interleaved) |"
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["_serve"]:
        serve_for_bench(*argv[1:4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--only", nargs="*", choices=["append", "read", "http", "verify"])
    parser.add_argument("--threads", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--append-records", type=int, default=100_000)
    parser.add_argument("--read-patients", type=int, default=300)
    parser.add_argument("--read-threads", type=int, default=8)
    parser.add_argument("--read-seconds", type=float, default=10)
    parser.add_argument("--read-rounds", type=int, default=3)
    parser.add_argument("--verify-records", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.backend == "postgresql" and not pg_available():
        print("PostgreSQL not reachable: skipping", file=sys.stderr)
        return 0
    wanted = set(args.only or ["append", "read", "http", "verify"])
    print(f"- machine: {machine_facts()}")
    print(f"- code: {code_under_test()}")
    print(f"- command: `.venv/bin/python bench/bench_audit.py {' '.join(argv)}`".rstrip())
    print(f"- backend: {args.backend}\n")
    print("| scenario | size | result | | | |")
    print("|---|---|---|---|---|---|")
    if "http" in wanted and args.backend == "sqlite":
        rows = bench_http(args.read_patients, int(args.read_seconds), args.read_rounds, 32)
        for row in rows:
            print(row, flush=True)
    for name in ("append", "read", "verify"):
        if name not in wanted:
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"rempart-bench-audit-{name}-"))
        try:
            with scratch_database(args.backend, tmp) as url:
                svc = open_home(tmp / "home", url)
                try:
                    rows: list[str] = []
                    if name == "append":
                        rows = [bench_append(svc, t, args.append_records) for t in args.threads]
                        # A search page: one call records one event per patient returned.
                        rows.append(bench_append(svc, 32, args.append_records, per_call=20))
                    elif name == "read":
                        rows = [
                            bench_read(
                                svc,
                                args.read_patients,
                                args.read_threads,
                                args.read_seconds,
                                args.read_rounds,
                            )
                        ]
                    else:
                        rows = bench_verify(svc, args.verify_records)
                    for row in rows:
                        print(row, flush=True)
                finally:
                    svc.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
