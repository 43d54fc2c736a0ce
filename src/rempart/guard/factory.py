"""Builds the guard of one process from its settings (called by `wiring.open_services`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from rempart.access.settings import SettingsCache
from rempart.audit.checkpoint import WRITER_PAGES
from rempart.config import Settings
from rempart.guard.decoys import GUARD_OWNER, Decoys
from rempart.guard.engine import Guard
from rempart.guard.notify import Notifier
from rempart.guard.settings import load_guard_config
from rempart.store.db import make_engine
from rempart.store.keyring import Keyring


def open_guard(settings: Settings, engine: Engine, keyring: Keyring, cache: SettingsCache) -> Guard:
    config = load_guard_config(settings.home)
    decoys = Decoys(engine, keyring.ensure(GUARD_OWNER))
    counting = counting_engine(settings.database_url)
    return Guard(engine, cache, decoys, Notifier(engine, config), config, counting=counting)


def counting_engine(url: str) -> Engine:
    """The engine the guard writes its counts with: commits without waiting for the disk.

    A touch is a counter, not evidence (the audit record is, and stays durable): losing the
    last few milliseconds of touches in a power cut costs a scraper's count a few patients,
    while an fsync per newly opened patient would cost more than the read itself. Containments
    (revoked sessions, locks) go through the main engine and are durable.

    On SQLite its commits also leave WAL checkpoints to the audit log's checkpointer thread
    (audit/checkpoint.py), at the audit writer's own mark: at SQLite's default (1,000 pages) a
    quarter of the ledger's batches found the WAL over it and copied it back themselves, 1 to
    5 ms each, 16.5 us per touch written against 6.4 with the mark (docs/benchmarks.md).
    """
    engine = make_engine(url, pool_size=4)
    event.listen(engine, "connect", _relaxed_commit)
    return engine


def _relaxed_commit(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: commits reach the OS, fsync at checkpoint
        cur.execute(f"PRAGMA wal_autocheckpoint = {WRITER_PAGES}")
    else:
        cur.execute("SET synchronous_commit TO OFF")  # WAL flushed within 3 x wal_writer_delay
    cur.close()
    if not type(dbapi_conn).__module__.startswith("sqlite3"):
        dbapi_conn.commit()
