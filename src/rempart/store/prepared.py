"""Hot-path SELECTs executed on the driver's cursor, compiled once per dialect.

A protected read runs two small indexed SELECTs (the session; the current version, which
carries the care-link check as a column, `access.scope.ReadLink`). Through SQLAlchemy's
`Connection.execute` each costs about 35 µs of Python on top of the database's own ~10 µs
(measured on this project's machine), a tenth of the whole read. Here the
statement is compiled once, its SQL and parameter order kept, and run on the DB-API connection
that the SQLAlchemy `Connection` already holds. A search page's statements run the same way
(`store/searchsql.py`).

Result columns get the same conversions SQLAlchemy would apply (a SQLite 0/1 becomes a bool).
A driver error on the fast path runs the statement again through SQLAlchemy, which raises its
own translated exception and invalidates a lost connection exactly as everywhere else (a
SELECT is safe to repeat): a dead database still answers 503 and the pool still recovers.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, NamedTuple

from sqlalchemy import CompoundSelect, Connection, Select


class _Compiled(NamedTuple):
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order ("qmark"), or None (named)
    defaults: dict[str, Any]  # values bound in the statement itself (LIMIT 1, literals)
    row: Any  # a named-tuple class of the selected columns
    convert: tuple[Any, ...] | None  # per column, the type's conversion (or None); None: none


class Prepared:
    """One SELECT, ready to run on any connection of any dialect."""

    __slots__ = ("_by_dialect", "statement")

    def __init__(self, statement: Select[Any] | CompoundSelect[Any]) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled | None] = {}

    def first(self, conn: Connection, params: dict[str, Any]) -> Any | None:
        """The first row (attribute access by column name), or None."""
        compiled = self._compiled(conn)
        if compiled is not None and _repeatable(conn):
            try:
                raw = _fetch(conn, compiled, params, every=False)
            except conn.dialect.loaded_dbapi.Error:
                pass  # SQLAlchemy runs it again below and raises its own, translated error
            else:
                return None if raw is None else _row(compiled, raw)
        return conn.execute(self.statement, params).first()

    def all(self, conn: Connection, params: dict[str, Any]) -> list[Any]:
        """Every row (attribute access by column name)."""
        compiled = self._compiled(conn)
        if compiled is not None and _repeatable(conn):
            try:
                raw = _fetch(conn, compiled, params, every=True)
            except conn.dialect.loaded_dbapi.Error:
                pass  # as in `first`
            else:
                return [_row(compiled, r) for r in raw]
        return list(conn.execute(self.statement, params).all())

    def scalar(self, conn: Connection, params: dict[str, Any]) -> Any | None:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def _compiled(self, conn: Connection) -> _Compiled | None:
        name = conn.dialect.name
        try:
            return self._by_dialect[name]
        except KeyError:
            compiled = _compile(self.statement, conn.dialect)
            self._by_dialect[name] = compiled
            return compiled


def _compile(statement: Select[Any] | CompoundSelect[Any], dialect: Any) -> _Compiled | None:
    done = statement.compile(dialect=dialect)
    if done.literal_execute_params or done.post_compile_params:
        return None  # rendered per execution: nothing to gain
    names = [c.key or f"c{i}" for i, c in enumerate(statement.selected_columns)]
    row = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    positional = tuple(done.positiontup or ()) if done.positional else None
    defaults = {name: bp.effective_value for bp, name in done.bind_names.items() if not bp.required}
    # The conversions SQLAlchemy would apply (e.g. SQLite's 0/1 to a bool), applied here too.
    convert = tuple(
        c.type._cached_result_processor(dialect, None) for c in statement.selected_columns
    )
    return _Compiled(str(done), positional, defaults, row, convert if any(convert) else None)


def _repeatable(conn: Connection) -> bool:
    """A failed statement can be run again on this connection: on PostgreSQL only outside a
    transaction (autocommit, as the hot path's reads are), since an error aborts the
    transaction and the second run would only report that; SQLite aborts nothing."""
    return conn.dialect.name == "sqlite" or bool(
        getattr(conn.connection.driver_connection, "autocommit", False)
    )


def _row(compiled: _Compiled, raw: Any) -> Any:
    if compiled.convert is None:
        return compiled.row._make(raw)
    return compiled.row._make(
        v if f is None or v is None else f(v) for f, v in zip(compiled.convert, raw, strict=True)
    )


def _fetch(conn: Connection, compiled: _Compiled, params: dict[str, Any], *, every: bool) -> Any:
    values = {**compiled.defaults, **params}
    args: Any = values if compiled.positional is None else [values[n] for n in compiled.positional]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(compiled.sql, args)
        return cursor.fetchall() if every else cursor.fetchone()
    finally:
        cursor.close()
