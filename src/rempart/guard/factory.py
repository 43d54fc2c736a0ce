"""Builds the guard of one process from its settings (called by `wiring.open_services`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from rempart.access.settings import SettingsCache
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
    """
    engine = make_engine(url, pool_size=4)
    event.listen(engine, "connect", _relaxed_commit)
    return engine


def _relaxed_commit(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: commits reach the OS, fsync at checkpoint
    else:
        cur.execute("SET synchronous_commit TO OFF")  # WAL flushed within 3 x wal_writer_delay
    cur.close()
    if not type(dbapi_conn).__module__.startswith("sqlite3"):
        dbapi_conn.commit()
