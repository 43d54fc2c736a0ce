"""Breach report, AuditEvent search parsing and rendering, audit settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import select
from tests.unit.audit.conftest import make_record

from rempart.audit.fhir_view import audit_event, parse_event_query
from rempart.audit.query import EventQuery, breach_report, search_events
from rempart.audit.settings import load_audit_settings
from rempart.audit.tables import audit_event as audit_table
from rempart.errors import InvalidSearch
from rempart.wiring import Services

T0 = 1_700_000_000_000_000
HOUR = 3_600_000_000


def test_breach_report_lists_each_patient_once_with_window_counts_and_types(
    services: Services,
) -> None:
    records = [
        make_record(0, account_id="thief", patient="p1", resource_type="Patient", at=T0),
        make_record(1, account_id="thief", patient="p1", resource_type="Observation", at=T0 + HOUR),
        make_record(
            2, account_id="thief", patient="p2", resource_type="Condition", at=T0 + 2 * HOUR
        ),
        make_record(3, account_id="thief", patient="p3", outcome="denied", at=T0 + 2 * HOUR),
        make_record(4, account_id="thief", patient=None, action="login", at=T0),
        make_record(5, account_id="honest", patient="p4", at=T0 + HOUR),
        make_record(6, account_id="thief", patient="p5", at=T0 + 10 * HOUR),
    ]
    services.audit.record(*records)
    report = breach_report(services.engine, ["thief"], T0, T0 + 5 * HOUR)
    assert [r.to_json() for r in report] == [
        {
            "patient": "Patient/p1",
            "first_access": "2023-11-14T22:13:20.000Z",
            "last_access": "2023-11-14T23:13:20.000Z",
            "accesses": 2,
            "resource_types": ["Observation", "Patient"],
        },
        {
            "patient": "Patient/p2",
            "first_access": "2023-11-15T00:13:20.000Z",
            "last_access": "2023-11-15T00:13:20.000Z",
            "accesses": 1,
            "resource_types": ["Condition"],
        },
    ]
    everything = breach_report(services.engine, ["thief"], None, None)
    assert [r.patient for r in everything] == ["p1", "p2", "p5"]  # denied p3 was not reached
    assert breach_report(services.engine, [], None, None) == []


def test_event_search_filters_and_pages_newest_first(services: Services) -> None:
    services.audit.record(*(make_record(i, at=T0 + i) for i in range(30)))
    rows, more = search_events(services.engine, EventQuery(patient="pat-1", count=3))
    assert [r.seq for r in rows] == [29, 22, 15]
    assert more
    rows, more = search_events(services.engine, EventQuery(patient="pat-1", count=3, before_seq=15))
    assert [r.seq for r in rows] == [8, 1]
    assert not more
    rows, _ = search_events(services.engine, EventQuery(since=T0 + 10, until=T0 + 12, count=50))
    assert [r.seq for r in rows] == [11, 10]


def test_records_render_as_valid_r4_audit_events(services: Services) -> None:
    services.audit.record(
        make_record(0, practitioner="Practitioner/pr1", session_id="s1"),
        make_record(1, action="login-failed", outcome="denied", patient=None, resource_type=None),
    )
    with services.engine.connect() as conn:
        rows = conn.execute(select(audit_table).order_by(audit_table.c.seq)).all()
    for row in rows:
        for patient_view in (False, True):
            doc = audit_event(row, username="someone", patient_view=patient_view)
            AuditEvent.model_validate(doc)  # raises if not R4
            assert ("network" in doc["agent"][0]) is not patient_view
    first = audit_event(rows[0], username=None)
    assert first["action"] == "R"
    assert first["outcome"] == "0"
    assert {"reference": "Patient/pat-0"} in [e["what"] for e in first["entity"]]
    assert audit_event(rows[1], username=None)["outcome"] == "4"


def test_search_parameters_parse_into_an_indexed_query() -> None:
    q, name = parse_event_query(
        [
            ("patient", "Patient/abc"),
            ("agent", "Practitioner/pr-1"),
            ("date", "ge2025-01-01"),
            ("date", "lt2025-02"),
            ("action", "R"),
            ("outcome", "4"),
            ("_count", "10"),
            ("agent-name", "j.doe"),
        ]
    )
    assert q.patient == "abc"
    assert q.practitioner == "Practitioner/pr-1"
    assert name == "j.doe"
    assert q.since == 1_735_689_600_000_000
    assert q.until == 1_738_368_000_000_000
    assert q.actions is not None
    assert {"read", "vread", "history"} <= q.actions
    assert q.outcomes == {"denied", "failed"}
    assert q.count == 10


@pytest.mark.parametrize(
    "params",
    [
        [("who", "x")],
        [("patient", "Observation/1")],
        [("patient", "a b")],
        [("date", "yesterday")],
        [("date", "ap2025")],
        [("_count", "0")],
        [("_count", "100000")],
        [("outcome", "13")],
        [("patient", "")],
        [("_before", "-1")],
        [("agent", "x" * 300)],
    ],
)
def test_malformed_searches_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidSearch):
        parse_event_query(params)


def test_retention_is_configurable_but_never_under_six_months(tmp_path: Path) -> None:
    assert load_audit_settings(tmp_path).retention_days == 365
    (tmp_path / "config.toml").write_text("[audit]\nretention_days = 400\n")
    assert load_audit_settings(tmp_path).retention_days == 400
    (tmp_path / "config.toml").write_text("[audit]\nretention_days = 90\n")
    with pytest.raises(ValueError, match="six"):
        load_audit_settings(tmp_path)
    (tmp_path / "config.toml").write_text('[audit]\nwitness_url = "ftp://x"\n')
    with pytest.raises(ValueError, match="witness_url"):
        load_audit_settings(tmp_path)
