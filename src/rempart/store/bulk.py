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
# WAL pages a load's commits gather before SQLite copies them into the database file (default
# 1,000: 4 MiB). Each checkpoint syncs and copies every page written since the last one, so
# an index page that each batch rewrites was copied again at every checkpoint: an import of
# 104,788 resources wrote ~110 MB/s with 15% of the CPU time waiting on the disk. At 25,000
# pages (~100 MiB of WAL at most, during the load only) a page is copied once per checkpoint
# however many batches rewrote it. Given back when the load ends.
BULK_CHECKPOINT_PAGES = 25_000


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows` (tuples in `columns` order) into `table`."""
    if not rows:
        return
    unknown = set(columns) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    insert_rows(conn, table.name, columns, rows)


def insert_rows(
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
    """One connection for a whole bulk load (the caller begins a transaction per batch).

    Its commits do not wait for the disk (SQLite `synchronous = NORMAL` in WAL mode, with rarer
    checkpoints; PostgreSQL `synchronous_commit = off`): a crash can lose the last batches,
    never corrupt or half-write one, and the command's later ordinary commits (accounts,
    ANALYZE) flush the log up to them, so what a finished command reports is on disk. The
    settings are given back when the load ends.

    On PostgreSQL its statements are also never prepared: psycopg prepares a statement on its
    5th run, and PostgreSQL then keeps a generic plan made while the tables were nearly empty.
    The load's lookup of existing ids (`existing_ids`) kept a plan comparing every row of a
    type with every id of the batch: a seed of 10,000 patients slowed from ~6,000 to ~2,000
    resources/s as the table filled, its server process busy in that comparison.
    """
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if conn.dialect.name != "sqlite":
            threshold = raw.prepare_threshold  # type: ignore[union-attr]
            raw.prepare_threshold = None  # type: ignore[union-attr]
            conn.exec_driver_sql("SET synchronous_commit = off")
            conn.commit()
            try:
                yield conn
            finally:
                raw.prepare_threshold = threshold  # type: ignore[union-attr]
                conn.rollback()
                conn.exec_driver_sql("RESET synchronous_commit")
                conn.commit()
            return
        previous = raw.execute("PRAGMA cache_size").fetchone()[0]  # type: ignore[union-attr]
        synchronous = raw.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
        checkpoint = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]  # type: ignore[union-attr]
        raw.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")  # type: ignore[union-attr]
        raw.execute("PRAGMA synchronous = NORMAL")  # type: ignore[union-attr]
        raw.execute(f"PRAGMA wal_autocheckpoint = {BULK_CHECKPOINT_PAGES}")  # type: ignore[union-attr]
        try:
            yield conn
        finally:
            raw.execute(f"PRAGMA cache_size = {int(previous)}")  # type: ignore[union-attr]
            raw.execute(f"PRAGMA synchronous = {int(synchronous)}")  # type: ignore[union-attr]
            raw.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")  # type: ignore[union-attr]
