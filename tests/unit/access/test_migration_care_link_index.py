"""Migration 0006 re-keys `care_link`'s actor index (actor, kind, until, patient), both ways,
keeping every link; and a scope's search reads it from the index alone (SQLite's plan)."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, select

from rempart.access.linksql import Shape, scope_template
from rempart.access.tables import care_link
from rempart.store.db import make_engine
from tests.migrations import migrate_to

LINKS = [
    {
        "source_type": "Encounter",
        "source_id": f"e{n}",
        "kind": kind,
        "actor": actor,
        "patient": f"Patient/p{n}",
        "until": None if n % 3 else 1_700_000_000_000_000 + n,
    }
    for n, (kind, actor) in enumerate(
        [("participant", "Practitioner/a"), ("stay", "Organization/u"), ("visit", "Organization/u")]
        * 7
    )
]


def index_columns(conn: Connection) -> list[str]:
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE c.relname = 'ix_care_link_actor' ORDER BY array_position(i.indkey, a.attnum)"
        ).fetchall()
        return [r[0] for r in rows]
    info = conn.exec_driver_sql("PRAGMA index_info(ix_care_link_actor)").fetchall()
    return [r[2] for r in sorted(info)]


def stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(care_link)))


def migrate(engine: Engine, target: str, *, down: bool) -> list[str]:
    migrate_to(engine, target, down=down)
    with engine.connect() as conn:
        return index_columns(conn)


def test_the_actor_index_is_rekeyed_both_ways_with_its_links(
    settings: object, database_url: str
) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(care_link.insert(), LINKS)
        before = stored(engine)
        assert len(before) == len(LINKS)
        assert migrate(engine, "0005_index_digest_first", down=True) == ["actor", "patient", "kind"]
        assert stored(engine) == before
        assert migrate(engine, "heads", down=False) == ["actor", "kind", "until", "patient"]
        assert stored(engine) == before
    finally:
        engine.dispose()


def test_a_scope_reads_an_actors_live_links_from_the_index_alone(
    settings: object, database_url: str
) -> None:
    """SQLite's plan for a clinician's scope (a practitioner's personal links, a unit's
    stays): each branch ranges over (actor, kind) in the index and never reads the table."""
    engine = make_engine(database_url, pool_size=1)
    try:
        if engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL picks its plan from statistics: measured, not asserted")
        statement = scope_template(Shape(("participant", "team", "gp"), ("stay",), True))
        compiled = statement.compile(dialect=engine.dialect)
        params = {
            "scope_account": "acct",
            "scope_account_ref": "Account/acct",
            "scope_practitioner": "Practitioner/a",
            "scope_since": 0,
            "scope_now": 0,
        }
        values = {**compiled.params, **params}
        args = tuple(values[name] for name in compiled.positiontup or ())
        with engine.connect() as conn:
            conn.execute(care_link.insert(), LINKS)
            conn.commit()
            conn.exec_driver_sql("ANALYZE")
            plan = [
                r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(args))
            ]
        on_links = [step for step in plan if "care_link" in step]
        assert len(on_links) >= 3, plan
        assert all("COVERING INDEX ix_care_link_actor (" in s for s in on_links), plan
        assert all("kind=?" in s for s in on_links), plan
    finally:
        engine.dispose()
