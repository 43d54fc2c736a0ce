"""Guard benchmark: what the guard adds to a protected read, measured in one run.

Builds a ward of N patients (default 400) through the operator's path, each with an ongoing
encounter attended by one practitioner, and a clinician linked to that practitioner (every
patient in scope). The clinician's thresholds are raised to their bounds for the run (directly
in `access_setting`: a benchmark harness, not the product's four-eyes path), so the guard
scores every read without containing the session. A few decoy patients are planted outside the
ward (as the seed plants them), so each read pays the decoy check it pays in production.

A protected read as the API serves it minus HTTP: authenticate the bearer token, decide, check,
unwrap the key, decrypt, the guard, the durable audit record. Timed two ways, interleaved in
blocks so both see the same machine load:
- `guarded`: `services.records` (the product: every record passes through `GuardedSink`);
- `bare`: a `RecordService` on the same store, policy and audit log, without the guard (the
  harness builds it; the product has no switch).

Two access patterns:
- `re-read`: the clinician rotates over their patients, each read again within the minute (the
  guard's steady state: no query, a decoy HMAC and a few dict lookups);
- `new patient`: every read is a patient this session has not opened in the last minute (the
  guard's worst case far from a threshold: the touch counted in the ledger's in-memory windows
  and written in its next batch by the flusher thread, whose CPU is this process's too; near a
  threshold the guard writes and counts in the database on the request path instead).

`--api` adds the same through the ASGI application, 16 requests in flight (guard_api.py): by
default all of one session (one account reading at the server's full speed: it fills the
ledger's per-account queue and writes it on the request path, the guard's worst case), with
`--sessions 16` one each for as many clinicians (a ward at the same total rate).

    .venv/bin/python bench/bench_guard.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/bench_guard.py --backends sqlite --patients 400 --rounds 2000
    .venv/bin/python bench/bench_guard.py --backends sqlite --rounds 6000 --api --sessions 16
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import machine_facts, pg_available, scratch_database
from guard_api import measure_api

from rempart.access.pdp import system_decision
from rempart.access.roles import Role
from rempart.access.tables import access_setting
from rempart.api.app import settle_heap
from rempart.bootstrap import initialise
from rempart.clock import now_micros
from rempart.config import load_settings
from rempart.context import RequestContext
from rempart.guard.settings import RESPONSES, ROLE_LIMITS, SEARCH_RATE
from rempart.service.records import RecordService
from rempart.store.ingest import ingest_batch
from rempart.wiring import Services, open_services

SYSTEM = system_decision("benchmark load")
BLOCK = 50  # reads per block; blocks of the two variants alternate
DECOYS = 4


def build(services: Services, patients: int) -> list[str]:
    doctor = "bench-doctor"
    batch: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": doctor, "name": [{"family": "Bench"}]}
    ]
    ids = [f"bench-p{i:06d}" for i in range(patients)]
    for pid in ids:
        batch.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": f"Bench{pid[-4:]}", "given": ["Test"]}],
                "gender": "female",
                "birthDate": "1970-01-01",
            }
        )
        batch.append(
            {
                "resourceType": "Encounter",
                "id": f"enc-{pid}",
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{pid}"},
                "participant": [{"individual": {"reference": f"Practitioner/{doctor}"}}],
                "period": {"start": "2026-01-01T08:00:00Z"},
            }
        )
    with services.engine.begin() as conn:
        ingest_batch(services.store, conn, SYSTEM, batch)
        raise_thresholds(conn)
        # Decoys exist in every real deployment (the seed plants one patient in 500), and with
        # none the guard skips its decoy check: plant a few, outside the ward, so every read
        # pays that check as it does in production.
        services.guard.decoys.plant(conn, [f"bench-decoy-{i}" for i in range(DECOYS)], "bench")
    services.policy.settings.invalidate()
    return ids


def raise_thresholds(conn: Any) -> None:
    """Every role's guard thresholds at their upper bounds, and the search-rate rule's response
    at its lowest (an alert: a benchmark's one session searches thousands of times a minute,
    above that rule's highest threshold). A harness shortcut past the four-eyes path: the guard
    still scores every request, it just does not contain or step up a benchmark's session."""
    values = [(d.key, d.high) for limits in ROLE_LIMITS.values() for d in limits]
    values += [(SEARCH_RATE.key, SEARCH_RATE.high)]
    values += [(RESPONSES["search-rate"].key, RESPONSES["search-rate"].low)]
    for key, value in values:
        conn.execute(
            access_setting.insert().values(
                key=key, value=str(value), changed=now_micros(), request_id="bench"
            )
        )


def session_token(services: Services, username: str = "bench.clinician") -> str:
    account_id = services.identity.create_account(
        username=username,
        password=f"Xy7-{secrets.token_urlsafe(24)}",
        role=Role.CLINICIAN,
        display_name="Bench",
        practitioner="Practitioner/bench-doctor",
    )
    with services.engine.begin() as conn:
        opened = services.identity.core.sessions.open(
            conn,
            account_id=account_id,
            role=Role.CLINICIAN,
            factors="password+totp",
            now=now_micros(),
        )
    return opened.access_token


def interleaved(
    variants: dict[str, Callable[[str], None]], patients: list[str], rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Per variant: (wall-clock µs per read, this process's CPU µs per read). On a shared,
    loaded machine the CPU time is the steadier figure: it leaves out the time spent waiting
    for a core (and for the disk)."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in variants}
    position = 0
    while min(len(v[0]) for v in out.values()) < rounds:
        for name, read in variants.items():
            for _ in range(BLOCK):
                pid = patients[position % len(patients)]
                position += 1
                start, cpu = time.perf_counter_ns(), time.process_time_ns()
                read(pid)
                out[name][1].append((time.process_time_ns() - cpu) / 1000)
                out[name][0].append((time.perf_counter_ns() - start) / 1000)
    return out


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"median {statistics.median(ordered):,.0f} µs, p99 {p99:,.0f} µs"


def measure(services: Services, patients: list[str], rounds: int) -> list[str]:
    token = session_token(services)
    ctx = RequestContext("127.0.0.1", "bench")
    bare = RecordService(
        services.store,
        services.policy,
        services.audit,
        default_count=20,
        max_count=200,
    )

    def guarded_read(pid: str) -> None:
        services.records.read(services.identity.authenticate(token), ctx, "Patient", pid)

    def bare_read(pid: str) -> None:
        bare.read(services.identity.authenticate(token), ctx, "Patient", pid)

    seen = services.guard._seen  # the harness reaches in to make every read a first one

    def first_read(pid: str) -> None:
        with seen._lock:
            seen._at.clear()
        guarded_read(pid)

    hot = patients[:200]
    for pid in hot:  # warm: keys cached, touches of this minute written
        guarded_read(pid)
        bare_read(pid)
    steady = interleaved({"bare": bare_read, "guarded": guarded_read}, hot, rounds)
    worst = interleaved({"bare": bare_read, "guarded": first_read}, patients, rounds // 2)
    lines = [
        "| access pattern | bare read (wall) | guarded read (wall) | bare read (CPU) "
        "| guarded read (CPU) | guard's cost (wall) | guard's cost (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m in (("re-read (steady state)", steady), ("new patient each read", worst)):
        (bw, bc), (gw, gc) = m["bare"], m["guarded"]
        cost = []
        for bare_s, guarded_s in ((bw, gw), (bc, gc)):
            b, g = statistics.median(bare_s), statistics.median(guarded_s)
            cost.append(f"**{(g - b) / b:+.1%}** ({g - b:,.0f} µs)")
        lines.append(
            f"| {label} | {summary(bw)} | {summary(gw)} | {summary(bc)} | {summary(gc)} "
            f"| {cost[0]} | {cost[1]} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--api", action="store_true", help="also through the ASGI application (guard_api.py)"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="--api: the requests in flight spread over this many accounts' sessions",
    )
    args = parser.parse_args()
    print(f"machine: {machine_facts()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for backend in args.backends:
        if backend == "postgresql" and not pg_available():
            print("postgresql: skipped (no server at 127.0.0.1:5432)")
            continue
        with tempfile.TemporaryDirectory() as tmp, scratch_database(backend, Path(tmp)) as url:
            home = Path(tmp) / "home"
            initialise(load_settings(home, url))
            services = open_services(load_settings(home, url), pool_size=4)
            try:
                patients = build(services, args.patients)
                settle_heap()  # as a serving process does once built (api/app.py)
                print(f"\n{backend}, {args.patients} patients in scope, {args.rounds} reads each:")
                print("\n".join(measure(services, patients, args.rounds)))
                if args.api:
                    tokens = [
                        session_token(services, f"bench.api{i}") for i in range(args.sessions)
                    ]
                    print()
                    print("\n".join(measure_api(services, patients, tokens, args.rounds)))
            finally:
                services.close()
                gc.unfreeze()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
