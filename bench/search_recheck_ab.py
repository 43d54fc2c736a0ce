"""A/B in one process: a search page with and without the per-patient re-check
(`store/search.py`, `_explain`), on a seeded SQLite home: its clinicians, pages of 20 of
Encounter, Patient and Observation; CPU per search, four interleaved rounds of 600.

    .venv/bin/python bench/search_recheck_ab.py HOME    # e.g. a `bench_http.py --home DIR`
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.config import load_settings
from rempart.fhir import parse_search
from rempart.identity.tables import account
from rempart.store import search as store_search
from rempart.wiring import open_services

QUERIES = [(t, [("_count", "20")]) for t in ("Encounter", "Patient", "Observation")]


def main() -> None:
    svc = open_services(load_settings(Path(sys.argv[1]), None), pool_size=2)
    with svc.engine.connect() as conn:
        rows = conn.execute(
            select(account.c.id, account.c.username, account.c.practitioner).where(
                account.c.role == "clinician"
            )
        ).all()

    def run(n: int) -> float:
        started = time.process_time()
        for i in range(n):
            r = rows[i % len(rows)]
            who = Principal(r.id, r.username, Role.CLINICIAN, r.practitioner, None)
            res_type, params = QUERIES[i % len(QUERIES)]
            store_search.search(svc.store, decide(who), parse_search(res_type, params))
        return (time.process_time() - started) / n * 1e6

    real = store_search._explain

    def skip(*_: Any) -> None:
        return None

    results: dict[str, list[float]] = {"with re-check": [], "without": []}
    run(200)  # warm caches and prepared statements
    for _ in range(4):
        store_search._explain = real
        results["with re-check"].append(run(600))
        store_search._explain = skip  # type: ignore[assignment]
        results["without"].append(run(600))
    store_search._explain = real
    for name, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name}: {rounds} µs CPU per search; median {statistics.median(values):.0f}")
    svc.close()


if __name__ == "__main__":
    main()
