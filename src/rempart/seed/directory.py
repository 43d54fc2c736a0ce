"""The hospital group's directory: establishments, units, locations, staff, GPs and payers."""

from __future__ import annotations

import random
from dataclasses import dataclass

from rempart.seed import codes
from rempart.seed.catalog import ESTABLISHMENTS, UNIT_KINDS
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.pools import CORSICA_DEPTS, METRO_DEPTS, OVERSEAS_DEPTS, Commune, Pools
from rempart.seed.rand import new_id, rng_for

# Bigger establishments get proportionally more of the staff in each specialty.
_ESTABLISHMENT_SIZE = (1.0, 0.6, 0.3)
PATIENTS_PER_DOCTOR = 150
PATIENTS_PER_GP = 1000


@dataclass(frozen=True, slots=True)
class Person:
    id: str  # Practitioner id
    given: str
    family: str
    gender: str


@dataclass(frozen=True, slots=True)
class Establishment:
    org_id: str
    location_id: str
    name: str
    commune: Commune


@dataclass(frozen=True, slots=True)
class Unit:
    org_id: str
    location_id: str
    kind: str
    name: str
    establishment: int
    doctors: tuple[Person, ...]


@dataclass(frozen=True)
class Directory:
    establishments: tuple[Establishment, ...]
    units: tuple[Unit, ...]
    units_by_kind: dict[str, tuple[Unit, ...]]
    gps: tuple[Person, ...]
    amo_by_dept: dict[str, str]  # department -> Organization id of its CPAM/CGSS
    msa_id: str
    mutuelles: tuple[tuple[str, str], ...]  # (Organization id, name)
    resources: tuple[JSON, ...]


def luhn_digit(digits: str) -> str:
    """Luhn check digit, as used by FINESS and RPPS numbers."""
    total = 0
    for pos, char in enumerate(reversed(digits)):
        value = int(char) * (2 if pos % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _rpps(rng: random.Random) -> str:
    # Prefix 19 keeps synthetic numbers out of the range allocated to real professionals (10...).
    body = f"19{rng.randrange(10**8):08d}"
    return body + luhn_digit(body)


def _person(rng: random.Random, pools: Pools) -> Person:
    gender = "female" if rng.random() < 0.52 else "male"
    firsts = pools.female_first if gender == "female" else pools.male_first
    return Person(new_id(rng), rng.choice(firsts), rng.choice(pools.family), gender)


def _practitioner(person: Person, rpps: str, qualification: str) -> JSON:
    return {
        "resourceType": "Practitioner",
        "id": person.id,
        "identifier": [
            {
                "use": "official",
                "type": concept(codes.FR_IDENTIFIER_TYPE, "RPPS"),
                "system": codes.RPPS,
                "value": rpps,
            }
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": person.family.upper(),
                "given": [person.given],
                "prefix": ["Dr"],
            }
        ],
        "gender": person.gender,
        "qualification": [{"code": {"text": qualification}}],
    }


def _role(rng: random.Random, person: Person, specialty: str, unit: Unit | None) -> JSON:
    role: JSON = {
        "resourceType": "PractitionerRole",
        "id": new_id(rng),
        "active": True,
        "practitioner": ref("Practitioner", person.id),
        "code": [concept(codes.PRACTITIONER_ROLE, "doctor", "Doctor", "Médecin")],
        "specialty": [{"text": specialty}],
    }
    if unit is not None:
        role["organization"] = ref("Organization", unit.org_id)
        role["location"] = [ref("Location", unit.location_id)]
    return role


def _address(commune: Commune, street: str, number: int) -> JSON:
    return {
        "use": "work",
        "line": [f"{number} {street}"],
        "city": commune.name,
        "postalCode": commune.postcode,
        "country": "FR",
    }


def _allocate(total: int, weights: list[float], minimum: int) -> list[int]:
    """Split ``total`` by weights (largest remainder), every share at least ``minimum``."""
    spare = total - minimum * len(weights)
    raw = [spare * w / sum(weights) for w in weights]
    shares = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (shares[i] - raw[i], i))
    for i in by_remainder[: spare - sum(shares)]:
        shares[i] += 1
    return [minimum + s for s in shares]


def build_directory(seed: int, patients: int, pools: Pools) -> Directory:
    rng = rng_for(seed, "directory")
    resources: list[JSON] = []
    home_communes = pools.communes_by_dept[pools.home_dept]

    establishments: list[Establishment] = []
    plan: list[tuple[int, str]] = []  # (establishment index, unit kind)
    for index, (pattern, category, kinds) in enumerate(ESTABLISHMENTS):
        commune = home_communes[index]
        est = Establishment(new_id(rng), new_id(rng), pattern.format(city=commune.name), commune)
        establishments.append(est)
        # dd999xxx + key: an odd corner of the FINESS number space, away from usual allocations.
        finess = f"{pools.home_dept}999{index}{rng.randrange(100):02d}"
        address = _address(commune, rng.choice(pools.streets), rng.randrange(1, 200))
        resources.append(
            {
                "resourceType": "Organization",
                "id": est.org_id,
                "identifier": [
                    {
                        "use": "official",
                        "system": codes.FINESS,
                        "value": finess + luhn_digit(finess),
                    }
                ],
                "active": True,
                "type": [concept(codes.ORG_TYPE, "prov", "Healthcare Provider", category)],
                "name": est.name,
                "address": [address],
            }
        )
        resources.append(
            {
                "resourceType": "Location",
                "id": est.location_id,
                "status": "active",
                "name": f"Site principal — {est.name}",
                "mode": "instance",
                "physicalType": concept(codes.LOCATION_PHYSICAL_TYPE, "si", "Site"),
                "address": dict(address, line=list(address["line"])),  # no shared sub-dicts
                "managingOrganization": ref("Organization", est.org_id),
            }
        )
        plan.extend((index, kind) for kind in kinds)

    weights = [UNIT_KINDS[k].weight * _ESTABLISHMENT_SIZE[e] for e, k in plan]
    n_doctors = max(2 * len(plan), patients // PATIENTS_PER_DOCTOR)
    staffing = _allocate(n_doctors, weights, 2)

    units: list[Unit] = []
    for number, ((est_index, kind), headcount) in enumerate(zip(plan, staffing, strict=True)):
        est = establishments[est_index]
        label = UNIT_KINDS[kind].label
        doctors = tuple(_person(rng, pools) for _ in range(headcount))
        unit = Unit(new_id(rng), new_id(rng), kind, f"{label} — {est.name}", est_index, doctors)
        units.append(unit)
        resources.append(
            {
                "resourceType": "Organization",
                "id": unit.org_id,
                "identifier": [{"system": codes.UF, "value": f"UF{est_index + 1}{number + 1:03d}"}],
                "active": True,
                "type": [concept(codes.ORG_TYPE, "dept", "Hospital Department", "Service")],
                "name": unit.name,
                "partOf": ref("Organization", est.org_id),
            }
        )
        resources.append(
            {
                "resourceType": "Location",
                "id": unit.location_id,
                "status": "active",
                "name": f"Service de {label.lower()}",
                "mode": "instance",
                "physicalType": concept(codes.LOCATION_PHYSICAL_TYPE, "wi", "Wing"),
                "managingOrganization": ref("Organization", unit.org_id),
                "partOf": ref("Location", est.location_id),
            }
        )
        for doctor in doctors:
            resources.append(_practitioner(doctor, _rpps(rng), f"Médecin — {label}"))
            resources.append(_role(rng, doctor, label, unit))

    gps = tuple(_person(rng, pools) for _ in range(max(10, patients // PATIENTS_PER_GP)))
    for gp in gps:
        resources.append(_practitioner(gp, _rpps(rng), "Médecin — Médecine générale"))
        resources.append(_role(rng, gp, "Médecine générale (médecin traitant)", None))

    amo_by_dept: dict[str, str] = {}
    for dept in (*METRO_DEPTS, *CORSICA_DEPTS, *OVERSEAS_DEPTS):
        amo_by_dept[dept] = new_id(rng)
        kind = (
            "Caisse générale de sécurité sociale"
            if dept in OVERSEAS_DEPTS
            else ("Caisse primaire d'assurance maladie")
        )
        resources.append(_payer(amo_by_dept[dept], f"{kind} ({dept})", "pay", "Payer"))
    msa_id = new_id(rng)
    resources.append(
        _payer(msa_id, f"Mutualité sociale agricole ({pools.home_dept})", "pay", "Payer")
    )
    mutuelles = tuple((new_id(rng), name) for name in pools.insurer_names)
    for org_id, name in mutuelles:
        resources.append(_payer(org_id, name, "ins", "Insurance Company"))

    by_kind: dict[str, tuple[Unit, ...]] = {}
    for unit in units:
        by_kind[unit.kind] = (*by_kind.get(unit.kind, ()), unit)
    return Directory(
        establishments=tuple(establishments),
        units=tuple(units),
        units_by_kind=by_kind,
        gps=gps,
        amo_by_dept=amo_by_dept,
        msa_id=msa_id,
        mutuelles=mutuelles,
        resources=tuple(resources),
    )


def _payer(org_id: str, name: str, type_code: str, type_display: str) -> JSON:
    return {
        "resourceType": "Organization",
        "id": org_id,
        "active": True,
        "type": [concept(codes.ORG_TYPE, type_code, type_display)],
        "name": name,
    }
