"""Accounts of the audit tests' own (fresh logins never collide with other tests' TOTP steps)
and helpers to read the log they fill."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select

from rempart.access.roles import Role
from rempart.audit.tables import audit_event
from rempart.wiring import Services
from tests.functional.conftest import Hospital, login
from tests.passwords import acceptable_password

FHIR = {"Accept": "application/fhir+json"}


@dataclass
class Staff:
    headers: dict[str, dict[str, str]]
    usernames: dict[str, str]
    patient_id: str  # the record the test patient account owns
    other_patient_id: str


def services_of(hospital: Hospital) -> Services:
    services: Services = hospital.client.app.state.services  # type: ignore[attr-defined]
    return services


def new_account(services: Services, role: Role, **links: str | None) -> dict[str, Any]:
    username = f"audit.{role.value}.{secrets.token_hex(3)}"
    password = acceptable_password(username, f"Audit {role.value.title()}", prefix="Vx9!")
    secret = pyotp.random_base32()
    services.identity.create_account(
        username=username,
        password=password,
        role=role,
        display_name=f"Audit {role.value.title()}",
        totp_secret=secret,
        **links,
    )
    return {"username": username, "password": password, "totp_secret": secret}


@pytest.fixture(scope="module")
def staff(hospital: Hospital) -> Staff:
    """Accounts of our own (fresh logins never collide with other tests' TOTP steps): a
    clinician sharing the practitioner of a seeded one who cares for at least two patients."""
    services = services_of(hospital)
    clinician: dict[str, Any] = {}
    headers: dict[str, dict[str, str]] = {}
    patients: list[str] = []
    for seeded in [a for a in hospital.accounts if a["role"] == "clinician"][2:]:
        clinician = new_account(services, Role.CLINICIAN, practitioner=seeded["practitioner"])
        headers["clinician"] = {
            "Authorization": f"Bearer {login(hospital.client, clinician)}",
            **FHIR,
        }
        found = hospital.client.get(
            "/fhir/Patient", params={"_count": 2}, headers=headers["clinician"]
        ).json()
        patients = [e["resource"]["id"] for e in found.get("entry", [])]
        if len(patients) == 2:
            break
    mine, other = patients
    made = {
        "officer": new_account(services, Role.SECURITY_OFFICER),
        "admin": new_account(services, Role.ADMIN),
        "patient": new_account(services, Role.PATIENT, patient=f"Patient/{mine}"),
    }
    for key, acct in made.items():
        headers[key] = {"Authorization": f"Bearer {login(hospital.client, acct)}", **FHIR}
    names = {k: a["username"] for k, a in made.items()} | {"clinician": clinician["username"]}
    return Staff(headers, names, mine, other)


def events_since(services: Services, seq: int) -> list[Any]:
    with services.engine.connect() as conn:
        return conn.execute(
            select(audit_event).where(audit_event.c.seq >= seq).order_by(audit_event.c.seq)
        ).all()


def next_seq(services: Services) -> int:
    with services.engine.connect() as conn:
        top = conn.execute(select(func.max(audit_event.c.seq))).scalar()
    return -1 if top is None else int(top) + 1
