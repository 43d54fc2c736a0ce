"""Transaction and batch Bundles: urn:uuid and conditional references, all or nothing."""

from __future__ import annotations

import uuid
from typing import Any

from tests.functional.conftest import Hospital

FHIR = {"Content-Type": "application/fhir+json"}
RPPS = "urn:oid:1.2.250.1.71.4.2.1"


def h(hospital: Hospital) -> dict[str, str]:
    return {**hospital.headers("clinician"), **FHIR}


def count(hospital: Hospital, res_type: str, **params: str) -> int:
    response = hospital.client.get(
        f"/fhir/{res_type}", params={"_count": 1, **params}, headers=h(hospital)
    )
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def an_rpps(hospital: Hospital) -> str:
    # A seeded doctor's: other tests on this hospital create Practitioners without one.
    page = hospital.client.get(
        "/fhir/Practitioner", params={"_count": 100}, headers=h(hospital)
    ).json()
    ident = next(
        i
        for entry in page["entry"]
        for i in entry["resource"].get("identifier", [])
        if i["system"] == RPPS
    )
    return str(ident["value"])


def transaction(entries: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def test_transaction_resolves_urn_and_conditional_references(hospital: Hospital) -> None:
    marker = f"Tx{uuid.uuid4().hex[:8]}"
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    rpps = an_rpps(hospital)
    bundle = transaction(
        [
            {  # the condition comes first and refers to the patient created after it
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": patient_urn},
                    "code": {
                        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]
                    },
                    "recorder": {
                        "reference": f"Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|{rpps}"
                    },
                },
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient", "name": [{"family": marker}]},
                "request": {"method": "POST", "url": "Patient"},
            },
        ]
    )
    response = hospital.client.post("/fhir", json=bundle, headers=h(hospital))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    condition = result["entry"][0]["resource"]
    patient_id = result["entry"][1]["resource"]["id"]
    assert condition["subject"]["reference"] == f"Patient/{patient_id}"
    assert condition["recorder"]["reference"].startswith("Practitioner/")
    assert "?" not in condition["recorder"]["reference"]
    assert count(hospital, "Condition", patient=patient_id) == 1


def test_failed_transaction_stores_nothing(hospital: Hospital) -> None:
    marker = f"Rollback{uuid.uuid4().hex[:8]}"
    bundle = transaction(
        [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": marker}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "Patient/this-patient-does-not-exist"},
                    "code": {"text": "x"},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
        ]
    )
    response = hospital.client.post("/fhir", json=bundle, headers=h(hospital))
    # 403, not 422: an unknown patient must look like another clinician's patient (issue #4).
    assert response.status_code == 403, response.text
    assert "entry 1" in response.json()["issue"][0]["diagnostics"]
    assert count(hospital, "Patient", family=marker) == 0


def test_conditional_reference_must_match_exactly_one(hospital: Hospital) -> None:
    bundle = transaction(
        [
            {
                "resource": {
                    "resourceType": "Patient",
                    "generalPractitioner": [
                        {"reference": f"Practitioner?identifier={RPPS}|00000000000"}
                    ],
                },
                "request": {"method": "POST", "url": "Patient"},
            }
        ]
    )
    response = hospital.client.post("/fhir", json=bundle, headers=h(hospital))
    assert response.status_code == 422
    assert "matches 0" in response.json()["issue"][0]["diagnostics"]


def test_if_none_exist_reuses_the_existing_resource(hospital: Hospital) -> None:
    rpps = an_rpps(hospital)
    before = count(hospital, "Practitioner")
    bundle = transaction(
        [
            {
                "fullUrl": "urn:uuid:7d1e6a8e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": rpps}],
                },
                "request": {
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": f"identifier=urn:oid:1.2.250.1.71.4.2.1|{rpps}",
                },
            }
        ]
    )
    # Practitioners are directory data: an administrator writes them.
    response = hospital.client.post(
        "/fhir", json=bundle, headers={**hospital.headers("admin"), **FHIR}
    )
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"] == "200 OK"
    assert count(hospital, "Practitioner") == before


def test_batch_reports_each_entry(hospital: Hospital) -> None:
    marker = f"Batch{uuid.uuid4().hex[:8]}"
    bundle = transaction(
        [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": marker}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "neither"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": f"Patient?family={marker}"}},
        ],
        kind="batch",
    )
    response = hospital.client.post("/fhir", json=bundle, headers=h(hospital))
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400 Bad Request"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["resource"]["total"] == 1


def test_bad_bundles(hospital: Hospital) -> None:
    client = hospital.client
    for body in (
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "collection"},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": "Patient/x"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST", "url": "Nope"}, "resource": {}}],
        },
        {"resourceType": "Bundle", "type": "transaction", "entry": "many"},
    ):
        response = client.post("/fhir", json=body, headers=h(hospital))
        assert response.status_code == 400, (body, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
