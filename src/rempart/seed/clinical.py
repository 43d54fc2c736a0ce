"""Encounters and what happens during them: diagnoses, vital signs, prescriptions, letters."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import NamedTuple

from rempart.seed import codes
from rempart.seed.catalog import ACUTE, DRUGS, UNIT_KINDS, Diagnosis, Drug
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.directory import Directory, Person, Unit
from rempart.seed.documents import (
    CONSULT_NOTE,
    DISCHARGE_SUMMARY,
    EMERGENCY_NOTE,
    document,
    note_text,
)
from rempart.seed.patients import PatientContext
from rempart.seed.rand import Weighted, iso_datetime, iso_day, new_id
from rempart.seed.vitals import FEVERISH, vital_signs

_CLASSES: Weighted[str] = Weighted([("AMB", 60), ("EMER", 20), ("IMP", 20)])
_CLASS_INFO = {
    "AMB": ("ambulatory", "Consultation externe"),
    "EMER": ("emergency", "Passage aux urgences"),
    "IMP": ("inpatient encounter", "Hospitalisation complète"),
}
_NOTE_KIND = {"AMB": CONSULT_NOTE, "EMER": EMERGENCY_NOTE, "IMP": DISCHARGE_SUMMARY}
_VISITS: Weighted[int] = Weighted([(1, 30), (2, 25), (3, 18), (4, 12), (5, 8), (6, 5), (8, 2)])
_ADULT_UNITS: Weighted[str] = Weighted(
    [
        ("medecine-interne", 3),
        ("cardiologie", 3),
        ("chirurgie-ortho", 2),
        ("chirurgie-visc", 2),
        ("pneumologie", 1.5),
        ("neurologie", 1.5),
        ("oncologie", 1),
    ]
)
_RECENT_SHARE = 0.03  # visits in the last 30 days, so "recent activity" views are populated
_HISTORY_DAYS = 10 * 365
# A decoy's last visit ends before the longest care window an administrator can set (365 days)
# plus the longest stay (40): no doctor with an account has a care relationship to a decoy, so
# the first reader of one is out of pattern (the guard's decoy rule locks it).
_DECOY_QUIET_DAYS = 365 + 41
_DAY = 1440  # minutes; times are counted in minutes since day 0 of the proleptic calendar
_DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"


class Chronic(NamedTuple):
    diagnosis: Diagnosis
    condition_id: str
    onset: int  # date ordinal


@dataclass(slots=True)
class Records:
    """A patient's resources, by type, in the order they should be ingested."""

    encounters: list[JSON] = field(default_factory=list)
    conditions: list[JSON] = field(default_factory=list)
    allergies: list[JSON] = field(default_factory=list)
    medications: list[JSON] = field(default_factory=list)
    observations: list[JSON] = field(default_factory=list)
    documents: list[JSON] = field(default_factory=list)
    care_teams: list[JSON] = field(default_factory=list)
    # (unit, doctor) of each finished encounter, for follow-up prescriptions and certificates.
    seen: list[tuple[Unit, Person]] = field(default_factory=list)


@cache  # bounded: unit kinds x ages x 2 genders
def _eligible(kind: str, age: int, gender: str) -> Weighted[Diagnosis] | None:
    pairs = [
        (d, w)
        for d, w in ACUTE.get(kind, ())
        if d.min_age <= age <= d.max_age and d.sex in (None, gender)
    ]
    return Weighted(pairs) if pairs else None


def condition(
    rng: random.Random,
    ctx: PatientContext,
    diagnosis: Diagnosis,
    *,
    category: str,
    onset: int,
    active: bool,
    encounter_id: str | None = None,
    recorder: str | None = None,
) -> JSON:
    categories = [concept(codes.CONDITION_CATEGORY, category)]
    if diagnosis.ald:
        categories.append({"text": f"Affection de longue durée (ALD n°{diagnosis.ald})"})
    resource: JSON = {
        "resourceType": "Condition",
        "id": new_id(rng),
        "clinicalStatus": concept(codes.CONDITION_CLINICAL, "active" if active else "resolved"),
        "verificationStatus": concept(codes.CONDITION_VERIFICATION, "confirmed"),
        "category": categories,
        "code": concept(codes.ICD10, diagnosis.code, diagnosis.label, diagnosis.label),
        "subject": ref("Patient", ctx.id),
        "onsetDateTime": iso_day(onset),
        "recordedDate": iso_day(onset),
    }
    if encounter_id is not None:
        resource["encounter"] = ref("Encounter", encounter_id)
    if recorder is not None:
        resource["recorder"] = ref("Practitioner", recorder)
    return resource


def prescription(
    rng: random.Random,
    ctx: PatientContext,
    drug: Drug,
    *,
    status: str,
    authored: str,
    requester: str,
    encounter_id: str | None,
    reason_id: str | None,
) -> JSON:
    resource: JSON = {
        "resourceType": "MedicationRequest",
        "id": new_id(rng),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept(codes.ATC, drug.atc, None, drug.label),
        "subject": ref("Patient", ctx.id),
        "authoredOn": authored,
        "requester": ref("Practitioner", requester),
        "dosageInstruction": [{"text": drug.dosage}],
    }
    if encounter_id is not None:
        resource["encounter"] = ref("Encounter", encounter_id)
    if reason_id is not None:
        resource["reasonReference"] = [ref("Condition", reason_id)]
    return resource


def encounter_days(rng: random.Random, ctx: PatientContext, as_of: date) -> list[int]:
    """Days (ordinals) of the patient's visits over the last ten years, in order."""
    today = as_of.toordinal()
    last = today - 1 if ctx.death is None else ctx.death - 20
    if ctx.decoy:
        last = min(last, today - _DECOY_QUIET_DAYS)
    first = max(ctx.birth, last - _HISTORY_DAYS)
    if last < first:
        return []
    days = []
    for _ in range(_VISITS.pick(rng) + (1 if ctx.age >= 65 else 0)):
        # Decoys get no recent visit: nobody should have a fresh reason to open them.
        if ctx.death is None and not ctx.decoy and rng.random() < _RECENT_SHARE:
            days.append(max(first, today - rng.randint(1, 30)))
        else:
            days.append(rng.randint(first, last))
    return sorted(days)


def _unit_kind(
    rng: random.Random, ctx: PatientContext, enc_class: str, chronic: list[Chronic]
) -> str:
    if enc_class == "EMER":
        return "urgences"
    if ctx.age < 16:
        return "pediatrie"
    pregnant_age = ctx.gender == "female" and 18 <= ctx.age <= 45
    if enc_class == "IMP" and pregnant_age and rng.random() < 0.25:
        return "maternite"
    if chronic and rng.random() < 0.6:
        kind = rng.choice(chronic).diagnosis.unit
        return "medecine-interne" if kind == "pediatrie" else kind
    if ctx.age >= 75 and rng.random() < 0.4:
        return "geriatrie"
    return _ADULT_UNITS.pick(rng)


def _schedule(rng: random.Random, enc_class: str, day: int) -> tuple[int, int]:
    """(start, end) in minutes: daytime consultations, round-the-clock emergencies, stays."""
    if enc_class == "AMB":
        start = day * _DAY + 480 + 15 * rng.randint(0, 38)
        return start, start + rng.choice((20, 30, 30, 45))
    if enc_class == "EMER":
        start = day * _DAY + rng.randrange(_DAY)
        return start, start + rng.randint(120, 600)
    start = day * _DAY + rng.randint(480, 1200)
    stay = min(int(rng.expovariate(1 / 5)) + 1, 40)
    return start, (day + stay) * _DAY + rng.randint(600, 960)


def _stamp(minutes: int) -> str:
    return iso_datetime(minutes // _DAY, minutes % _DAY)


def build_encounter(
    rng: random.Random,
    ctx: PatientContext,
    directory: Directory,
    records: Records,
    *,
    day: int,
    as_of: date,
    chronic: list[Chronic],
    enc_class: str | None = None,
    died: bool = False,
) -> None:
    """Add one encounter and its clinical by-products to ``records``.

    An encounter whose planned end falls after the reference date is still going on: the
    patient is currently in hospital (or in the emergency department).
    """
    enc_class = enc_class or _CLASSES.pick(rng)
    known = [c for c in chronic if c.onset <= day]  # only what was known on that day
    unit = rng.choice(directory.units_by_kind[_unit_kind(rng, ctx, enc_class, known)])
    doctor = rng.choice(unit.doctors)
    start, end = _schedule(rng, enc_class, day)
    if died and ctx.death is not None:
        end = ctx.death * _DAY + rng.randrange(_DAY)
    if ctx.decoy:  # a decoy is in no unit's census: no stay of theirs is still going on
        end = max(start, min(end, as_of.toordinal() * _DAY - 1))
    ongoing = end >= as_of.toordinal() * _DAY
    enc_id = new_id(rng)
    class_display, type_label = _CLASS_INFO[enc_class]
    encounter: JSON = {
        "resourceType": "Encounter",
        "id": enc_id,
        "status": "in-progress" if ongoing else "finished",
        "class": {"system": codes.V3_ACT_CODE, "code": enc_class, "display": class_display},
        "type": [{"text": type_label}],
        "subject": ref("Patient", ctx.id),
        "participant": [
            {
                "type": [concept(codes.PARTICIPATION_TYPE, "ATND", "attender")],
                "individual": ref("Practitioner", doctor.id),
            }
        ],
        "period": {"start": _stamp(start)}
        if ongoing
        else {"start": _stamp(start), "end": _stamp(end)},
        "location": [
            {
                "location": ref("Location", unit.location_id),
                "status": "active" if ongoing else "completed",
            }
        ],
        "serviceProvider": ref("Organization", unit.org_id),
    }
    if enc_class == "IMP" and not ongoing:
        encounter["hospitalization"] = {
            "dischargeDisposition": concept(_DISCHARGE, "exp" if died else "home")
        }
    records.encounters.append(encounter)

    # Consultations follow a chronic disease; emergencies and most stays get an acute diagnosis.
    # Encounter.reasonCode rather than reasonReference: references then only point to resources
    # earlier in the batch (Condition -> Encounter), so an ingest in list order never dangles.
    diagnosis: Diagnosis | None = None
    reason_id: str | None = None
    followed = [c for c in known if c.diagnosis.unit == unit.kind]
    table = _eligible(unit.kind, ctx.age, ctx.gender)
    acute = enc_class == "EMER" or (enc_class == "IMP" and (not followed or rng.random() < 0.7))
    if acute and table is not None:
        diagnosis = table.pick(rng)
        cond = condition(
            rng,
            ctx,
            diagnosis,
            category="encounter-diagnosis",
            onset=day,
            active=ongoing,
            encounter_id=enc_id,
            recorder=doctor.id,
        )
        records.conditions.append(cond)
        reason_id = cond["id"]
    elif followed:
        diagnosis, reason_id, _ = rng.choice(followed)
    if diagnosis is not None:
        encounter["reasonCode"] = [
            concept(codes.ICD10, diagnosis.code, diagnosis.label, diagnosis.label)
        ]

    when = _stamp(start + 10)
    if enc_class != "AMB" or rng.random() < 0.3:
        records.observations.extend(
            vital_signs(
                rng,
                ctx,
                encounter_id=enc_id,
                when=when,
                full=enc_class != "AMB",
                fever=diagnosis is not None and diagnosis.code in FEVERISH,
            )
        )

    drugs: list[Drug] = []
    if diagnosis is not None and enc_class != "AMB" and not died:
        drugs = [DRUGS[k] for k in diagnosis.drugs[:2]]
        current = ongoing or as_of.toordinal() - end // _DAY < 14
        for drug in drugs:
            records.medications.append(
                prescription(
                    rng,
                    ctx,
                    drug,
                    status="active" if current and ctx.death is None else "completed",
                    authored=when if ongoing else _stamp(end - 60),
                    requester=doctor.id,
                    encounter_id=enc_id,
                    reason_id=reason_id,
                )
            )
    if ongoing:
        return  # no letter yet for a patient still in hospital
    records.seen.append((unit, doctor))
    if enc_class != "AMB" or rng.random() < 0.6:
        kind = _NOTE_KIND[enc_class]
        text = note_text(
            rng,
            ctx,
            kind=kind,
            unit_label=UNIT_KINDS[unit.kind].label,
            day=day,
            doctor=f"{doctor.given} {doctor.family.upper()}",
            diagnosis=diagnosis,
            history=[c.diagnosis for c in known],
            drugs=[d.label for d in drugs],
            died=died,
        )
        custodian = directory.establishments[unit.establishment].org_id
        records.documents.append(
            document(
                rng,
                ctx,
                kind,
                text=text,
                when=_stamp(end + 30),
                author_id=doctor.id,
                custodian_id=custodian,
                encounter_id=enc_id,
            )
        )
