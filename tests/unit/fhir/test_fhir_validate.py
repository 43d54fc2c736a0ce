"""validate(): accepts real R4 data unchanged, refuses everything else with a precise message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rempart.errors import InvalidResource, UnsupportedResourceType
from rempart.fhir import SUPPORTED_TYPES, validate

Resource = dict[str, Any]


def test_accepts_every_fixture_resource_unchanged(synthea: list[Resource]) -> None:
    assert len(synthea) == 7160
    before = copy.deepcopy(synthea)
    for doc in synthea:
        assert validate(doc, doc["resourceType"]) is doc
    assert synthea == before  # content untouched
    # Its speed is measured by bench/bench_ingest.py (the import of this fixture), not here:
    # a timed test fails on a busy machine for no fault of the code.


def test_fixture_types_are_supported(synthea: list[Resource]) -> None:
    assert {d["resourceType"] for d in synthea} <= SUPPORTED_TYPES


@pytest.mark.parametrize("body", [[], "Patient", None, 3, [{"resourceType": "Patient"}]])
def test_rejects_non_objects(body: object) -> None:
    with pytest.raises(InvalidResource, match="JSON object"):
        validate(body)


@pytest.mark.parametrize("body", [{}, {"gender": "male"}, {"resourceType": 3}])
def test_rejects_missing_resource_type(body: object) -> None:
    with pytest.raises(InvalidResource, match="resourceType") as info:
        validate(body)
    assert info.value.expression == "resourceType"


def test_rejects_type_other_than_expected() -> None:
    with pytest.raises(InvalidResource, match="'Observation' but 'Patient' was expected"):
        validate({"resourceType": "Observation", "status": "final", "code": {}}, "Patient")


@pytest.mark.parametrize("rtype", ["Basic", "Foo", "Bundle"])
def test_unsupported_types(rtype: str) -> None:
    with pytest.raises(UnsupportedResourceType):
        validate({"resourceType": rtype})
    with pytest.raises(UnsupportedResourceType):
        validate({"resourceType": "Patient"}, rtype)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"birthDate": "1990-13-01"}, "Patient.birthDate"),
        ({"birthDate": "2020-02-30"}, "Patient.birthDate"),
        ({"name": [{"family": 3}]}, "Patient.name[0].family"),
        ({"name": {"family": "Dupont"}}, "Patient.name"),
        ({"foo": 1}, "Patient.foo"),
        ({"id": "a b"}, "Patient.id"),
        ({"id": "x" * 65}, "Patient.id"),
        ({"gender": "M"}, "Patient.gender"),
        ({"extension": [{"valueString": "x"}]}, "Patient.extension[0].url"),
        ({"deceasedDateTime": "2020-01-01T10:00:00"}, "Patient.deceasedDateTime"),
        ({"contained": [{"resourceType": "Foo"}]}, "Patient.contained[0].resourceType"),
        ({"contained": [3]}, "Patient.contained[0].resourceType"),
    ],
)
def test_bad_fields_are_named(body: Resource, path: str) -> None:
    with pytest.raises(InvalidResource) as info:
        validate({"resourceType": "Patient", **body})
    assert path in info.value.message
    assert info.value.expression == path
    # The offending value is not echoed (it may be PHI on its way to a log).
    assert "Dupont" not in info.value.message


def test_many_errors_are_summarised() -> None:
    body = {"resourceType": "Patient", **{f"bad{i}": i for i in range(8)}}
    with pytest.raises(InvalidResource) as info:
        validate(body)
    assert info.value.message.count("Extra inputs are not permitted") == 5
    assert "(and 3 more)" in info.value.message


@pytest.mark.parametrize(
    ("body", "path"),
    [
        # R5 shapes and codes that an R4 server must not store as R4.
        (
            {"resourceType": "Encounter", "status": "finished", "class": [{"coding": []}]},
            "Encounter.class",
        ),
        (
            {"resourceType": "Encounter", "status": "completed", "class": {"code": "AMB"}},
            "Encounter.status",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "ended",
                "intent": "order",
                "subject": {"reference": "Patient/1"},
                "medicationCodeableConcept": {"text": "x"},
            },
            "MedicationRequest.status",
        ),
        (
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "content": [{"attachment": {"url": "http://x"}}],
                "context": [{"reference": "Encounter/1"}],
            },
            "DocumentReference.context",
        ),
        (
            {
                "resourceType": "Condition",
                "subject": {"reference": "Patient/1"},
                "onsetDateTime": "2020",
                "onsetAge": {"value": 3},
            },
            "Condition",
        ),
        (
            {
                "resourceType": "AllergyIntolerance",
                "patient": {"reference": "Patient/1"},
                "category": ["medication", "drug"],
            },
            "AllergyIntolerance.category[1]",
        ),
        ({"resourceType": "Encounter", "class": {"code": "AMB"}}, "Encounter.status"),
    ],
)
def test_r5_and_invalid_values_rejected(body: Resource, path: str) -> None:
    with pytest.raises(InvalidResource) as info:
        validate(body)
    assert path in info.value.message


def test_valid_minimal_resources_accepted() -> None:
    for body in (
        {"resourceType": "Patient", "id": "p-1.a", "gender": "female", "birthDate": "1970"},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "poids"},
            "subject": {"reference": "Patient/p-1.a"},
            "valueQuantity": {"value": 72.5},
        },
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": "Patient/1"},
            "payor": [{"reference": "Organization/1"}],
        },
        {"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/1"}},
    ):
        assert validate(body) is body
