"""A patient's longer-term record: chronic diseases and their treatment, allergies, care team."""

from __future__ import annotations

import random
from datetime import date
from functools import cache

from rempart.seed import codes
from rempart.seed.catalog import ALLERGENS, CHRONIC, DRUGS, Allergen, Diagnosis
from rempart.seed.clinical import Chronic, Records, prescription
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.directory import Directory
from rempart.seed.patients import PatientContext
from rempart.seed.rand import Weighted, iso_datetime, iso_day, new_id

_ALLERGY_SHARE = 0.12
_CARE_TEAM_SHARE = 0.6  # of patients with an ALD (long-term condition)
_ALLERGENS: Weighted[Allergen] = Weighted(ALLERGENS)


def _chronic_count(rng: random.Random, age: int) -> int:
    roll = rng.random()
    if age < 18:
        return 1 if roll < 0.2 else 0
    if age < 45:
        return 0 if roll < 0.6 else 1 if roll < 0.9 else 2
    if age < 65:
        return 0 if roll < 0.35 else 1 if roll < 0.7 else 2 if roll < 0.9 else 3
    return 0 if roll < 0.15 else 1 if roll < 0.45 else 2 if roll < 0.75 else 3


@cache  # bounded: ages x 2 genders
def _eligible(age: int, gender: str) -> Weighted[Diagnosis] | None:
    pairs = [
        (d, w) for d, w in CHRONIC if d.min_age <= age <= d.max_age and d.sex in (None, gender)
    ]
    return Weighted(pairs) if pairs else None


def pick_chronic(
    rng: random.Random, ctx: PatientContext, as_of: date
) -> list[tuple[Diagnosis, int]]:
    """Chronic diagnoses with their onset day (ordinal)."""
    table = _eligible(ctx.age, ctx.gender)
    wanted = _chronic_count(rng, ctx.age)
    if table is None or wanted == 0:
        return []
    last = (ctx.death or as_of.toordinal()) - 30
    chosen: list[tuple[Diagnosis, int]] = []
    for _ in range(wanted * 3):
        diagnosis = table.pick(rng)
        if any(d is diagnosis for d, _ in chosen):
            continue
        low = max(ctx.birth + 365 * diagnosis.min_age, last - 20 * 365)
        if low > last:
            continue
        chosen.append((diagnosis, rng.randint(low, last)))
        if len(chosen) == wanted:
            break
    return chosen


def chronic_treatments(
    rng: random.Random,
    ctx: PatientContext,
    records: Records,
    chronic: list[Chronic],
    as_of: date,
) -> None:
    """One long-term prescription per drug of each chronic disease, last renewed recently."""
    last = (ctx.death or as_of.toordinal()) - 1
    for diagnosis, condition_id, onset in chronic:
        followed_by = [doc for unit, doc in records.seen if unit.kind == diagnosis.unit]
        for key in diagnosis.drugs[:2]:
            if followed_by and rng.random() < 0.35:
                requester = rng.choice(followed_by).id
            else:
                requester = ctx.gp.id  # the médecin traitant renews most long-term treatments
            renewed = max(onset, last - rng.randint(0, 180))
            records.medications.append(
                prescription(
                    rng,
                    ctx,
                    DRUGS[key],
                    status="stopped" if ctx.death else "active",
                    authored=iso_datetime(renewed, rng.randint(540, 1080)),
                    requester=requester,
                    encounter_id=None,
                    reason_id=condition_id,
                )
            )


def allergies(rng: random.Random, ctx: PatientContext, records: Records, as_of: date) -> None:
    if rng.random() >= _ALLERGY_SHARE:
        return
    count = 2 if rng.random() < 0.1 else 1
    seen: set[str] = set()
    last = ctx.death or as_of.toordinal()
    for _ in range(count):
        allergen = _ALLERGENS.pick(rng)
        if allergen.label in seen:
            continue
        seen.add(allergen.label)
        code: JSON = {"text": allergen.label}
        if allergen.snomed:
            code["coding"] = [{"system": codes.SNOMED, "code": allergen.snomed}]
        severe = allergen.reaction in ("Choc anaphylactique", "Œdème de Quincke", "Bronchospasme")
        records.allergies.append(
            {
                "resourceType": "AllergyIntolerance",
                "id": new_id(rng),
                "clinicalStatus": concept(codes.ALLERGY_CLINICAL, "active"),
                "verificationStatus": concept(codes.ALLERGY_VERIFICATION, "confirmed"),
                "type": "allergy",
                "category": [allergen.category],
                "criticality": "high" if severe else "low",
                "code": code,
                "patient": ref("Patient", ctx.id),
                "recordedDate": iso_day(rng.randint(ctx.birth, last)),
                "recorder": ref("Practitioner", ctx.gp.id),
                "reaction": [
                    {
                        "manifestation": [{"text": allergen.reaction}],
                        "severity": "severe" if severe else "mild",
                    }
                ],
            }
        )


def care_team(
    rng: random.Random,
    ctx: PatientContext,
    directory: Directory,
    records: Records,
    chronic: list[Chronic],
) -> None:
    """A care team for some patients with a long-term condition (never for decoys, which
    must have no one with a standing reason to open them)."""
    ald = [c for c in chronic if c.diagnosis.ald]
    if ctx.decoy or not ald or rng.random() >= _CARE_TEAM_SHARE:
        return
    diagnosis, condition_id, onset = ald[0]
    kind = "medecine-interne" if diagnosis.unit == "pediatrie" and ctx.age >= 18 else diagnosis.unit
    unit = rng.choice(directory.units_by_kind[kind])
    referent = rng.choice(unit.doctors)
    period: JSON = {"start": iso_day(onset)}
    if ctx.death:
        period["end"] = iso_day(ctx.death)
    records.care_teams.append(
        {
            "resourceType": "CareTeam",
            "id": new_id(rng),
            "status": "inactive" if ctx.death else "active",
            "name": f"Équipe de soins — {diagnosis.label}",
            "subject": ref("Patient", ctx.id),
            "period": period,
            "participant": [
                {
                    "role": [{"text": "Médecin référent"}],
                    "member": ref("Practitioner", referent.id),
                    "onBehalfOf": ref("Organization", unit.org_id),
                },
                {"role": [{"text": "Médecin traitant"}], "member": ref("Practitioner", ctx.gp.id)},
            ],
            "reasonReference": [ref("Condition", condition_id)],
            "managingOrganization": [ref("Organization", unit.org_id)],
        }
    )
