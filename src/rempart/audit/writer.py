"""One audit transaction: records in, leaf hashes computed, the Merkle log extended, committed.

Used by one thread at a time (the current group-commit leader, see `log.py`). Several
processes may append to one log: each transaction takes the database's writer lock (BEGIN
IMMEDIATE on SQLite, an advisory lock on PostgreSQL), reads the last checkpoint and continues
from its compact range if another process appended meanwhile.

A batch's rows, leaf hashes and Merkle nodes may be built ahead of its transaction
(`Prepared`, on the compact range the log is expected to have then; `stage.py` builds those
of records queued while the previous batch commits). The transaction uses them only if the
checkpoint it reads under the writer lock is exactly that range (same size, same subtree
hashes); otherwise it builds them again from what it read. A prediction can cost time, never
correctness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, Engine, select

from rempart.audit import checkpoint
from rempart.audit.entry import COLUMNS, Sealer, stored_rows
from rempart.audit.merkle import Frontier
from rempart.audit.records import AuditRecord
from rempart.audit.tables import audit_batch
from rempart.clock import now_micros
from rempart.store.writegate import gate_for

log = logging.getLogger("rempart.audit")

PG_LOCK = 0x72656D70_61756474  # "rempaudt": the advisory lock that serialises appenders

AlertFn = Callable[[str, str, dict[str, Any]], None]


class TamperingDetected(RuntimeError):
    """The database no longer holds what this writer committed."""


class Sql:
    """The writer's statements in the driver's parameter style, built once per dialect."""

    _cache: dict[str, Sql] = {}  # noqa: RUF012  (a per-process memo, never per instance)

    def __init__(self, dialect: str, mark: str) -> None:
        names = ", ".join((*COLUMNS, "leaf_hash"))
        marks = ", ".join([mark] * (len(COLUMNS) + 1))
        values = ", ".join([mark] * 4)
        self.begin = "BEGIN IMMEDIATE" if dialect == "sqlite" else "BEGIN"
        self.pipelined = dialect == "postgresql"
        self.lock = f"SELECT pg_advisory_xact_lock({mark})" if dialect != "sqlite" else None
        self.latest = "SELECT size, frontier FROM audit_batch ORDER BY size DESC LIMIT 1"
        # Fixed table and column names and the driver's placeholder: nothing from a request.
        self.event = f"INSERT INTO audit_event ({names}) VALUES ({marks})"  # noqa: S608
        self._names, self._row = names, f"({marks})"
        self._many: dict[int, str] = {}
        # SQLite: rows go in as one multi-row INSERT per chunk, because the driver releases
        # and retakes the GIL around every statement step: with busy request threads, each
        # retake can wait a whole switch interval (executemany steps once per row). PostgreSQL
        # keeps executemany: psycopg's pipeline beats a multi-row statement there (27 against
        # 105 us of client CPU per record, measured).
        self.rows_per_insert = 500 if dialect == "sqlite" else 0
        self.node = f"INSERT INTO audit_node (level, idx, hash) VALUES ({mark}, {mark}, {mark})"  # noqa: S608
        self.batch = f"INSERT INTO audit_batch (size, first, at, frontier) VALUES ({values})"  # noqa: S608
        # A write that changes nothing (no row matches, so no trigger fires): SQLite only.
        self.claim = "DELETE FROM audit_batch WHERE 0"

    def events(self, count: int) -> str:
        """INSERT of `count` rows in one statement (memoised per count)."""
        found = self._many.get(count)
        if found is None:
            rows = ", ".join([self._row] * count)
            found = f"INSERT INTO audit_event ({self._names}) VALUES {rows}"  # noqa: S608
            if len(self._many) < 64:
                self._many[count] = found
        return found

    @classmethod
    def of(cls, conn: Connection) -> Sql:
        return cls.named(conn.dialect.name, "?" if conn.dialect.paramstyle == "qmark" else "%s")

    @classmethod
    def named(cls, dialect: str, mark: str) -> Sql:
        found = cls._cache.get(dialect)
        if found is None:
            found = cls._cache[dialect] = cls(dialect, mark)
        return found


class Prepared:
    """Rows (COLUMNS values and leaf hash), completed subtree hashes and the compact range after
    them, built for the log as `size` records with frontier hashes `base` (packed)."""

    __slots__ = ("base", "frontier", "nodes", "rows", "size")

    def __init__(
        self,
        size: int,
        base: bytes,
        rows: list[tuple[Any, ...]],
        nodes: list[tuple[int, int, bytes]],
        frontier: Frontier,
    ) -> None:
        self.size = size
        self.base = base
        self.rows = rows
        self.nodes = nodes
        self.frontier = frontier

    @staticmethod
    def build(base: Frontier, records: Sequence[AuditRecord], sealer: Sealer) -> Prepared:
        """The records placed after `base` (left unchanged)."""
        frontier = base.copy()
        nodes: list[tuple[int, int, bytes]] = []

        def on_node(level: int, idx: int, h: bytes) -> None:
            nodes.append((level, idx, h))

        rows = stored_rows(base.size, records, sealer)
        add = frontier.append
        for row in rows:
            add(row[-1], on_node)
        return Prepared(base.size, base.pack(), rows, nodes, frontier)

    @staticmethod
    def joined(parts: Sequence[Prepared]) -> Prepared:
        """Consecutive parts (each built on the previous one's frontier) as one batch."""
        for before, after in pairwise(parts):
            if after.size != before.frontier.size:
                raise ValueError("prepared parts are not consecutive")
        if len(parts) == 1:
            return parts[0]
        rows = [row for part in parts for row in part.rows]
        nodes = [node for part in parts for node in part.nodes]
        return Prepared(parts[0].size, parts[0].base, rows, nodes, parts[-1].frontier)

    def fits(self, stored: Frontier) -> bool:
        return self.size == stored.size and self.base == stored.pack()


def checkpoint_row(batch: Prepared) -> tuple[int, int, int, bytes]:
    """The audit_batch row after `batch`: size, first position, time, compact range."""
    end = batch.frontier
    return (end.size, batch.size, now_micros(), end.pack())


class LogWriter:
    def __init__(self, engine: Engine, sealer: Sealer, alert: AlertFn | None) -> None:
        self.engine = engine
        self.sealer = sealer
        self._alert = alert
        self._gate = gate_for(engine)
        # SQLite: WAL checkpoints in a thread of their own, not in our commits (checkpoint.py).
        self._checkpoints = checkpoint.Checkpointer(engine) if checkpoint.wanted(engine) else None
        self._conn: Connection | None = None
        # The compact range after our last commit; replaced whole, never changed in place,
        # so the head signer can read it from another thread.
        self.frontier: Frontier | None = None
        # The last commit found the log as our previous one left it (no other process, no
        # write's own transaction appended in between): building ahead is then worth it.
        self.steady = False
        self._storing = 0  # the first position of the batch being stored (for an alert)
        self._reported: int | None = None  # the batch whose foreign row was reported

    def _connection(self) -> Connection:
        if self._conn is None:
            # Our own transaction control: BEGIN IMMEDIATE takes SQLite's writer lock up front,
            # so the read of the last checkpoint and the inserts see one consistent log.
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.dialect.name == "sqlite":
                # The indexes take keys in random order (accounts, patients): with SQLite's
                # default 2 MB page cache, a log of millions of rows turns each insert into
                # disk reads. 64 MB, for this one connection.
                conn.exec_driver_sql("PRAGMA cache_size = -65536")
                if self._checkpoints is not None:
                    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {checkpoint.WRITER_PAGES}")
            self._conn = conn
        return self._conn

    def drop(self) -> None:
        """Forget the connection (after a failure) and re-read the log on the next commit."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:
                log.debug("audit connection close failed", exc_info=True)
            self._conn = None
        self.forget()

    def forget(self) -> None:
        """Re-read the log's end on the next commit (one of ours failed)."""
        self.frontier = None
        self.steady = False

    def close(self, timeout: float = 30.0) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close(timeout)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def prepare(
        self, records: Sequence[AuditRecord], after: Prepared | None = None
    ) -> Prepared | None:
        """The records' rows built ahead, to follow `after` or else our last commit; None when
        the log's end cannot be predicted (no commit yet, or others are appending)."""
        if after is not None:
            return Prepared.build(after.frontier, records, self.sealer)
        frontier = self.frontier
        if frontier is None or not self.steady:
            return None
        return Prepared.build(frontier, records, self.sealer)

    def append(self, records: list[AuditRecord], prepared: Prepared | None = None) -> bool:
        """One group commit: the records in their own transaction, durable on return. With
        `prepared` (the same records' rows built ahead), those rows are stored if the log ends
        where they were built to follow; True when they were."""
        conn = self._connection()
        sql = Sql.of(conn)
        # The driver's own cursor: a commit is a handful of fixed statements, and at one
        # commit per request (a quiet server) SQLAlchemy's per-statement work would cost more
        # than SQLite itself.
        # The cross-process queue of SQLite writers (store/writegate.py): waiting here wakes
        # at the release, where SQLite's busy handler would sleep up to 100 ms a turn.
        with self._gate.held():
            dbapi = conn.connection.dbapi_connection
            cur = dbapi.cursor()  # type: ignore[union-attr]
            try:
                with self._round_trips(dbapi, conn, sql):
                    cur.execute(sql.begin)
                    if sql.lock:
                        cur.execute(sql.lock, (PG_LOCK,))
                    cur.execute(sql.latest)
                    known, used, batch = self.batch_for(cur.fetchone(), records, prepared)
                    self._store(cur, conn, sql, batch)
                    cur.execute("COMMIT")
            except BaseException:
                try:
                    cur.execute("ROLLBACK")
                except Exception:
                    log.debug("audit rollback failed", exc_info=True)
                raise
            finally:
                cur.close()
        if self._checkpoints is not None:
            self._checkpoints.committed(len(records))
        self.committed(known, batch)
        return used

    def batch_for(
        self, latest: Any, records: Sequence[AuditRecord], prepared: Prepared | None
    ) -> tuple[Frontier, bool, Prepared]:
        """Under the writer lock, given the log's last checkpoint row: the compact range the
        batch follows, whether `prepared` fits it, and the batch to store."""
        known = self._synced(latest)
        used = prepared is not None and len(prepared.rows) == len(records) and prepared.fits(known)
        batch = prepared if used and prepared else Prepared.build(known, records, self.sealer)
        self._storing, self._reported = batch.size, None
        return known, used, batch

    def committed(self, known: Frontier, batch: Prepared) -> None:
        """`batch`, which followed `known`, is durable."""
        self.steady = known is self.frontier
        self.frontier = batch.frontier

    @contextmanager
    def _round_trips(self, dbapi: Any, conn: Connection, sql: Sql) -> Iterator[None]:
        """PostgreSQL: the commit's statements in psycopg's pipeline mode, two round trips
        (up to the checkpoint read, then the rest with the COMMIT) instead of seven. In pipeline
        mode a failed insert is raised when the pipeline syncs, not by its own statement,
        hence the foreign-row check here too."""
        if not sql.pipelined or getattr(dbapi, "pipeline", None) is None:
            yield
            return
        try:
            with dbapi.pipeline():
                yield
        except conn.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
            self._foreign_rows(self._storing)
            raise

    def append_in(self, conn: Connection, records: list[AuditRecord]) -> None:
        """The records join `conn`'s open transaction: they commit with it or not at all (a
        write and its trace). The transaction takes the log's writer lock until it ends, so
        appenders stay in order; our group-commit writer re-reads the log on its next commit,
        as it does after another process appended."""
        sql = Sql.of(conn)
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if sql.lock:
                cur.execute(sql.lock, (PG_LOCK,))
            else:
                # Python's sqlite3 opens the transaction at the first write: this no-op write
                # opens it (if the caller has not written yet) and takes SQLite's writer lock,
                # so the checkpoint read below cannot go stale before our inserts.
                cur.execute(sql.claim)
            cur.execute(sql.latest)
            latest = cur.fetchone()
            frontier = (
                Frontier() if latest is None else Frontier.unpack(int(latest[0]), bytes(latest[1]))
            )
            batch = Prepared.build(frontier, records, self.sealer)
            self._storing, self._reported = batch.size, None
            self._store(cur, conn, sql, batch)
        finally:
            cur.close()

    def _store(self, cur: Any, conn: Connection, sql: Sql, prepared: Prepared) -> None:
        """Insert the rows at the end of the log, the subtree hashes they complete and the
        checkpoint after them."""
        first, rows, nodes = prepared.size, prepared.rows, prepared.nodes
        try:
            step = sql.rows_per_insert
            if step:
                for start in range(0, len(rows), step):
                    chunk = rows[start : start + step]
                    cur.execute(sql.events(len(chunk)), [v for row in chunk for v in row])
            else:
                cur.executemany(sql.event, rows)
        except conn.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
            self._foreign_rows(first)
            raise
        if nodes:
            cur.executemany(sql.node, nodes)
        cur.execute(sql.batch, checkpoint_row(prepared))

    def _synced(self, latest: Any) -> Frontier:
        """Our compact range, re-read if another process appended; a log that shrank is
        tampering (rows and checkpoints are never deleted above the pruning point)."""
        known = self.frontier
        if latest is None:
            if known is not None and known.size > 0:
                self.tampered(
                    "audit-log-truncated",
                    f"the audit log had {known.size} records and now has no batch at all",
                    {"expected_size": known.size},
                )
                raise TamperingDetected("audit batches vanished")
            return Frontier()
        if known is None or latest[0] > known.size:
            # First commit of this process, or another process appended since our last one.
            return Frontier.unpack(int(latest[0]), bytes(latest[1]))
        if latest[0] < known.size:
            self.tampered(
                "audit-log-truncated",
                f"the audit log shrank from {known.size} to {latest[0]} records",
                {"expected_size": known.size, "found_size": int(latest[0])},
            )
            raise TamperingDetected("audit batches vanished")
        return known

    def stored_frontier(self) -> Frontier:
        """The log's compact range as the database has it (ours, or further on if writes or
        other processes appended since; never compared here: a commit of ours may race)."""
        with self.engine.connect() as conn:
            latest = conn.execute(
                select(audit_batch.c.size, audit_batch.c.frontier)
                .order_by(audit_batch.c.size.desc())
                .limit(1)
            ).first()
        return Frontier() if latest is None else Frontier.unpack(int(latest[0]), bytes(latest[1]))

    def foreign_rows(self) -> None:
        """An insert of the batch being stored hit a row already there: report it (once)."""
        self._foreign_rows(self._storing)

    def _foreign_rows(self, first: int) -> None:
        # Once per batch: in pipeline mode the failed insert may be raised by the insert
        # itself (its result had arrived) and then again by the pipeline's sync.
        if self._reported == first:
            return
        self._reported = first
        self.tampered(
            "audit-log-foreign-row",
            f"a record at position {first} or later exists that this writer did not "
            "write: someone inserted rows into audit_event directly",
            {"position": first},
        )

    def tampered(self, kind: str, message: str, details: dict[str, Any]) -> None:
        log.critical("audit log tampering: %s", message)
        if self._alert is not None:
            self._alert(kind, message, details)
