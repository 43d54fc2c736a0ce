"""Bundles, OperationOutcome and CapabilityStatement validate against the R4B models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import pytest
from fhir.resources.R4B import get_fhir_model_class

from rempart.errors import InvalidSearch
from rempart.fhir import (
    SUPPORTED_TYPES,
    HistoryEntry,
    ResponseEntry,
    capability_statement,
    history_bundle,
    operation_outcome,
    outcome_for,
    parse_search,
    response_bundle,
    search_parameters,
    searchset_bundle,
)

Resource = dict[str, Any]
BASE = "https://rempart.example/fhir/"


def _valid(doc: Resource) -> None:
    get_fhir_model_class(doc["resourceType"]).model_validate(doc)


def _patients(n: int) -> list[Resource]:
    return [{"resourceType": "Patient", "id": f"p{i}"} for i in range(n)]


def _links(bundle: Resource) -> dict[str, dict[str, str]]:
    return {
        link["relation"]: dict(parse_qsl(urlsplit(link["url"]).query)) for link in bundle["link"]
    }


def test_searchset_links_and_entries() -> None:
    q = parse_search("Patient", [("family", "Dupont"), ("birthdate", "ge1970-01-01T00:00:00+01:00"),
                                 ("_count", "10"), ("_offset", "10")])  # fmt: skip
    bundle = searchset_bundle(BASE, "Patient", _patients(10), 35, q)
    _valid(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 35
    links = _links(bundle)
    assert set(links) == {"self", "first", "previous", "next", "last"}
    assert links["next"]["_offset"] == "20"
    assert links["previous"]["_offset"] == "0"
    assert links["last"]["_offset"] == "30"
    assert links["self"]["_count"] == "10"
    assert links["self"]["birthdate"] == "ge1970-01-01T00:00:00+01:00"  # '+' survives encoding
    assert links["self"]["family"] == "Dupont"
    assert bundle["link"][0]["url"].startswith("https://rempart.example/fhir/Patient?")
    assert bundle["entry"][0] == {
        "fullUrl": "https://rempart.example/fhir/Patient/p0",
        "resource": {"resourceType": "Patient", "id": "p0"},
        "search": {"mode": "match"},
    }


@pytest.mark.parametrize(("offset", "total", "rels"), [
    (0, 5, {"self", "first", "last"}),
    (0, 0, {"self", "first", "last"}),
    (0, 25, {"self", "first", "next", "last"}),
    (20, 25, {"self", "first", "previous", "last"}),
])  # fmt: skip
def test_searchset_link_presence(offset: int, total: int, rels: set[str]) -> None:
    q = parse_search("Patient", [("_offset", str(offset))])
    bundle = searchset_bundle(BASE, "Patient", _patients(min(20, max(0, total - offset))), total, q)
    _valid(bundle)
    assert {link["relation"] for link in bundle["link"]} == rels


def test_searchset_total_only() -> None:
    q = parse_search("Patient", [("gender", "female"), ("_count", "0")])
    bundle = searchset_bundle(BASE, "Patient", [], 42, q)
    _valid(bundle)
    assert bundle["total"] == 42
    assert bundle["entry"] == []
    assert "next" not in {link["relation"] for link in bundle["link"]}


def test_history_bundle() -> None:
    when = datetime(2024, 8, 6, 18, 12, 57, 123000, tzinfo=UTC)
    entries = [
        HistoryEntry("Patient", "p1", "3", when, "DELETE"),
        HistoryEntry("Patient", "p1", "2", when, "PUT", {"resourceType": "Patient", "id": "p1"}),
        HistoryEntry("Patient", "p1", "1", when, "POST", {"resourceType": "Patient", "id": "p1"}),
    ]
    bundle = history_bundle(BASE, entries, self_url=BASE + "Patient/p1/_history")
    _valid(bundle)
    assert bundle["total"] == 3
    assert [e["response"]["status"] for e in bundle["entry"]] == [
        "204 No Content", "200 OK", "201 Created"]  # fmt: skip
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["response"]["etag"] == 'W/"2"'
    assert bundle["entry"][1]["response"]["lastModified"] == "2024-08-06T18:12:57.123Z"
    assert bundle["entry"][2]["request"] == {"method": "POST", "url": "Patient"}


def test_response_bundles() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    kinds: tuple[Literal["transaction-response", "batch-response"], ...] = (
        "transaction-response",
        "batch-response",
    )
    for kind in kinds:
        bundle = response_bundle(kind, [
            ResponseEntry(201, "Patient/p1/_history/1", "1", when, full_url=BASE + "Patient/p1"),
            ResponseEntry(404, outcome=operation_outcome("error", "not-found", "No Patient/x")),
        ])  # fmt: skip
        _valid(bundle)
        assert bundle["entry"][0]["response"]["status"] == "201 Created"
        assert bundle["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "not-found"


def test_operation_outcome() -> None:
    oo = operation_outcome("error", "invalid", "Patient.birthDate: bad", "Patient.birthDate")
    _valid(oo)
    assert oo["issue"][0]["expression"] == ["Patient.birthDate"]
    _valid(outcome_for(InvalidSearch("Unknown search parameter 'x'")))
    with pytest.raises(ValueError, match="severity"):
        operation_outcome("bad", "invalid", "x")


def test_capability_statement() -> None:
    cs = capability_statement(BASE, date=datetime(2024, 1, 1, tzinfo=UTC))
    _valid(cs)
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert cs["implementation"]["url"] == "https://rempart.example/fhir"
    rest = cs["rest"][0]
    # AuditEvent: the audit log, read and searched only (tests/functional/test_audit_durability.py)
    assert {r["type"] for r in rest["resource"]} == SUPPORTED_TYPES | {"AuditEvent"}
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    for res in (r for r in rest["resource"] if r["type"] != "AuditEvent"):
        assert {i["code"] for i in res["interaction"]} == {
            "read", "vread", "update", "create", "history-instance", "search-type"}  # fmt: skip
        assert [p["name"] for p in res["searchParam"]] == [
            p.name for p in search_parameters(res["type"])]  # fmt: skip
