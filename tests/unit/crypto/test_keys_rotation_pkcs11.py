"""KEK rotation on a SoftHSM2 token while a second, stale-viewed provider keeps working."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from rempart.crypto import Pkcs11KeyProvider, WrappedKey
from rempart.store.db import make_engine
from rempart.store.keyring import Keyring, wrap_aad
from rempart.store.migrate import upgrade
from rempart.store.rotation import keys_per_kek, rotate
from rempart.store.tables import data_key
from softhsm import SoftHsmToken


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.sqlite3'}", pool_size=4)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_rotation_under_load_with_a_provider_that_sees_the_new_kek_late(
    engine: Engine, hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken, kek_prefix: str
) -> None:
    # The "other server process": same token and prefix, its own view of the KEK list, which
    # it rescans at most once a second, and no key cache (every read unwraps).
    other = Pkcs11KeyProvider(
        softhsm_token.library_path, softhsm_token.token_label, softhsm_token.pin, kek_prefix
    )
    old = other.current_kek_id()
    mine = Keyring(engine, hsm)
    theirs = Keyring(engine, other, cache_seconds=1e-6)
    keys: dict[str, bytes] = {}
    with engine.begin() as conn:
        for i in range(300):
            key = mine.key_for(conn, f"p{i:04d}", create=True)
            assert key is not None
            keys[f"p{i:04d}"] = key
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = {"reads": 0, "creates": 0}

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                with engine.begin() as conn:
                    owner = f"p{n % 300:04d}"
                    assert theirs.key_for(conn, owner, create=False) == keys[owner]
                    counts["reads"] += 1
                    if n % 5 == 0:
                        new_owner = f"late{n:06d}"
                        key = theirs.key_for(conn, new_owner, create=True)
                        assert key is not None
                        keys[new_owner] = key
                        counts["creates"] += 1
            except BaseException as exc:
                errors.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        report = rotate(engine, hsm, batch_size=50)
    finally:
        stop.set()
        worker.join()
    assert errors == []
    assert counts["reads"] > 100
    assert counts["creates"] > 10
    assert report.retired == [old]
    assert hsm.kek_ids() == [report.new_kek]
    assert keys_per_kek(engine) == {report.new_kek: len(keys)}
    other.close()
    with engine.connect() as conn:
        rows = conn.execute(select(data_key)).all()
    for row in rows:
        assert (
            hsm.unwrap(WrappedKey(row.kek_id, row.wrapped), wrap_aad(row.owner)) == keys[row.owner]
        )
