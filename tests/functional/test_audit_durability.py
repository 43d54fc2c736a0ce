"""Writes and their audit records commit together; what the server advertises about the log.

A write's record is appended inside the write's own transaction: if the audit append fails the
write is rolled back (503, nothing stored), and if the transaction fails after the append the
record goes with it (no trace of a write that never happened).
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from rempart.api.app import create_app
from rempart.audit.fhir_view import parse_event_query
from rempart.store.tables import resource
from tests.functional.audit_support import Staff, events_since, next_seq, services_of, staff
from tests.functional.conftest import Hospital

__all__ = ["staff"]  # the module-scoped fixture: imported so that pytest finds it here


def _observation(patient: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }


def _count(hospital: Hospital, res_type: str) -> int:
    with services_of(hospital).engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(resource).where(resource.c.res_type == res_type)
            ).scalar_one()
        )


def test_a_write_is_recorded_in_its_own_transaction(hospital: Hospital, staff: Staff) -> None:
    services = services_of(hospital)
    start = next_seq(services)
    made = hospital.client.post(
        "/fhir/Observation",
        json=_observation(staff.patient_id, "pouls"),
        headers=staff.headers["clinician"],
    )
    assert made.status_code == 201, made.text
    new_id = made.json()["id"]
    [event] = [e for e in events_since(services, start) if e.action == "create"]
    assert (event.outcome, event.resource_id, event.patient) == (
        "success",
        new_id,
        staff.patient_id,
    )
    changed = {**made.json(), "status": "amended"}
    updated = hospital.client.put(
        f"/fhir/Observation/{new_id}", json=changed, headers=staff.headers["clinician"]
    )
    assert updated.status_code == 200, updated.text
    [event] = [e for e in events_since(services, start) if e.action == "update"]
    assert event.resource_id == new_id
    assert services.audit.sealer.open(event.seq, event.sealed)["detail"] == "version 2"


def test_no_write_without_its_record_when_the_audit_append_fails(
    hospital: Hospital, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(hospital)
    before, start = _count(hospital, "Observation"), next_seq(services)

    def broken(conn: Any, records: list[Any]) -> None:
        raise OSError("injected audit failure")

    monkeypatch.setattr(services.audit._writer, "append_in", broken)
    headers = staff.headers["clinician"]
    created = hospital.client.post(
        "/fhir/Observation", json=_observation(staff.patient_id, "tension"), headers=headers
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _observation(staff.patient_id, "glycémie"),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    in_bundle = hospital.client.post("/fhir", json=bundle, headers=headers)
    monkeypatch.undo()
    for response in (created, in_bundle):
        assert response.status_code == 503, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert _count(hospital, "Observation") == before  # nothing was stored
    assert [e for e in events_since(services, start) if e.action in ("create", "transaction")] == []


def test_a_write_that_fails_after_its_record_leaves_no_record(
    hospital: Hospital, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append succeeds, then the transaction fails: the record rolls back with the write."""
    services = services_of(hospital)
    before, start = _count(hospital, "Observation"), next_seq(services)
    real = services.audit._writer.append_in

    def append_then_fail(conn: Any, records: list[Any]) -> None:
        real(conn, records)
        raise RuntimeError("injected failure after the audit append")

    monkeypatch.setattr(services.audit._writer, "append_in", append_then_fail)
    response = hospital.client.post(
        "/fhir/Observation",
        json=_observation(staff.patient_id, "température"),
        headers=staff.headers["clinician"],
    )
    monkeypatch.undo()
    assert response.status_code == 503
    assert _count(hospital, "Observation") == before
    assert [e for e in events_since(services, start) if e.action == "create"] == []
    # The log is whole and continues: the next read appends at the next position.
    hospital.client.get(f"/fhir/Patient/{staff.patient_id}", headers=staff.headers["clinician"])
    seqs = [e.seq for e in events_since(services, start)]
    assert seqs == list(range(start, start + len(seqs)))
    assert seqs


def test_the_capability_statement_lists_audit_event_and_its_search(hospital: Hospital) -> None:
    statement = hospital.client.get("/fhir/metadata").json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert {i["code"] for i in entry["interaction"]} == {"read", "search-type"}
    names = {p["name"] for p in entry["searchParam"]}
    assert {"agent", "patient", "date", "action", "outcome"} <= names
    for name in names:  # everything advertised is accepted, with a value of its type
        value = {"date": "ge2026-01-01", "outcome": "0", "action": "R"}.get(name, "abc")
        parse_event_query([(name, value)])


def test_the_openapi_document_has_unique_operation_ids(hospital: Hospital) -> None:
    app = create_app(services_of(hospital))  # a fresh app: the schema is built (and cached) once
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns on a duplicate operation id
        document = app.openapi()
    ids = Counter(op["operationId"] for path in document["paths"].values() for op in path.values())
    assert ids
    assert [i for i, n in ids.items() if n > 1] == []
    assert "/fhir/AuditEvent" in document["paths"]  # the reads stay documented
