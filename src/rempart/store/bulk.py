"""Many-row inserts without per-row ORM-layer overhead.

SQLAlchemy's executemany path builds a parameter dict per row; at ~30 index rows per resource
that cost more than the database itself. Here rows are plain tuples: `executemany` on SQLite,
`COPY ... FROM STDIN` on PostgreSQL (its fastest load path), inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table

# SQLite page cache of a bulk load's connection (KiB). The default (2 MiB) makes every index
# insert re-read its B-tree path once the tables outgrow it; a bounded 512 MiB keeps the upper
# levels and the recent leaves in memory. Given back when the load ends.
BULK_CACHE_KIB = 512 * 1024


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows` (tuples in `columns` order) into `table`."""
    if not rows:
        return
    unknown = set(columns) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    _insert_rows(conn, table.name, columns, rows)


def _insert_rows(
    conn: Connection, name: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    if not rows:
        return
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = f"COPY {name} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    cur = raw.cursor()  # type: ignore[union-attr]
    try:
        # Table and column names are ours (Table objects, staging tables), never input.
        sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        cur.executemany(sql, rows)
    finally:
        cur.close()


def existing_ids(conn: Connection, table: Table, res_type: str, ids: Sequence[str]) -> set[str]:
    """Which of `ids` have a row of `res_type` in `table` (keyed by res_type, res_id).

    One query with the ids as a single parameter (an array on PostgreSQL, a JSON array read by
    `json_each` on SQLite), where an `IN (...)` of hundreds of bound values cost more to build
    and plan than the lookup itself.
    """
    if not ids:
        return set()
    if not {"res_type", "res_id"} <= set(table.columns.keys()):
        raise ValueError(f"{table.name} is not keyed by res_type, res_id")
    if conn.dialect.name == "postgresql":
        # Table name from our own Table objects, never input; values are bound.
        sql = f"SELECT res_id FROM {table.name} WHERE res_type = %s AND res_id = ANY(%s)"  # noqa: S608
        params: tuple[Any, ...] = (res_type, list(ids))
    else:
        sql = (
            f"SELECT res_id FROM {table.name} WHERE res_type = ? "  # noqa: S608
            "AND res_id IN (SELECT value FROM json_each(?))"
        )
        params = (res_type, json.dumps(list(ids)))
    return {row[0] for row in conn.exec_driver_sql(sql, params)}


@contextmanager
def bulk_connection(engine: Engine) -> Iterator[Connection]:
    """One connection for a whole bulk load (the caller begins a transaction per batch)."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            yield conn
            return
        raw = conn.connection.driver_connection
        previous = raw.execute("PRAGMA cache_size").fetchone()[0]  # type: ignore[union-attr]
        raw.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")  # type: ignore[union-attr]
        try:
            yield conn
        finally:
            raw.execute(f"PRAGMA cache_size = {int(previous)}")  # type: ignore[union-attr]


class IndexStage:
    """Blind-index rows of a bulk load, kept aside and merged into `search_index` at the end.

    Why: index digests are uniformly random, so every batch of index rows lands on every leaf
    of the index's B-tree. Once the index outgrows the page cache, each commit rewrites (WAL,
    then checkpoint) nearly the whole index: a seed slowed from ~1,000 to ~250 resources/s by
    1 GB, and would only get slower. Staged rows are appended to temporary tables instead (no
    B-tree to walk, no WAL), and `merge` inserts them in key order, one slice of the digest
    space per transaction, so each index page is written about once.

    The temporary tables belong to the load's connection and are transactional with it: the
    rows staged are exactly those of the committed batches. `merge` must run before the
    connection is given back (on success and on failure alike): until then, the records of the
    load are stored but not yet findable by search.
    """

    PARTS = 16  # slices of the digest space: one merge transaction each

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        postgresql = conn.dialect.name == "postgresql"
        schema = "pg_temp" if postgresql else "temp"  # never a table of the database itself
        self._tables = [f"{schema}.rempart_stage_index_{k}" for k in range(self.PARTS)]
        binary = "BYTEA" if postgresql else "BLOB"
        with conn.begin():
            for name in self._tables:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
                conn.exec_driver_sql(
                    f"CREATE TEMPORARY TABLE {name.split('.')[1]} "
                    f"(res_type TEXT, digest {binary}, res_id TEXT)"
                )

    def add(self, rows: Sequence[tuple[str, bytes, str]]) -> None:
        """Stage (res_type, digest, res_id) rows, inside the caller's transaction."""
        parts: list[list[tuple[str, bytes, str]]] = [[] for _ in range(self.PARTS)]
        shift = 8 - (self.PARTS.bit_length() - 1)
        for row in rows:
            parts[row[1][0] >> shift].append(row)
        for name, part in zip(self._tables, parts, strict=True):
            _insert_rows(self._conn, name, ("res_type", "digest", "res_id"), part)

    def merge(self, target: Table) -> None:
        """Move every staged row into `target` (the search index), in key order, one slice of
        the digest space per transaction (SQLite's WAL holds a whole transaction until it
        commits, so a single one would grow it to the size of the index).

        Known cost on PostgreSQL: its B-tree splits pages in half when keys arrive in the middle
        of the index (each type's run lands before the next type's rows), so the primary key
        index comes out ~35% larger than with random inserts (29.4 against 21.4 MB at 300
        patients); rebuilding it after the merge would fix that (docs/benchmarks.md).
        """
        # Names are ours (above and our Table objects), never input.
        into = f"INSERT INTO {target.name} (res_type, digest, res_id) "
        order = " ORDER BY res_type, digest, res_id"
        for name in self._tables:
            with self._conn.begin():
                select = f"SELECT res_type, digest, res_id FROM {name}"  # noqa: S608
                self._conn.exec_driver_sql(into + select + order)
                self._conn.exec_driver_sql(f"DROP TABLE {name}")
