"""patient_compartment and references() over the fixture and edge cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rempart.fhir import patient_compartment, references

Resource = dict[str, Any]
OWNER = {
    **dict.fromkeys(
        ("Encounter", "Condition", "Procedure", "MedicationRequest", "DocumentReference"), "subject"
    ),
    **dict.fromkeys(("Immunization", "AllergyIntolerance", "Device"), "patient"),
}


def test_every_fixture_resource_has_the_right_compartment(synthea: list[Resource]) -> None:
    patients = {d["id"] for d in synthea if d["resourceType"] == "Patient"}
    counted = 0
    for doc in synthea:
        rtype = doc["resourceType"]
        owner = patient_compartment(doc)
        if rtype == "Patient":
            assert owner == doc["id"]
        elif rtype in OWNER:
            assert owner == doc[OWNER[rtype]]["reference"].removeprefix("Patient/")
            assert owner in patients
            counted += 1
        else:
            assert owner is None, rtype
    assert counted > 6000


@pytest.mark.parametrize(
    ("doc", "owner"),
    [
        ({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p1"}}, "p1"),
        ({"resourceType": "CareTeam", "subject": {"reference": "Patient/p1/_history/2"}}, "p1"),
        ({"resourceType": "Observation", "subject": {"reference": "Group/g1"}}, None),
        (
            {"resourceType": "Observation", "subject": {"reference": "http://x/fhir/Patient/p1"}},
            None,
        ),
        ({"resourceType": "Observation", "subject": {"reference": "urn:uuid:0b9f"}}, None),
        ({"resourceType": "Observation", "subject": {"reference": "#p"}}, None),
        ({"resourceType": "Observation"}, None),
        ({"resourceType": "Patient"}, None),
        (
            {
                "resourceType": "Provenance",
                "target": [{"reference": "Patient/p1"}, {"reference": "Encounter/e1"}],
            },
            "p1",
        ),
        (
            {
                "resourceType": "Provenance",
                "target": [{"reference": "Patient/p1"}, {"reference": "Patient/p2"}],
            },
            None,
        ),
        ({"resourceType": "Organization", "id": "o1"}, None),
    ],
)
def test_compartment_edges(doc: Resource, owner: str | None) -> None:
    assert patient_compartment(doc) == owner


def test_references_finds_every_kind_and_allows_rewriting() -> None:
    doc: Resource = {
        "resourceType": "Encounter",
        "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
        "participant": [
            {"individual": {"reference": "Practitioner?identifier=http://npi|1", "display": "Dr"}},
            {"individual": {"identifier": {"system": "http://npi", "value": "2",
                                           "assigner": {"reference": "Organization/o1"}}}},
        ],
        "extension": [{"url": "http://x", "valueReference": {"reference": "Location/l1"}}],
        "contained": [{"resourceType": "Patient", "id": "c",
                       "generalPractitioner": [{"reference": "Practitioner/p9"}]}],
        "identifier": [{"system": "s", "value": "v"}],
    }  # fmt: skip
    found = references(doc)
    assert [path for path, _ in found] == [
        "Encounter.subject",
        "Encounter.participant[0].individual",
        "Encounter.participant[1].individual",
        "Encounter.participant[1].individual.identifier.assigner",
        "Encounter.extension[0].valueReference",
        "Encounter.contained[0].generalPractitioner[0]",
    ]
    found[0][1]["reference"] = "Patient/p1"
    assert doc["subject"] == {"reference": "Patient/p1"}
    assert patient_compartment(doc) == "p1"


def test_fixture_references_are_all_found(synthea: list[Resource]) -> None:
    docs = copy.deepcopy(synthea)
    total = conditional = 0
    for doc in docs:
        for path, ref in references(doc):
            assert path.startswith(doc["resourceType"] + ".")
            total += 1
            conditional += "?" in ref.get("reference", "")
    # Independent count: every JSON object with a string "reference" in the raw fixture.
    raw = sum(str(d).count("'reference': '") for d in synthea)
    with_identifier_only = sum(
        1 for d in synthea if d["resourceType"] in ("PractitionerRole", "Location")
        for _, ref in references(d) if "reference" not in ref
    )  # fmt: skip
    assert total == raw + with_identifier_only
    assert conditional > 1000
