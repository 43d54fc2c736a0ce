"""A front desk: administrative data of its establishment's stays and appointments, exact
identity lookups for anyone else, never a clinical element."""

from __future__ import annotations

import uuid

import pytest

from rempart.access import membership
from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.errors import Forbidden
from rempart.fhir import parse_search
from rempart.store.search import search
from rempart.wiring import Services
from tests.unit.access.support import SYSTEM, condition, encounter, patient, unit


def desk(services: Services, *units: str) -> Principal:
    account_id = str(uuid.uuid4())
    with services.engine.begin() as conn:
        for u in units:
            membership.add(conn, account_id, u, None)
    return Principal(account_id, "accueil", Role.SECRETARY, None, None)


def ids(
    services: Services, who: Principal, res_type: str, params: list[tuple[str, str]]
) -> set[str]:
    found, total = search(services.store, decide(who), parse_search(res_type, params))
    assert total == len(found)
    return {s.res_id for s in found}


def test_establishment_scope_and_clinical_elements(services: Services) -> None:
    site, elsewhere = unit(services), unit(services)
    ward = unit(services, parent=site)
    booked = patient(services)
    soon = "2099-01-05T09:00:00Z"  # an appointment to come
    visit = encounter(services, booked, status="planned", provider=ward, reason="C50.9", start=soon)
    other = patient(services)
    encounter(services, other, provider=elsewhere)
    condition(services, booked, "C50.9")
    who = desk(services, site)

    assert ids(services, who, "Patient", []) == {booked}
    shown = services.store.read(decide(who), "Encounter", visit).json()
    assert "reasonCode" not in shown
    assert shown["status"] == "planned"
    with pytest.raises(Forbidden):
        search(services.store, decide(who), parse_search("Condition", []))
    with pytest.raises(Forbidden):
        ids(services, who, "Encounter", [("reason-code", "C50.9")])
    with pytest.raises(Forbidden):
        services.store.read(decide(who), "Patient", other)

    # Rescheduling keeps the diagnosis the desk cannot see; writing one is refused.
    body = services.store.read(decide(who), "Encounter", visit).json()
    body["period"] = {"start": "2027-02-01T09:00:00Z"}
    services.store.update(decide(who), "Encounter", visit, body)
    assert services.store.read(SYSTEM, "Encounter", visit).json()["reasonCode"]
    with pytest.raises(Forbidden):
        services.store.update(
            decide(who), "Encounter", visit, {**body, "reasonCode": [{"text": "autre"}]}
        )


def test_exact_identity_lookup_and_admission(services: Services) -> None:
    site = unit(services)
    family = f"Lookup{uuid.uuid4().hex[:6]}"
    nir = f"2{uuid.uuid4().int % 10**14:014d}"
    ident = [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": nir}]
    walk_in = patient(services, family, identifier=ident, birthDate="1981-06-02")
    who = desk(services, site)

    assert ids(services, who, "Patient", [("identifier", nir)]) == {walk_in}
    exact = [("family:exact", family), ("birthdate", "1981-06-02")]
    assert ids(services, who, "Patient", exact) == {walk_in}
    # Browsing, partial names, a name without the birth date, a whole year: nothing.
    for params in (
        [("family", family[:6])],
        [("family:exact", family)],
        [("family:exact", family), ("birthdate", "1981")],
        [("identifier", f"{nir},{nir}")],
    ):
        assert ids(services, who, "Patient", params) == set(), params
    assert ids(services, who, "Coverage", [("patient", walk_in)]) == set()
    with pytest.raises(Forbidden):
        services.store.read(decide(who), "Patient", walk_in)

    # Admission in the desk's establishment brings the patient into its scope.
    admission = {
        "resourceType": "Encounter",
        "status": "arrived",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": f"Patient/{walk_in}"},
        "serviceProvider": {"reference": site},
    }
    services.store.create(decide(who), admission)
    assert services.store.read(decide(who), "Patient", walk_in).res_id == walk_in
    # ... but not into another establishment's.
    with pytest.raises(Forbidden):
        services.store.create(
            decide(who),
            {**admission, "subject": {"reference": f"Patient/{patient(services)}"},
             "serviceProvider": {"reference": unit(services)}},
        )  # fmt: skip
