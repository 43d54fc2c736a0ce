"""SQLite WAL checkpoints off the audit log's commit path.

In WAL mode a commit appends the pages it changed to the WAL, and a checkpoint later copies
them into the database file. SQLite runs one inside whichever commit leaves the WAL over
`wal_autocheckpoint` pages (1,000 by default), after the commit, in the committing thread.
An audit record dirties 2.3 to 2.8 pages (its row, and two indexes with random keys), so at a
few hundred records per group commit every second audit commit also read and wrote back about
a thousand pages and waited for two more fsyncs, on the serial path of the log (4-6 of the
committing thread's ~30 us per record, measured).

Here a thread of its own runs a PASSIVE checkpoint on its own connection each time audit
commits have added `RECORDS` records (~2,500 WAL frames; at most one every `interval`). A
checkpoint takes no lock that writers take, so the next group commit goes on meanwhile, on the
other core. The audit writer's connection keeps an automatic checkpoint at a higher mark
(`WRITER_PAGES`): it bounds the WAL if this thread falls behind, and it is what lets the WAL
restart from its beginning under continuous load (a restart needs a writer to find every frame
copied as it begins, which a checkpoint running beside back-to-back commits never arranges).

Other connections keep SQLite's default: one of their commits that finds frames not copied yet
and the WAL over 1,000 pages copies them itself, as it could before (more often now, since the
WAL is reset only at the writer's mark).

Durability is unchanged: every commit still waits for the fsync of its own WAL frames
(synchronous=FULL), and a checkpoint only copies committed pages (syncing the WAL before and
the database file after, as SQLite always does).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Engine

log = logging.getLogger("rempart.audit")

WRITER_PAGES = 8000  # the audit writer's own automatic checkpoint (32 MB of 4 KiB pages)
# Records committed between two checkpoints (2.3 to 2.8 WAL frames each). Measured on the
# append benchmark: every 400 records cost the checkpointer 6.6-6.9 us per record, every 1,000
# 2.8-3.2 us (a page dirtied again meanwhile is copied once), every 2,000 2.1-2.4 us but the
# WAL then reached the writer's own mark and its commits checkpointed again.
RECORDS = 1000


def wanted(engine: Engine) -> bool:
    """A SQLite database in a file (in memory there is no WAL to copy)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


class Checkpointer:
    def __init__(self, engine: Engine, interval: float = 0.01) -> None:
        self._path = str(engine.url.database)
        self._interval = interval
        self._pending = 0  # records committed since the last kick (the committer's count)
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.runs = 0  # checkpoints run (tests, benchmarks)

    def committed(self, records: int) -> None:
        """An audit commit just added the pages of `records` to the WAL (called by the
        committing thread, one at a time)."""
        self._pending += records
        if self._pending < RECORDS:
            return
        self._pending = 0
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="audit-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._kick.set()

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._kick.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=timeout)

    def _run(self) -> None:
        # A connection of its own, outside the engine's pool (held for the process's life, it
        # would take a request's place there).
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._kick.wait()
                if self._stop.is_set():
                    return
                self._kick.clear()
                try:
                    if conn is None:
                        conn = sqlite3.connect(
                            self._path, timeout=5.0, isolation_level=None, check_same_thread=False
                        )
                        # As every connection of the product: a checkpoint syncs the WAL before
                        # copying it, and the database file after.
                        conn.execute("PRAGMA synchronous=FULL")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as exc:
                    # The writer's own automatic checkpoint still bounds the WAL.
                    log.warning("background WAL checkpoint failed: %s", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                # Commits arriving meanwhile share the next checkpoint.
                if self._stop.wait(self._interval):
                    return
        finally:
            if conn is not None:
                conn.close()
