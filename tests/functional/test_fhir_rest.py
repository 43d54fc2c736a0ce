"""FHIR REST interactions over HTTP: create, read, vread, update, history, search, errors."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.functional.conftest import Hospital

FHIR = {"Content-Type": "application/fhir+json"}


def clinician(hospital: Hospital) -> dict[str, str]:
    return {**hospital.headers("clinician"), **FHIR}


def new_patient(family: str = "Lefèvre", given: str = "Élodie") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given, "Marie"]}],
        "gender": "female",
        "birthDate": "1984-12-03",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "284127645108946"}],
    }


def create(hospital: Hospital, resource: dict[str, Any]) -> dict[str, Any]:
    response = hospital.client.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers=clinician(hospital)
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["etag"] == 'W/"1"'
    assert "/_history/1" in response.headers["location"]
    body: dict[str, Any] = response.json()
    return body


def test_create_read_update_vread_history(hospital: Hospital) -> None:
    client = hospital.client
    created = create(hospital, new_patient())
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"
    read = client.get(f"/fhir/Patient/{pid}", headers=clinician(hospital))
    assert read.status_code == 200
    assert read.json()["name"] == created["name"]
    # An HTTP-date (RFC 9110), the second of meta.lastUpdated.
    modified = parsedate_to_datetime(read.headers["last-modified"])
    assert read.headers["last-modified"].endswith(" GMT")
    updated = datetime.fromisoformat(read.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert modified == updated.replace(microsecond=0)

    changed = {**read.json(), "gender": "other"}
    ok = client.put(
        f"/fhir/Patient/{pid}", json=changed, headers={**clinician(hospital), "If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["meta"]["versionId"] == "2"
    stale = client.put(
        f"/fhir/Patient/{pid}", json=changed, headers={**clinician(hospital), "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"

    v1 = client.get(f"/fhir/Patient/{pid}/_history/1", headers=clinician(hospital)).json()
    assert v1["gender"] == "female"
    assert v1["meta"]["versionId"] == "1"
    history = client.get(f"/fhir/Patient/{pid}/_history", headers=clinician(hospital)).json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_update_changes_what_search_finds(hospital: Hospital) -> None:
    client = hospital.client
    created = create(hospital, new_patient(family="Quintrec-Abadie", given="Noé"))
    found = client.get(
        "/fhir/Patient", params={"family": "quintrec"}, headers=clinician(hospital)
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
    renamed = {**created, "name": [{"family": "Zyrtowski", "given": ["Noé"]}]}
    assert (
        client.put(
            f"/fhir/Patient/{created['id']}", json=renamed, headers=clinician(hospital)
        ).status_code
        == 200
    )
    old = client.get(
        "/fhir/Patient", params={"family": "quintrec"}, headers=clinician(hospital)
    ).json()
    assert old["total"] == 0
    new = client.get(
        "/fhir/Patient", params={"family": "ZYRTOW"}, headers=clinician(hospital)
    ).json()
    assert new["total"] == 1


def test_search_pages_with_total_and_next_links(hospital: Hospital) -> None:
    client = hospital.client
    # A clinician searches their own patients (issue #4): the records they registered count.
    for n in range(15):
        create(hospital, new_patient(family=f"Pagination{n}"))
    first = client.get("/fhir/Patient", params={"_count": 7}, headers=clinician(hospital)).json()
    assert first["type"] == "searchset"
    assert first["total"] >= 15
    assert len(first["entry"]) == 7
    seen = [e["resource"]["id"] for e in first["entry"]]
    link = {item["relation"]: item["url"] for item in first["link"]}
    assert "next" in link
    second = client.get(link["next"], headers=clinician(hospital)).json()
    more = [e["resource"]["id"] for e in second["entry"]]
    assert len(more) == 7
    assert not set(more) & set(seen)


def test_count_is_capped(hospital: Hospital) -> None:
    bundle = hospital.client.get(
        "/fhir/Observation", params={"_count": 100000}, headers=clinician(hospital)
    ).json()
    assert len(bundle["entry"]) <= 200


def test_clinical_search_by_patient_code_and_date(hospital: Hospital) -> None:
    client = hospital.client
    # Encounters of a patient this clinician registered (so within their care relationships).
    own = create(hospital, new_patient(family="Datesearch"))["id"]
    for start, end in (("2024-03-02T09:00:00Z", "2024-03-02T09:30:00Z"), ("2025-06-01", None)):
        period = {"start": start, **({"end": end} if end else {})}
        create(
            hospital,
            {
                "resourceType": "Encounter",
                "status": "finished" if end else "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": f"Patient/{own}"},
                "period": period,
            },
        )
    patients = client.get(
        "/fhir/Patient", params={"_count": 50}, headers=clinician(hospital)
    ).json()
    for entry in patients["entry"]:
        pid = entry["resource"]["id"]
        encounters = client.get(
            "/fhir/Encounter", params={"patient": pid}, headers=clinician(hospital)
        ).json()
        if encounters["total"]:
            break
    else:
        pytest.fail("the seeded hospital has no encounters")
    for e in encounters["entry"]:
        assert e["resource"]["subject"]["reference"] == f"Patient/{pid}"
    start = encounters["entry"][0]["resource"]["period"]["start"][:10]
    dated = client.get(
        "/fhir/Encounter",
        params={"patient": f"Patient/{pid}", "date": f"ge{start}"},
        headers=clinician(hospital),
    ).json()
    assert 1 <= dated["total"] <= encounters["total"]
    for e in dated["entry"]:
        end = e["resource"]["period"].get("end") or "9999"
        assert end[:10] >= start


def test_read_of_unknown_resource_is_refused_like_another_patients(hospital: Hospital) -> None:
    # Issue #4: to a caller restricted to some patients, "absent" must look like "not yours".
    response = hospital.client.get("/fhir/Patient/does-not-exist", headers=clinician(hospital))
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"


BAD_BODIES = [
    (b"{not json", 400),
    (b"[]", 400),
    (b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400),
    (b'{"resourceType": "Patient", "gender": "sometimes"}', 400),
    (b'{"resourceType": "Patient", "birthDate": "not-a-date"}', 400),
    (b'{"resourceType": "Patient", "unknownField": 1}', 400),
    (
        b'{"resourceType": "Patient", "generalPractitioner": [{"reference": "Practitioner/nope"}]}',
        422,
    ),
    (b'{"resourceType": "Patient", "generalPractitioner": [{"reference": "urn:uuid:123"}]}', 422),
    (b"", 400),
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES)
def test_bad_input_gets_an_operation_outcome_and_stores_nothing(
    hospital: Hospital, body: bytes, status: int
) -> None:
    client = hospital.client
    before = client.get("/fhir/Patient", params={"_count": 1}, headers=clinician(hospital)).json()[
        "total"
    ]
    response = client.post("/fhir/Patient", content=body, headers=clinician(hospital))
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"]
    assert "Traceback" not in response.text
    after = client.get("/fhir/Patient", params={"_count": 1}, headers=clinician(hospital)).json()[
        "total"
    ]
    assert after == before


def test_other_bad_requests(hospital: Hospital) -> None:
    client = hospital.client
    h = clinician(hospital)
    cases = {
        "unknown type": (client.get("/fhir/Spaceship", headers=h), 404),
        "unknown param": (client.get("/fhir/Patient", params={"colour": "blue"}, headers=h), 400),
        "bad date": (client.get("/fhir/Patient", params={"birthdate": "ge19xx"}, headers=h), 400),
        "bad count": (client.get("/fhir/Patient", params={"_count": "many"}, headers=h), 400),
        "bad version": (client.get("/fhir/Patient/x/_history/abc", headers=h), 400),
        "wrong media": (
            client.post(
                "/fhir/Patient",
                content=b"<Patient/>",
                headers={**h, "Content-Type": "application/xml"},
            ),
            415,
        ),
        "too large": (
            client.post("/fhir/Patient", content=b" " * (9 * 1024 * 1024), headers=h),
            413,
        ),
        "no route": (client.get("/nowhere", headers=h), 404),
        "bad if-match": (
            client.put(
                "/fhir/Patient/x",
                json={"resourceType": "Patient", "id": "x"},
                headers={**h, "If-Match": "yesterday"},
            ),
            400,
        ),
        "id mismatch": (
            client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "y"}, headers=h),
            400,
        ),
    }
    for label, (response, status) in cases.items():
        assert response.status_code == status, (label, response.text)
        assert response.json()["resourceType"] == "OperationOutcome", label


def test_capability_statement_lists_what_is_supported(hospital: Hospital) -> None:
    statement = hospital.client.get("/fhir/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {
        "Patient",
        "Encounter",
        "Condition",
        "Coverage",
        "DocumentReference",
        "CareTeam",
    } <= types
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"identifier", "family", "birthdate"} <= {p["name"] for p in patient["searchParam"]}


def test_security_headers(hospital: Hospital) -> None:
    response = hospital.client.get("/fhir/Organization", headers=clinician(hospital))
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
