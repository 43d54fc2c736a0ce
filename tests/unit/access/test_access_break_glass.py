"""Break-the-glass: a reason, a fresh second factor, a time limit, a daily cap, an alert and a
review; and the same answer whether the patient exists or not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from rempart import alerts
from rempart.access.common import Throttled
from rempart.access.roles import Role
from rempart.access.tables import break_glass
from rempart.clock import now_micros
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource
from rempart.identity.errors import StepUpRequired
from rempart.wiring import Services
from tests.unit.access.support import new_staff, patient, practitioner

CTX = RequestContext("10.0.0.1", "test")
REASON = "patient inconscient aux urgences, antécédents inconnus"


def test_grant_opens_one_patient_until_it_expires(services: Services) -> None:
    doctor = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services))
    officer = new_staff(services, Role.SECURITY_OFFICER)
    pid = patient(services)
    who = doctor.principal()
    with pytest.raises(Forbidden):
        services.store.read(services.policy.decide(who), "Patient", pid)

    before = now_micros()
    grant_id, expires = services.access.break_glass.grant(who, CTX, f"Patient/{pid}", REASON)
    hour = 3600 * 1_000_000
    assert before + hour <= expires <= now_micros() + hour  # the default: one hour
    decision = services.policy.decide(who)
    assert services.store.read(decision, "Patient", pid).res_id == pid
    assert "break-the-glass" in decision.explain(pid)

    queue = services.access.break_glass.list(officer.principal(), pending_only=True)
    assert [(g.id, g.patient, g.reason) for g in queue] == [(grant_id, f"Patient/{pid}", REASON)]
    raised = alerts.list_alerts(services.engine, kind="break-glass")
    assert raised[0].details["grant_id"] == grant_id
    reviewed = services.access.break_glass.review(officer.principal(), CTX, grant_id, "justified")
    assert reviewed.review == "justified"
    assert services.access.break_glass.list(officer.principal(), pending_only=True) == []

    with services.engine.begin() as conn:
        conn.execute(update(break_glass).values(expires=1))
    with pytest.raises(Forbidden):
        services.store.read(services.policy.decide(who), "Patient", pid)


def test_conditions_of_a_grant(services: Services) -> None:
    doctor = new_staff(services, Role.CLINICIAN)
    pid = f"Patient/{patient(services)}"
    grant = services.access.break_glass.grant
    with pytest.raises(InvalidResource):
        grant(doctor.principal(), CTX, pid, "urgence")  # fewer than 10 characters
    with pytest.raises(StepUpRequired):
        grant(doctor.principal(fresh=False), CTX, pid, REASON)
    with pytest.raises(InvalidResource):
        grant(doctor.principal(), CTX, "Observation/x", REASON)
    for role in (Role.ADMIN, Role.SECURITY_OFFICER, Role.SECRETARY, Role.PATIENT):
        with pytest.raises(Forbidden):
            grant(new_staff(services, role).principal(), CTX, pid, REASON)
    # An id that names nobody gets the same answer: the endpoint is no existence oracle.
    assert grant(doctor.principal(), CTX, "Patient/no-such-patient", REASON)


def test_grants_are_capped_per_day(services: Services) -> None:
    doctor = new_staff(services, Role.CLINICIAN)
    officer = new_staff(services, Role.SECURITY_OFFICER)
    who = doctor.principal()
    granted = [
        services.access.break_glass.grant(who, CTX, f"Patient/{patient(services)}", REASON)[0]
        for _ in range(5)  # the default cap
    ]
    last = patient(services)
    with pytest.raises(Throttled):
        services.access.break_glass.grant(who, CTX, f"Patient/{last}", REASON)
    with pytest.raises(Forbidden):
        services.store.read(services.policy.decide(who), "Patient", last)
    assert alerts.list_alerts(services.engine, kind="break-glass-cap")
    # Each grant (not only the first) alerted the security officer and waits in the queue.
    raised = [
        a.details["grant_id"]
        for a in alerts.list_alerts(services.engine, kind="break-glass", limit=1000)
        if a.details.get("account_id") == doctor.id
    ]
    assert sorted(raised) == sorted(granted)
    queue = services.access.break_glass.list(officer.principal(), pending_only=True, limit=500)
    assert sorted(g.id for g in queue if g.account_id == doctor.id) == sorted(granted)
    # Another clinician is not affected by this one's cap.
    other = new_staff(services, Role.CLINICIAN).principal()
    assert services.access.break_glass.grant(other, CTX, f"Patient/{last}", REASON)


def test_the_cap_holds_under_concurrent_grants(services: Services) -> None:
    who = new_staff(services, Role.CLINICIAN).principal()
    targets = [f"Patient/{patient(services)}" for _ in range(8)]

    def one(target: str) -> bool:
        try:
            services.access.break_glass.grant(who, CTX, target, REASON)
        except Throttled:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = list(pool.map(one, targets))
    assert granted.count(True) == 5
