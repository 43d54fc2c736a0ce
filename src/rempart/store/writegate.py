"""One queue for the hot SQLite writers of every process sharing a database file.

SQLite lets one connection write at a time. A writer that finds the lock taken does not wait
in line: its busy handler sleeps 1, 2, 5, 10, ... up to 100 ms and tries again. With two server
processes each committing audit batches and guard touches every few milliseconds, those sleeps
left a core idle and put 100-300 ms into the p99 of a read (measured: 2 processes used 1.2 of 2
cores). The hot writers (the audit group commit, the guard's touch and roll-up batches, the
session's last-seen touch) therefore take this gate first: an exclusive `flock` on a file next
to the database. The kernel wakes the next waiter the moment the lock is released, in any
process. Writers that do not take the gate still work: they meet SQLite's own lock as before.

Within a process a re-entrant lock orders the threads (one `flock` per open file is shared by
all its threads); the file is opened once per process id, so a forked child never shares its
parent's lock. PostgreSQL and in-memory SQLite need no gate: `held()` then does nothing.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

_GATES: dict[str, WriteGate] = {}
_GATES_LOCK = threading.Lock()


class WriteGate:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        assert self.path is not None
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        """Exclusive across threads and processes for the body (re-entrant in one thread)."""
        if self.path is None:
            yield
            return
        with self._lock:
            self._depth += 1
            try:
                if self._depth == 1:
                    # flock releases the GIL while it blocks.
                    fcntl.flock(self._file(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    if self._depth == 1:
                        fcntl.flock(self._file(), fcntl.LOCK_UN)
            finally:
                self._depth -= 1


def gate_for(engine: Engine) -> WriteGate:
    """The gate of the engine's database: one per file in this process; a no-op gate for
    PostgreSQL and in-memory SQLite."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return WriteGate(None)
    path = os.path.abspath(database) + "-writers"
    with _GATES_LOCK:
        found = _GATES.get(path)
        if found is None:
            found = _GATES[path] = WriteGate(path)
        return found
