"""Proof: a live administrator session (password + second factor) gets zero patient data.

The session walks every operation of the OpenAPI document and every FHIR interaction and
search, with real ids and the real values of a sentinel patient as parameters, and no response
may contain any patient's name, identifier, phone, e-mail, code or note. Then it tries the
escalations an attacker holding that session would try (grant itself a role, create a clinician
account, reset a clinician's second factor, create an integration client, join a unit, link
itself to a practitioner): each one stays a pending request that changes nothing until a
second administrator approves, and even once approved gives the requesting administrator
nothing to read.
"""

from __future__ import annotations

import re
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rempart.access import notify
from rempart.access.roles import Role
from rempart.access.tables import unit_parent
from rempart.fhir import SUPPORTED_TYPES, parse_search, search_parameters
from rempart.identity.tables import account
from rempart.store.search import search
from rempart.wiring import Services
from tests.functional.conftest import Hospital
from tests.unit.access.support import (
    SYSTEM,
    Staff,
    login,
    new_staff,
    practitioner,
    services_of,
    unit,
    write,
)

FHIR = {"Content-Type": "application/fhir+json"}
REASON = "arrêt cardiaque en salle d'attente, dossier nécessaire"


@dataclass
class World:
    services: Services
    admin: Staff
    second_admin: Staff
    officer: Staff
    doctor: Staff
    victim: Staff
    sentinel: str  # the sentinel patient's id
    tokens: set[str]  # strings no administrator response may contain
    ids: dict[str, list[str]] = field(default_factory=dict)  # a few real ids per type
    path_values: dict[str, str] = field(default_factory=dict)


def _sentinel(services: Services, doctor: Staff, ward: str) -> tuple[str, set[str]]:
    tag = uuid.uuid4().hex[:10]
    family, given = f"Zyxsentinelle{tag}", f"Ophélie{tag}"
    nir, phone = f"2{uuid.uuid4().int % 10**14:014d}", f"06{uuid.uuid4().int % 10**8:08d}"
    email, code, note = f"s{tag}@exemple.fr", f"S{tag[:6].upper()}", f"note confidentielle {tag}"
    pid = write(
        services,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": nir}],
            "name": [{"family": family, "given": [given]}],
            "telecom": [{"system": "phone", "value": phone}, {"system": "email", "value": email}],
            "address": [{"line": [f"{tag} rue des Secrets"], "city": "Lyon"}],
            "birthDate": "1964-02-29",
            "gender": "female",
        },
    ).res_id
    subject = {"reference": f"Patient/{pid}"}
    coded = {"coding": [{"system": "http://example.org/sentinel", "code": code}]}
    write(
        services,
        {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": subject,
            "participant": [{"individual": {"reference": doctor.practitioner}}],
            "serviceProvider": {"reference": ward},
            "reasonCode": [coded],
        },
    )
    write(services, {"resourceType": "Condition", "subject": subject, "code": coded,
                     "note": [{"text": note}]})  # fmt: skip
    write(services, {"resourceType": "Observation", "status": "final", "code": coded,
                     "subject": subject, "valueString": note})  # fmt: skip
    write(services, {"resourceType": "Coverage", "status": "active", "beneficiary": subject,
                     "payor": [{"reference": ward}], "subscriberId": nir})  # fmt: skip
    return pid, {family, given, nir, phone, email, code, note, f"{tag} rue des Secrets"}


def _seeded_tokens(services: Services) -> set[str]:
    """Names, identifiers and contacts of every seeded patient, minus what the directory (which
    administrators may read) or a username also contains: common names are shared by staff."""
    found, _ = search(services.store, SYSTEM, parse_search("Patient", [("_count", "200")]))
    tokens: set[str] = set()
    for stored in found:
        doc = stored.json()
        for name in doc.get("name", []):
            tokens.add(str(name.get("family", "")))
        tokens.update(str(i.get("value", "")) for i in doc.get("identifier", []))
        tokens.update(str(t.get("value", "")) for t in doc.get("telecom", []))
    public = []
    for res_type in ("Practitioner", "Organization", "Location", "PractitionerRole"):
        rows, _ = search(services.store, SYSTEM, parse_search(res_type, [("_count", "200")]))
        public.extend(s.body.decode() for s in rows)
    with services.engine.connect() as conn:
        public.extend(conn.execute(select(account.c.username)).scalars())
    directory = "\n".join(public).casefold()
    return {t for t in tokens if len(t) >= 4 and t.casefold() not in directory}


@pytest.fixture(scope="module")
def world(hospital: Hospital) -> World:
    services = services_of(hospital.client)
    ward = unit(services)
    doctor = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services), units=(ward,))
    sentinel, tokens = _sentinel(services, doctor, ward)
    w = World(
        services=services,
        admin=new_staff(services, Role.ADMIN, prefix="proof"),
        second_admin=new_staff(services, Role.ADMIN, prefix="proof"),
        officer=new_staff(services, Role.SECURITY_OFFICER, prefix="proof"),
        doctor=doctor,
        victim=new_staff(services, Role.CLINICIAN, practitioner=practitioner(services)),
        sentinel=sentinel,
        tokens=tokens | _seeded_tokens(services),
    )
    client = hospital.client
    # Give the audit trail, the review queue and the request list something about the patient.
    doctor_h = login(client, doctor)
    assert client.get(f"/fhir/Patient/{sentinel}", headers=doctor_h).status_code == 200
    stranger = new_staff(services, Role.CLINICIAN)
    glass = client.post(
        "/access/break-glass",
        json={"patient": f"Patient/{sentinel}", "reason": REASON},
        headers=login(client, stranger),
    )
    assert glass.status_code == 201, glass.text
    export = client.post(
        "/access/exports",
        json={
            "cohort_name": "sentinelles",
            "purpose": "étude rétrospective de qualité des soins",
            "patients": [f"Patient/{sentinel}"],
            "types": ["Patient", "Condition"],
        },
        headers=doctor_h,
    )
    assert export.status_code == 202, export.text
    for res_type in sorted(SUPPORTED_TYPES):
        rows, _ = search(services.store, SYSTEM, parse_search(res_type, [("_count", "3")]))
        w.ids[res_type] = [s.res_id for s in rows]
    for res_type in ("Encounter", "Condition", "Observation", "Coverage"):
        rows, _ = search(services.store, SYSTEM, parse_search(res_type, [("patient", sentinel)]))
        w.ids[res_type] = [s.res_id for s in rows] + w.ids[res_type]
    w.ids["Patient"].insert(0, sentinel)
    w.path_values = {
        # The walk disables the account it is given (allowed: it closes access): a throwaway.
        "account_id": new_staff(services, Role.SECRETARY).id,
        "request_id": export.json()["id"],
        "grant_id": glass.json()["id"],
        "export_id": export.json()["id"],
        "event_id": "1",
        "provider": "psc",
        "version": "1",
    }
    return w


def _assert_clean(world: World, response: Any, request_text: str, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    text = response.text
    if text.startswith("{"):
        body = orjson.loads(text)
        if isinstance(body, dict):
            body.pop("link", None)  # a searchset echoes the query it was asked
            text = orjson.dumps(body).decode()
    leaked = {t for t in world.tokens if t not in request_text and t in text}
    assert not leaked, (what, sorted(leaked)[:5], text[:300])
    if response.status_code == 200 and '"searchset"' in text:
        entries = orjson.loads(text).get("entry", [])
        assert not [e for e in entries if e["resource"].get("resourceType") != "AuditEvent"
                    and e["resource"]["resourceType"] not in ("Organization", "Location",
                    "Practitioner", "PractitionerRole", "Medication")], what  # fmt: skip


def _call(client: TestClient, world: World, method: str, url: str, **kw: Any) -> None:
    response = client.request(method, url, **kw)
    _assert_clean(world, response, url + orjson.dumps(kw.get("json")).decode(), f"{method} {url}")


def _fill(path: str, world: World, res_type: str, res_id: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return {"res_type": res_type, "res_id": res_id, "rest": "x"}.get(
            name, world.path_values.get(name, "x")
        )

    return re.sub(r"\{([a-z_]+)(?::path)?\}", value, path)


SKIP = {"/auth/logout", "/auth/sessions/revoke-all", "/access/set-password"}


def test_a_live_admin_session_walks_the_whole_api_and_gets_no_patient_data(
    hospital: Hospital, world: World
) -> None:
    client = hospital.client
    headers = login(client, world.admin)
    with warnings.catch_warnings():
        # FastAPI warns about duplicate operation ids (audit_routes registers one handler on
        # several paths); the document is still complete, which is all this walk needs.
        warnings.simplefilter("ignore", UserWarning)
        operations = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert "/admin/requests/{request_id}/approve" in operations
    for path, methods in operations.items():
        if path in SKIP:
            continue
        for method, op in methods.items():
            query = {
                p["name"]: _query_value(p["name"], world)
                for p in op.get("parameters", [])
                if p["in"] == "query" and p.get("required")
            }
            types = sorted(SUPPORTED_TYPES) if "{res_type}" in path else ["Patient"]
            for res_type in types:
                ids = world.ids.get(res_type) or ["x"]
                for res_id in ids[:2] if "{res_id}" in path else ids[:1]:
                    url = _fill(path, world, res_type, res_id)
                    body = _body(method, path, world, res_type, res_id)
                    extra = {"json": body} if body is not None else {}
                    _call(client, world, method.upper(), url, params=query, headers=headers,
                          **extra)  # fmt: skip
    # Every search parameter of every type, with the sentinel's own values.
    values = _search_values(world)
    for res_type in sorted(SUPPORTED_TYPES):
        for param in search_parameters(res_type):
            for value in values.get(param.type, ["x"]):
                _call(client, world, "GET", f"/fhir/{res_type}", params={param.name: value},
                      headers=headers)  # fmt: skip
        ids = ",".join(world.ids.get(res_type) or ["x"])
        _call(client, world, "GET", f"/fhir/{res_type}", params={"_id": ids}, headers=headers)
    _call(client, world, "GET", "/fhir/AuditEvent", params={"patient": world.sentinel},
          headers=headers)  # fmt: skip
    _call(client, world, "GET", "/audit/breach-report",
          params={"user": world.doctor.username}, headers=headers)  # fmt: skip
    _bundles(client, world, headers)


def _query_value(name: str, world: World) -> str:
    if name in ("user", "username"):
        return world.doctor.username
    if name in ("seq", "old", "new", "tree_size"):
        return "1"
    return "x"


def _body(method: str, path: str, world: World, res_type: str, res_id: str) -> Any:
    if method not in ("post", "put", "patch"):
        return None
    subject = {"reference": f"Patient/{world.sentinel}"}
    if path == "/fhir/{res_type}":
        return {"resourceType": res_type, "subject": subject, "patient": subject,
                "beneficiary": subject, "status": "final", "code": {"text": "x"}}  # fmt: skip
    if path == "/fhir/{res_type}/{res_id}":
        return {"resourceType": res_type, "id": res_id, "subject": subject}
    if path == "/access/break-glass":
        return {"patient": f"Patient/{world.sentinel}", "reason": REASON}
    if path == "/access/exports":
        return {"cohort_name": "tout", "purpose": "exfiltration déguisée en étude",
                "query": "Patient?gender=female", "types": ["Patient"]}  # fmt: skip
    return {}


def _search_values(world: World) -> dict[str, list[str]]:
    w = world
    return {
        "string": sorted(t for t in w.tokens if t.isalpha())[:3] or ["x"],
        "token": [*sorted(t for t in w.tokens if t.isdigit())[:3], "http://example.org/sentinel|x"],
        "reference": [f"Patient/{w.sentinel}", w.doctor.practitioner or "Practitioner/x"],
        "date": ["1964-02-29", "ge2000"],
    }


def _bundles(client: TestClient, world: World, headers: dict[str, str]) -> None:
    pid = world.sentinel
    entries: list[dict[str, Any]] = [
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": f"Condition?patient={pid}"}},
        {"request": {"method": "GET", "url": "Patient?_count=200"}},
    ]
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
        _call(client, world, "POST", "/fhir", json=bundle, headers={**headers, **FHIR})
    ident = next(t for t in world.tokens if t.isdigit())
    conditional = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {"method": "POST", "url": "Patient",
                            "ifNoneExist": f"identifier={ident}"},
                "resource": {"resourceType": "Patient"},
            }
        ],
    }  # fmt: skip
    _call(client, world, "POST", "/fhir", json=conditional, headers={**headers, **FHIR})


def _role(services: Services, account_id: str) -> str:
    with services.engine.connect() as conn:
        return str(conn.execute(select(account.c.role).where(account.c.id == account_id)).scalar())


def test_escalations_stay_pending_and_even_approved_open_nothing_to_the_admin(
    hospital: Hospital, world: World
) -> None:
    client, services = hospital.client, world.services
    attacker = new_staff(services, Role.ADMIN, prefix="proof")  # its own session, fresh
    headers = login(client, attacker)
    ward, elsewhere = unit(services), unit(services)
    # Moving a unit in the directory (which would open its patients to the members of its new
    # parents) is refused as a direct FHIR write: it is a request like the others below.
    org = client.get(f"/fhir/{elsewhere}", headers=headers).json()
    moved = client.put(f"/fhir/{elsewhere}", json={**org, "partOf": {"reference": ward}},
                       headers={**headers, **FHIR})  # fmt: skip
    assert moved.status_code == 403, moved.text
    assert moved.json()["resourceType"] == "OperationOutcome"
    # Refused outright: an administrative account never becomes, or prepares to become, a
    # care account (separation of duties), whoever would approve it.
    for body in (
        {"kind": "change-role", "account_id": attacker.id, "role": "clinician"},
        {"kind": "add-unit-membership", "account_id": attacker.id, "unit": ward},
        {"kind": "link-practitioner", "account_id": attacker.id,
         "practitioner": world.doctor.practitioner},
    ):  # fmt: skip
        refused = client.post("/admin/requests", json=body, headers=headers)
        assert refused.status_code == 400, refused.text
    attempts = {
        "self-grant": {
            "kind": "change-role",
            "account_id": attacker.id,
            "role": "security_officer",
        },
        "new clinician": {
            "kind": "create-account",
            "username": f"complice.{uuid.uuid4().hex[:6]}",
            "role": "clinician",
            "display_name": "Dr Complice",
            "practitioner": world.doctor.practitioner,
            "units": [ward],
        },
        "factor reset": {"kind": "reset-factor", "account_id": world.victim.id},
        "unit move": {"kind": "move-unit", "unit": elsewhere, "parent": ward},
        "integration client": {
            "kind": "create-integration-client",
            "username": f"lab.{uuid.uuid4().hex[:6]}",
            "display_name": "Faux laboratoire",
        },
    }
    made: dict[str, str] = {}
    for label, body in attempts.items():
        response = client.post("/admin/requests", json=body, headers=headers)
        assert response.status_code == 202, (label, response.text)
        assert response.json()["status"] == "pending"
        made[label] = response.json()["id"]
        own = client.post(f"/admin/requests/{made[label]}/approve", json={}, headers=headers)
        assert own.status_code == 403, (label, own.text)
    # Nothing took effect.
    assert _role(services, attacker.id) == "admin"
    for label in ("new clinician", "integration client"):
        username = attempts[label]["username"]
        with services.engine.connect() as conn:
            assert (
                conn.execute(select(account).where(account.c.username == username)).first() is None
            )
    assert login(client, world.victim)  # the victim's second factor still works
    with services.engine.connect() as conn:
        moved_to = conn.execute(
            select(unit_parent.c.parent).where(unit_parent.c.child == elsewhere)
        )
        assert moved_to.first() is None  # the unit stays where it was
    assert client.get("/fhir/Patient", headers=headers).status_code == 403

    # A second administrator approves them all (collusion, or a distracted colleague). The
    # requesting administrator still reads nothing, and no credential ever reaches them: the
    # one-time codes go to the new account's holder and to the victim, out of band.
    second = login(client, world.second_admin)
    for label, request_id in made.items():
        if label == "self-grant":
            continue  # last: it ends the attacker's sessions
        done = client.post(f"/admin/requests/{request_id}/approve", json={}, headers=second)
        assert done.status_code == 200, (label, done.text)
        assert done.json()["status"] == "done", (label, done.json())
    codes = [
        value
        for notice in notify.undelivered(services.engine, services.access.env.key)
        for key, value in notice.body.items()
        if key.endswith("_code")
    ]
    assert codes
    after = headers
    seen = [client.get(f"/admin/requests/{r}", headers=after).text for r in made.values()]
    seen.append(client.get("/admin/requests", headers=after).text)
    seen.append(client.get("/admin/accounts", headers=after).text)
    for text in seen:
        assert not [c for c in codes if c in text]
    for res_type in ("Patient", "Encounter", "Condition"):
        assert client.get(f"/fhir/{res_type}", headers=after).status_code == 403
    assert client.get(f"/fhir/Patient/{world.sentinel}", headers=after).status_code == 403
    glass = client.post(
        "/access/break-glass",
        json={"patient": f"Patient/{world.sentinel}", "reason": REASON},
        headers=after,
    )
    assert glass.status_code == 403
    # Its own role change, once approved by someone else, ends its sessions: it is then a
    # security officer, which holds no clinical permission either.
    grant = client.post(f"/admin/requests/{made['self-grant']}/approve", json={}, headers=second)
    assert grant.json()["status"] == "done"
    assert client.get("/admin/accounts", headers=after).status_code == 401
    assert _role(services, attacker.id) == "security_officer"
