"""PostgreSQL: the group commit awaited on the event loop, instead of run by a thread.

Where reads run on the server's event loop (`store.db.reads_on_loop`), their audit records are
queued from the loop, and until now a commit of them was either run by the loop itself, which
then waited two round trips and PostgreSQL's WAL flush doing nothing, or by the drainer thread.
The drainer fights the loop for the GIL: the loop gives it up at each of its own queries and
takes it back a moment later, so a commit in the drainer cost the server 2 to 3 more context
switches and about 0.1 ms more CPU per read than the read itself (docs/benchmarks.md, "the
audit's commit on the loop"). Here the loop sends the commit's statements (psycopg's pipeline,
as `LogWriter.append` does) on a connection of its own and serves other requests while
PostgreSQL answers: a commit costs the loop its CPU, never a wait, and no thread is involved.

The statements, the checks (the log read under the advisory lock, prepared rows used only if
they fit, a foreign row reported as tampering) and the bookkeeping are `LogWriter`'s: this
class only awaits them. The connection belongs to one event loop; a new loop (a test client
makes one per run) gets a new connection and the old one is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import psycopg
from sqlalchemy import Engine

from rempart.audit.records import AuditRecord
from rempart.audit.writer import PG_LOCK, LogWriter, Prepared, Sql, checkpoint_row

log = logging.getLogger("rempart.audit")

CONNECT_TIMEOUT = 10  # seconds; a read's wait for its commit is bounded anyway (30 s)


def conninfo(engine: Engine) -> str:
    """The engine's PostgreSQL URL as libpq takes it (no SQLAlchemy driver name)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class LoopWriter:
    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer
        self._conninfo = conninfo(writer.engine)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def append(self, records: Sequence[AuditRecord], prepared: Prepared | None) -> bool:
        """`LogWriter.append`, awaited: durable on return; True when `prepared` was stored."""
        conn = await self._connection()
        sql = Sql.named("postgresql", "%s")
        assert sql.lock is not None, "PostgreSQL's appenders take the advisory lock"
        writer = self._writer
        try:
            async with conn.pipeline():
                cur = conn.cursor()
                await cur.execute(sql.begin)
                await cur.execute(sql.lock, (PG_LOCK,))
                await cur.execute(sql.latest)
                known, used, batch = writer.batch_for(await cur.fetchone(), records, prepared)
                await cur.executemany(sql.event, batch.rows)
                if batch.nodes:
                    await cur.executemany(sql.node, batch.nodes)
                await cur.execute(sql.batch, checkpoint_row(batch))
                await cur.execute("COMMIT")
        except BaseException as exc:
            # Whatever failed, the connection goes: its open transaction ends with it (rolled
            # back by the server), and the next commit re-reads the log.
            if isinstance(exc, psycopg.IntegrityError):
                writer.foreign_rows()
            self.drop()
            raise
        writer.committed(known, batch)
        return used

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        loop = asyncio.get_running_loop()
        if self._conn is not None and self._loop is loop and not self._conn.closed:
            return self._conn
        self._close()
        self._conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        )
        self._loop = loop
        return self._conn

    def drop(self) -> None:
        """After a failure: close the connection, and make the log's writer re-read the log
        on its next commit."""
        self._close()
        self._writer.forget()

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        # libpq's own close, callable from any thread with no round trip awaited (the
        # connection's loop may be gone).
        conn, self._conn, self._loop = self._conn, None, None
        if conn is not None:
            try:
                conn.pgconn.finish()
            except Exception:
                log.debug("audit loop connection close failed", exc_info=True)
