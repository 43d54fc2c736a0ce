"""Builders for the access tests (unit and functional): accounts made for the test, records
written by the operator's path, logins that pass a fresh second factor."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyotp
from fastapi.testclient import TestClient

from rempart.access import membership
from rempart.access.pdp import Principal, system_decision
from rempart.access.roles import Role
from rempart.clock import now_micros
from rempart.store.repository import Stored
from rempart.wiring import Services
from tests.passwords import acceptable_password

SYSTEM = system_decision("test fixture: records as the hospital wrote them")
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@dataclass(frozen=True)
class Staff:
    id: str
    username: str
    password: str
    totp_secret: str
    role: Role
    practitioner: str | None = None
    patient: str | None = None

    def principal(self, *, fresh: bool = True) -> Principal:
        """As authentication would give it; `fresh`: a second factor passed just now."""
        return Principal(
            self.id,
            self.username,
            self.role,
            self.practitioner,
            self.patient,
            session_id=str(uuid.uuid4()),
            factor_at=now_micros() if fresh else now_micros() - 3600 * 1_000_000,
        )


def new_staff(
    services: Services,
    role: Role,
    *,
    practitioner: str | None = None,
    patient: str | None = None,
    units: tuple[str, ...] = (),
    prefix: str = "t",
) -> Staff:
    username = f"{prefix}.{role.value}.{uuid.uuid4().hex[:10]}"
    password = acceptable_password(username, f"Test {role.value}")
    secret = pyotp.random_base32()
    account_id = services.identity.create_account(
        username=username,
        password=password,
        role=role,
        display_name=f"Test {role.value}",
        totp_secret=secret,
        practitioner=practitioner,
        patient=patient,
    )
    with services.engine.begin() as conn:
        for unit in units:
            membership.add(conn, account_id, unit, None)
    return Staff(account_id, username, password, secret, role, practitioner, patient)


_LAST_STEP: dict[str, int] = {}


def login(client: TestClient, staff: Staff) -> dict[str, str]:
    """A fresh session (password + TOTP): its second factor counts as fresh for 5 minutes.

    A TOTP code is accepted once: a second login of the same account waits for the next step.
    """
    while int(time.time() // 30) <= _LAST_STEP.get(staff.username, -1):
        time.sleep(0.2)
    _LAST_STEP[staff.username] = int(time.time() // 30)
    first = client.post(
        "/auth/login", json={"username": staff.username, "password": staff.password}
    )
    assert first.status_code == 200, first.text
    second = client.post(
        "/auth/mfa",
        json={
            "mfa_token": first.json()["mfa_token"],
            "code": pyotp.TOTP(staff.totp_secret).now(),
        },
    )
    assert second.status_code == 200, second.text
    return {"Authorization": f"Bearer {second.json()['access_token']}"}


def write(services: Services, body: dict[str, Any]) -> Stored:
    return services.store.create(SYSTEM, body)


def patient(services: Services, family: str | None = None, **extra: Any) -> str:
    body = {
        "resourceType": "Patient",
        "name": [{"family": family or f"Sentinel{uuid.uuid4().hex[:8]}", "given": ["Test"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
        **extra,
    }
    return write(services, body).res_id


def practitioner(services: Services) -> str:
    body = {"resourceType": "Practitioner", "name": [{"family": "Test"}]}
    return f"Practitioner/{write(services, body).res_id}"


def unit(services: Services, parent: str | None = None) -> str:
    body: dict[str, Any] = {"resourceType": "Organization", "name": f"Unit {uuid.uuid4().hex[:6]}"}
    if parent:
        body["partOf"] = {"reference": parent}
    return f"Organization/{write(services, body).res_id}"


def encounter(
    services: Services,
    patient_id: str,
    *,
    status: str = "in-progress",
    attender: str | None = None,
    provider: str | None = None,
    start: str = "2026-01-01T08:00:00Z",
    end: str | None = None,
    reason: str | None = None,
) -> str:
    body: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": ACT, "code": "IMP"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if attender:
        body["participant"] = [{"individual": {"reference": attender}}]
    if provider:
        body["serviceProvider"] = {"reference": provider}
    if reason:
        body["reasonCode"] = [
            {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": reason}]}
        ]
    return write(services, body).res_id


def condition(services: Services, patient_id: str, code: str, note: str | None = None) -> str:
    body: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]},
    }
    if note:
        body["note"] = [{"text": note}]
    return write(services, body).res_id


def services_of(client: TestClient) -> Services:
    found: Services = client.app.state.services  # type: ignore[attr-defined]
    return found


def admission(pid: str, ward: str, attender: str | None = None) -> dict[str, object]:
    """An in-progress stay of `pid` in `ward` (an Organization reference), as an admission."""
    body: dict[str, object] = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{pid}"},
        "serviceProvider": {"reference": ward},
    }
    if attender:
        body["participant"] = [{"individual": {"reference": attender}}]
    return body
