"""Engines for the two supported databases, tuned once here."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
            # The connection used last comes back first: reads on the event loop take one at
            # a time, and SQLite drops a connection's page cache whenever another one has
            # committed (the audit log does, a few hundred times a second under load), so a
            # round-robin over the pool re-reads its pages on every read.
            pool_use_lifo=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// would pick psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pool_pre_ping: it costs a round trip on every checkout of every request. A connection
    # that died with the server fails one statement, which makes SQLAlchemy invalidate the whole
    # pool (that request gets a 503); pool_recycle retires connections a firewall may have cut.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def autocommit(engine: Engine) -> Engine:
    """The engine for reads on the hot path: on PostgreSQL no BEGIN and no ROLLBACK round
    trip. Never for writes. SQLite keeps its engine: switching a pysqlite connection's
    isolation level costs a PRAGMA on every checkout and checkin, more than it saves.

    On PostgreSQL a pool of its own, whose connections stay in autocommit: switching one of
    `engine`'s connections there and back (`execution_options`) cost 40 µs of CPU on every
    checkout, two per read (bench: `docs/benchmarks.md`, 2026-12-01). It is disposed with
    `engine`, and one is made per engine however many callers ask.
    """
    if engine.dialect.name != "postgresql":
        return engine
    with _READERS_LOCK:
        reader = _READERS.get(engine)
        if reader is None:
            pool: Any = engine.pool
            reader = create_engine(
                engine.url,
                isolation_level="AUTOCOMMIT",
                pool_size=pool.size(),
                max_overflow=pool._max_overflow,
                pool_recycle=1800,
            )
            _READERS[engine] = reader
            event.listen(engine, "engine_disposed", lambda _: reader.dispose())
    return reader


_READERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_READERS_LOCK = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the single writer; FULL makes each commit survive power loss,
    # which the audit trail (no read without a durable record) depends on.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# Hosts that are this machine: a query to them waits on no network.
_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})


def reads_on_loop(engine: Engine, setting: str = "auto") -> bool:
    """Whether reads run on the server's event loop instead of its thread pool.

    A read is a few short queries and Python. In the thread pool each query's wait ends with
    the thread taking the GIL back from the other request threads (~1.4 ms a query under load,
    measured on PostgreSQL, against 30 us idle), and the hand-off to the thread and back costs
    about a third of a SQLite read's CPU. On the loop the queries simply run, one request at a
    time. But the loop then waits whenever a query does, so "auto" allows it only where no
    network sits between the server and its database: SQLite, or PostgreSQL on a loopback
    address or a Unix socket (docs/benchmarks.md, "PostgreSQL reads on the event loop")."""
    if setting in ("yes", "no"):
        return setting == "yes"
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return True
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0] if socket_dir else None
    if socket_dir:
        return str(socket_dir).startswith("/")
    return (url.host or "") in _LOCAL_HOSTS


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
