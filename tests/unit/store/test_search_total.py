"""A search's `total`, on both databases: counted when the page is full, taken from the page
when the page is its last (no count statement then), and the same either way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.fhir import parse_search
from rempart.store.prepared import Prepared
from rempart.store.search import search
from rempart.wiring import Services
from tests.unit.access.support import encounter, patient, practitioner

PAGE = 4


@contextmanager
def counts(services: Services) -> Iterator[list[str]]:
    """The count statements the store runs inside: through SQLAlchemy (on any of its engines)
    or as `Prepared` statements on the driver's cursor (`store/searchsql.py`)."""
    seen: list[str] = []

    def spy(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "count(" in statement.lower():
            seen.append(statement)

    real = Prepared.first

    def first(self: Prepared, conn: Any, params: dict[str, Any]) -> Any:
        spy(None, None, str(self.statement))
        return real(self, conn, params)

    engines = {services.store.engine, services.store.reader}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", spy)
    Prepared.first = first  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Prepared.first = real  # type: ignore[method-assign]
        for engine in engines:
            event.remove(engine, "before_cursor_execute", spy)


def test_total_is_exact_whether_counted_or_read_off_the_last_page(services: Services) -> None:
    me = practitioner(services)
    mine = [patient(services, family="Totalis") for _ in range(10)]
    for pid in mine:
        encounter(services, pid, attender=me)
    patient(services, family="Totalis")  # not in my care: never counted
    who = Principal("acct-total", "dr", Role.CLINICIAN, me, None)

    def page(offset: int, count: int = PAGE) -> tuple[list[str], int, int]:
        query = parse_search(
            "Patient", [("family", "Totalis"), ("_count", str(count)), ("_offset", str(offset))]
        )
        with counts(services) as seen:
            found, total = search(services.store, decide(who), query)
        return [s.res_id for s in found], total, len(seen)

    pages = {offset: page(offset) for offset in (0, 4, 8, 12)}
    # Full pages: more may follow, so the total is counted.
    assert [pages[o][1:] for o in (0, 4)] == [(10, 1), (10, 1)]
    # The last page (2 of 4) ends the results: the total needs no count statement.
    assert pages[8][1:] == (10, 0)
    assert len(pages[8][0]) == 2
    # Past the end nothing shows where the results stop: counted.
    assert pages[12] == ([], 10, 1)
    assert sorted(pages[0][0] + pages[4][0] + pages[8][0]) == sorted(mine)
    # One page that holds everything; `_count=0` asks for the total alone.
    assert page(0, 50)[1:] == (10, 0)
    assert page(0, 0) == ([], 10, 1)


def test_searches_keep_their_prepared_statements_on_postgresql(services: Services) -> None:
    """A search runs on the reader pool, in autocommit: a connection given back inside a
    transaction is rolled back, and psycopg then forgets its prepared statements, so each
    search would be parsed and planned anew."""
    if services.engine.dialect.name != "postgresql":
        assert services.store.reader is services.store.engine  # SQLite: one pool
        return
    me = practitioner(services)
    pid = patient(services, family="Prepara")
    encounter(services, pid, attender=me)
    who = Principal("acct-prepared", "dr", Role.CLINICIAN, me, None)
    query = parse_search("Encounter", [("patient", f"Patient/{pid}")])
    used: set[Any] = set()

    def spy(dbapi: Any, *_: Any) -> None:
        used.add(dbapi)

    event.listen(services.store.reader.pool, "checkout", spy)
    try:
        for _ in range(8):  # psycopg prepares a statement at its sixth run on a connection
            assert len(search(services.store, decide(who), query)[0]) == 1
    finally:
        event.remove(services.store.reader.pool, "checkout", spy)
    assert used, "the search ran outside the reader pool"
    prepared = []
    for dbapi in used:
        with dbapi.cursor() as cur:
            cur.execute("SELECT statement FROM pg_prepared_statements")
            prepared += [row[0] for row in cur.fetchall()]
    assert any("FROM resource JOIN resource_version" in s for s in prepared), prepared
