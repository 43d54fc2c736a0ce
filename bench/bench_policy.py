"""Policy benchmark: the access decision's share of a protected read, at 100,000 patients.

Builds a hospital of N patients (default 100,000) through the real ingest path (encrypted
records, blind indexes, and the care-relationship index written in the same transactions):
each patient has a Patient, an Encounter, a Condition and an Observation; the encounter's
attending physician is one of N/150 practitioners, half of the encounters ended within the care
window, 2% are current stays in one of 50 units; one practitioner is the declared treating
physician of 5,000 patients (a "heavy" clinician).

Then, for a typical clinician (one practitioner, one unit) and the heavy one, it times:
- `decide`: `Policy.decide(principal)` (the per-request decision; it issues no query);
- `covers`: the one indexed question the store asks before opening a row (care link or live
  break-the-glass for this patient), on a fresh decision each time (no cache);
- `read`: a protected read as the API serves it, minus HTTP framing: authenticate the bearer
  token, decide, check, unwrap the key, decrypt, write the durable audit record;
- `store read`: the same without authentication and audit;
- scoped searches: `Patient?_count=20` and `Observation?_count=20` (their `total` counts only the
  clinician's patients).

The decision's share is (decide + covers) / read. Target: at most 10%. The database is
ANALYZEd after loading, as autovacuum would have done.

    .venv/bin/python bench/bench_policy.py                       # 100,000 patients, both DBs
    .venv/bin/python bench/bench_policy.py --patients 20000 --backends sqlite
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_guard import raise_thresholds
from bench_ingest import machine_facts, pg_available, scratch_database

from rempart.access import membership
from rempart.access.pdp import Principal, system_decision
from rempart.access.roles import Role
from rempart.bootstrap import initialise
from rempart.config import load_settings
from rempart.context import RequestContext
from rempart.fhir import parse_search
from rempart.store.ingest import ingest_batch
from rempart.store.search import search
from rempart.wiring import Services, open_services

SYSTEM = system_decision("benchmark load")
DAY = 86_400
HEAVY_PATIENTS = 5_000
UNITS = 50
BATCH = 2_000  # patients per ingest transaction


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def build(services: Services, patients: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    now = time.time()
    practitioners = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(patients // 150)]
    units = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(UNITS)]
    heavy = str(uuid.UUID(int=rng.getrandbits(128)))
    directory: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": p, "name": [{"family": "Doc"}]}
        for p in [*practitioners, heavy]
    ] + [{"resourceType": "Organization", "id": u, "name": "Unité"} for u in units]
    with services.engine.begin() as conn:
        ingest_batch(services.store, conn, SYSTEM, directory)
    typical, typical_unit = practitioners[0], units[0]
    mine: list[str] = []  # patients of the typical clinician (in scope now)
    heavies: list[str] = []
    strangers: list[str] = []
    started = time.perf_counter()
    for first in range(0, patients, BATCH):
        batch: list[dict[str, Any]] = []
        for i in range(first, min(first + BATCH, patients)):
            pid = str(uuid.UUID(int=rng.getrandbits(128)))
            doctor = rng.choice(practitioners)
            unit = rng.choice(units)
            current = rng.random() < 0.02
            recent = rng.random() < 0.5
            end = now - rng.uniform(1, 25) * DAY if recent else now - rng.uniform(40, 3000) * DAY
            patient: dict[str, Any] = {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": f"Nom{i}", "given": ["Prénom"]}],
                "birthDate": "1960-01-01",
                "gender": "female",
            }
            if i < HEAVY_PATIENTS:
                patient["generalPractitioner"] = [{"reference": f"Practitioner/{heavy}"}]
                heavies.append(pid)
            subject = {"reference": f"Patient/{pid}"}
            encounter: dict[str, Any] = {
                "resourceType": "Encounter",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "status": "in-progress" if current else "finished",
                "class": {"code": "IMP"},
                "subject": subject,
                "participant": [{"individual": {"reference": f"Practitioner/{doctor}"}}],
                "serviceProvider": {"reference": f"Organization/{unit}"},
                "period": {"start": iso(end - DAY)}
                if current
                else {"start": iso(end - DAY), "end": iso(end)},
            }
            coded = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}
            batch.extend(
                [
                    patient,
                    encounter,
                    {"resourceType": "Condition", "id": str(uuid.uuid4()), "subject": subject,
                     "code": coded},
                    {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
                     "subject": subject, "code": coded, "valueQuantity": {"value": 7.1}},
                ]
            )  # fmt: skip
            if (doctor == typical and (recent or current)) or (current and unit == typical_unit):
                mine.append(pid)
            elif i >= HEAVY_PATIENTS and len(strangers) < 200:
                strangers.append(pid)
        with services.engine.begin() as conn:
            ingest_batch(services.store, conn, SYSTEM, batch)
        done = min(first + BATCH, patients)
        rate = done * 4 / (time.perf_counter() - started)
        print(f"  loaded {done:,} patients ({rate:,.0f} resources/s)", file=sys.stderr, flush=True)
    return {
        "typical": (f"Practitioner/{typical}", f"Organization/{typical_unit}", mine),
        "heavy": (f"Practitioner/{heavy}", None, heavies),
        "strangers": strangers,
        "load_seconds": time.perf_counter() - started,
    }


def clinician(services: Services, client: Any, pract: str, unit: str | None) -> tuple[str, str]:
    """A clinician account linked to `pract` (and `unit`), signed in: (account id, token)."""
    name = f"bench.{uuid.uuid4().hex[:8]}"
    password, secret = f"Pw-{uuid.uuid4().hex}-{uuid.uuid4().hex[:6]}!", pyotp.random_base32()
    account_id = services.identity.create_account(
        username=name, password=password, role=Role.CLINICIAN, display_name="Bench",
        totp_secret=secret, practitioner=pract,
    )  # fmt: skip
    if unit:
        with services.engine.begin() as conn:
            membership.add(conn, account_id, unit, None)
    first = client.post("/auth/login", json={"username": name, "password": password}).json()
    token = client.post(
        "/auth/mfa", json={"mfa_token": first["mfa_token"], "code": pyotp.TOTP(secret).now()}
    ).json()["access_token"]
    return account_id, token


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    return f"median {statistics.median(samples):,.0f} µs, p99 {p99:,.0f} µs"


def cycle(items: list[str], rounds: int) -> list[str]:
    return (items * (rounds // max(1, len(items)) + 1))[:rounds]


def measure_one(
    services: Services, token: str, patients: list[str], stranger: str, rounds: int
) -> dict[str, Any]:
    ctx = RequestContext("127.0.0.1", "bench")
    who = services.identity.authenticate(token)
    sample = cycle(patients[:200], rounds)
    decide = timed(lambda: services.policy.decide(who), rounds)

    # Both on an open connection, as the store asks it (inside the read's own connection).
    def covers(conn: Any, pid: str) -> None:
        decision = services.policy.decide(who)  # fresh: no per-request cache
        if decision.patients.covers(conn, pid) is None:
            raise AssertionError(f"{pid} should be in scope")

    def refused(conn: Any) -> None:
        if services.policy.decide(who).patients.covers(conn, stranger) is not None:
            raise AssertionError("a stranger is in scope")

    def protected(pid: str) -> None:
        principal: Principal = services.identity.authenticate(token)
        services.records.read(principal, ctx, "Patient", pid)

    def store_read(pid: str) -> None:
        services.store.read(services.policy.decide(who), "Patient", pid)

    out: dict[str, Any] = {
        "decide": decide,
        "read": [timed(lambda p=p: protected(p), 1)[0] for p in sample],
        "store": [timed(lambda p=p: store_read(p), 1)[0] for p in sample],
    }
    with services.engine.connect() as conn:
        out["covers"] = [timed(lambda p=p: covers(conn, p), 1)[0] for p in sample]
        out["refused"] = timed(lambda: refused(conn), rounds)
    for res_type in ("Patient", "Observation"):
        query = parse_search(res_type, [("_count", "20")])
        totals: list[int] = []

        def run(q: Any = query, into: list[int] = totals) -> None:
            into.append(search(services.store, services.policy.decide(who), q)[1])

        out[res_type] = (timed(run, 20), totals[-1])
    return out


def measure(services: Services, facts: dict[str, Any], rounds: int) -> list[str]:
    from fastapi.testclient import TestClient

    from rempart.api.app import create_app

    lines = [
        "| clinician | decide | decide + covers (in scope) | decide + covers (refused) "
        "| protected read "
        "| store read | decision's share |",
        "|---|---|---|---|---|---|---|",
    ]
    searches = []
    with TestClient(create_app(services), base_url="http://127.0.0.1") as client:
        for label in ("typical", "heavy"):
            pract, unit, patients = facts[label]
            _account, token = clinician(services, client, pract, unit)
            m = measure_one(services, token, patients, facts["strangers"][0], rounds)
            cost = statistics.median(m["covers"])  # decide + covers, timed together
            share = cost / statistics.median(m["read"])
            store_share = cost / statistics.median(m["store"])
            lines.append(
                f"| {label} ({len(patients):,} patients in scope) | {summary(m['decide'])} | "
                f"{summary(m['covers'])} | {summary(m['refused'])} | {summary(m['read'])} | "
                f"{summary(m['store'])} | **{share:.1%}** of the protected read "
                f"({store_share:.1%} of the store read alone) |"
            )
            for res_type in ("Patient", "Observation"):
                took, total = m[res_type]
                searches.append(f"| {label} | {res_type}?_count=20 | {total:,} | {summary(took)} |")
    lines += ["", "| clinician | scoped search | total | latency |", "|---|---|---|---|"]
    return lines + searches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"Machine: {machine_facts()}\n")
    print(f"Command: .venv/bin/python bench/bench_policy.py --patients {args.patients} "
          f"--rounds {args.rounds} --backends {' '.join(args.backends)}\n")  # fmt: skip
    for backend in args.backends:
        if backend == "postgresql" and not pg_available():
            print(f"{backend}: skipped (no server)")
            continue
        with tempfile.TemporaryDirectory() as tmp, scratch_database(backend, Path(tmp)) as url:
            home = Path(tmp)
            initialise(load_settings(home, url))
            services = open_services(load_settings(home, url), pool_size=4)
            try:
                print(f"{backend}: loading {args.patients:,} patients", file=sys.stderr)
                facts = build(services, args.patients, seed=11)
                # Statistics, as autovacuum (PostgreSQL) or an operator's ANALYZE (SQLite) keep
                # them: without them a freshly bulk-loaded database plans searches blind.
                with services.engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE")
                    # The guard would contain a clinician reading hundreds of patients a
                    # minute: its thresholds at their bounds (harness only, as bench_guard).
                    raise_thresholds(conn)
                services.policy.settings.invalidate()
                print(f"### {backend}, {args.patients:,} patients "
                      f"(loaded in {facts['load_seconds']:.0f} s)\n")  # fmt: skip
                for line in measure(services, facts, args.rounds):
                    print(line)
                print()
            finally:
                services.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
