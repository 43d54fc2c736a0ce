"""Crypto-shredding: one patient's data becomes unreadable, everyone else's stays intact."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from rempart.access.pdp import system_decision
from rempart.crypto import BlindIndex
from rempart.errors import ResourceNotFound
from rempart.fhir import parse_search
from rempart.store.keyring import ERASURE_POLL_SECONDS, SEARCH_OWNER, Keyring
from rempart.store.repository import ResourceStore
from rempart.store.search import search
from rempart.store.shred import PatientErased, erased_owner, not_erased, shred_patient
from rempart.store.tables import data_key, resource, resource_version, search_index
from rempart.wiring import Services

SYSTEM = system_decision("tests of the key layer")


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], "birthDate": "1961-07-08"}


def observation(patient_id: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def index_rows(services: Services, res_id: str) -> int:
    with services.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(search_index)
                .where(search_index.c.res_id == res_id)
            ).scalar_one()
        )


def find(services: Services, res_type: str, **params: str) -> set[str]:
    query = parse_search(res_type, list(params.items()), default_count=50, max_count=50)
    found, _total = search(services.store, SYSTEM, query)
    return {s.res_id for s in found}


def test_shred_makes_every_version_unreadable_and_unsearchable(services: Services) -> None:
    erased = services.store.create(SYSTEM, patient("Dumont"))
    kept = services.store.create(SYSTEM, patient("Dumont"))
    obs = services.store.create(SYSTEM, observation(erased.res_id, 72))
    services.store.update(SYSTEM, "Observation", obs.res_id, {**obs.json(), "status": "amended"})
    kept_obs = services.store.create(SYSTEM, observation(kept.res_id, 64))
    assert find(services, "Patient", family="Dumont") == {erased.res_id, kept.res_id}
    assert index_rows(services, obs.res_id) > 0

    shred_patient(services.engine, services.keyring, erased.res_id)

    for read in (
        lambda: services.store.read(SYSTEM, "Patient", erased.res_id),
        lambda: services.store.read(SYSTEM, "Observation", obs.res_id),
        lambda: services.store.vread(SYSTEM, "Observation", obs.res_id, 1),
        lambda: services.store.history(SYSTEM, "Observation", obs.res_id),
    ):
        with pytest.raises(PatientErased, match="erased") as caught:
            read()
        assert caught.value.status == 410
    assert find(services, "Patient", family="Dumont") == {kept.res_id}
    assert find(services, "Observation", subject=f"Patient/{erased.res_id}") == set()
    assert index_rows(services, erased.res_id) == 0
    assert index_rows(services, obs.res_id) == 0
    with services.engine.connect() as conn:
        assert (
            conn.execute(select(data_key).where(data_key.c.owner == erased.res_id)).first() is None
        )
        assert conn.execute(select(erased_owner.c.owner)).scalars().all() == [erased.res_id]
        # The ciphertexts stay (the audit log names those versions); they are just unreadable.
        versions = conn.execute(
            select(func.count())
            .select_from(resource_version)
            .where(resource_version.c.owner == erased.res_id)
        ).scalar_one()
        assert versions == 3
    # Everyone else is untouched.
    assert services.store.read(SYSTEM, "Patient", kept.res_id).json()["name"][0]["family"] == (
        "Dumont"
    )
    assert services.store.read(SYSTEM, "Observation", kept_obs.res_id).version == 1
    assert find(services, "Observation", subject=f"Patient/{kept.res_id}") == {kept_obs.res_id}


def test_no_new_record_can_be_attached_to_an_erased_patient(services: Services) -> None:
    erased = services.store.create(SYSTEM, patient("Bertin"))
    shred_patient(services.engine, services.keyring, erased.res_id)
    with pytest.raises(PatientErased):
        services.store.create(SYSTEM, observation(erased.res_id, 80))
    with services.engine.connect() as conn:
        assert (
            conn.execute(select(data_key).where(data_key.c.owner == erased.res_id)).first() is None
        )


def test_shred_is_idempotent_and_refuses_unknown_or_reserved_ids(services: Services) -> None:
    erased = services.store.create(SYSTEM, patient("Marchand"))
    shred_patient(services.engine, services.keyring, erased.res_id)
    shred_patient(services.engine, services.keyring, erased.res_id)
    with pytest.raises(ResourceNotFound):
        shred_patient(services.engine, services.keyring, "no-such-patient")
    for reserved in ("_directory", "_search", ""):
        with pytest.raises(ValueError, match="not a patient id"):
            shred_patient(services.engine, services.keyring, reserved)


def test_another_process_stops_using_its_cached_key_within_the_poll_delay(
    services: Services,
) -> None:
    erased = services.store.create(SYSTEM, patient("Carpentier"))
    # A second server process: its own keyring and cache over the same database.
    other_keyring = Keyring(services.engine, services.provider)
    other = ResourceStore(
        services.engine, other_keyring, BlindIndex(services.keyring.ensure(SEARCH_OWNER))
    )
    assert other.read(SYSTEM, "Patient", erased.res_id).version == 1  # key now cached there
    shred_patient(services.engine, services.keyring, erased.res_id)
    time.sleep(ERASURE_POLL_SECONDS + 0.1)
    with pytest.raises(PatientErased):
        other.read(SYSTEM, "Patient", erased.res_id)
    assert other_keyring.cached_count() <= 1  # the search key, at most


def test_not_erased_leaves_out_only_erased_patients_rows(services: Services) -> None:
    """The condition offered to search.py: directory rows and other patients' rows stay."""
    erased = services.store.create(SYSTEM, patient("Gone"))
    kept = services.store.create(SYSTEM, patient("Here"))
    obs = services.store.create(SYSTEM, observation(erased.res_id, 70))
    practitioner = services.store.create(
        SYSTEM, {"resourceType": "Practitioner", "name": [{"family": "Docteur"}]}
    )
    shred_patient(services.engine, services.keyring, erased.res_id)
    with services.engine.connect() as conn:
        visible = set(
            conn.execute(select(resource.c.res_id).where(not_erased(resource.c.compartment)))
            .scalars()
            .all()
        )
    assert kept.res_id in visible
    assert practitioner.res_id in visible
    assert erased.res_id not in visible
    assert obs.res_id not in visible
