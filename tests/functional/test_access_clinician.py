"""Over HTTP: a clinician reads the patients they care for, gets the same 403 for everyone else
(existing or not), never finds anyone else by searching, and breaks the glass under rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import update

from rempart.access.roles import Role
from rempart.access.tables import break_glass
from rempart.identity.tables import session
from rempart.wiring import Services
from tests.functional.conftest import Hospital
from tests.unit.access.support import (
    Staff,
    admission,
    condition,
    encounter,
    login,
    new_staff,
    patient,
    practitioner,
    services_of,
    unit,
)

REASON = "patient transféré inconscient depuis un autre hôpital"


@dataclass
class Ward:
    services: Services
    doctor: Staff
    mine: list[str]
    others: list[str]
    family: str
    their_conditions: list[str]


@pytest.fixture(scope="module")
def ward(hospital: Hospital) -> Ward:
    services = services_of(hospital.client)
    me = practitioner(services)
    room = unit(services)
    doctor = new_staff(services, Role.CLINICIAN, practitioner=me, units=(room,))
    family = "Wardtest"
    mine = [patient(services, family), patient(services, family)]
    encounter(services, mine[0], attender=me, reason="I21.0")
    encounter(services, mine[1], provider=room)
    others = [patient(services, family) for _ in range(3)]
    conditions = []
    for pid in others:
        encounter(services, pid, attender=practitioner(services))
        conditions.append(condition(services, pid, "C50.9", note="note d'un autre service"))
    return Ward(services, doctor, mine, others, family, conditions)


def _refusal(response: httpx.Response, res_id: str) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """What a caller can observe of a refusal, with the id it asked for blanked out."""
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k != "date"))
    return response.status_code, response.text.replace(res_id, "<id>"), headers


def test_reads_within_care_relationships_and_uniform_refusals(
    hospital: Hospital, ward: Ward
) -> None:
    client = hospital.client
    headers = login(client, ward.doctor)
    for pid in ward.mine:
        assert client.get(f"/fhir/Patient/{pid}", headers=headers).status_code == 200
    refusals = [
        client.get(f"/fhir/Patient/{pid}", headers=headers)
        for pid in [*ward.others, "does-not-exist"]
    ]
    assert {r.status_code for r in refusals} == {403}
    messages = {r.json()["issue"][0]["diagnostics"].split("/")[0] for r in refusals}
    assert messages == {"access to Patient"}  # the same words, existing or not
    # Byte for byte (status, body, headers but the date), for a demographic and a clinical
    # record, on read, history and vread: someone else's record and an id of the same shape
    # that names nothing answer alike. (One observable set per path and type.)
    missing = str(uuid.uuid4())
    for res_type, theirs in (("Patient", ward.others[0]), ("Condition", ward.their_conditions[0])):
        for suffix in ("", "/_history", "/_history/1"):
            seen = {
                _refusal(client.get(f"/fhir/{res_type}/{rid}{suffix}", headers=headers), rid)
                for rid in (theirs, missing)
            }
            assert len(seen) == 1, (res_type, suffix, seen)
            ((status, body, _headers),) = seen
            assert status == 403
            assert '"resourceType":"OperationOutcome"' in body
    for pid in (ward.others[0], "does-not-exist"):
        for path in (f"/fhir/Patient/{pid}/_history", f"/fhir/Patient/{pid}/_history/1"):
            assert client.get(path, headers=headers).status_code == 403
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pouls"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        # A write to an unknown patient is refused like a write to someone else's (not 422).
        assert (
            client.post("/fhir/Observation", json=observation, headers=headers).status_code == 403
        )
        # Permission before If-Match (no 412 for an absent record), and no Patient under an id
        # of the caller's choosing (a 201 would say the id was free).
        body = {"resourceType": "Patient", "id": pid}
        match = {**headers, "If-Match": 'W/"1"'}
        assert client.put(f"/fhir/Patient/{pid}", json=body, headers=match).status_code == 403
        assert client.put(f"/fhir/Patient/{pid}", json=body, headers=headers).status_code == 403
        # A create carrying someone's id gets a fresh id, the same answer for any id.
        created = client.post("/fhir/Patient", json=body, headers=headers)
        assert created.status_code == 201
        assert created.json()["id"] != pid


def test_searches_never_reveal_other_patients(hospital: Hospital, ward: Ward) -> None:
    client = hospital.client
    headers = login(client, ward.doctor)
    found = client.get("/fhir/Patient", params={"family": ward.family}, headers=headers).json()
    assert found["total"] == len(ward.mine)
    assert {e["resource"]["id"] for e in found["entry"]} == set(ward.mine)
    for params in ({"code": "C50.9"}, {"patient": ward.others[0]}, {"_id": ward.others[1]}):
        bundle = client.get("/fhir/Condition", params=params, headers=headers).json()
        assert bundle["total"] == 0, params
    everything = client.get("/fhir/Encounter", params={"_count": 200}, headers=headers).json()
    subjects = {e["resource"]["subject"]["reference"] for e in everything["entry"]}
    assert subjects <= {f"Patient/{p}" for p in ward.mine}
    assert everything["total"] == len(everything["entry"])


def test_break_the_glass_works_expires_and_is_capped(hospital: Hospital, ward: Ward) -> None:
    client, services = hospital.client, ward.services
    doctor = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services))
    officer = new_staff(services, Role.SECURITY_OFFICER)
    headers = login(client, doctor)
    target = ward.others[0]
    assert client.get(f"/fhir/Patient/{target}", headers=headers).status_code == 403
    short = client.post(
        "/access/break-glass", json={"patient": f"Patient/{target}", "reason": "urgence"},
        headers=headers,
    )  # fmt: skip
    assert short.status_code == 400
    granted = client.post(
        "/access/break-glass", json={"patient": f"Patient/{target}", "reason": REASON},
        headers=headers,
    )  # fmt: skip
    assert granted.status_code == 201, granted.text
    assert granted.json()["expires_at"] > "2026"
    assert client.get(f"/fhir/Patient/{target}", headers=headers).status_code == 200
    notes = client.get("/fhir/Condition", params={"patient": target}, headers=headers).json()
    assert notes["total"] == 1

    officer_h = login(client, officer)
    queue = client.get("/access/break-glass", params={"pending": "true"},
                       headers=officer_h).json()  # fmt: skip
    raised = client.get("/access/alerts", headers=officer_h).json()
    assert granted.json()["id"] in {a["details"].get("grant_id") for a in raised}
    assert client.get("/access/alerts", headers=headers).status_code == 403
    assert [g["id"] for g in queue if g["patient"] == f"Patient/{target}"] == [granted.json()["id"]]

    with services.engine.begin() as conn:
        conn.execute(
            update(break_glass).where(break_glass.c.id == granted.json()["id"]).values(expires=1)
        )
    assert client.get(f"/fhir/Patient/{target}", headers=headers).status_code == 403

    for _ in range(4):
        again = client.post(
            "/access/break-glass", json={"patient": f"Patient/{target}", "reason": REASON},
            headers=headers,
        )  # fmt: skip
        assert again.status_code == 201
    capped = client.post(
        "/access/break-glass", json={"patient": f"Patient/{ward.others[1]}", "reason": REASON},
        headers=headers,
    )  # fmt: skip
    assert capped.status_code == 429
    assert capped.json()["resourceType"] == "OperationOutcome"

    # A session whose second factor is older than five minutes must step up first.
    stale = new_staff(services, Role.CLINICIAN)
    stale_headers = login(client, stale)
    with services.engine.begin() as conn:
        conn.execute(update(session).where(session.c.account_id == stale.id).values(factor_at=0))
    old = client.post(
        "/access/break-glass", json={"patient": f"Patient/{target}", "reason": REASON},
        headers=stale_headers,
    )  # fmt: skip
    assert old.status_code == 403
    assert "step-up" in old.json()["issue"][0]["diagnostics"]


def test_a_clinician_cannot_admit_a_patient_into_their_own_scope(
    hospital: Hospital, ward: Ward
) -> None:
    """Admitting is the front desk's (test_access_roles.py): a hijacked clinician session that
    "admits" someone into its own unit gets the same 403 whether that patient exists or not,
    and still cannot read them. Admissions by a clinician who already cares for the patient or
    has broken the glass for them are written."""
    client, services = hospital.client, ward.services
    me, room, elsewhere = practitioner(services), unit(services), unit(services)
    doctor = new_staff(services, Role.CLINICIAN, practitioner=me, units=(room,))
    headers = login(client, doctor)
    stranger = ward.others[0]
    missing = str(uuid.uuid4())
    refusals = {
        _refusal(
            client.post("/fhir/Encounter", json=admission(pid, room, me), headers=headers), pid
        )
        for pid in (stranger, missing)
    }
    assert len(refusals) == 1, refusals  # status, OperationOutcome and headers alike
    ((status, body, _headers),) = refusals
    assert status == 403
    assert '"resourceType":"OperationOutcome"' in body
    assert client.get(f"/fhir/Patient/{stranger}", headers=headers).status_code == 403
    theirs = client.get("/fhir/Encounter", params={"patient": stranger}, headers=headers).json()
    assert theirs["total"] == 0

    # The emergency doctor attending the patient sends them to a ward of another unit.
    attending = patient(services)
    encounter(services, attending, attender=me)
    moved = client.post(
        "/fhir/Encounter", json=admission(attending, elsewhere, me), headers=headers
    )
    assert moved.status_code == 201, moved.text

    # At night, with a justified break-the-glass: the admission is written, and the stay in
    # the doctor's unit then counts once the grant has expired.
    emergency = patient(services)
    granted = client.post(
        "/access/break-glass", json={"patient": f"Patient/{emergency}", "reason": REASON},
        headers=headers,
    )  # fmt: skip
    assert granted.status_code == 201, granted.text
    admitted = client.post("/fhir/Encounter", json=admission(emergency, room), headers=headers)
    assert admitted.status_code == 201, admitted.text
    with services.engine.begin() as conn:
        conn.execute(
            update(break_glass).where(break_glass.c.id == granted.json()["id"]).values(expires=1)
        )
    assert client.get(f"/fhir/Patient/{emergency}", headers=headers).status_code == 200
