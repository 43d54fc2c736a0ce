"""Coverage history: AMO (mandatory scheme), AMC (mutuelle), C2S and AME, each with periods."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from rempart.seed import codes
from rempart.seed.catalog import Diagnosis
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.directory import Directory
from rempart.seed.patients import PatientContext
from rempart.seed.rand import iso_day, new_id

_SCHEMES = {
    # scheme: (v3 ActCode, display, French label)
    "AMO": ("PUBLICPOL", "public healthcare", "Assurance maladie obligatoire"),
    "AMC": ("EHCPOL", "extended healthcare", "Complémentaire santé (mutuelle)"),
    "C2S": ("SUBSIDIZ", "subsidized health program", "Complémentaire santé solidaire (C2S)"),
    "AME": ("SUBSIDIZ", "subsidized health program", "Aide médicale de l'État (AME)"),
}
_CONTRACTS = (
    "Contrat responsable — niveau 1",
    "Contrat responsable — niveau 2",
    "Contrat responsable — niveau 3",
    "Contrat collectif d'entreprise",
    "Contrat senior — hospitalisation renforcée",
)
_YEAR = 365
Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class _Right:
    scheme: str
    payor_id: str
    start: int
    end: int | None  # None: still open
    classes: tuple[JSON, ...] = ()


def _coverage(rng: random.Random, ctx: PatientContext, right: _Right) -> JSON:
    code, display, label = _SCHEMES[right.scheme]
    period: JSON = {"start": iso_day(right.start)}
    if right.end is not None:
        period["end"] = iso_day(right.end)
    adult = ctx.age >= 18
    resource: JSON = {
        "resourceType": "Coverage",
        "id": new_id(rng),
        "status": "active",  # ended rights stay "active" with a closed period, as in R4
        "type": {
            "coding": [
                {"system": codes.V3_ACT_CODE, "code": code, "display": display},
                {"system": codes.COVERAGE_SCHEME, "code": right.scheme, "display": label},
            ],
            "text": label,
        },
        "beneficiary": ref("Patient", ctx.id),
        "relationship": concept(codes.SUBSCRIBER_RELATIONSHIP, "self" if adult else "child"),
        "period": period,
        "payor": [ref("Organization", right.payor_id)],
        "order": 2 if right.scheme in ("AMC", "C2S") else 1,
    }
    if adult and right.scheme in ("AMO", "C2S"):
        resource["subscriberId"] = ctx.nir  # the carte Vitale number is the NIR
    if right.classes:
        resource["class"] = list(right.classes)
    return resource


def _plan(value: str, name: str) -> JSON:
    return {"type": concept(codes.COVERAGE_CLASS, "plan"), "value": value, "name": name}


def _yearly(rng: random.Random, last: int, until: int | None, birth: int) -> list[Span]:
    """1-3 consecutive one-year rights (AME and C2S are granted for a year, then renewed)."""
    start = last - rng.randint(1, 340) - _YEAR * rng.randint(0, 2)
    periods: list[Span] = []
    while start <= last:
        end = start + _YEAR - 1
        if until is not None:
            end = min(end, until)
        if end >= birth:
            periods.append((max(start, birth), end))
        start += _YEAR
    return periods


def _rights(
    rng: random.Random,
    ctx: PatientContext,
    directory: Directory,
    chronic: list[Diagnosis],
    last: int,
) -> list[_Right]:
    until = ctx.death
    amo = directory.amo_by_dept[ctx.commune.dept]
    if ctx.ame:
        return [_Right("AME", amo, s, e) for s, e in _yearly(rng, last, until, ctx.birth)]

    rights: list[_Right] = []
    # AMO: opened at birth (or on arrival in France); a third changed caisse after a move.
    opened = ctx.birth
    if ctx.foreign_born:
        opened = max(opened, last - rng.randint(1, 30) * _YEAR)
    opened = max(opened, last - 40 * _YEAR)  # older history was archived on paper
    ald = tuple(_plan("ALD", f"Exonération ALD n°{d.ald} — {d.label}") for d in chronic if d.ald)
    current_payor = directory.msa_id if rng.random() < 0.05 else amo  # MSA: farm workers
    if rng.random() < 0.33 and last - opened > 2 * _YEAR:
        moved = rng.randint(opened + _YEAR, last - 30)
        previous = directory.amo_by_dept[rng.choice(list(directory.amo_by_dept))]
        rights.append(_Right("AMO", previous, opened, moved - 1))
        opened = moved
    rights.append(_Right("AMO", current_payor, opened, until, ald))

    if rng.random() < 0.09:
        rights += [_Right("C2S", amo, s, e) for s, e in _yearly(rng, last, until, ctx.birth)]
    elif rng.random() < 0.87:
        start = max(ctx.birth, last - rng.randint(1, 12) * _YEAR)
        if rng.random() < 0.35 and last - start > 2 * _YEAR:
            change = rng.randint(start + _YEAR, last - 30)
            org_id, name = rng.choice(directory.mutuelles)
            plan = _plan(rng.choice(_CONTRACTS), name)
            rights.append(_Right("AMC", org_id, start, change - 1, (plan,)))
            start = change
        org_id, name = rng.choice(directory.mutuelles)
        rights.append(_Right("AMC", org_id, start, until, (_plan(rng.choice(_CONTRACTS), name),)))
    return rights


def build_coverages(
    rng: random.Random,
    ctx: PatientContext,
    directory: Directory,
    as_of: date,
    chronic: list[Diagnosis],
) -> list[JSON]:
    last = ctx.death or as_of.toordinal()  # coverage cannot outlive the patient
    return [_coverage(rng, ctx, r) for r in _rights(rng, ctx, directory, chronic, last)]
