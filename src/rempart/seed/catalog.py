"""Static clinical tables: units, diagnoses (CIM-10), drugs (ATC), allergies (SNOMED CT).

The tables live in ``data/*.tsv`` (one row per line, ``-`` for empty) so that clinicians can
review them without reading code. The codes are real public terminology codes; labels are in
French as a French hospital would display them. Weights are rough orders of magnitude, enough
for realistic-looking records, not epidemiology.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files


@dataclass(frozen=True, slots=True)
class UnitKind:
    key: str
    label: str
    weight: float  # share of the medical staff


UNIT_KINDS: dict[str, UnitKind] = {
    k.key: k
    for k in (
        UnitKind("urgences", "Urgences", 3.0),
        UnitKind("cardiologie", "Cardiologie", 2.0),
        UnitKind("pediatrie", "Pédiatrie", 1.5),
        UnitKind("chirurgie-ortho", "Chirurgie orthopédique et traumatologique", 1.5),
        UnitKind("chirurgie-visc", "Chirurgie viscérale et digestive", 1.2),
        UnitKind("oncologie", "Oncologie médicale", 1.5),
        UnitKind("geriatrie", "Gériatrie", 1.5),
        UnitKind("medecine-interne", "Médecine interne", 1.5),
        UnitKind("neurologie", "Neurologie", 1.0),
        UnitKind("pneumologie", "Pneumologie", 1.0),
        UnitKind("maternite", "Gynécologie-obstétrique", 1.2),
        UnitKind("smr", "Soins médicaux et de réadaptation", 0.8),
    )
}

# (name pattern, NOS-like category label, unit kinds). The first is the group's main site.
ESTABLISHMENTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Centre hospitalier universitaire de {city}",
        "Centre hospitalier universitaire",
        tuple(UNIT_KINDS),
    ),
    (
        "Centre hospitalier de {city}",
        "Centre hospitalier",
        (
            "urgences",
            "cardiologie",
            "pediatrie",
            "chirurgie-ortho",
            "geriatrie",
            "medecine-interne",
            "maternite",
        ),
    ),
    (
        "Hôpital de proximité de {city}",
        "Hôpital de proximité",
        ("geriatrie", "medecine-interne", "smr"),
    ),
)


@dataclass(frozen=True, slots=True)
class Drug:
    atc: str
    label: str
    dosage: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    code: str  # CIM-10
    label: str
    unit: str  # unit kind that follows the patient for it
    ald: int | None  # ALD list number when exonerating (ALD 30: cancers, ALD 8: diabetes...)
    drugs: tuple[str, ...]  # keys of DRUGS
    min_age: int
    max_age: int
    sex: str | None


@dataclass(frozen=True, slots=True)
class Allergen:
    snomed: str | None
    label: str
    category: str  # food | medication | environment | biologic
    reaction: str


def _rows(name: str) -> list[list[str | None]]:
    text = files("rempart.seed").joinpath("data", name).read_text(encoding="utf-8")
    return [
        [None if cell == "-" else cell for cell in line.split("\t")]
        for line in text.splitlines()
        if line and not line.startswith("#")
    ]


def _str(cell: str | None) -> str:
    if cell is None:
        raise ValueError("missing mandatory cell in seed data")
    return cell


def _drugs(cell: str | None) -> tuple[str, ...]:
    return tuple(cell.split(",")) if cell else ()


DRUGS: dict[str, Drug] = {
    _str(key): Drug(_str(atc), _str(label), _str(dosage))
    for key, atc, label, dosage in _rows("drugs.tsv")
}

CHRONIC: tuple[tuple[Diagnosis, float], ...] = tuple(
    (
        Diagnosis(
            _str(code),
            _str(label),
            _str(unit),
            int(ald) if ald else None,
            _drugs(drugs),
            int(_str(min_age)),
            120,
            sex,
        ),
        float(_str(weight)),
    )
    for code, label, unit, ald, drugs, min_age, sex, weight in _rows("chronic.tsv")
)

# Acute diagnoses coded during a stay or an emergency visit, by the unit kind that codes them.
ACUTE: dict[str, tuple[tuple[Diagnosis, float], ...]] = {}
for _where, _code, _label, _unit, _drug_keys, _min, _max, _sex, _weight in _rows("acute.tsv"):
    _diagnosis = Diagnosis(
        _str(_code),
        _str(_label),
        _str(_unit),
        None,
        _drugs(_drug_keys),
        int(_str(_min)),
        int(_str(_max)),
        _sex,
    )
    ACUTE[_str(_where)] = (*ACUTE.get(_str(_where), ()), (_diagnosis, float(_str(_weight))))

ALLERGENS: tuple[tuple[Allergen, float], ...] = tuple(
    (Allergen(snomed, _str(label), _str(category), _str(reaction)), float(_str(weight)))
    for snomed, label, category, reaction, weight in _rows("allergens.tsv")
)
