"""Over HTTP: four-eyes requests end to end (a new account, an export), and who may see what."""

from __future__ import annotations

import uuid

import orjson

from rempart.access import notify
from rempart.access.roles import Role
from tests.functional.conftest import Hospital
from tests.unit.access.support import (
    condition,
    encounter,
    login,
    new_staff,
    patient,
    practitioner,
    services_of,
    unit,
)


def test_a_new_account_is_usable_only_by_its_holder_after_a_second_approval(
    hospital: Hospital,
) -> None:
    client, services = hospital.client, services_of(hospital.client)
    first = login(client, new_staff(services, Role.ADMIN))
    second = login(client, new_staff(services, Role.ADMIN))
    username = f"m.arrivee.{uuid.uuid4().hex[:6]}"
    body = {
        "kind": "create-account",
        "username": username,
        "role": "secretary",
        "display_name": "Marie ARRIVÉE",
        "units": [unit(services)],
    }
    made = client.post("/admin/requests", json=body, headers=first)
    assert made.status_code == 202, made.text
    request_id = made.json()["id"]
    listed = client.get("/admin/requests", params={"status": "pending"}, headers=second).json()
    assert request_id in {r["id"] for r in listed}
    done = client.post(f"/admin/requests/{request_id}/approve", json={"comment": "ok"},
                       headers=second)  # fmt: skip
    assert done.json()["status"] == "done", done.text
    assert [a["verdict"] for a in done.json()["approvals"]] == ["approve"]

    account_id = next(
        a["id"] for a in client.get("/admin/accounts", headers=first).json()
        if a["username"] == username
    )  # fmt: skip
    (notice,) = notify.undelivered(services.engine, services.access.env.key, account_id=account_id)
    code = notice.body["password_code"]
    new_password = "Ma phrase de passe pour l'accueil, 2027!"
    attempt = {"username": username, "code": "nope", "password": new_password}
    wrong = client.post("/access/set-password", json=attempt)
    assert wrong.status_code == 401
    ok = client.post("/access/set-password", json={**attempt, "code": code})
    assert ok.status_code == 200, ok.text
    challenge = client.post("/auth/login", json={"username": username, "password": new_password})
    assert challenge.status_code == 200
    assert challenge.json()["mfa_required"] is True  # and its factor needs the enrolment code


def test_an_export_is_approved_by_an_admin_and_an_officer_then_downloaded_once(
    hospital: Hospital,
) -> None:
    client, services = hospital.client, services_of(hospital.client)
    me = practitioner(services)
    researcher = new_staff(services, Role.CLINICIAN, practitioner=me)
    family = f"Cohorte{uuid.uuid4().hex[:6]}"
    cohort = [patient(services, family) for _ in range(3)]
    for pid in cohort:
        encounter(services, pid, attender=me)
        condition(services, pid, "E11.9", note="note libre à ne pas exporter")
    headers = login(client, researcher)
    asked = client.post(
        "/access/exports",
        json={
            "cohort_name": "diabète type 2",
            "purpose": "évaluation des pratiques professionnelles du service",
            "patients": [f"Patient/{p}" for p in cohort],
            "types": ["Patient", "Condition"],
        },
        headers=headers,
    )
    assert asked.status_code == 202, asked.text
    export_id = asked.json()["id"]
    assert asked.json()["needs"] == ["admin", "security_officer"]
    assert client.get(f"/access/exports/{export_id}", headers=headers).status_code == 404

    admin = login(client, new_staff(services, Role.ADMIN))
    officer = login(client, new_staff(services, Role.SECURITY_OFFICER))
    half = client.post(f"/admin/requests/{export_id}/approve", json={}, headers=admin)
    assert half.json()["status"] == "pending"
    full = client.post(f"/admin/requests/{export_id}/approve", json={}, headers=officer)
    assert full.json()["status"] == "done", full.text
    # The approvers never get the data.
    for who in (admin, officer):
        assert client.get(f"/access/exports/{export_id}/data", headers=who).status_code == 403

    status = client.get(f"/access/exports/{export_id}", headers=headers).json()
    assert status["patients"] == 3
    assert status["identified"] is False
    data = client.get(f"/access/exports/{export_id}/data", headers=headers)
    assert data.status_code == 200
    assert data.headers["content-type"].startswith("application/fhir+ndjson")
    lines = [orjson.loads(line) for line in data.content.splitlines()]
    assert sorted(r["resourceType"] for r in lines) == ["Condition"] * 3 + ["Patient"] * 3
    for secret in (family, "note libre", *cohort):
        assert secret not in data.text
    assert {c["code"]["coding"][0]["code"] for c in lines if c["resourceType"] == "Condition"} == {
        "E11.9"
    }
    again = client.get(f"/access/exports/{export_id}/data", headers=headers)
    assert again.status_code == 409


def test_who_sees_requests(hospital: Hospital) -> None:
    client, services = hospital.client, services_of(hospital.client)
    admin = login(client, new_staff(services, Role.ADMIN))
    doctor = login(client, new_staff(services, Role.CLINICIAN))
    made = client.post(
        "/admin/requests",
        json={"kind": "reset-password", "account_id": new_staff(services, Role.SECRETARY).id},
        headers=admin,
    ).json()
    assert client.get(f"/admin/requests/{made['id']}", headers=doctor).status_code == 404
    assert client.get("/admin/accounts", headers=doctor).status_code == 403
    assert client.post("/admin/requests", json={"kind": "reset-password", "account_id": "x"},
                       headers=doctor).status_code == 403  # fmt: skip
    bad = client.post("/admin/requests", json={"kind": "make-me-god"}, headers=admin)
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
    roles = client.get("/admin/roles", headers=admin).json()
    assert "fhir:clinical:read" not in roles["admin"]
    assert "fhir:clinical:read" in roles["clinician"]
    units = client.get("/admin/units", headers=admin)
    assert units.status_code == 200
    assert isinstance(units.json(), list)
    assert client.get("/admin/units", headers=doctor).status_code == 403
    settings = client.get("/admin/settings", headers=admin).json()
    assert {s["key"]: s["value"] for s in settings}["policy.break_glass_daily_cap"] == 5
