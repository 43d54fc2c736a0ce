"""The store fails closed: a tampered, swapped or unkeyed blob is never served."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.errors import Forbidden, StoredDataTampered
from rempart.store.tables import data_key, resource_version
from rempart.wiring import Services

CLINICIAN = Principal("acct", "dr", Role.CLINICIAN, None, None)
ADMIN = Principal("acct2", "admin", Role.ADMIN, None, None)


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def test_round_trip(services: Services) -> None:
    decision = decide(CLINICIAN)
    stored = services.store.create(decision, patient("Durand"))
    assert (
        services.store.read(decision, "Patient", stored.res_id).json()["name"][0]["family"]
        == "Durand"
    )


def test_flipped_byte_fails_closed(services: Services) -> None:
    decision = decide(CLINICIAN)
    stored = services.store.create(decision, patient("Martin"))
    with services.engine.begin() as conn:
        blob = conn.execute(
            select(resource_version.c.payload).where(resource_version.c.res_id == stored.res_id)
        ).scalar_one()
        tampered = bytearray(blob)
        tampered[len(tampered) // 2] ^= 0x01
        conn.execute(
            update(resource_version)
            .where(resource_version.c.res_id == stored.res_id)
            .values(payload=bytes(tampered))
        )
    with pytest.raises(StoredDataTampered):
        services.store.read(decision, "Patient", stored.res_id)


def test_swapped_ciphertexts_fail_closed(services: Services) -> None:
    decision = decide(CLINICIAN)
    a = services.store.create(decision, patient("Petit"))
    b = services.store.create(decision, patient("Moreau"))
    with services.engine.begin() as conn:
        blobs = dict(
            conn.execute(
                select(resource_version.c.res_id, resource_version.c.payload).where(
                    resource_version.c.res_id.in_([a.res_id, b.res_id])
                )
            ).all()
        )
        conn.execute(
            update(resource_version)
            .where(resource_version.c.res_id == a.res_id)
            .values(payload=blobs[b.res_id])
        )
    with pytest.raises(StoredDataTampered):
        services.store.read(decision, "Patient", a.res_id)


def test_swapped_data_keys_fail_closed(services: Services) -> None:
    decision = decide(CLINICIAN)
    a = services.store.create(decision, patient("Garnier"))
    b = services.store.create(decision, patient("Faure"))
    with services.engine.begin() as conn:
        wrapped = dict(
            conn.execute(
                select(data_key.c.owner, data_key.c.wrapped).where(
                    data_key.c.owner.in_([a.res_id, b.res_id])
                )
            ).all()
        )
        conn.execute(
            update(data_key).where(data_key.c.owner == a.res_id).values(wrapped=wrapped[b.res_id])
        )
    services.keyring.forget(a.res_id)
    with pytest.raises(StoredDataTampered):
        services.store.read(decision, "Patient", a.res_id)


def test_decision_is_checked_before_decryption(services: Services) -> None:
    stored = services.store.create(decide(CLINICIAN), patient("Roux"))
    with pytest.raises(Forbidden):
        services.store.read(decide(ADMIN), "Patient", stored.res_id)


def test_a_decision_cannot_be_forged() -> None:
    from rempart.access.decision import Decision

    with pytest.raises(TypeError):
        Decision("x", "clinician", frozenset({"Patient"}), frozenset(), None, "forged", object())
