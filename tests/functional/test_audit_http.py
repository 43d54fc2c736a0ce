"""The audit trail through the real HTTP application: every access recorded before the data
leaves, a failed audit write fails the request, and the log's readers and their limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from rempart.audit.check import check_proof_document
from rempart.cli import app as cli
from tests.functional.audit_support import (
    Staff,
    events_since,
    next_seq,
    services_of,
    staff,
)
from tests.functional.conftest import Hospital

__all__ = ["staff"]  # the module-scoped fixture: imported so that pytest finds it here


def test_a_read_is_recorded_with_who_where_what_and_why(hospital: Hospital, staff: Staff) -> None:
    services = services_of(hospital)
    start = next_seq(services)
    response = hospital.client.get(
        f"/fhir/Patient/{staff.patient_id}",
        headers={**staff.headers["clinician"], "User-Agent": "ward-pc-12"},
    )
    assert response.status_code == 200
    [event] = [e for e in events_since(services, start) if e.action == "read"]
    assert event.outcome == "success"
    assert event.patient == staff.patient_id
    assert event.resource_type == "Patient"
    assert event.resource_id == staff.patient_id
    assert event.role == "clinician"
    assert event.practitioner.startswith("Practitioner/")
    assert event.ip == "testclient"
    assert event.user_agent == "ward-pc-12"
    assert event.session_id
    private = services.audit.sealer.open(event.seq, event.sealed)
    assert private["username"] == staff.usernames["clinician"]
    assert private["reason"]


def test_a_search_records_one_event_per_patient_returned(hospital: Hospital, staff: Staff) -> None:
    services = services_of(hospital)
    start = next_seq(services)
    bundle = hospital.client.get(
        "/fhir/Observation", params={"_count": 30}, headers=staff.headers["clinician"]
    ).json()
    patients = {e["resource"]["subject"]["reference"].split("/")[1] for e in bundle["entry"]}
    events = [e for e in events_since(services, start) if e.action == "search"]
    assert sorted(e.patient for e in events) == sorted(patients)
    assert len({e.request_id for e in events}) == 1
    # Each patient's record says which relationship let that patient through, as a read of
    # the same patient does ("care relationship: ...", not the search's general reason).
    searched = {e.patient: services.audit.sealer.open(e.seq, e.sealed)["reason"] for e in events}
    for patient, reason in searched.items():
        mark = next_seq(services)
        read = hospital.client.get(f"/fhir/Patient/{patient}", headers=staff.headers["clinician"])
        assert read.status_code == 200
        [event] = [e for e in events_since(services, mark) if e.action == "read"]
        assert reason == services.audit.sealer.open(event.seq, event.sealed)["reason"]
        assert reason.startswith("care relationship: "), reason


def test_a_denial_is_recorded(hospital: Hospital, staff: Staff) -> None:
    services = services_of(hospital)
    start = next_seq(services)
    refused = hospital.client.get(
        f"/fhir/Patient/{staff.other_patient_id}", headers=staff.headers["patient"]
    )
    assert refused.status_code == 403
    [event] = [e for e in events_since(services, start) if e.outcome == "denied"]
    assert event.action == "read"
    assert event.resource_id == staff.other_patient_id


def test_no_data_leaves_when_the_audit_write_fails(
    hospital: Hospital, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(hospital)

    def broken(records: list[Any], prepared: Any = None) -> bool:
        raise OSError("injected audit failure")

    async def broken_on_loop(records: list[Any], prepared: Any = None) -> bool:
        raise OSError("injected audit failure")

    # Both ways a read's records reach the log: a commit run by a thread, and on PostgreSQL
    # the event loop's own (audit/loopwriter.py).
    monkeypatch.setattr(services.audit._writer, "append", broken)
    if services.audit._on_loop is not None:
        monkeypatch.setattr(services.audit._on_loop, "append", broken_on_loop)
    read = hospital.client.get(
        f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"]
    )
    search = hospital.client.get("/fhir/Patient", headers=staff.headers["clinician"])
    monkeypatch.undo()
    for response in (read, search):
        assert response.status_code == 503
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert staff.patient_id not in response.text
        assert "name" not in body
    assert (
        hospital.client.get(
            f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"]
        ).status_code
        == 200
    )


def test_only_the_security_officer_searches_the_audit_log(hospital: Hospital, staff: Staff) -> None:
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    found = hospital.client.get(
        "/fhir/AuditEvent",
        params={"patient": staff.patient_id, "action": "read", "outcome": "0"},
        headers=staff.headers["officer"],
    )
    assert found.status_code == 200, found.text
    events = [e["resource"] for e in found.json()["entry"]]
    assert events
    assert all(e["resourceType"] == "AuditEvent" for e in events)
    assert all(
        {"reference": f"Patient/{staff.patient_id}"} in [x["what"] for x in e["entity"]]
        for e in events
    )
    assert "network" in events[0]["agent"][0]
    one = hospital.client.get(
        f"/fhir/AuditEvent/{events[0]['id']}", headers=staff.headers["officer"]
    )
    assert one.status_code == 200
    assert one.json()["id"] == events[0]["id"]
    for role in ("admin", "clinician"):
        denied = hospital.client.get("/fhir/AuditEvent", headers=staff.headers[role])
        assert denied.status_code == 403
        assert denied.json()["resourceType"] == "OperationOutcome"


def test_search_by_agent_and_date(hospital: Hospital, staff: Staff) -> None:
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    by_name = hospital.client.get(
        "/fhir/AuditEvent",
        params={"agent-name": staff.usernames["clinician"], "date": "ge2020-01-01", "_count": 5},
        headers=staff.headers["officer"],
    ).json()
    assert by_name["entry"]
    assert all(
        e["resource"]["agent"][0]["name"] == staff.usernames["clinician"] for e in by_name["entry"]
    )
    account_id = by_name["entry"][0]["resource"]["agent"][0]["altId"]
    by_id = hospital.client.get(
        "/fhir/AuditEvent",
        params={"agent": account_id, "_count": 1},
        headers=staff.headers["officer"],
    ).json()
    assert by_id["entry"][0]["resource"]["agent"][0]["altId"] == account_id
    assert any(link["relation"] == "next" for link in by_id["link"])
    future = hospital.client.get(
        "/fhir/AuditEvent", params={"date": "gt2100-01-01"}, headers=staff.headers["officer"]
    ).json()
    assert future["entry"] == []


def test_a_patient_sees_only_their_own_record_accesses(hospital: Hospital, staff: Staff) -> None:
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    own = hospital.client.get("/fhir/AuditEvent", headers=staff.headers["patient"])
    assert own.status_code == 200
    events = [e["resource"] for e in own.json()["entry"]]
    assert events
    for event in events:
        assert {"reference": f"Patient/{staff.patient_id}"} in [x["what"] for x in event["entity"]]
        assert "network" not in event["agent"][0]
    other = hospital.client.get(
        "/fhir/AuditEvent",
        params={"patient": staff.other_patient_id},
        headers=staff.headers["patient"],
    )
    assert other.status_code == 403
    hospital.client.get(
        f"/fhir/Patient/{staff.other_patient_id}", headers=staff.headers["clinician"]
    )
    theirs = hospital.client.get(
        "/fhir/AuditEvent",
        params={"patient": staff.other_patient_id, "_count": 1},
        headers=staff.headers["officer"],
    ).json()["entry"][0]["resource"]["id"]
    by_id = hospital.client.get(f"/fhir/AuditEvent/{theirs}", headers=staff.headers["patient"])
    assert by_id.status_code == 403


def test_access_history_names_who_where_what_and_why(hospital: Hospital, staff: Staff) -> None:
    hospital.client.get(
        "/fhir/Observation",
        params={"subject": f"Patient/{staff.patient_id}"},
        headers=staff.headers["clinician"],
    )
    history = hospital.client.get("/me/access-history", headers=staff.headers["patient"])
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["patient"] == f"Patient/{staff.patient_id}"
    entry = next(a for a in body["accesses"] if a["resource_type"] == "Observation")
    assert entry["who"]["role"] == "clinician"
    assert entry["who"]["name"]
    assert entry["who"]["name"] != "hospital staff"
    assert entry["data"] == "results and measurements"
    assert entry["why"]
    assert entry["when"].endswith("Z")
    assert "unit" in entry
    assert (
        hospital.client.get("/me/access-history", headers=staff.headers["clinician"]).status_code
        == 403
    )


def test_breach_report_over_http_for_the_security_officer(hospital: Hospital, staff: Staff) -> None:
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    params = {"user": staff.usernames["clinician"], "since": "2020-01-01"}
    report = hospital.client.get(
        "/audit/breach-report", params=params, headers=staff.headers["officer"]
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["user"] == staff.usernames["clinician"]
    assert body["until"] is None
    mine = next(p for p in body["patients"] if p["patient"] == f"Patient/{staff.patient_id}")
    assert mine["accesses"] >= 1
    assert "Patient" in mine["resource_types"]
    assert set(mine) == {"patient", "first_access", "last_access", "accesses", "resource_types"}
    assert (
        hospital.client.get(
            "/audit/breach-report", params=params, headers=staff.headers["admin"]
        ).status_code
        == 403
    )
    bad = hospital.client.get(
        "/audit/breach-report",
        params={**params, "since": "last tuesday"},
        headers=staff.headers["officer"],
    )
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"


def test_breach_report_from_the_command_line(hospital: Hospital, staff: Staff) -> None:
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    settings = hospital.settings
    result = CliRunner().invoke(
        cli,
        [
            "--home",
            str(settings.home),
            "--database",
            settings.database_url,
            "breach-report",
            "--user",
            staff.usernames["clinician"],
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"user", "since", "until", "patients"}
    assert f"Patient/{staff.patient_id}" in [p["patient"] for p in report["patients"]]


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_no_api_writes_an_audit_record(hospital: Hospital, staff: Staff, method: str) -> None:
    body = {"resourceType": "AuditEvent", "id": "0"}
    for path in ("/fhir/AuditEvent", "/fhir/AuditEvent/0"):
        kwargs: dict[str, Any] = {"headers": staff.headers["officer"]}
        if method != "delete":
            kwargs["json"] = body
        response = getattr(hospital.client, method)(path, **kwargs)
        assert response.status_code == 405, (method, path, response.text)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "AuditEvent"}}],
    }
    assert (
        hospital.client.post("/fhir", json=bundle, headers=staff.headers["officer"]).status_code
        == 400
    )


@pytest.mark.parametrize(
    "query",
    ["who=x", "date=notadate", "_count=0", "patient=Observation/1", "outcome=7", "_before=abc"],
)
def test_malformed_audit_queries_are_clean_400s(
    hospital: Hospital, staff: Staff, query: str
) -> None:
    response = hospital.client.get(f"/fhir/AuditEvent?{query}", headers=staff.headers["officer"])
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_proofs_over_http_check_out_offline(hospital: Hospital, staff: Staff) -> None:
    services = services_of(hospital)
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    head = services.audit.sign_now()
    assert head is not None
    latest = hospital.client.get("/audit/head", headers=staff.headers["officer"]).json()
    assert latest["head"]["tree_size"] >= head.tree_size
    proof = hospital.client.get(
        "/audit/proof/inclusion",
        params={"seq": head.tree_size - 1, "tree_size": head.tree_size},
        headers=staff.headers["officer"],
    )
    assert proof.status_code == 200, proof.text
    assert check_proof_document(proof.json(), services.audit.signer.public)[0]
    assert hospital.client.get(
        "/audit/proof/inclusion", params={"seq": -1}, headers=staff.headers["officer"]
    ).status_code in (400, 422)
    assert hospital.client.get("/audit/head", headers=staff.headers["admin"]).status_code == 403
