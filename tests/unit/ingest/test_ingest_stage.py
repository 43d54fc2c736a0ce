"""Packed blind-index rows (`store/packing.py`, `indexstage.py`): what goes in comes out.

The seed and the import hand the database one row per resource with its digests packed by
slice of the digest space, and let SQL unpack them into `search_index`; these tests hold the
unpacking to the rows a plain insert would have written, including across a rolled-back batch.
"""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from rempart.crypto import BlindIndex
from rempart.fhir import extract_index
from rempart.fhir.extract import extract_pairs
from rempart.ingest.workers import MemoBlindIndex
from rempart.seed import generate
from rempart.store import slicesort
from rempart.store.bulk import bulk_connection
from rempart.store.codec import INDEX_PAD, index_digests
from rempart.store.indexstage import IndexStage
from rempart.store.packing import DIGEST, PARTS, pack_index, unpack_index, widest_part
from rempart.store.tables import search_index
from rempart.wiring import Services


def _resource_rows(rng: random.Random, count: int) -> list[tuple[str, str, list[bytes]]]:
    out = []
    for n in range(count):
        # From none to many digests: a long name has dozens of prefixes, all in a few slices.
        digests = sorted({rng.randbytes(DIGEST) for _ in range(rng.choice([0, 1, 8, 27, 90]))})
        out.append((rng.choice(["Patient", "Observation"]), f"stage-{n}", digests))
    return out


def _expected(rows: list[tuple[str, str, list[bytes]]]) -> set[tuple[str, bytes, str]]:
    return {(t, d, i) for t, i, digests in rows for d in digests}


def _stored(conn: Connection) -> set[tuple[str, bytes, str]]:
    query = select(search_index).where(search_index.c.res_id.like("stage-%"))
    return {(r.res_type, bytes(r.digest), r.res_id) for r in conn.execute(query)}


def test_packing_keeps_every_digest_in_its_slice() -> None:
    rows = _resource_rows(random.Random(1), 200)
    packed = [pack_index(t, i, d) for t, i, d in rows]
    assert all(len(p) == 2 + PARTS for p in packed)
    for row in packed:
        for k, part in enumerate(row[2:]):
            assert part is None or (len(part) % DIGEST == 0 and part)
            chunks = [part[j : j + DIGEST] for j in range(0, len(part or b""), DIGEST)]
            assert all(c[0] >> 4 == k for c in chunks)
    assert set(unpack_index(packed)) == _expected(rows)
    widest = max(
        sum(1 for d in digests if d[0] >> 4 == k) for _, _, digests in rows for k in range(PARTS)
    )
    assert widest_part(packed) == widest
    assert widest_part([]) == 0


@pytest.fixture
def bulk(services: Services) -> Iterator[Connection]:
    with bulk_connection(services.engine) as conn:
        yield conn


def _key(conn: Connection) -> str | None:
    """The PostgreSQL index's primary key as the catalog has it, or None."""
    with conn.begin():
        return conn.exec_driver_sql(  # type: ignore[no-any-return]
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'pk_search_index' AND contype = 'p'"
        ).scalar()


KEY = "PRIMARY KEY (digest, res_type, res_id)"


@pytest.mark.parametrize(("deferred", "expected"), [(True, None), (False, None), (True, 1_000_000)])
def test_the_database_unpacks_exactly_the_committed_rows(
    bulk: Connection, deferred: bool, expected: int | None
) -> None:
    """Deferred, the load's rows become findable at the merge; not deferred, as each batch
    commits; deferred with a large `expected` on PostgreSQL (the seed), as each batch commits
    too, into an index whose key is dropped for the load and built again by the merge."""
    rng = random.Random(2)
    committed, rolled_back = _resource_rows(rng, 300), _resource_rows(rng, 50)
    rolled_back = [(t, i.replace("stage-", "stage-x"), d) for t, i, d in rolled_back]
    postgresql = bulk.dialect.name == "postgresql"
    keyless = postgresql and expected is not None
    stage = IndexStage(bulk, search_index, deferred=deferred, expected=expected)
    try:
        if postgresql:
            assert _key(bulk) == (None if keyless else KEY)
        for chunk in (committed[:120], committed[120:]):
            with bulk.begin():
                stage.add([pack_index(t, i, d) for t, i, d in chunk])
        failing = bulk.begin()
        stage.add([pack_index(t, i, d) for t, i, d in rolled_back])
        failing.rollback()  # the batch fails after its index rows were staged
        with bulk.begin():
            # Findable as soon as committed, or only after the merge.
            findable = not deferred or keyless
            assert _stored(bulk) == (_expected(committed) if findable else set())
    finally:
        stage.merge()
    if postgresql:
        assert _key(bulk) == KEY
    with bulk.begin():
        assert _stored(bulk) == _expected(committed)
        # The stage is gone with the load: nothing of it stays in the session.
        name = "rempart_stage_index"
        if bulk.dialect.name == "sqlite":
            left = bulk.exec_driver_sql(
                f"SELECT count(*) FROM sqlite_temp_master WHERE name = '{name}'"
            ).scalar()
            attached = [row[1] for row in bulk.exec_driver_sql("PRAGMA database_list")]
            assert attached == ["main"] or attached == ["main", "temp"]
            assert not _scratch_dirs(bulk)
        else:
            left = bulk.exec_driver_sql(
                f"SELECT count(*) FROM pg_tables WHERE tablename = '{name}'"
            ).scalar()
        assert left == 0


def _scratch_dirs(conn: Connection) -> list[Path]:
    database = conn.engine.url.database
    assert database
    return list(Path(database).resolve().parent.glob(".rempart-stage-*"))


def test_a_sqlite_stage_is_sorted_by_threads_from_a_private_scratch_file(
    bulk: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the deferred stage is a file in a 0700 directory beside the database, attached
    to the load's connection; the merge sorts its slices in threads (each on a connection of
    its own) and the load's connection inserts them in key order; every trace is gone after."""
    if bulk.dialect.name != "sqlite":
        pytest.skip("SQLite's scratch stage only")
    rows = _resource_rows(random.Random(5), 400)
    stage = IndexStage(bulk, search_index)
    (directory,) = _scratch_dirs(bulk)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    sorted_in: set[str] = set()
    real = slicesort._sort

    def spy(scratch: slicesort.ScratchStage, select: str, k: int) -> Path:
        sorted_in.add(threading.current_thread().name)
        return real(scratch, select, k)

    monkeypatch.setattr(slicesort, "_sort", spy)
    try:
        with bulk.begin():
            stage.add([pack_index(t, i, d) for t, i, d in rows])
    finally:
        stage.merge()
    assert sorted_in
    assert all(name.startswith("rempart-sort") for name in sorted_in)
    with bulk.begin():
        assert _stored(bulk) == _expected(rows)
    assert not directory.exists()
    assert not _scratch_dirs(bulk)


def test_a_failed_sort_merges_nothing_more_and_leaves_no_scratch(
    bulk: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    if bulk.dialect.name != "sqlite":
        pytest.skip("SQLite's threaded merge only")
    rows = _resource_rows(random.Random(6), 200)
    stage = IndexStage(bulk, search_index)
    real = slicesort._sort

    def failing(scratch: slicesort.ScratchStage, select: str, k: int) -> Path:
        if k == 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real(scratch, select, k)

    monkeypatch.setattr(slicesort, "_sort", failing)
    with bulk.begin():
        stage.add([pack_index(t, i, d) for t, i, d in rows])
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        stage.merge()
    # Slices 0-2 went in, each whole; none after the failure. Nothing of the stage stays.
    with bulk.begin():
        stored = _stored(bulk)
    assert stored == {r for r in _expected(rows) if r[1][0] >> 4 < 3}
    assert not _scratch_dirs(bulk)
    attached = [row[1] for row in bulk.exec_driver_sql("PRAGMA database_list")]
    bulk.rollback()
    assert "rempart_stage" not in attached
    assert "rempart_slice" not in attached


def test_a_killed_load_s_scratch_is_cleared_by_the_next(bulk: Connection) -> None:
    if bulk.dialect.name != "sqlite":
        pytest.skip("SQLite's scratch stage only")
    database = bulk.engine.url.database
    assert database
    parent = Path(database).resolve().parent
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = parent / f".rempart-stage-{dead.pid}-x"
    abandoned.mkdir()
    (abandoned / "stage.sqlite3").write_bytes(b"left by a killed seed")
    alive = parent / f".rempart-stage-{os.getppid()}-y"  # a live process's: kept
    alive.mkdir()
    stage = IndexStage(bulk, search_index)
    stage.merge()
    assert not abandoned.exists()
    assert alive.exists()
    alive.rmdir()


@pytest.mark.parametrize("held", [6, 300])
def test_a_deferred_merge_keeps_the_rows_held_before_and_the_key(
    bulk: Connection, held: int
) -> None:
    """On PostgreSQL the load drops the primary key, and the merge builds it again, when the
    index holds no more rows than the load is expected to bring (6 rows held, 100 expected);
    with more held (300) the key stays and the merge inserts slice by slice. Either way every
    row, old and new, is there after it, and so is the key. SQLite always merges slice by
    slice."""
    rng = random.Random(3)
    before = [
        (t, f"stage-old-{n}", [rng.randbytes(DIGEST)])
        for n, (t, _, _) in enumerate(_resource_rows(rng, held))
    ]
    staged = _resource_rows(rng, 100)
    with bulk.begin():
        bulk.execute(
            search_index.insert(),
            [{"res_type": t, "digest": d, "res_id": i} for t, i, ds in before for d in ds],
        )
    postgresql = bulk.dialect.name == "postgresql"
    stage = IndexStage(bulk, search_index, expected=100)
    try:
        if postgresql:
            assert _key(bulk) == (None if held <= 100 else KEY)
        with bulk.begin():
            stage.add([pack_index(t, i, d) for t, i, d in staged])
    finally:
        stage.merge()
    with bulk.begin():
        assert _stored(bulk) == _expected(before) | _expected(staged)
    # The key is in force again: the same row twice is refused.
    t, i, ds = staged[next(n for n, row in enumerate(staged) if row[2])]
    with pytest.raises(IntegrityError), bulk.begin():
        bulk.execute(search_index.insert(), [{"res_type": t, "digest": ds[0], "res_id": i}])
    if postgresql:
        assert _key(bulk) == KEY


def test_a_merge_that_fails_leaves_the_index_as_it_was(bulk: Connection) -> None:
    """A merge that fails on a row the key refuses (here: the same resource staged twice)
    keeps the key and the rows held before. On PostgreSQL the failing slice's transaction
    rolls back; on SQLite too (slices merged before it would stay, each complete: here every
    slice holds the duplicate)."""
    rng = random.Random(4)
    before = [("Patient", "stage-old", [rng.randbytes(DIGEST)])]
    with bulk.begin():
        bulk.execute(
            search_index.insert(),
            [{"res_type": t, "digest": d, "res_id": i} for t, i, ds in before for d in ds],
        )
    twice = [next(row for row in _resource_rows(rng, 40) if row[2])] * 2
    stage = IndexStage(bulk, search_index)
    with bulk.begin():
        stage.add([pack_index(t, i, d) for t, i, d in twice])
    with pytest.raises(IntegrityError):
        stage.merge()
    with bulk.begin():
        assert _stored(bulk) == _expected(before)
    t, i, ds = before[0]
    with pytest.raises(IntegrityError), bulk.begin():
        bulk.execute(search_index.insert(), [{"res_type": t, "digest": ds[0], "res_id": i}])


def test_a_keyless_load_that_the_key_refuses_fails_with_the_key_built(bulk: Connection) -> None:
    """PostgreSQL, keyless: the same resource loaded twice went into the index twice; the
    merge's key build refuses it and the load fails, with one copy of each row kept and the
    key built, so the index is never left without it. A later merge of the next load (which
    finds no key to drop) builds it too."""
    if bulk.dialect.name != "postgresql":
        pytest.skip("PostgreSQL drops its key for a load")
    rng = random.Random(8)
    twice = [next(row for row in _resource_rows(rng, 40) if row[2])] * 2
    stage = IndexStage(bulk, search_index, expected=1_000)
    with bulk.begin():
        stage.add([pack_index(t, i, d) for t, i, d in twice])
    assert _key(bulk) is None
    with pytest.raises(IntegrityError):
        stage.merge()
    assert _key(bulk) == KEY
    with bulk.begin():
        assert _stored(bulk) == _expected(twice[:1])
        count = bulk.execute(
            select(func.count()).where(search_index.c.res_id.like("stage-%"))
        ).scalar()
    assert count == len(twice[0][2])
    # A load killed before its merge leaves the index keyless; the next one takes it so.
    with bulk.begin():
        bulk.exec_driver_sql("ALTER TABLE search_index DROP CONSTRAINT pk_search_index")
    more = _resource_rows(rng, 30)
    stage = IndexStage(bulk, search_index, expected=1_000)
    with bulk.begin():
        stage.add([pack_index(t, i, d) for t, i, d in more])
    stage.merge()
    assert _key(bulk) == KEY
    with bulk.begin():
        assert _stored(bulk) == _expected(twice[:1]) | _expected(more)


def test_a_bulk_connection_gives_its_settings_back(services: Services) -> None:
    def current(conn: Connection) -> tuple[object, ...]:
        if conn.dialect.name == "sqlite":
            raw = conn.connection.driver_connection
            cache = raw.execute("PRAGMA cache_size").fetchone()[0]  # type: ignore[union-attr]
            sync = raw.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
            wal = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]  # type: ignore[union-attr]
            return (cache, sync, wal)
        raw = conn.connection.driver_connection
        return (conn.exec_driver_sql("SHOW synchronous_commit").scalar(), raw.prepare_threshold)  # type: ignore[union-attr]

    with services.engine.connect() as conn:
        before = current(conn)
    with bulk_connection(services.engine) as conn:
        during = current(conn)
    with services.engine.connect() as conn:
        after = current(conn)
    # Each setting changes during the load (none is already the load's value) and comes back.
    assert all(d != b for d, b in zip(during, before, strict=True)), (before, during)
    assert after == before


def test_the_memo_gives_the_digests_of_the_blind_index() -> None:
    key = os.urandom(32)
    plain, memo = BlindIndex(key), MemoBlindIndex(key)
    triples = [("Patient", "family", f"p:{n % 7}") for n in range(40)]
    assert [memo.digest(*t) for t in triples] == [plain.digest(*t) for t in triples]
    assert memo.digest("Patient", "given", "p:0") != memo.digest("Patient", "family", "p:0")


def test_index_digests_through_the_memo_are_those_of_one_digest_at_a_time() -> None:
    """The bulk path (pairs through the worker's memo, pads in one call) stores exactly the
    rows the API path computes digest by digest: an update must find and delete them."""
    key = os.urandom(32)
    plain, memo = BlindIndex(key), MemoBlindIndex(key)
    hospital = generate(4, 5)
    resources = hospital.directory() + [r for b in hospital.patient_batches(4) for r in b]
    padded = 0
    for body in resources * 2:  # the second round is served from the memo
        t, i = body["resourceType"], body["id"]
        one_by_one = {plain.digest(t, p, tok) for p, tok in extract_pairs(body)}
        pads = -len(one_by_one) % INDEX_PAD
        padded += pads > 0
        one_by_one |= {plain.digest(t, "_pad", f"{i}:{n}") for n in range(pads)}
        assert index_digests(memo, t, i, body) == sorted(one_by_one)
        assert len(one_by_one) % INDEX_PAD == 0
    assert padded  # the pads were exercised


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MemoBlindIndex, "LIMIT", 10)
    key = os.urandom(32)
    memo, plain = MemoBlindIndex(key), BlindIndex(key)
    for n in range(25):
        assert memo.digest("Observation", "code", f"c:{n}") == plain.digest(
            "Observation", "code", f"c:{n}"
        )
    assert sum(len(typed) for typed in memo._memo.values()) <= 10


def test_index_pairs_are_the_index_entries_in_order() -> None:
    hospital = generate(6, 3)
    resources = hospital.directory() + [r for b in hospital.patient_batches(6) for r in b]
    for body in resources:
        assert extract_pairs(body) == [(e.param, e.token) for e in extract_index(body)]
