"""The hot-path SELECTs run on the driver's cursor give what SQLAlchemy gives, and a driver
error still surfaces as SQLAlchemy's own exception (so a lost database answers 503)."""

from __future__ import annotations

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, bindparam, literal, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from rempart.store.db import autocommit
from rempart.store.prepared import Prepared, _fetch, _repeatable
from rempart.wiring import Services

scratch = MetaData()
item = Table(
    "prepared_item",
    scratch,
    Column("id", String, primary_key=True),
    Column("n", Integer),
    Column("flag", Boolean),
)


@pytest.fixture
def table(services: Services) -> Services:
    scratch.create_all(services.engine)
    with services.engine.begin() as conn:
        conn.execute(
            item.insert(),
            [{"id": "a", "n": 1, "flag": True}, {"id": "b", "n": None, "flag": False}],
        )
    return services


def test_rows_equal_sqlalchemy_rows(table: Services) -> None:
    statement = select(item.c.id, item.c.n, item.c.flag, literal("x").label("tag")).where(
        item.c.id == bindparam("wanted")
    )
    fast = Prepared(statement.limit(1))
    with table.engine.connect() as conn:
        for wanted in ("a", "b"):
            expected = conn.execute(statement, {"wanted": wanted}).first()
            got = fast.first(conn, {"wanted": wanted})
            assert got is not None
            assert expected is not None
            assert tuple(got) == tuple(expected)
            assert (got.id, got.n, got.tag) == (expected.id, expected.n, "x")
            assert type(got.flag) is bool  # SQLite's 0/1 converted as SQLAlchemy does
        assert fast.first(conn, {"wanted": "missing"}) is None
        assert fast.scalar(conn, {"wanted": "a"}) == "a"
    every = Prepared(statement.where(item.c.id >= bindparam("low")).order_by(item.c.id))
    for engine in (autocommit(table.engine), table.engine):
        with engine.connect() as conn:
            expected = conn.execute(every.statement, {"wanted": "b", "low": "a"}).all()
            got = every.all(conn, {"wanted": "b", "low": "a"})
            assert [tuple(r) for r in got] == [tuple(r) for r in expected] != []
            assert [type(r.flag) for r in got] == [bool]
            assert every.all(conn, {"wanted": "a", "low": "b"}) == []


def test_the_fast_path_is_taken_on_the_hot_path_connections(table: Services) -> None:
    fast = Prepared(select(item.c.n).where(item.c.id == bindparam("wanted")))
    with autocommit(table.engine).connect() as conn:
        compiled = fast._compiled(conn)
        assert compiled is not None
        assert _repeatable(conn)
        # What the fast path itself fetches, without SQLAlchemy's execute.
        assert _fetch(conn, compiled, {"wanted": "a"}, every=False) == (1,)
        assert fast.scalar(conn, {"wanted": "a"}) == 1


def test_inside_a_postgresql_transaction_sqlalchemy_runs_it(table: Services) -> None:
    with table.engine.begin() as conn:
        assert _repeatable(conn) is (table.engine.dialect.name == "sqlite")


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(table: Services) -> None:
    gone = Table("prepared_gone", MetaData(), Column("id", String))
    fast = Prepared(select(gone.c.id).where(gone.c.id == bindparam("wanted")))
    for engine in (autocommit(table.engine), table.engine):
        with engine.connect() as conn, pytest.raises((OperationalError, ProgrammingError)):
            fast.first(conn, {"wanted": "a"})
