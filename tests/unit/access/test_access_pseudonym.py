"""A pseudonymised export keeps codes and dates of care, and drops who the patient is."""

from __future__ import annotations

import orjson
import pytest

from rempart.access.export import parse_cohort_query
from rempart.access.pseudonym import Pseudonymiser
from rempart.errors import InvalidResource

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "3"},
    "text": {"div": "<div>Jeanne DUPONT</div>"},
    "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "284127645108946"}],
    "name": [{"family": "DUPONT", "given": ["Jeanne"]}],
    "telecom": [{"system": "phone", "value": "06 12 34 56 78"}],
    "address": [{"line": ["3 rue des Lilas"], "city": "Lyon"}],
    "birthDate": "1970-04-12",
    "gender": "female",
    "extension": [{"url": "birthPlace", "valueCode": "69123"}],
    "generalPractitioner": [{"reference": "Practitioner/gp", "display": "Dr MARTIN"}],
}
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p1", "display": "Jeanne DUPONT"},
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]},
    "note": [{"text": "vit seule, fille à Paris"}],
    "recordedDate": "2026-02-03",
}


def test_patient_identity_is_gone_and_links_hold() -> None:
    pseudo = Pseudonymiser(b"k" * 32)
    patient = pseudo.resource(PATIENT)
    condition = pseudo.resource(CONDITION)
    flat = orjson.dumps([patient, condition]).decode()
    for secret in ("DUPONT", "Jeanne", "284127645108946", "06 12", "Lilas", "69123", "p1",
                   "fille", "MARTIN"):  # fmt: skip
        assert secret not in flat, secret
    assert patient["birthDate"] == "1970"
    assert condition["subject"]["reference"] == f"Patient/{patient['id']}"
    assert condition["code"] == CONDITION["code"]
    assert condition["recordedDate"] == "2026-02-03"
    assert patient["generalPractitioner"] == [{"reference": "Practitioner/gp"}]


def test_two_exports_cannot_be_linked() -> None:
    a = Pseudonymiser(b"a" * 32).resource(PATIENT)["id"]
    b = Pseudonymiser(b"b" * 32).resource(PATIENT)["id"]
    assert a != b


def test_a_cohort_is_defined_by_clinical_criteria_not_identities() -> None:
    assert parse_cohort_query("Condition?code=http://hl7.org/fhir/sid/icd-10|E11.9")
    for text in (
        "Patient?family=DUPONT",
        "Patient?identifier=284127645108946",
        "Condition?patient=Patient/p1",
        "Patient?birthdate=1970-04-12",
        "Observation?code=x&subject:Patient=p1",
    ):
        with pytest.raises(InvalidResource):
            parse_cohort_query(text)
