"""Four-eyes requests: nothing that could open clinical data takes effect on one person's word."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import select, update

from rempart import alerts
from rempart.access import notify
from rempart.access.common import RequestConflict
from rempart.access.kinds import AnyRequest
from rempart.access.pdp import Principal
from rempart.access.relations import REGISTRANT
from rempart.access.roles import Role
from rempart.access.settings import CARE_WINDOW_DAYS
from rempart.access.tables import access_request, care_link, unit_membership
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource, NotAuthenticated
from rempart.identity.errors import StepUpRequired
from rempart.identity.tables import account, session
from rempart.store.shred import PatientErased
from rempart.wiring import Services
from tests.unit.access.support import SYSTEM, Staff, new_staff, patient, practitioner, unit

CTX = RequestContext("10.0.0.2", "test")
_ANY: TypeAdapter[Any] = TypeAdapter(AnyRequest)


def ask(services: Services, who: Staff, **body: Any) -> str:
    return services.access.requests.submit(who.principal(), CTX, _ANY.validate_python(body)).id


def approve(services: Services, who: Staff | Principal, request_id: str) -> str:
    principal = who.principal() if isinstance(who, Staff) else who
    return services.access.requests.approve(principal, CTX, request_id, None).status


def status(services: Services, request_id: str) -> str:
    with services.engine.connect() as conn:
        return str(
            conn.execute(
                select(access_request.c.status).where(access_request.c.id == request_id)
            ).scalar_one()
        )


@pytest.fixture
def staff(services: Services) -> dict[str, Staff]:
    return {
        "a1": new_staff(services, Role.ADMIN),
        "a2": new_staff(services, Role.ADMIN),
        "so": new_staff(services, Role.SECURITY_OFFICER),
        "dr": new_staff(services, Role.CLINICIAN),
    }


def test_no_one_approves_alone(services: Services, staff: dict[str, Staff]) -> None:
    a1, a2, dr = staff["a1"], staff["a2"], staff["dr"]
    grant = ask(services, a1, kind="change-role", account_id=a1.id, role="security_officer")
    with pytest.raises(Forbidden, match="your own request"):
        approve(services, a1, grant)
    other = ask(services, a2, kind="change-role", account_id=a1.id, role="security_officer")
    with pytest.raises(Forbidden, match="your own account"):
        approve(services, a1, other)
    with pytest.raises(StepUpRequired):
        services.access.requests.approve(a2.principal(fresh=False), CTX, grant, None)
    for who in (dr, staff["so"]):  # a clinician approves nothing; this kind needs an admin
        with pytest.raises(Forbidden):
            approve(services, who, grant)
    with pytest.raises(Forbidden):
        ask(services, dr, kind="change-role", account_id=dr.id, role="admin")
    with services.engine.connect() as conn:
        role = conn.execute(select(account.c.role).where(account.c.id == a1.id)).scalar_one()
    assert role == "admin"  # nothing took effect
    assert status(services, grant) == "pending"
    assert approve(services, a2, grant) == "done"
    with pytest.raises(RequestConflict):
        approve(services, staff["so"], grant)


def test_separation_of_duties_between_accounts(services: Services, staff: dict[str, Staff]) -> None:
    a1 = staff["a1"]
    ward = unit(services)
    refused = [
        {"kind": "change-role", "account_id": a1.id, "role": "clinician"},
        {"kind": "change-role", "account_id": staff["dr"].id, "role": "admin"},
        {"kind": "add-unit-membership", "account_id": a1.id, "unit": ward},
        {"kind": "link-practitioner", "account_id": a1.id, "practitioner": practitioner(services)},
        {"kind": "create-account", "username": "x.admin", "role": "admin",
         "display_name": "X", "units": [ward]},
    ]  # fmt: skip
    for body in refused:
        with pytest.raises(InvalidResource):
            ask(services, staff["a2"], **body)


def test_policy_changes_need_an_admin_and_a_security_officer(
    services: Services, staff: dict[str, Staff]
) -> None:
    change = ask(services, staff["a1"], kind="change-setting", key=CARE_WINDOW_DAYS.key, value=45)
    assert approve(services, staff["a2"], change) == "pending"
    assert services.policy.settings.current().get(CARE_WINDOW_DAYS) == 30
    with pytest.raises(RequestConflict):  # a second admin does not replace the officer
        approve(services, new_staff(services, Role.ADMIN), change)
    assert approve(services, staff["so"], change) == "done"
    assert services.policy.settings.current().get(CARE_WINDOW_DAYS) == 45
    with pytest.raises(InvalidResource, match="365"):  # bounded: no approval turns it off
        ask(services, staff["a1"], kind="change-setting", key=CARE_WINDOW_DAYS.key, value=9999)


def test_rejection_withdrawal_and_expiry(services: Services, staff: dict[str, Staff]) -> None:
    a1, a2 = staff["a1"], staff["a2"]
    body = {"kind": "reset-password", "account_id": staff["dr"].id}
    rejected = ask(services, a1, **body)
    services.access.requests.reject(a2.principal(), CTX, rejected, "not asked by the holder")
    with pytest.raises(RequestConflict):
        approve(services, new_staff(services, Role.ADMIN), rejected)
    withdrawn = ask(services, a1, **body)
    assert services.access.requests.reject(a1.principal(), CTX, withdrawn, None).status == (
        "withdrawn"
    )
    late = ask(services, a1, **body)
    with services.engine.begin() as conn:
        conn.execute(update(access_request).where(access_request.c.id == late).values(expires=1))
    with pytest.raises(RequestConflict, match="expired"):
        approve(services, a2, late)
    assert status(services, late) == "expired"


def test_a_new_account_reaches_only_its_holder(services: Services, staff: dict[str, Staff]) -> None:
    ward = unit(services)
    pract = practitioner(services)
    made = ask(
        services,
        staff["a1"],
        kind="create-account",
        username="n.nouveau",
        role="clinician",
        display_name="Dr Nina NOUVEAU",
        practitioner=pract,
        units=[ward],
    )
    with services.engine.connect() as conn:
        assert (
            conn.execute(select(account).where(account.c.username == "n.nouveau")).first() is None
        )
    view = services.access.requests.get(staff["a1"].principal(), made)
    assert "password" not in repr(view).lower().replace("password_code", "")
    assert approve(services, staff["a2"], made) == "done"
    with services.engine.connect() as conn:
        row = conn.execute(select(account).where(account.c.username == "n.nouveau")).one()
        units = conn.execute(
            select(unit_membership.c.unit).where(unit_membership.c.account_id == row.id)
        ).scalars()
        assert list(units) == [ward]
    assert row.practitioner == pract
    (notice,) = notify.undelivered(services.engine, services.access.env.key, account_id=row.id)
    code, enrolment = notice.body["password_code"], notice.body["enrolment_code"]
    assert code not in repr(services.access.requests.get(staff["a2"].principal(), made))
    with pytest.raises(NotAuthenticated):
        services.access.set_password(CTX, "n.nouveau", "wrong-code", "Un mot de passe neuf 42!")
    services.access.set_password(CTX, "n.nouveau", code, "Un mot de passe tout neuf, 42 fois!")
    assert services.identity.login("n.nouveau", "Un mot de passe tout neuf, 42 fois!")
    with pytest.raises(NotAuthenticated):  # single use
        services.access.set_password(CTX, "n.nouveau", code, "Encore un autre, 43 fois !")
    assert enrolment


def test_resets_end_sessions_and_tell_the_holder(
    services: Services, staff: dict[str, Staff]
) -> None:
    target = staff["dr"]
    services.identity.login(target.username, target.password)  # the holder is signed in ...
    with services.engine.begin() as conn:
        conn.execute(
            session.insert().values(
                token_hash=b"x" * 32,
                id="s-1",
                account_id=target.id,
                created=1,
                expires=2**62,
                last_seen=2**61,
                revoked=False,
            )
        )
    factor = ask(services, staff["a1"], kind="reset-factor", account_id=target.id)
    assert approve(services, staff["a2"], factor) == "done"
    with services.engine.connect() as conn:
        revoked = conn.execute(select(session.c.revoked).where(session.c.id == "s-1")).scalar()
    assert revoked is True
    kinds = [n.kind for n in notify.undelivered(services.engine, services.access.env.key)]
    assert "factor-reset" in kinds
    password = ask(services, staff["a1"], kind="reset-password", account_id=target.id)
    assert approve(services, staff["a2"], password) == "done"
    notices = notify.undelivered(services.engine, services.access.env.key, account_id=target.id)
    assert {"factor-reset", "password-reset"} <= {n.kind for n in notices}


def test_integration_client_and_erasure(services: Services, staff: dict[str, Staff]) -> None:
    client = ask(
        services, staff["a1"], kind="create-integration-client", username="lab.feed",
        display_name="Laboratoire",
    )  # fmt: skip
    assert approve(services, staff["a2"], client) == "done"
    with services.engine.connect() as conn:
        role = conn.execute(select(account.c.role).where(account.c.username == "lab.feed"))
        assert role.scalar_one() == "integration"

    doomed = patient(services, generalPractitioner=[{"reference": practitioner(services)}])
    erase = ask(
        services, staff["so"], kind="erase-patient", patient=f"Patient/{doomed}",
        legal_basis="droit à l'effacement, demande du 2026-11-02",
    )  # fmt: skip
    assert approve(services, staff["a1"], erase) == "pending"
    assert services.store.read(SYSTEM, "Patient", doomed)  # not yet
    assert approve(services, new_staff(services, Role.SECURITY_OFFICER), erase) == "done"
    with pytest.raises(PatientErased):
        services.store.read(SYSTEM, "Patient", doomed)
    with services.engine.connect() as conn:
        links = conn.execute(select(care_link).where(care_link.c.patient == doomed)).all()
    assert links == []


def test_audit_pruning_inside_retention_fails_loudly(
    services: Services, staff: dict[str, Staff]
) -> None:
    prune = ask(services, staff["a1"], kind="prune-audit", before="2026-01-01")
    assert approve(services, staff["a2"], prune) == "pending"
    approve(services, staff["so"], prune)
    view = services.access.requests.get(staff["so"].principal(), prune)
    assert view.status == "failed"
    assert "retention" in (view.result or "")


def test_every_kind_has_an_executor() -> None:
    from rempart.access.execute import _RUNNERS
    from rempart.access.kinds import SPECS

    assert {spec.model for spec in SPECS.values()} == set(_RUNNERS)
    assert REGISTRANT  # the registrant link survives a Patient update (relations.record)


def test_racing_approvals_execute_a_request_once(
    services: Services, staff: dict[str, Staff]
) -> None:
    change = ask(
        services, staff["a1"], kind="change-setting", key="policy.break_glass_daily_cap", value=3
    )
    approvers = [staff["a2"].principal(), staff["so"].principal()]

    def one(who: Principal) -> str:
        return services.access.requests.approve(who, CTX, change, None).status

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, approvers))
    assert "done" in results
    view = services.access.requests.get(staff["a1"].principal(), change)
    assert view.status == "done"
    assert len(view.approvals) == 2
    executed = [
        a
        for a in alerts.list_alerts(services.engine, kind="access-executed")
        if a.details["request_id"] == change
    ]
    assert len(executed) == 1


# The changes the issue lists, and who must approve each besides the requester.
FOUR_EYES = {
    "create-account": ("admin",),
    "change-role": ("admin",),
    "link-practitioner": ("admin",),
    "add-unit-membership": ("admin",),
    "move-unit": ("admin",),  # a unit's parents decide whose patients their members reach
    "reset-password": ("admin",),
    "reset-factor": ("admin",),
    "create-integration-client": ("admin",),
    "change-setting": ("admin", "security_officer"),  # the policy's configuration
    "guard-settings": ("admin", "security_officer"),  # the guard's configuration
    "export": ("admin", "security_officer"),
}


def test_every_change_that_could_open_clinical_data_is_a_four_eyes_kind() -> None:
    from rempart.access.kinds import SPECS

    for kind, needs in FOUR_EYES.items():
        assert tuple(r.value for r in SPECS[kind].needs) == needs, kind
    # No kind is approved by nobody, and nobody outside the two managing roles approves.
    for kind, spec in SPECS.items():
        assert spec.needs, kind
        assert set(spec.needs) <= {Role.ADMIN, Role.SECURITY_OFFICER}, kind


def _audited(services: Services, action: str, account_id: str) -> int:
    from rempart.audit.tables import audit_event

    with services.engine.connect() as conn:
        rows = conn.execute(
            select(audit_event.c.seq).where(
                audit_event.c.action == action, audit_event.c.account_id == account_id
            )
        ).all()
    return len(rows)


def _alerted(services: Services, kind: str, request_id: str) -> int:
    return sum(
        1
        for a in alerts.list_alerts(services.engine, kind=kind, limit=1000)
        if a.details.get("request_id") == request_id
    )


def test_every_request_and_decision_is_recorded_and_told_to_the_officer(
    services: Services, staff: dict[str, Staff]
) -> None:
    a1, a2, dr = staff["a1"], staff["a2"], staff["dr"]
    pract, ward = practitioner(services), unit(services)
    link = ask(services, a1, kind="link-practitioner", account_id=dr.id, practitioner=pract)
    join = ask(services, a1, kind="add-unit-membership", account_id=dr.id, unit=ward)
    refused = ask(services, a1, kind="reset-password", account_id=dr.id)
    for request_id in (link, join, refused):
        assert _alerted(services, "access-request", request_id) == 1
    assert _audited(services, "access-request", a1.id) >= 3
    # Pending: nothing changed for the clinician yet.
    with services.engine.connect() as conn:
        row = conn.execute(select(account.c.practitioner).where(account.c.id == dr.id)).one()
        units = list(
            conn.execute(
                select(unit_membership.c.unit).where(unit_membership.c.account_id == dr.id)
            ).scalars()
        )
    assert row.practitioner is None
    assert units == []

    for request_id in (link, join):
        assert approve(services, a2, request_id) == "done"
        assert _alerted(services, "access-approval", request_id) == 1
        assert _alerted(services, "access-executed", request_id) == 1
    assert _audited(services, "access-approve", a2.id) >= 2
    services.access.requests.reject(a2.principal(), CTX, refused, "not asked by the holder")
    assert _alerted(services, "access-rejection", refused) == 1
    assert _audited(services, "access-rejected", a2.id) == 1

    with services.engine.connect() as conn:
        row = conn.execute(select(account.c.practitioner).where(account.c.id == dr.id)).one()
        units = list(
            conn.execute(
                select(unit_membership.c.unit).where(unit_membership.c.account_id == dr.id)
            ).scalars()
        )
    assert row.practitioner == pract
    assert units == [ward]
    told = {n.kind for n in notify.undelivered(services.engine, services.access.env.key,
                                               account_id=dr.id)}  # fmt: skip
    assert {"practitioner-linked", "unit-added"} <= told
    assert "password-reset" not in told  # rejected: nothing sent
