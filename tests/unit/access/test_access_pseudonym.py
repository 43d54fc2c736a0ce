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


REPORT = {
    "resourceType": "DiagnosticReport",
    "id": "r1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
    "subject": {"reference": "Patient/p1"},
    "conclusion": "Mme Jeanne DUPONT : bilan normal",
    "presentedForm": [{"contentType": "text/plain", "data": "SmVhbm5lIERVUE9OVA=="}],
    "media": [{"comment": "cliché de Mme DUPONT", "link": {"reference": "Media/m1"}}],
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 72, "unit": "/min"},
    "component": [{"code": {"text": "remarque"}, "valueString": "fille de Mme DUPONT présente"}],
}
DEVICE = {
    "resourceType": "Device",
    "id": "v1",
    "udiCarrier": [{"deviceIdentifier": "08717648200274", "carrierHRF": "(21)SN-PACE-4471"}],
    "serialNumber": "SN-PACE-4471",
    "distinctIdentifier": "SN-PACE-4471",
    "type": {"coding": [{"system": "http://snomed.info/sct", "code": "14106009"}]},
    "patient": {"reference": "Patient/p1"},
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"code": "IMP"},
    "subject": {"reference": "Patient/p1"},
    "hospitalization": {"preAdmissionIdentifier": {"value": "PRE-DUPONT-2026"}},
}


def test_documents_free_text_and_device_serials_are_gone() -> None:
    pseudo = Pseudonymiser(b"k" * 32)
    out = [pseudo.resource(r) for r in (REPORT, OBSERVATION, DEVICE, ENCOUNTER)]
    flat = orjson.dumps(out).decode()
    for secret in ("DUPONT", "SmVhbm5l", "SN-PACE", "08717648200274", "p1"):
        assert secret not in flat, secret
    report, observation, device, encounter = out
    assert report["code"] == REPORT["code"]  # the codes stay: they are the research payload
    assert observation["valueQuantity"] == OBSERVATION["valueQuantity"]
    assert device["type"] == DEVICE["type"]
    assert encounter["class"] == ENCOUNTER["class"]
    sampled = {"origin": {"value": 0}, "period": 10, "dimensions": 1, "data": "1 2 3"}
    kept = pseudo.resource({**OBSERVATION, "valueSampledData": sampled})
    assert kept["valueSampledData"] == sampled  # measurements, not a document


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
