"""KEK rotation re-wraps data keys only, sweeps keys wrapped late, keeps what it cannot move."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from rempart import alerts
from rempart.access.pdp import system_decision
from rempart.crypto import FileKeyProvider, KekNotFound, WrappedKey, new_data_key
from rempart.crypto.aead import seal_with
from rempart.store.keyring import Keyring, wrap_aad
from rempart.store.rotation import keys_per_kek, rotate
from rempart.store.tables import data_key, resource_version
from rempart.wiring import Services

SYSTEM = system_decision("tests of the key layer")


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def blobs(services: Services) -> dict[str, bytes]:
    with services.engine.connect() as conn:
        rows = conn.execute(select(resource_version.c.res_id, resource_version.c.payload)).all()
    return {r.res_id: r.payload for r in rows}


def test_rotation_rewraps_every_data_key_and_retires_the_old_kek(services: Services) -> None:
    ids = [services.store.create(SYSTEM, patient(f"Nom{i}")).res_id for i in range(7)]
    old = services.provider.current_kek_id()
    before = blobs(services)
    report = rotate(services.engine, services.provider, batch_size=3, settle_seconds=0.0)
    new = services.provider.current_kek_id()
    assert new == report.new_kek != old
    assert report.retired == [old]
    assert report.kept == []
    # 7 patients, plus the directory, search and guard (decoy tags) keys made at start-up.
    assert report.rewrapped == 10
    assert keys_per_kek(services.engine) == {new: 10}
    assert services.provider.kek_ids() == [new]
    assert blobs(services) == before  # no record was re-encrypted
    fresh = Keyring(services.engine, services.provider)
    with services.engine.connect() as conn:
        for pid in ids:
            assert fresh.key_for(conn, pid, create=False) is not None
    assert services.store.read(SYSTEM, "Patient", ids[0]).json()["name"][0]["family"] == "Nom0"
    rotated = alerts.list_alerts(services.engine, kind="kek-rotated")
    assert rotated[0].details["retired"] == old
    assert rotated[0].details["rewrapped"] == 10


def test_keys_wrapped_under_the_old_kek_meanwhile_are_swept_before_retiring(
    services: Services,
) -> None:
    """Another process that has not seen the new KEK yet keeps wrapping under the old one."""
    services.store.create(SYSTEM, patient("Avant"))
    provider = services.provider
    assert isinstance(provider, FileKeyProvider)
    old = provider.current_kek_id()
    old_aead = provider._loaded().aeads[old]  # the stale process's view of the key file
    late_key = new_data_key()
    inserted: list[str] = []

    def stale_process_writes(_n: int) -> None:
        if inserted:
            return
        blob = seal_with(old_aead, late_key, wrap_aad("late-patient"))
        with services.engine.begin() as conn:
            conn.execute(
                insert(data_key).values(owner="late-patient", kek_id=old, wrapped=blob, created=1)
            )
        inserted.append("late-patient")

    report = rotate(
        services.engine, provider, batch_size=100, settle_seconds=0.2, progress=stale_process_writes
    )
    assert inserted
    assert report.sweeps >= 2
    assert report.retired == [old]
    with services.engine.connect() as conn:
        row = conn.execute(select(data_key).where(data_key.c.owner == "late-patient")).one()
    assert row.kek_id == report.new_kek
    assert provider.unwrap(WrappedKey(row.kek_id, row.wrapped), wrap_aad("late-patient")) == (
        late_key
    )


def test_a_key_that_will_not_unwrap_keeps_its_kek_and_raises_an_alert(services: Services) -> None:
    a = services.store.create(SYSTEM, patient("Abîmé"))
    b = services.store.create(SYSTEM, patient("Intact"))
    old = services.provider.current_kek_id()
    with services.engine.begin() as conn:
        tampered = conn.execute(
            select(data_key.c.wrapped).where(data_key.c.owner == a.res_id)
        ).scalar_one()
        conn.execute(
            update(data_key)
            .where(data_key.c.owner == a.res_id)
            .values(wrapped=tampered[:-1] + bytes([tampered[-1] ^ 1]))
        )
    report = rotate(services.engine, services.provider, settle_seconds=0.0)
    assert report.failed_owners == [a.res_id]
    assert report.kept == [old]
    assert report.retired == []
    assert old in services.provider.kek_ids()
    assert keys_per_kek(services.engine)[old] == 1
    assert services.store.read(SYSTEM, "Patient", b.res_id).version == 1
    failed = alerts.list_alerts(services.engine, kind="rotation-unwrap-failed")
    assert failed[0].details == {"owner": a.res_id, "kek_id": old}
    summary = alerts.list_alerts(services.engine, kind="kek-rotated")
    assert summary[0].severity == "warning"


def test_a_reader_holding_a_row_from_before_the_rotation_still_gets_its_key(
    services: Services,
) -> None:
    """The row was read, then re-wrapped and its KEK retired, then unwrapped: read it again."""
    stored = services.store.create(SYSTEM, patient("Lent"))
    with services.engine.connect() as conn:
        before = conn.execute(select(data_key).where(data_key.c.owner == stored.res_id)).one()
    rotate(services.engine, services.provider, settle_seconds=0.0)
    with pytest.raises(KekNotFound):
        services.provider.unwrap(WrappedKey(before.kek_id, before.wrapped), wrap_aad(stored.res_id))
    keyring = Keyring(services.engine, services.provider)
    with services.engine.connect() as conn:
        key = keyring._unwrap(conn, stored.res_id, before.kek_id, before.wrapped)
    assert len(key) == 32
    assert alerts.list_alerts(services.engine, kind="kek-missing") == []


def test_a_key_wrapped_in_a_long_transaction_is_not_lost(services: Services) -> None:
    """A bulk import wrapped a key under the old KEK, then commits after the settle delay."""
    services.store.create(SYSTEM, patient("Avant"))
    wrapped = threading.Event()
    writer_keyring = Keyring(services.engine, services.provider)
    keys: dict[str, bytes] = {}

    def long_import() -> None:
        with services.engine.begin() as conn:
            key = writer_keyring.key_for(conn, "slow-owner", create=True)
            assert key is not None
            keys["slow-owner"] = key
            wrapped.set()
            time.sleep(1.5)  # longer than the settle delay below

    writer = threading.Thread(target=long_import)
    writer.start()
    assert wrapped.wait(10)
    old = services.provider.kek_ids()[0]
    report = rotate(services.engine, services.provider, settle_seconds=0.2)
    writer.join()
    assert report.retired == [old]
    with services.engine.connect() as conn:
        row = conn.execute(select(data_key).where(data_key.c.owner == "slow-owner")).one()
    assert row.kek_id == report.new_kek
    assert (
        services.provider.unwrap(WrappedKey(row.kek_id, row.wrapped), wrap_aad("slow-owner"))
        == (keys["slow-owner"])
    )
