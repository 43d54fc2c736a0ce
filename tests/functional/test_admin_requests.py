"""Over HTTP: four-eyes requests end to end (a new account, an export), and who may see what."""

from __future__ import annotations

import re
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


def test_an_identified_export_is_so_only_because_its_approvers_were_told(
    hospital: Hospital,
) -> None:
    client, services = hospital.client, services_of(hospital.client)
    researcher = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services))
    family = f"Nomme{uuid.uuid4().hex[:6]}"
    code = f"X{uuid.uuid4().hex[:6].upper()}"
    cohort = [patient(services, family) for _ in range(2)]
    for pid in cohort:
        condition(services, pid, code)
    outside = patient(services, family)
    condition(services, outside, "E11.9")
    headers = login(client, researcher)
    asked = client.post(
        "/access/exports",
        json={
            "cohort_name": "registre nominatif",
            "purpose": "registre régional des cancers, convention signée",
            "query": f"Condition?code=http://hl7.org/fhir/sid/icd-10|{code}",
            "types": ["Patient"],
            "identified": True,
        },
        headers=headers,
    )
    assert asked.status_code == 202, asked.text
    export_id = asked.json()["id"]
    # What the approvers are shown says, in words, that the file will name the patients.
    admin = login(client, new_staff(services, Role.ADMIN))
    officer = login(client, new_staff(services, Role.SECURITY_OFFICER))
    shown = client.get(f"/admin/requests/{export_id}", headers=admin).json()
    assert "IDENTIFIED" in shown["summary"]
    assert shown["details"]["identified"] is True
    for who in (admin, officer):
        assert client.post(f"/admin/requests/{export_id}/approve", json={},
                           headers=who).status_code == 200  # fmt: skip
    status = client.get(f"/access/exports/{export_id}", headers=headers).json()
    assert (status["patients"], status["identified"]) == (2, True)
    data = client.get(f"/access/exports/{export_id}/data", headers=headers)
    assert data.status_code == 200, data.text
    lines = [orjson.loads(line) for line in data.content.splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(cohort)  # the cohort, by its criteria
    assert family in data.text
    assert outside not in data.text


ADMIN_API = {
    ("/admin/accounts", "get"),
    ("/admin/accounts/{account_id}", "get"),
    ("/admin/accounts/{account_id}/disable", "post"),
    ("/admin/accounts/{account_id}/units", "delete"),
    ("/admin/roles", "get"),
    ("/admin/units", "get"),
    ("/admin/settings", "get"),
    ("/admin/requests", "get"),
    ("/admin/requests", "post"),
    ("/admin/requests/{request_id}", "get"),
    ("/admin/requests/{request_id}/approve", "post"),
    ("/admin/requests/{request_id}/reject", "post"),
}


def test_the_admin_api_is_documented_and_export_has_one_door(hospital: Hospital) -> None:
    client, services = hospital.client, services_of(hospital.client)
    document = client.get("/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    listed = {(p, m) for p, ops in paths.items() if p.startswith("/admin") for m in ops}
    assert listed == ADMIN_API
    # JSON in and out, with schemas: every kind of request is in the body's schema.
    body = paths["/admin/requests"]["post"]["requestBody"]["content"]["application/json"]
    kinds = {ref.rsplit("/", 1)[-1] for ref in body["schema"]["discriminator"]["mapping"].values()}
    assert {"CreateAccount", "ChangeRole", "LinkPractitioner", "AddUnitMembership",
            "ResetPassword", "ResetFactor", "CreateIntegrationClient", "ChangeSetting",
            "GuardSettings"} <= kinds  # fmt: skip
    for path, method in ADMIN_API:
        responses = paths[path][method]["responses"]
        ok = next(code for code in responses if code.startswith("2"))
        assert "application/json" in responses[ok].get("content", {"application/json": 0}), path

    # Bulk export: /access/exports (four-eyes) and nothing else, for any role.
    doors = [p for p in paths if re.search(r"export|dump|csv|bulk", p, re.I)]
    assert doors
    assert all(p.startswith("/access/exports") for p in doors), doors
    doctor = login(client, new_staff(services, Role.CLINICIAN, practitioner=practitioner(services)))
    admin = login(client, new_staff(services, Role.ADMIN))
    for headers in (doctor, admin):
        for url in ("/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/g1/$export"):
            refused = client.get(url, headers=headers)
            assert 400 <= refused.status_code < 500, (url, refused.status_code)
            assert refused.json()["resourceType"] == "OperationOutcome"
    capability = client.get("/fhir/metadata").text
    assert "export" not in capability.lower()
