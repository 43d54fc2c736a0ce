"""The seed's deferred blind-index merge alone (`store/indexstage.py`), on synthetic rows.

A seed of 100,000 patients spends minutes merging ~55 million index rows at its end, on one
core; this times that step without the hours of seeding around it. N resources of 24 or 32
random digests each (the padded counts), over a spread of types like the seed's, are staged
packed in batches, then merged into a `search_index` keyed in the order asked, in a fresh
SQLite file or scratch PostgreSQL database. Statements slower than half a second are listed
with their time (on PostgreSQL: the heap insert and the key's build).

    .venv/bin/python bench/bench_merge.py                                # 200,000, both DBs
    .venv/bin/python bench/bench_merge.py --resources 400000 --keys dti tdi --backends postgresql

Keys: `dti` = (digest, res_type, res_id), the product's since migration 0005; `tdi` = the
earlier (res_type, digest, res_id).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_ingest import code_under_test, machine_facts, pg_available, scratch_database
from sqlalchemy import (
    Column,
    Connection,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
)

from rempart.store import bulk, indexstage, packing

COLUMN = {"t": "res_type", "d": "digest", "i": "res_id"}
TYPES = {  # rough shares of the seed's resources
    "Observation": 40,
    "Encounter": 14,
    "MedicationRequest": 10,
    "Condition": 8,
    "DocumentReference": 6,
    "Coverage": 5,
    "Patient": 5,
    "Procedure": 4,
    "AllergyIntolerance": 3,
}
BATCH = 5_000


def index_table(key: str) -> Table:
    return Table(
        "search_index",
        MetaData(),
        Column("res_type", String(40), nullable=False),
        Column("digest", LargeBinary(16), nullable=False),
        Column("res_id", String(64), nullable=False),
        PrimaryKeyConstraint(*(COLUMN[c] for c in key), name="pk_search_index"),
        sqlite_with_rowid=False,
    )


def packed_rows(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    names = [name for name, share in TYPES.items() for _ in range(share)]
    rows = []
    for _ in range(count):
        digests = sorted(rng.randbytes(16) for _ in range(rng.choice((24, 32))))
        rows.append(packing.pack_index(rng.choice(names), f"{rng.getrandbits(128):032x}", digests))
    return rows


@contextmanager
def slow_statements(found: list[tuple[str, float]]) -> Iterator[None]:
    real = Connection.exec_driver_sql

    def timed(self: Connection, sql: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = real(self, sql, *args, **kwargs)
        took = time.perf_counter() - started
        if took > 0.5:
            found.append((" ".join(sql.split()[:3]), took))
        return result

    Connection.exec_driver_sql = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        Connection.exec_driver_sql = real  # type: ignore[method-assign]


def run(backend: str, key: str, resources: int) -> str:
    with tempfile.TemporaryDirectory() as tmp, scratch_database(backend, Path(tmp)) as url:
        engine = create_engine(url or f"sqlite:///{tmp}/merge.sqlite3")
        if backend == "sqlite":
            event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA journal_mode=WAL"))
        table = index_table(key)
        table.metadata.create_all(engine)
        rng = random.Random(1)
        slow: list[tuple[str, float]] = []
        with bulk.bulk_connection(engine) as conn:
            with conn.begin():  # what the directory puts in the index before the load
                rows = packing.unpack_index(packed_rows(rng, 3_000))
                bulk.bulk_insert(conn, table, ("res_type", "digest", "res_id"), rows)
            stage = indexstage.IndexStage(conn, table, expected=resources * 27)
            started = time.perf_counter()
            for done in range(0, resources, BATCH):
                with conn.begin():
                    stage.add(packed_rows(rng, min(BATCH, resources - done)))
            staged = time.perf_counter() - started
            with slow_statements(slow):
                started = time.perf_counter()
                stage.merge()
                merged = time.perf_counter() - started
        engine.dispose()
    return (
        f"| {backend} | {key} | {resources:,} | {staged:.1f} s (with generation) | "
        f"**{merged:.1f} s** | {summary(slow)} |"
    )


def summary(slow: list[tuple[str, float]]) -> str:
    """Per statement kind: its total time, and how many ran when more than one did."""
    totals: dict[str, list[float]] = {}
    for what, took in slow:
        totals.setdefault(what, []).append(took)
    return (
        "; ".join(
            f"{what} {sum(t):.1f} s" + (f" ({len(t)} statements)" if len(t) > 1 else "")
            for what, t in totals.items()
        )
        or "-"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resources", type=int, default=200_000)
    ap.add_argument("--backends", nargs="*", default=["sqlite", "postgresql"])
    ap.add_argument("--keys", nargs="*", default=["dti"], choices=["dti", "tdi"])
    args = ap.parse_args()
    print(f"machine: {machine_facts()}\ncode: {code_under_test()}\n")
    print("| backend | key | resources | staging | merge | statements over 0.5 s |")
    print("|---|---|---:|---:|---:|---|")
    for backend in args.backends:
        if backend == "postgresql" and not pg_available():
            print("| postgresql | skipped: no server at REMPART_BENCH_PG / 127.0.0.1:5432 |")
            continue
        for key in args.keys:
            print(run(backend, key, args.resources), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
