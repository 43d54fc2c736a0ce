"""SQLite's deferred index merge, its sorts run in parallel (`indexstage.IndexStage`).

The merge inserts each slice of the digest space into the index in key order, and sorting a
slice costs about three times as much as inserting it once sorted (400,000 resources, 11.2
million rows: sort 16.8 s, insert of the sorted rows 6.1 s). SQLite sorts in the thread that
runs the statement, so on one connection the merge used one core while the others idled: the
load is over by then. Here the stage is a file of its own, so threads with their own
connections can read it: each sorts a slice into a scratch file (pysqlite lets go of the GIL
while SQLite works), and the load's connection inserts the sorted slices in order as they
come, one transaction each, beside the sorting of the next ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Connection

SCHEMA = "rempart_stage"  # the stage file, as attached to the load's connection
PREFIX = ".rempart-stage-"
# SQLite page cache of a sorting connection (KiB); its sorter spills to temporary files past it.
SORT_CACHE_KIB = 128 * 1024
MAX_SORTERS = 4  # each holds a slice's sort in memory


class ScratchStage:
    """A stage file in a private directory (mode 0700, beside the database), attached to the
    load's connection as `SCHEMA`. Scratch: nothing in it outlives the load, so it is never
    synced; a rollback still undoes a failed batch's rows (its journal is in memory)."""

    def __init__(self, conn: Connection) -> None:
        self._raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        parent = _beside(conn)
        _clear_abandoned(parent)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
        self.path = self.directory / "stage.sqlite3"
        try:
            self._raw.execute("ATTACH DATABASE ? AS " + SCHEMA, (str(self.path),))
            self._raw.execute(f"PRAGMA {SCHEMA}.journal_mode = MEMORY")
            self._raw.execute(f"PRAGMA {SCHEMA}.synchronous = OFF")
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def close(self) -> None:
        try:
            self._raw.execute("DETACH DATABASE " + SCHEMA)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def merge_sorted(
    conn: Connection, stage: ScratchStage, unpack: Callable[[int], str], target: str, parts: int
) -> None:
    """Insert the rows of `unpack(k)` (a SELECT of (res_type, digest, res_id) in key order, on
    the stage attached as `SCHEMA`), for k in 0..parts-1, into `target`, in that order, one
    transaction per slice. The caller's connection must hold no open transaction."""
    sorters = max(1, min(MAX_SORTERS, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=sorters, thread_name_prefix="rempart-sort")
    futures: list[Future[Path]] = []
    try:
        # Submitted in order, so the pool sorts the slices in the order they are inserted.
        futures = [pool.submit(_sort, stage, unpack(k), k) for k in range(parts)]
        for future in futures:
            _insert(conn, future.result(), target)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _sort(stage: ScratchStage, select: str, k: int) -> Path:
    """The slice sorted into a table `s` of a scratch file: its rowids follow the key order."""
    path = stage.directory / f"slice-{k}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None, uri=True)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute(f"PRAGMA cache_size = -{SORT_CACHE_KIB}")
        db.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (stage.path.as_uri() + "?mode=ro",))
        db.execute("CREATE TABLE s AS " + select)
    finally:
        db.close()
    return path


def _insert(conn: Connection, path: Path, target: str) -> None:
    raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    raw.execute("ATTACH DATABASE ? AS rempart_slice", (str(path),))
    try:
        with conn.begin():
            # Our own table names; the scan in rowid order is the key order (no sort).
            conn.exec_driver_sql(
                f"INSERT INTO {target} (res_type, digest, res_id) "  # noqa: S608
                "SELECT res_type, digest, res_id FROM rempart_slice.s ORDER BY rowid"
            )
    finally:
        raw.execute("DETACH DATABASE rempart_slice")
        path.unlink(missing_ok=True)


def _beside(conn: Connection) -> Path:
    """The database file's directory (same disk and owner as the data); the system's
    temporary directory for a database in memory."""
    name = conn.engine.url.database
    if name and name != ":memory:" and not name.startswith("file:"):
        return Path(name).resolve().parent
    return Path(tempfile.gettempdir())


def _clear_abandoned(parent: Path) -> None:
    """Stage directories of loads whose process is gone (killed mid-load): gigabytes each."""
    for found in parent.glob(f"{PREFIX}*"):
        pid = found.name.removeprefix(PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
