"""Vital-sign Observations (LOINC codes, UCUM units), plausible for the patient's age."""

from __future__ import annotations

import random

from rempart.seed import codes
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.patients import PatientContext
from rempart.seed.rand import new_id

# (LOINC code, LOINC display, French label)
BLOOD_PRESSURE = (
    "85354-9",
    "Blood pressure panel with all children optional",
    "Pression artérielle",
)
HEART_RATE = ("8867-4", "Heart rate", "Fréquence cardiaque")
TEMPERATURE = ("8310-5", "Body temperature", "Température")
SPO2 = ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "Saturation en oxygène")
WEIGHT = ("29463-7", "Body weight", "Poids")
FEVERISH = frozenset({"J18.9", "N39.0", "U07.1", "J21.9", "J44.1"})


def _quantity(value: float, unit: str, code: str) -> JSON:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": code}


def _observation(
    rng: random.Random,
    ctx: PatientContext,
    loinc: tuple[str, str, str],
    *,
    encounter_id: str,
    when: str,
) -> JSON:
    return {
        "resourceType": "Observation",
        "id": new_id(rng),
        "status": "final",
        "category": [concept(codes.OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
        "code": concept(codes.LOINC, loinc[0], loinc[1], loinc[2]),
        "subject": ref("Patient", ctx.id),
        "encounter": ref("Encounter", encounter_id),
        "effectiveDateTime": when,
    }


def vital_signs(
    rng: random.Random,
    ctx: PatientContext,
    *,
    encounter_id: str,
    when: str,
    full: bool,
    fever: bool,
) -> list[JSON]:
    """Blood pressure (+ weight) in consultation; the full set at admission (``full``)."""
    child = ctx.age < 12
    pressure = _observation(rng, ctx, BLOOD_PRESSURE, encounter_id=encounter_id, when=when)
    systolic = rng.randint(90, 115) if child else rng.randint(105, 165)
    diastolic = rng.randint(50, 70) if child else rng.randint(60, 95)
    pressure["component"] = [
        {
            "code": concept(codes.LOINC, "8480-6", "Systolic blood pressure"),
            "valueQuantity": _quantity(systolic, "mmHg", "mm[Hg]"),
        },
        {
            "code": concept(codes.LOINC, "8462-4", "Diastolic blood pressure"),
            "valueQuantity": _quantity(diastolic, "mmHg", "mm[Hg]"),
        },
    ]
    out = [pressure]
    measures: list[tuple[tuple[str, str, str], JSON]] = []
    if full:
        rate = rng.randint(90, 140) if child else rng.randint(55, 105)
        temp = round(rng.uniform(38.1, 39.8) if fever else rng.uniform(36.2, 37.4), 1)
        spo2 = rng.randint(88, 99) if fever else rng.randint(95, 100)
        measures += [
            (HEART_RATE, _quantity(rate, "/min", "/min")),
            (TEMPERATURE, _quantity(temp, "°C", "Cel")),
            (SPO2, _quantity(spo2, "%", "%")),
        ]
    if not full or rng.random() < 0.5:
        if ctx.age < 15:
            weight = 3.5 + 2.6 * ctx.age
        else:
            weight = rng.gauss(66 if ctx.gender == "female" else 80, 12)
        measures.append((WEIGHT, _quantity(round(max(weight, 2.5), 1), "kg", "kg")))
    for loinc, value in measures:
        observation = _observation(rng, ctx, loinc, encounter_id=encounter_id, when=when)
        observation["valueQuantity"] = value
        out.append(observation)
    return out
