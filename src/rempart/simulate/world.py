"""What the simulator knows of the seeded hospital: accounts with their secrets, units, patients.

This is the knowledge of the *people* being simulated (a front desk knows the NIR of the person
in front of them; a clinician the unit they work in), plus the ground truth the harness needs to
recognise a patient's data when it reaches an attacker: identifiers, phone numbers, e-mails and
full names of every seeded patient. Nothing here comes from the server.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from rempart.seed import generate

NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    totp_secret: str
    role: str
    practitioner: str | None
    patient: str | None
    units: tuple[str, ...] = ()

    @classmethod
    def fresh(
        cls, username: str, role: str, unit: str, practitioner: str | None = None
    ) -> Credentials:
        """An account the operator provisions for the run, with new secrets."""
        return cls(
            username=username,
            password=secrets.token_urlsafe(24),
            totp_secret=pyotp.random_base32(),
            role=role,
            practitioner=practitioner,
            patient=None,
            units=(unit,),
        )


@dataclass(frozen=True)
class Unit:
    org: str  # "Organization/<id>"
    location: str  # "Location/<id>"
    kind: str
    establishment: int


@dataclass(frozen=True)
class SeededPatient:
    id: str
    nir: str
    family: str
    given: str
    birth_date: str
    alive: bool
    adult: bool
    decoy: bool
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    names: tuple[str, ...]  # "given family" of each name, as written in the record


@dataclass
class World:
    patients: list[SeededPatient]
    accounts: list[Credentials]
    units: list[Unit]
    establishments: list[str]  # "Organization/<id>" by index
    staff_names: frozenset[str] = field(default_factory=frozenset)
    # Each unit's doctors in the directory ("Organization/<id>" -> (Practitioner ref, given,
    # family)); the seed gives an account to the first one only (rota.py provisions others).
    doctors: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)

    def by_role(self, role: str) -> list[Credentials]:
        return [a for a in self.accounts if a.role == role]

    def unit_of(self, account: Credentials) -> Unit | None:
        return next((u for u in self.units if u.org in account.units), None)

    def admissible(self, rng: random.Random) -> SeededPatient:
        """Someone who could walk into the hospital today: alive, and never a decoy (no
        legitimate workflow reaches a decoy patient)."""
        while True:
            patient = rng.choice(self.patients)
            if patient.alive and not patient.decoy:
                return patient


def _names(resource: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for name in resource.get("name", []):
        family = name.get("family", "")
        for given in name.get("given", [])[:1]:
            out.append(f"{given} {family}")
    return tuple(out)


def _patient(resource: dict[str, Any], decoy: bool, adult: bool) -> SeededPatient:
    nir = next(
        (i["value"] for i in resource.get("identifier", []) if i.get("system") == NIR_SYSTEM), ""
    )
    official = resource["name"][0]
    telecom = resource.get("telecom", [])
    return SeededPatient(
        id=resource["id"],
        nir=nir,
        family=official["family"],
        given=official["given"][0],
        birth_date=resource.get("birthDate", ""),
        alive="deceasedDateTime" not in resource and not resource.get("deceasedBoolean", False),
        adult=adult,
        decoy=decoy,
        phones=tuple(t["value"] for t in telecom if t.get("system") == "phone"),
        emails=tuple(t["value"] for t in telecom if t.get("system") == "email"),
        names=_names(resource),
    )


def build_world(patients: int, seed: int, credentials: Path) -> World:
    hospital = generate(patients, seed)
    decoys = set(hospital.decoy_patient_ids())
    found = []
    adult_before = f"{hospital.as_of.year - 18}{hospital.as_of.isoformat()[4:]}"
    for index in range(patients):
        resource = hospital.patient_resources(index)[0]
        adult = resource.get("birthDate", "9999") <= adult_before
        found.append(_patient(resource, resource["id"] in decoys, adult))
    doc = json.loads(credentials.read_text(encoding="utf-8"))
    units_of = {a.username: a.units for a in hospital.accounts}
    accounts = [
        Credentials(
            username=a["username"],
            password=a["password"],
            totp_secret=a["totp_secret"],
            role=a["role"],
            practitioner=a.get("practitioner"),
            patient=a.get("patient"),
            units=units_of.get(a["username"], ()),
        )
        for a in doc["accounts"]
    ]
    # The generator's directory structure (which unit is where); only its public resources are
    # exported, so the simulator reads the structure the generator built them from.
    directory = hospital._directory
    units = [
        Unit(f"Organization/{u.org_id}", f"Location/{u.location_id}", u.kind, u.establishment)
        for u in directory.units
    ]
    staff = {f"{p.given} {p.family}".casefold() for u in directory.units for p in u.doctors} | {
        f"{p.given} {p.family}".casefold() for p in directory.gps
    }
    staff |= {
        a["display_name"].removeprefix("Dr ").casefold()
        for a in doc["accounts"]
        if a["role"] != "patient"
    }
    return World(
        patients=found,
        accounts=accounts,
        units=units,
        establishments=[f"Organization/{e.org_id}" for e in directory.establishments],
        staff_names=frozenset(staff),
        doctors={
            f"Organization/{u.org_id}": tuple(
                (f"Practitioner/{p.id}", p.given, p.family) for p in u.doctors
            )
            for u in directory.units
        },
    )
