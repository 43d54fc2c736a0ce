"""A bulk load's blind-index rows, unpacked into `search_index` by the database."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import IntegrityError

from rempart.store.bulk import insert_rows
from rempart.store.packing import DIGEST, PACKED_COLUMNS, PARTS, widest_part
from rempart.store.slicesort import SCHEMA, ScratchStage, merge_sorted


class IndexStage:
    """Blind-index rows of a bulk load, staged packed and unpacked into `search_index` by the
    database.

    Deferred (the seed): the target's B-tree is not walked batch by batch. Why: index digests
    are uniformly random, so every batch of index rows lands on every leaf of the index's
    B-tree. Once the index outgrows the page cache, each commit rewrites (WAL, then checkpoint)
    nearly the whole index: a seed slowed from ~1,000 to ~250 resources/s by 1 GB, and would
    only get slower. Two ways round it:
    - PostgreSQL, into a target holding no more rows than the `expected` rows of the load (a
      seed's fresh database, which holds only its directory): the primary key is dropped when
      the stage is made, each batch is unpacked into the target in the batch's own
      transaction (no key to maintain: the database's share of the work runs while the
      workers prepare the next batches, on both cores), and `merge` builds the key once, as
      one sorted bulk build. Until then the target is keyless: searches of it scan, and a
      seed killed outright leaves it so (the next keyless load builds it again).
    - Otherwise rows are appended to a stage table (no B-tree to walk, no WAL), and `merge`
      inserts them in key order, one slice of the digest space per transaction, so each index
      page is written about once.

    Not deferred (`import`, whose conditional references search what the earlier phases
    stored): `add` unpacks each batch into the target at once, in the caller's transaction.

    The stage's tables belong to the load's connection and are transactional with it: the
    rows staged are exactly those of the committed batches. They are temporary tables, except
    for a deferred stage on SQLite: a scratch file attached to the connection, so that the
    merge's sorting threads can read it (`slicesort`). A deferred `merge` must run before the
    connection is given back (on success and on failure alike): until then, the records of
    the load are stored but not yet findable by search (or, keyless, findable but not keyed),
    and the scratch file is attached.
    """

    def __init__(
        self, conn: Connection, target: Table, *, deferred: bool = True, expected: int | None = None
    ) -> None:
        self._conn = conn
        self._target = target
        self._deferred = deferred
        self._widest = 0
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
        self._keyless = (
            deferred and self._postgresql and expected is not None and self._drop_key(expected)
        )

    def add(self, packed: Sequence[tuple[Any, ...]], widest: int | None = None) -> None:
        """Stage packed rows (`pack_index`), inside the caller's transaction. `widest` is
        `widest_part(packed)` when the caller knows it already."""
        if not packed:
            return
        self._widest = max(self._widest, widest_part(packed) if widest is None else widest)
        insert_rows(self._conn, self._stage, PACKED_COLUMNS, packed)
        if self._keyless:
            self._unpack_joined()
        elif not self._deferred and self._postgresql:
            self._unpack_joined(ordered=True)
        elif not self._deferred:
            self._unpack_all()
        else:
            return
        # PostgreSQL: TRUNCATE, not DELETE. A temporary table is never vacuumed, so deleted
        # rows stayed in it and each batch's unpacking scanned every earlier batch's again: an
        # import of 104,788 resources spent 37 of its 69 s there. (SQLite's DELETE without a
        # WHERE empties the table the same way.)
        empty = "TRUNCATE" if self._postgresql else "DELETE FROM"
        self._conn.exec_driver_sql(f"{empty} {self._stage}")

    def merge(self) -> None:
        """Make every row of the load findable and keyed, then drop the stage.

        Keyless (PostgreSQL, a fresh target): the rows are in already; the key is built once,
        in one statement. Otherwise each staged row goes into the target in key order, one
        slice of the digest space per transaction (SQLite's WAL holds a whole transaction until
        it commits, so a single one would grow it to the size of the index); the index is
        keyed digest first, so each slice is a range of its key. On SQLite the slices are
        sorted by parallel threads (`slicesort`).
        """
        try:
            if self._keyless:
                self._build_key()
            elif self._deferred:
                self._merge_deferred()
        finally:
            if self._scratch is not None:
                self._scratch.close()
            else:
                with _transaction(self._conn):
                    for name in (self._stage, self._nums):
                        self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")

    def _merge_deferred(self) -> None:
        if self._scratch is not None:
            with _transaction(self._conn):
                self._number(self._widest)
            merge_sorted(self._conn, self._scratch, self._select, self._target.name, PARTS)
            return
        for k in range(PARTS):
            with _transaction(self._conn):
                self._prepare_unpack()
                self._unpack(k)

    def _drop_key(self, expected: int) -> bool:
        """PostgreSQL: drop the target's primary key when it holds no more rows than the load is
        `expected` to bring.

        Why: inserted with the key in force, slice by slice, each slice's keys landed between
        the previous slices' and the B-tree split pages in half: at 10,000 patients the merge
        took 28 s and left a 1.36 GB index; built once, after the rows, ~14 s and 0.99 GB. And
        unpacked batch by batch during the load rather than all at the merge, the insert (8 s
        of one core at 10,000 patients) runs beside the workers instead of after them: a seed
        of 10,000 patients went from 44.0 to 40.0 s. A target holding more rows than the load
        brings keeps its key (rebuilding it could cost more than the inserts).
        """
        target, key = self._target.name, self._target.primary_key.name
        with _transaction(self._conn):
            # Taken before looking, so no row can arrive between the look and the drop.
            self._conn.exec_driver_sql(f"LOCK TABLE {target} IN ACCESS EXCLUSIVE MODE")
            held = self._conn.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT 1 FROM {target} LIMIT {expected + 1}) AS t"  # noqa: S608
            ).scalar_one()
            if held > expected:
                return False
            # IF EXISTS: a seed killed outright before its merge left the target keyless.
            self._conn.exec_driver_sql(f"ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {key}")
        return True

    def _unpack_joined(self, *, ordered: bool = False) -> None:
        """PostgreSQL: every staged row into the target in one statement, `ordered` by its key
        (into a keyed index: neighbours go in together) or in no order (keyless: the key is
        built after). Each resource's parts are joined back into one string of digests, then
        cut: 20% cheaper than unnesting the parts one by one."""
        joined = " || ".join(f"coalesce(s.d{k}, ''::bytea)" for k in range(PARTS))
        self._prepare_unpack()
        order = f" ORDER BY {self._key_order()}" if ordered else ""
        self._conn.exec_driver_sql(
            f"INSERT INTO {self._target.name} (res_type, digest, res_id) "  # noqa: S608
            f"SELECT s.res_type, substr(j.packed, g.n * {DIGEST} + 1, {DIGEST}), s.res_id "
            f"FROM {self._stage} AS s CROSS JOIN LATERAL (SELECT {joined} AS packed) AS j "
            f"CROSS JOIN LATERAL generate_series(0, length(j.packed) / {DIGEST} - 1) AS g(n)"
            + order
        )

    def _build_key(self) -> None:
        """PostgreSQL, keyless: build the primary key once, in one sorted bulk build. Rows the
        key refuses (the same row loaded twice: a caller's bug, never a seed's, whose
        resources are keyed in the same transactions) fail the load; one of each is kept so
        that the index is keyed again, never left without its key.

        Digest first, the build sorts raw bytes before collated text: for 400,000 resources it
        took 13.3 s where (res_type, digest, res_id) took 22.6 s (`bench/bench_merge.py`). The
        ALTER TABLE's exclusive lock makes concurrent searches wait for the build (a seed's
        database is not in service yet)."""
        target, key = self._target.name, self._target.primary_key
        columns = [c.name for c in key.columns]
        build = f"ALTER TABLE {target} ADD CONSTRAINT {key.name} PRIMARY KEY ({', '.join(columns)})"
        try:
            with _transaction(self._conn):
                self._conn.exec_driver_sql(build)
        except IntegrityError:
            same = " AND ".join(f"a.{c} = b.{c}" for c in columns)
            with _transaction(self._conn):
                self._conn.exec_driver_sql(
                    f"DELETE FROM {target} AS a USING {target} AS b "  # noqa: S608
                    f"WHERE a.ctid > b.ctid AND {same}"
                )
                self._conn.exec_driver_sql(build)
            raise

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
