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

from rempart.store.slicesort import SCHEMA, ScratchStage, merge_sorted

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
    """One connection for a whole bulk load (the caller begins a transaction per batch).

    Its commits do not wait for the disk (SQLite `synchronous = NORMAL` in WAL mode, PostgreSQL
    `synchronous_commit = off`): a crash can lose the last batches, never corrupt or half-write
    one, and the command's later ordinary commits (accounts, ANALYZE) flush the log up to them,
    so what a finished command reports is on disk. Both are given back when the load ends.

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
        raw.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")  # type: ignore[union-attr]
        raw.execute("PRAGMA synchronous = NORMAL")  # type: ignore[union-attr]
        try:
            yield conn
        finally:
            raw.execute(f"PRAGMA cache_size = {int(previous)}")  # type: ignore[union-attr]
            raw.execute(f"PRAGMA synchronous = {int(synchronous)}")  # type: ignore[union-attr]


# Blind-index rows travel and are staged packed: one row per resource, its 16-byte digests
# concatenated in PARTS slices of the digest space (by the digest's first 4 bits). The database
# unpacks them in SQL (`_UNPACK`), so a resource of ~27 index rows costs one bound row instead of
# 27 (2.6 us each on SQLite, the writing process's largest cost before).
PARTS = 16
DIGEST = 16
_SHIFT = 8 - (PARTS.bit_length() - 1)
PACKED_COLUMNS = ("res_type", "res_id", *(f"d{k}" for k in range(PARTS)))


def pack_index(res_type: str, res_id: str, digests: Sequence[bytes]) -> tuple[Any, ...]:
    """(res_type, res_id, part 0, ..., part 15) of one resource: each part the concatenation of
    its digests in that slice, in the order given, or None. `digests` must be sorted."""
    parts: list[bytes | None] = [None] * PARTS
    start, count = 0, len(digests)
    while start < count:
        k = digests[start][0] >> _SHIFT
        end = start + 1
        while end < count and digests[end][0] >> _SHIFT == k:
            end += 1
        parts[k] = b"".join(digests[start:end])
        start = end
    return (res_type, res_id, *parts)


def widest_part(packed: Sequence[tuple[Any, ...]]) -> int:
    """The most digests any one part of these packed rows holds (sizes the unpacking)."""
    return max((len(p) for row in packed for p in row[2:] if p), default=0) // DIGEST


def unpack_index(packed: Sequence[tuple[Any, ...]]) -> list[tuple[str, bytes, str]]:
    """The (res_type, digest, res_id) rows of packed rows, in no particular order."""
    rows: list[tuple[str, bytes, str]] = []
    for res_type, res_id, *parts in packed:
        for part in parts:
            if part:
                rows.extend(
                    (res_type, part[i : i + DIGEST], res_id) for i in range(0, len(part), DIGEST)
                )
    return rows


class IndexStage:
    """Blind-index rows of a bulk load, staged packed and unpacked into `search_index` in key
    order, by the database.

    Deferred (the seed): rows are merged once, at the end of the load. Why: index digests are
    uniformly random, so every batch of index rows lands on every leaf of the index's B-tree.
    Once the index outgrows the page cache, each commit rewrites (WAL, then checkpoint) nearly
    the whole index: a seed slowed from ~1,000 to ~250 resources/s by 1 GB, and would only get
    slower. Staged rows are appended to a temporary table instead (no B-tree to walk, no WAL),
    and `merge` inserts them in key order, one slice of the digest space per transaction, so
    each index page is written about once.

    Not deferred (`import`, whose conditional references search what the earlier phases
    stored): `add` unpacks each batch into the target at once, in the caller's transaction.

    The stage's tables belong to the load's connection and are transactional with it: the
    rows staged are exactly those of the committed batches. They are temporary tables, except
    for a deferred stage on SQLite: a scratch file attached to the connection, so that the
    merge's sorting threads can read it (`slicesort`). A deferred `merge` must run before the
    connection is given back (on success and on failure alike): until then, the records of
    the load are stored but not yet findable by search, and the scratch file is attached.
    """

    def __init__(self, conn: Connection, target: Table, *, deferred: bool = True) -> None:
        self._conn = conn
        self._target = target
        self._deferred = deferred
        self._widest = 0
        self._staged = 0  # resources whose index rows are staged
        self._postgresql = conn.dialect.name == "postgresql"
        # SQLite, deferred: the stage in a file of its own, which the merge's sorting threads
        # can read (`slicesort`). An ATTACH needs the connection outside any transaction.
        self._scratch: ScratchStage | None = None
        if deferred and not self._postgresql and not conn.in_transaction():
            self._scratch = ScratchStage(conn)
        schema = "pg_temp" if self._postgresql else "temp"  # never a table of the database
        schema = SCHEMA if self._scratch is not None else schema
        self._stage = f"{schema}.rempart_stage_index"
        self._nums = f"{schema}.rempart_stage_nums"
        binary = "BYTEA" if self._postgresql else "BLOB"
        parts = ", ".join(f"d{k} {binary}" for k in range(PARTS))
        kind = "" if self._scratch is not None else "TEMPORARY "
        try:
            with _transaction(conn):
                for name in (self._stage, self._nums):
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
                conn.exec_driver_sql(
                    f"CREATE {kind}TABLE {self._stage} (res_type TEXT, res_id TEXT, {parts})"
                )
                if not self._postgresql:
                    conn.exec_driver_sql(f"CREATE {kind}TABLE {self._nums} (n INTEGER PRIMARY KEY)")
        except BaseException:
            if self._scratch is not None:
                self._scratch.close()
            raise

    def add(self, packed: Sequence[tuple[Any, ...]], widest: int | None = None) -> None:
        """Stage packed rows (`pack_index`), inside the caller's transaction. `widest` is
        `widest_part(packed)` when the caller knows it already."""
        if not packed:
            return
        self._widest = max(self._widest, widest_part(packed) if widest is None else widest)
        self._staged += len(packed)
        _insert_rows(self._conn, self._stage, PACKED_COLUMNS, packed)
        if not self._deferred:
            self._unpack_all()
            self._conn.exec_driver_sql(f"DELETE FROM {self._stage}")  # noqa: S608

    def merge(self) -> None:
        """Move every staged row into the target (the search index), in key order, one slice of
        the digest space per transaction (SQLite's WAL holds a whole transaction until it
        commits, so a single one would grow it to the size of the index). Then drop the stage.

        The index is keyed digest first, so each slice is a range of its key. On PostgreSQL,
        into a target that holds few rows (a fresh seed), the rows go in at once and the key is
        built after them (`_build_fresh`): one sorted bulk build is cheaper than maintaining
        the key row by row. On SQLite the slices are sorted by parallel threads
        (`slicesort`).
        """
        try:
            if self._deferred:
                self._merge_deferred()
        finally:
            if self._scratch is not None:
                self._scratch.close()
            else:
                with _transaction(self._conn):
                    for name in (self._stage, self._nums):
                        self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")

    def _merge_deferred(self) -> None:
        if self._postgresql and self._build_fresh():
            return
        if self._scratch is not None:
            with _transaction(self._conn):
                self._number(self._widest)
            merge_sorted(self._conn, self._scratch, self._select, self._target.name, PARTS)
            return
        for k in range(PARTS):
            with _transaction(self._conn):
                self._prepare_unpack()
                self._unpack(k)

    def _build_fresh(self) -> bool:
        """PostgreSQL, into a target holding fewer rows than the stage holds resources (a
        seed's fresh database, which holds only its directory; each resource stages ~27 rows):
        all rows in one transaction, the primary key dropped first and built once they are in,
        as one sorted bulk build. Returns False, having changed nothing, when the target holds
        more (a rebuild would then cost more than the inserts).

        Why: with the key (res_type, digest, res_id), inserted slice by slice, each slice's keys
        landed between the previous slices' and the B-tree split pages in half: at 10,000
        patients the merge took 28 s and left a 1.36 GB index; built once, ~14 s and 0.99 GB.
        Digest first, the build sorts raw bytes before collated text: for 400,000 resources
        it took 13.3 s where it took 22.6 s (`bench/bench_merge.py`). The ALTER TABLE's
        exclusive lock makes concurrent searches wait for the build (a seed's database is not
        in service yet); a failure rolls the whole transaction back, key included.
        """
        target = self._target.name
        pk = self._target.primary_key
        columns = ", ".join(c.name for c in pk.columns)
        with _transaction(self._conn):
            # Taken before looking, so no row can arrive between the look and the build.
            self._conn.exec_driver_sql(f"LOCK TABLE {target} IN ACCESS EXCLUSIVE MODE")
            held = self._conn.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT 1 FROM {target} LIMIT {self._staged + 1}) AS t"  # noqa: S608
            ).scalar_one()
            if held > self._staged:
                return False
            self._prepare_unpack()
            self._conn.exec_driver_sql(f"ALTER TABLE {target} DROP CONSTRAINT {pk.name}")
            # Each resource's parts joined back into one string of digests (no order needed:
            # the key is built after), then cut. 20% cheaper than unnesting the parts.
            joined = " || ".join(f"coalesce(s.d{k}, ''::bytea)" for k in range(PARTS))
            self._conn.exec_driver_sql(
                f"INSERT INTO {target} (res_type, digest, res_id) "  # noqa: S608
                f"SELECT s.res_type, substr(j.packed, g.n * {DIGEST} + 1, {DIGEST}), s.res_id "
                f"FROM {self._stage} AS s CROSS JOIN LATERAL (SELECT {joined} AS packed) AS j "
                f"CROSS JOIN LATERAL generate_series(0, length(j.packed) / {DIGEST} - 1) AS g(n)"
            )
            self._conn.exec_driver_sql(
                f"ALTER TABLE {target} ADD CONSTRAINT {pk.name} PRIMARY KEY ({columns})"
            )
        return True

    def _unpack_all(self) -> None:
        self._prepare_unpack()
        for k in range(PARTS):
            self._unpack(k)

    def _prepare_unpack(self) -> None:
        """Inside the unpacking transaction."""
        if not self._postgresql:
            self._number(self._widest)
            return
        # generate_series is estimated at 1,000 rows a call, so a large stage looks like
        # millions of rows: the planner then compiles the query with LLVM (~0.2 s a statement,
        # more than the work) and sizes a sort for them. Neither is wanted here.
        self._conn.exec_driver_sql("SET LOCAL jit = off")
        self._conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")

    def _unpack(self, k: int) -> None:
        # Names are ours (above and our Table objects), never input.
        into = f"INSERT INTO {self._target.name} (res_type, digest, res_id) "
        self._conn.exec_driver_sql(into + self._select(k))

    def _select(self, k: int) -> str:
        """The staged rows of slice k as (res_type, digest, res_id), in key order."""
        # Names are ours (above and our Table objects), never input; k is an int.
        if self._postgresql:
            select = (
                f"SELECT res_type, substr(d{k}, n * {DIGEST} + 1, {DIGEST}), res_id "  # noqa: S608
                f"FROM {self._stage} CROSS JOIN LATERAL "
                f"generate_series(0, length(d{k}) / {DIGEST} - 1) AS g(n) "
                f"WHERE d{k} IS NOT NULL"
            )
        else:
            select = (
                f"SELECT res_type, substr(d{k}, n * {DIGEST} + 1, {DIGEST}) AS digest, res_id "  # noqa: S608
                f"FROM {self._stage} JOIN {self._nums} ON n < length(d{k}) / {DIGEST} "
                f"WHERE d{k} IS NOT NULL"
            )
        return select + f" ORDER BY {self._key_order()}"

    def _key_order(self) -> str:
        """The target's primary key as positions of the unpacking's (res_type, digest, res_id)."""
        position = {"res_type": 1, "digest": 2, "res_id": 3}
        return ", ".join(str(position[c.name]) for c in self._target.primary_key.columns)

    def _number(self, upto: int) -> None:
        # 0 .. upto-1 in the numbers table (SQLite has no generate_series here), in the current
        # transaction: tens of rows, so re-done rather than trusted across a rollback.
        sql = f"INSERT OR IGNORE INTO {self._nums} (n) VALUES (?)"  # noqa: S608
        cur = self._conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(sql, [(n,) for n in range(upto)])
        finally:
            cur.close()


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    """A transaction of its own, or the caller's when one is open (a non-deferred stage is
    created inside the load's first transaction)."""
    if conn.in_transaction():
        yield
        return
    with conn.begin():
        yield
