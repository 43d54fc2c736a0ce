"""The FHIR resources normal staff write in a simulated hospital: an admission, a vital sign,
a progress note (built at the simulated clock's now)."""

from __future__ import annotations

import base64
from typing import Any

from rempart import clock
from rempart.simulate.engine import iso
from rempart.simulate.world import SeededPatient, Unit


def admission(patient: SeededPatient, unit: Unit, practitioner: str | None) -> dict[str, Any]:
    now = iso(clock.now_micros())
    body: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": {"reference": f"Patient/{patient.id}"},
        "period": {"start": now},
        "location": [{"location": {"reference": unit.location}, "status": "active"}],
        "serviceProvider": {"reference": unit.org},
    }
    if practitioner:
        body["participant"] = [{"individual": {"reference": practitioner}}]
    return body


def vital_sign(patient: str, encounter: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": f"Encounter/{encounter}"},
        "effectiveDateTime": iso(clock.now_micros()),
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def progress_note(patient: str, encounter: str, author: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "date": iso(clock.now_micros()),
        "author": [{"reference": author}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
        "context": {"encounter": [{"reference": f"Encounter/{encounter}"}]},
    }
