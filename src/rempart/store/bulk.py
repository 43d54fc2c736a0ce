"""Many-row inserts without per-row ORM-layer overhead.

SQLAlchemy's executemany path builds a parameter dict per row; at ~30 index rows per resource
that cost more than the database itself. Here rows are plain tuples: `executemany` on SQLite,
`COPY ... FROM STDIN` on PostgreSQL (its fastest load path), inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert `rows` (tuples in `columns` order) into `table`."""
    if not rows:
        return
    unknown = set(columns) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    cur = raw.cursor()  # type: ignore[union-attr]
    try:
        # Table and column names come from our own Table objects (checked above), never input.
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        cur.executemany(sql, rows)
    finally:
        cur.close()
