"""The SQLite writers' gate excludes other threads and other processes, is re-entrant, and
does nothing where it is not needed (PostgreSQL, in-memory SQLite)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine

from rempart.store.writegate import WriteGate, gate_for


def _try_lock(path: str, answer: multiprocessing.Queue[bool]) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        answer.put(False)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
    answer.put(True)


def _other_process_gets_it(path: str) -> bool:
    ctx = multiprocessing.get_context("spawn")
    answer: multiprocessing.Queue[bool] = ctx.Queue()
    child = ctx.Process(target=_try_lock, args=(path, answer))
    child.start()
    got = answer.get(timeout=30)
    child.join(30)
    return got


def test_one_gate_per_sqlite_file_and_none_elsewhere(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    engine = create_engine(f"sqlite:///{db}")
    gate = gate_for(engine)
    assert gate.path == f"{db}-writers"
    assert gate_for(create_engine(f"sqlite:///{db}")) is gate
    assert gate_for(create_engine("sqlite://")).path is None
    pg = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    assert gate_for(pg).path is None
    with gate_for(pg).held():  # nothing to take, nothing to fail
        pass


def test_another_process_waits_while_held(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "db-writers"))
    with gate.held():
        assert gate.path is not None
        assert not _other_process_gets_it(gate.path)
        with gate.held():  # re-entrant: the same thread takes it again
            pass
        assert not _other_process_gets_it(gate.path)  # the inner exit did not release it
    assert _other_process_gets_it(gate.path)


def test_threads_take_turns(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "db-writers"))
    inside = 0
    most = 0
    count = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(20):
            with gate.held():
                with count:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with count:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
