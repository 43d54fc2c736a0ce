"""What each role reaches before the care-relationship policy (issue #4) lands.

Administrators and security officers get no patient data at all, from day one; patients see only
their own record; secretaries never see clinical resources.
"""

from __future__ import annotations

import pytest

from tests.functional.conftest import Hospital

PATIENT_DATA = [
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Coverage",
    "DocumentReference",
    "AllergyIntolerance",
]


@pytest.mark.parametrize("role", ["admin", "security_officer"])
def test_administrators_reach_no_patient_data(hospital: Hospital, role: str) -> None:
    headers = hospital.headers(role)
    some_patient = hospital.client.get(
        "/fhir/Patient", params={"_count": 1}, headers=hospital.headers("clinician")
    ).json()
    pid = some_patient["entry"][0]["resource"]["id"]
    for res_type in PATIENT_DATA:
        response = hospital.client.get(f"/fhir/{res_type}", headers=headers)
        assert response.status_code == 403, (res_type, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert hospital.client.get(f"/fhir/Patient/{pid}", headers=headers).status_code == 403
    assert hospital.client.get(f"/fhir/Patient/{pid}/_history", headers=headers).status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}],
    }
    batch = hospital.client.post("/fhir", json=bundle, headers=headers).json()
    assert batch["entry"][0]["response"]["status"] == "403 Forbidden"
    assert "resource" not in batch["entry"][0]
    # The directory is theirs to read.
    assert hospital.client.get("/fhir/Organization", headers=headers).status_code == 200


def test_a_patient_sees_only_their_own_record(hospital: Hospital) -> None:
    account = hospital.account("patient", 0)
    headers = hospital.headers("patient", 0)
    own = account["patient"].removeprefix("Patient/")
    assert hospital.client.get(f"/fhir/Patient/{own}", headers=headers).status_code == 200
    everyone = hospital.client.get("/fhir/Patient", headers=headers).json()
    assert [e["resource"]["id"] for e in everyone["entry"]] == [own]
    assert everyone["total"] == 1
    encounters = hospital.client.get(
        "/fhir/Encounter", params={"_count": 200}, headers=headers
    ).json()
    for entry in encounters["entry"]:
        assert entry["resource"]["subject"]["reference"] == f"Patient/{own}"
    other = next(
        a
        for a in hospital.accounts
        if a["role"] == "patient" and a["patient"] != account["patient"]
    )
    other_id = other["patient"].removeprefix("Patient/")
    refused = hospital.client.get(f"/fhir/Patient/{other_id}", headers=headers)
    missing = hospital.client.get("/fhir/Patient/no-such-patient", headers=headers)
    # Same status and message whether the record exists or not.
    assert refused.status_code == missing.status_code == 403
    assert refused.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
    write = hospital.client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert write.status_code == 403


def test_a_secretary_never_sees_clinical_resources(hospital: Hospital) -> None:
    headers = hospital.headers("secretary", 0)
    assert (
        hospital.client.get("/fhir/Patient", params={"_count": 1}, headers=headers).status_code
        == 200
    )
    for res_type in (
        "Condition",
        "Observation",
        "MedicationRequest",
        "DocumentReference",
        "AllergyIntolerance",
    ):
        assert hospital.client.get(f"/fhir/{res_type}", headers=headers).status_code == 403
