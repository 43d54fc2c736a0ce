"""Over HTTP: a front desk never sees a clinical resource or element, finds other patients only
by exact identity traits; a patient sees only their own record, read-only. (Replaces the
interim role test of the record-server milestone.)"""

from __future__ import annotations

import uuid

from rempart.access.permissions import CLINICAL_TYPES
from rempart.access.roles import Role
from tests.functional.conftest import Hospital
from tests.unit.access.support import (
    admission,
    condition,
    encounter,
    login,
    new_staff,
    patient,
    services_of,
    unit,
)


def test_a_front_desk_never_sees_clinical_data(hospital: Hospital) -> None:
    client, services = hospital.client, services_of(hospital.client)
    site = unit(services)
    ward = unit(services, parent=site)
    family = f"Accueil{uuid.uuid4().hex[:6]}"
    nir = f"1{uuid.uuid4().int % 10**14:014d}"
    booked = patient(services, family)
    visit = encounter(services, booked, provider=ward, reason="F32.9")
    condition(services, booked, "F32.9", note="épisode dépressif")
    walk_in = patient(
        services, family, identifier=[{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": nir}]
    )
    desk = new_staff(services, Role.SECRETARY, units=(site,))
    headers = login(client, desk)

    assert client.get(f"/fhir/Patient/{booked}", headers=headers).status_code == 200
    shown = client.get(f"/fhir/Encounter/{visit}", headers=headers).json()
    assert "reasonCode" not in shown
    assert "F32" not in client.get("/fhir/Encounter", params={"patient": booked},
                                   headers=headers).text  # fmt: skip
    assert client.get("/fhir/Encounter", params={"reason-code": "F32.9"},
                      headers=headers).status_code == 403  # fmt: skip
    for res_type in sorted(CLINICAL_TYPES):
        assert client.get(f"/fhir/{res_type}", headers=headers).status_code == 403, res_type
        assert client.get(f"/fhir/{res_type}", params={"patient": booked},
                          headers=headers).status_code == 403  # fmt: skip

    by_name = client.get("/fhir/Patient", params={"family": family}, headers=headers).json()
    assert {e["resource"]["id"] for e in by_name["entry"]} == {booked}  # not the walk-in
    assert by_name["total"] == 1
    by_nir = client.get("/fhir/Patient", params={"identifier": nir}, headers=headers).json()
    assert [e["resource"]["id"] for e in by_nir["entry"]] == [walk_in]
    assert client.get(f"/fhir/Patient/{walk_in}", headers=headers).status_code == 403
    # Found by their NIR, the walk-in is admitted by the desk, which then reaches them.
    admitted = client.post("/fhir/Encounter", json=admission(walk_in, ward), headers=headers)
    assert admitted.status_code == 201, admitted.text
    assert client.get(f"/fhir/Patient/{walk_in}", headers=headers).status_code == 200


def test_a_patient_sees_only_their_own_record(hospital: Hospital) -> None:
    client, services = hospital.client, services_of(hospital.client)
    own, other = patient(services), patient(services)
    encounter(services, own)
    encounter(services, other)
    holder = new_staff(services, Role.PATIENT, patient=f"Patient/{own}")
    headers = login(client, holder)
    assert client.get(f"/fhir/Patient/{own}", headers=headers).status_code == 200
    everyone = client.get("/fhir/Patient", headers=headers).json()
    assert [e["resource"]["id"] for e in everyone["entry"]] == [own]
    assert everyone["total"] == 1
    encounters = client.get("/fhir/Encounter", params={"_count": 200}, headers=headers).json()
    assert {e["resource"]["subject"]["reference"] for e in encounters["entry"]} == {
        f"Patient/{own}"
    }
    refused = client.get(f"/fhir/Patient/{other}", headers=headers)
    missing = client.get("/fhir/Patient/no-such-patient", headers=headers)
    assert refused.status_code == missing.status_code == 403
    write = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert write.status_code == 403
    glass = client.post(
        "/access/break-glass",
        json={"patient": f"Patient/{other}", "reason": "je veux voir ce dossier"},
        headers=headers,
    )
    assert glass.status_code == 403
