"""parse_search: strict parameter handling, paging, _id, _lastUpdated and the clause shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rempart.errors import InvalidSearch, UnsupportedResourceType
from rempart.fhir import Clause, parse_search, search_parameters


@pytest.mark.parametrize(
    ("rtype", "params"),
    [
        ("Patient", [("foo", "1")]),
        ("Patient", [("code", "x")]),  # exists elsewhere, not on Patient
        ("Patient", [("family:contains", "dup")]),
        ("Patient", [("family:text", "dup")]),
        ("Patient", [("family:missing", "true")]),
        ("Patient", [("gender:not", "male")]),
        ("Patient", [("gender:text", "male")]),
        ("Patient", [("birthdate", "2015-13")]),
        ("Patient", [("birthdate", "ne2015")]),
        ("Patient", [("birthdate", "sa2015")]),
        ("Patient", [("birthdate:exact", "2015")]),
        ("Patient", [("_count", "-1")]),
        ("Patient", [("_count", "ten")]),
        ("Patient", [("_count", "²")]),
        ("Patient", [("_offset", "-5")]),
        ("Patient", [("_sort", "family")]),
        ("Patient", [("_include", "Patient:organization")]),
        ("Patient", [("_summary", "count")]),
        ("Patient", [("_format", "xml")]),
        ("Patient", [("_id", "a b")]),
        ("Patient", [("_lastUpdated", "ge2024,le2025")]),
        ("Patient", [("family", "---")]),
        ("Patient", [("family", ",")]),
        ("Encounter", [("patient.name", "dup")]),
        ("Encounter", [("subject:Practitioner", "1")]),
        ("Encounter", [("patient", "Practitioner/1")]),
        ("Encounter", [("patient", "http://other.example/fhir/Patient/1")]),
        ("Encounter", [("patient", "urn:uuid:1234")]),
        ("Encounter", [("patient:below", "1")]),
        ("Provenance", [("target", "123")]),  # any type: a bare id is ambiguous
    ],
)
def test_invalid_searches(rtype: str, params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidSearch):
        parse_search(rtype, params)


def test_unknown_type() -> None:
    with pytest.raises(UnsupportedResourceType):
        parse_search("Basic", [])
    with pytest.raises(UnsupportedResourceType):
        search_parameters("Foo")


def test_paging_defaults_and_cap() -> None:
    q = parse_search("Patient", [])
    assert (q.count, q.offset, q.clauses, q.ids, q.echo) == (20, 0, [], None, [])
    q = parse_search("Patient", [("_count", "500"), ("_offset", "40")], max_count=100)
    assert (q.count, q.offset) == (100, 40)
    assert parse_search("Patient", [], default_count=5).count == 5
    assert parse_search("Patient", [("_count", "0")]).count == 0  # total only (FHIR R4)


def test_ignored_and_empty_parameters() -> None:
    q = parse_search(
        "Patient",
        [
            ("_total", "accurate"),
            ("_format", "application/fhir json"),
            ("family", ""),
            ("_count", ""),
        ],
    )
    assert q.clauses == []
    assert q.echo == []
    with pytest.raises(InvalidSearch):
        parse_search("Patient", [("nonsense", "")])  # empty, but still an unknown name


def test_ids_or_and_and() -> None:
    assert parse_search("Patient", [("_id", "a,b,a")]).ids == ["a", "b"]
    assert parse_search("Patient", [("_id", "a,b"), ("_id", "b,c")]).ids == ["b"]
    assert parse_search("Patient", [("_id", "a"), ("_id", "c")]).ids == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "2024",
            [("ge", datetime(2024, 1, 1, tzinfo=UTC)), ("lt", datetime(2025, 1, 1, tzinfo=UTC))],
        ),
        ("ge2024-03", [("ge", datetime(2024, 3, 1, tzinfo=UTC))]),
        ("gt2024-03", [("ge", datetime(2024, 4, 1, tzinfo=UTC))]),
        ("le2024-03-05", [("lt", datetime(2024, 3, 6, tzinfo=UTC))]),
        ("lt2024-03-05T10:00:00+02:00", [("lt", datetime(2024, 3, 5, 8, tzinfo=UTC))]),
    ],
)
def test_last_updated(value: str, expected: list[tuple[str, datetime]]) -> None:
    assert parse_search("Patient", [("_lastUpdated", value)]).last_updated == expected


def test_and_or_structure() -> None:
    q = parse_search(
        "Condition",
        [("code", "http://snomed.info/sct|1,2"), ("code", "3"), ("patient", "p1")],
    )
    assert q.clauses == [
        Clause("code", ("sc:http://snomed.info/sct|1", "c:2")),
        Clause("code", ("c:3",)),
        Clause("patient", ("r:Patient/p1",)),
    ]
    assert q.echo == [("code", "http://snomed.info/sct|1,2"), ("code", "3"), ("patient", "p1")]


def test_reference_forms() -> None:
    def tokens(rtype: str, name: str, value: str) -> tuple[str, ...]:
        return parse_search(rtype, [(name, value)]).clauses[0].any_of

    assert tokens("Encounter", "subject", "p1") == ("r:Patient/p1", "r:Group/p1")
    assert tokens("Encounter", "subject:Patient", "p1") == ("r:Patient/p1",)
    assert tokens("Encounter", "patient", "Patient/p1/_history/3") == ("r:Patient/p1",)
    assert tokens("Provenance", "target", "Encounter/e1") == ("r:Encounter/e1",)
    assert tokens("PractitionerRole", "practitioner:identifier", "http://npi|99") == (
        "isc:http://npi|99",
    )


def test_string_forms() -> None:
    q = parse_search("Patient", [("family", "Dupönt"), ("given:exact", "Élodie")])
    assert q.clauses == [Clause("family", ("p:dupont",)), Clause("given", ("x:Élodie",))]
    assert q.post_filters == []
    long = parse_search("Patient", [("name", "a" * 30)])
    assert long.clauses == [Clause("name", ("p:" + "a" * 24,))]
    assert len(long.post_filters) == 1


def test_phone_is_normalised_like_the_index() -> None:
    q = parse_search("Patient", [("phone", "06 12-34.56")])
    assert q.clauses == [Clause("phone", ("c:06123456",))]


def test_search_parameters_cover_the_brief() -> None:
    names = {p.name for p in search_parameters("Patient")}
    assert {"_id", "_lastUpdated", "identifier", "family", "given", "name", "birthdate", "gender",
            "general-practitioner"} <= names  # fmt: skip
    for rtype, expected in {
        "Encounter": {"patient", "subject", "date", "status", "practitioner", "participant",
                      "service-provider", "location", "class", "type"},
        "Condition": {"patient", "subject", "encounter", "code", "onset-date", "recorded-date",
                      "clinical-status"},
        "Coverage": {"beneficiary", "patient", "payor", "type", "status", "subscriber"},
        "DocumentReference": {"patient", "subject", "type", "category", "encounter", "date",
                              "status"},
        "Immunization": {"patient", "vaccine-code", "date", "status"},
        "MedicationRequest": {"patient", "code", "authoredon", "status", "encounter"},
    }.items():  # fmt: skip
        assert expected <= {p.name for p in search_parameters(rtype)}, rtype
    others = "Observation Procedure AllergyIntolerance CareTeam Device Organization Location"
    for rtype in (*others.split(), "PractitionerRole", "Practitioner", "Medication"):
        types = {p.type for p in search_parameters(rtype)}
        assert types <= {"string", "token", "date", "reference"}
