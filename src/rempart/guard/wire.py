"""The ledger's own database connection: the batch insert and the poll of `guard_touch` as
plain DBAPI calls on one connection the ledger keeps (used under its I/O lock only).

Why not SQLAlchemy Core here: a pool checkout, a compiled-statement lookup and a result
object cost about as much as the statement itself on SQLite, and the ledger runs these twice
per batch; both are fixed, simple statements on the two backends we support. Any database
error becomes `GuardStateUnavailable` (a `SQLAlchemyError`: requests fail closed, 503) and
the connection is dropped, to be opened again by the next exchange.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from rempart.store.writegate import gate_for

COLUMNS = "account_id, session_id, kind, patient, at"
INSERT_ONE = f"INSERT INTO guard_touch ({COLUMNS}) VALUES (?, ?, ?, ?, ?)"  # noqa: S608
INSERT_UNNEST = (
    f"INSERT INTO guard_touch ({COLUMNS}) SELECT * FROM unnest("  # noqa: S608
    "%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::bigint[]) RETURNING id"
)


class GuardStateUnavailable(SQLAlchemyError):
    """The guard's state could not be written or brought up to date: fail closed."""


class Wire:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._mark = "?" if engine.dialect.name == "sqlite" else "%s"
        self._conn: Any = None
        self.gate = gate_for(engine)  # the SQLite writers' queue across processes

    def _cursor(self) -> Any:
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        return self._conn.cursor()

    def insert(
        self,
        rows: Sequence[tuple[str, str, str, str | None, int]],
        before_commit: Callable[[list[int]], None],
    ) -> list[int]:
        """Inserts the rows, hands their ids to `before_commit` (no other connection sees
        them yet), commits; their ids, in order."""
        try:
            with self.gate.held():
                return self._insert(rows, before_commit)
        except Exception as exc:
            self._drop()
            raise GuardStateUnavailable(f"the guard's touches could not be written: {exc}") from exc

    def _insert(
        self,
        rows: Sequence[tuple[str, str, str, str | None, int]],
        before_commit: Callable[[list[int]], None],
    ) -> list[int]:
        cur = self._cursor()
        if self._mark == "?":
            # SQLite: executemany is twice as cheap as one long INSERT ... RETURNING, and
            # the ids follow one another (rowid = max + 1, under the one writer lock).
            cur.executemany(INSERT_ONE, rows)
            last = int(cur.execute("SELECT last_insert_rowid()").fetchone()[0])
            ids = list(range(last - len(rows) + 1, last + 1))
        else:
            # PostgreSQL: one statement whatever the batch size (prepared once).
            cur.execute(INSERT_UNNEST, [list(column) for column in zip(*rows, strict=True)])
            ids = sorted(int(r[0]) for r in cur.fetchall())
        cur.close()
        before_commit(ids)
        self._conn.commit()
        return ids

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read; `%s` in `sql` stands for the backend's parameter mark."""
        try:
            cur = self._cursor()
            cur.execute(sql.replace("%s", self._mark), list(params))
            rows = [tuple(r) for r in cur.fetchall()]
            cur.close()
            self._conn.commit()  # ends PostgreSQL's implicit transaction
            return rows
        except Exception as exc:
            self._drop()
            raise GuardStateUnavailable(f"the guard's counts could not be read: {exc}") from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.invalidate()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
