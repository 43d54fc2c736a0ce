"""Every generated resource must be valid FHIR R4 (fhir.resources R4B models)."""

import base64
import re
from collections import Counter

from fhir.resources.R4B import get_fhir_model_class

from rempart.fhir import validate
from rempart.seed import Hospital

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SAMPLE = 400


def test_all_resource_types_of_a_sample_validate(
    directory: list[dict], patients: list[list[dict]]
) -> None:
    sample = directory + [r for resources in patients[:SAMPLE] for r in resources]
    seen: Counter[str] = Counter()
    for resource in sample:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        seen[resource["resourceType"]] += 1
    expected = {
        "Organization",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "Patient",
        "Coverage",
        "Encounter",
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "Observation",
        "DocumentReference",
        "CareTeam",
    }
    assert set(seen) == expected
    assert seen["Patient"] == SAMPLE


def test_every_resource_of_a_seeded_hospital_passes_the_servers_validator(
    directory: list[dict], patients: list[list[dict]]
) -> None:
    # `rempart seed` does not validate generated patients one by one (it checks the first
    # patient of each batch, ingest/workers.py): this test is what makes that safe. It runs the
    # server's own validator (R4B models plus required bindings and id rules), which every
    # import and API write goes through, on each of the ~63,000 resources of a 3,000-patient
    # hospital: every resource shape the generator makes, decoys and deaths included.
    count = 0
    for resource in directory + [r for resources in patients for r in resources]:
        assert validate(resource) is resource
        count += 1
    assert count > 20 * len(patients)


def test_decoys_and_deaths_validate_too(hospital: Hospital, patients: list[list[dict]]) -> None:
    # The sample above may hold few of these rarer shapes; validate all of them explicitly.
    decoys = set(hospital.decoy_patient_ids())
    special = [
        resources
        for resources in patients
        if resources[0]["id"] in decoys or "deceasedDateTime" in resources[0]
    ]
    assert special
    for resources in special:
        for resource in resources:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_ids_are_uuid4_and_unique(directory: list[dict], patients: list[list[dict]]) -> None:
    ids = [r["id"] for r in directory] + [r["id"] for rs in patients for r in rs]
    assert all(UUID4.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_references_resolve_to_the_directory_or_an_earlier_resource(
    directory: list[dict], patients: list[list[dict]]
) -> None:
    known = {f"{r['resourceType']}/{r['id']}" for r in directory}

    def references(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["reference"]] if isinstance(node.get("reference"), str) else []
            return found + [x for v in node.values() for x in references(v)]
        if isinstance(node, list):
            return [x for v in node for x in references(v)]
        return []

    for resource in directory:  # the directory only points into itself
        assert set(references(resource)) <= known
    for resources in patients[:SAMPLE]:
        earlier = set(known)
        for resource in resources:
            for target in references(resource):
                assert target in earlier, (resource["resourceType"], target)
            earlier.add(f"{resource['resourceType']}/{resource['id']}")


def test_documents_carry_french_plain_text(patients: list[list[dict]]) -> None:
    documents = [
        r for rs in patients[:SAMPLE] for r in rs if r["resourceType"] == "DocumentReference"
    ]
    assert documents
    for doc in documents:
        attachment = doc["content"][0]["attachment"]
        assert attachment["contentType"] == "text/plain"
        text = base64.b64decode(attachment["data"], validate=True).decode("utf-8")
        assert len(text) > 80
        assert "Dr " in text
