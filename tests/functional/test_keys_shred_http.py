"""Over HTTP, an erased patient's records answer 410 Gone with an OperationOutcome, never 500."""

from __future__ import annotations

from rempart.store.shred import shred_patient
from rempart.wiring import Services
from tests.functional.conftest import Hospital

FHIR = {"Content-Type": "application/fhir+json"}


def test_reads_of_an_erased_patient_answer_410(hospital: Hospital) -> None:
    headers = {**hospital.headers("clinician"), **FHIR}
    client = hospital.client
    created = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Effacé"}], "gender": "male"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    obs = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"},
        },
        headers=headers,
    )
    assert obs.status_code == 201, obs.text
    services: Services = client.app.state.services  # type: ignore[attr-defined]

    shred_patient(services.engine, services.keyring, pid)

    for path in (
        f"/fhir/Patient/{pid}",
        f"/fhir/Patient/{pid}/_history/1",
        f"/fhir/Observation/{obs.json()['id']}/_history",
    ):
        gone = client.get(path, headers=headers)
        assert gone.status_code == 410, (path, gone.text)
        outcome = gone.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "deleted"
        assert "erased" in outcome["issue"][0]["diagnostics"]
        assert "Effacé" not in gone.text
    search = client.get("/fhir/Patient", params={"family": "Effacé"}, headers=headers)
    assert search.status_code == 200
    assert search.json().get("total") == 0
    later = client.post(
        "/fhir/Observation",
        json={**obs.json(), "id": None, "meta": None},
        headers=headers,
    )
    assert later.status_code == 410, later.text
