"""Migration 0005 re-keys `search_index` (digest first) keeping every row, both ways."""

from __future__ import annotations

import os

from sqlalchemy import Connection, Engine, select

from rempart.store.db import make_engine
from rempart.store.tables import search_index
from tests.migrations import migrate_to

ROWS = [("Patient", os.urandom(16), f"p{n}") for n in range(40)] + [
    ("Observation", bytes(16), f"o{n}") for n in range(5)
]


def key_columns(conn: Connection) -> list[str]:
    if conn.dialect.name == "postgresql":
        definition = conn.exec_driver_sql(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'pk_search_index' AND contype = 'p'"
        ).scalar_one()
        return [c.strip() for c in definition.removeprefix("PRIMARY KEY (")[:-1].split(",")]
    info = conn.exec_driver_sql("PRAGMA table_xinfo(search_index)").fetchall()
    return [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]


def stored(engine: Engine) -> set[tuple[str, bytes, str]]:
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(select(search_index))}  # type: ignore[misc]


def migrate(engine: Engine, target: str, *, down: bool) -> list[str]:
    migrate_to(engine, target, down=down)
    with engine.connect() as conn:
        return key_columns(conn)


def test_the_index_is_rekeyed_both_ways_with_its_rows(settings: object, database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(
                search_index.insert(),
                [{"res_type": t, "digest": d, "res_id": i} for t, d, i in ROWS],
            )
        assert migrate(engine, "0004_guard", down=True) == ["res_type", "digest", "res_id"]
        assert stored(engine) == set(ROWS)
        assert migrate(engine, "heads", down=False) == ["digest", "res_type", "res_id"]
        assert stored(engine) == set(ROWS)
    finally:
        engine.dispose()
