"""The policy decides from the care-relationship index, on both databases: which patients a
clinician, a front desk or a patient reaches, and that searches count only those."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import null, update

from rempart.access import membership
from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.access.scope import ReadLink, Relationships
from rempart.access.settings import PolicySettings
from rempart.access.tables import break_glass
from rempart.context import RequestContext
from rempart.errors import Forbidden
from rempart.fhir import parse_search
from rempart.store.search import search
from rempart.wiring import Services
from tests.unit.access.support import (
    SYSTEM,
    admission,
    encounter,
    new_staff,
    patient,
    practitioner,
    unit,
    write,
)

CTX = RequestContext("10.0.0.1", "test")


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def clinician(pract: str | None, *units: str, services: Services) -> Principal:
    account_id = str(uuid.uuid4())
    with services.engine.begin() as conn:
        for u in units:
            membership.add(conn, account_id, u, None)
    return Principal(account_id, "dr", Role.CLINICIAN, pract, None)


def visible(services: Services, who: Principal, ids: list[str], **kw: int) -> set[str]:
    decision = decide(who, PolicySettings(dict(kw)))
    query = parse_search("Patient", [("_count", "200")])
    found, total = search(services.store, decision, query)
    assert total == len(found)
    return {s.res_id for s in found} & set(ids)


def test_clinician_reaches_exactly_their_care_relationships(services: Services) -> None:
    me, colleague = practitioner(services), practitioner(services)
    ward = unit(services)
    attending = patient(services)
    encounter(services, attending, attender=me)
    recent = patient(services)
    encounter(services, recent, status="finished", attender=me, start=day(-12), end=day(-10))
    old = patient(services)
    encounter(services, old, status="finished", attender=me, start=day(-42), end=day(-40))
    # The default window is 30 days (counted to the midnight after the end): 29 in, 31 out.
    edge_in, edge_out = patient(services), patient(services)
    encounter(services, edge_in, status="finished", attender=me, start=day(-30), end=day(-29))
    encounter(services, edge_out, status="finished", attender=me, start=day(-32), end=day(-31))
    in_ward = patient(services)
    stay = encounter(services, in_ward, provider=ward, attender=colleague)
    cared = patient(services)
    write(
        services,
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{cared}"},
            "participant": [{"member": {"reference": me}}],
        },
    )
    treated = patient(services, generalPractitioner=[{"reference": me}])
    stranger = patient(services)
    encounter(services, stranger, attender=colleague)
    everyone = [attending, recent, old, edge_in, edge_out, in_ward, cared, treated, stranger]

    who = clinician(me, ward, services=services)
    assert visible(services, who, everyone) == {
        attending,
        recent,
        edge_in,
        in_ward,
        cared,
        treated,
    }
    # The care window is a setting (changed through a four-eyes request).
    wider = visible(services, who, everyone, **{"policy.care_window_days": 60})
    assert old in wider

    decision = decide(who)
    assert services.store.read(decision, "Patient", treated).json()["id"] == treated
    assert "treating physician" in decision.explain(treated)
    assert decision.explain() == decision.explain(treated)  # what the audit record says
    for pid in (stranger, old, edge_out, "no-such-patient"):
        with pytest.raises(Forbidden) as refused:
            services.store.read(decide(who), "Patient", pid)
        assert refused.value.message == f"access to Patient/{pid} is not permitted"

    # The stay ends: the unit's members lose the patient, the attending keeps them a while.
    body = services.store.read(SYSTEM, "Encounter", stay).json()
    body.update(status="finished", period={"start": day(-2), "end": day(-1)})
    services.store.update(SYSTEM, "Encounter", stay, body)
    assert in_ward not in visible(services, who, everyone)
    assert in_ward in visible(services, clinician(colleague, services=services), everyone)


def test_a_unit_membership_of_an_establishment_covers_its_units(services: Services) -> None:
    site = unit(services)
    ward = unit(services, parent=site)
    pid = patient(services)
    encounter(services, pid, provider=ward)
    who = clinician(None, site, services=services)
    assert visible(services, who, [pid]) == {pid}
    assert visible(services, clinician(None, services=services), [pid]) == set()


def test_writes_stay_within_the_scope(services: Services) -> None:
    me = practitioner(services)
    mine, other = patient(services), patient(services)
    encounter(services, mine, attender=me)
    decision = decide(clinician(me, services=services))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pouls"},
    }
    services.store.create(decision, {**observation, "subject": {"reference": f"Patient/{mine}"}})
    with pytest.raises(Forbidden):
        services.store.create(
            decision, {**observation, "subject": {"reference": f"Patient/{other}"}}
        )
    # Changing someone's record to name yourself is refused like reading it.
    body = services.store.read(SYSTEM, "Patient", other).json()
    body["generalPractitioner"] = [{"reference": me}]
    with pytest.raises(Forbidden):
        services.store.update(decision, "Patient", other, body)


def test_a_registered_patient_is_its_registrants_only(services: Services) -> None:
    me = clinician(practitioner(services), services=services)
    created = services.store.create(decide(me), {"resourceType": "Patient", "gender": "male"})
    assert services.store.read(decide(me), "Patient", created.res_id).res_id == created.res_id
    with pytest.raises(Forbidden):
        services.store.read(decide(clinician(None, services=services)), "Patient", created.res_id)


def test_patients_administrators_and_integration_clients(services: Services) -> None:
    own, other = patient(services), patient(services)
    me = Principal("p", "patient.x", Role.PATIENT, None, f"Patient/{own}")
    assert visible(services, me, [own, other]) == {own}
    with pytest.raises(Forbidden):
        services.store.read(decide(me), "Patient", other)
    for role in (Role.ADMIN, Role.SECURITY_OFFICER, Role.INTEGRATION):
        who = Principal("x", "x", role, None, f"Patient/{own}")
        with pytest.raises(Forbidden):
            services.store.read(decide(who), "Patient", own)
        with pytest.raises(Forbidden):
            search(services.store, decide(who), parse_search("Patient", []))
    feed = Principal("i", "lab", Role.INTEGRATION, None, None)
    result = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "glycémie"},
        "subject": {"reference": f"Patient/{other}"},
    }
    written = services.store.create(decide(feed), result)  # a result feed writes, blind
    with pytest.raises(Forbidden):
        services.store.read(decide(feed), "Observation", written.res_id)


def test_a_clinician_admits_no_one_outside_their_relationships(services: Services) -> None:
    """Only a front desk's admission brings a patient in (test_access_front_desk.py): a
    clinician "admitting" someone into its own unit is refused, existing patient or not, and
    the patient stays out of its reach; one it already cares for, one it has broken the glass
    for and one it registers may be admitted anywhere."""
    me = practitioner(services)
    ward, elsewhere = unit(services), unit(services)
    who = clinician(me, ward, services=services)
    stranger = patient(services)
    encounter(services, stranger, attender=practitioner(services))
    refusals = []
    for pid in (stranger, str(uuid.uuid4())):
        body = admission(pid, ward, attender=me)
        with services.engine.begin() as conn, pytest.raises(Forbidden) as before_references:
            services.store.check_write(conn, decide(who), body, client_id=False)
        with pytest.raises(Forbidden) as on_create:
            services.store.create(decide(who), body)
        refusals.append((before_references.value.message, on_create.value.message))
    assert refusals[0] == refusals[1]  # the same words whether the patient exists or not
    assert visible(services, who, [stranger]) == set()
    with pytest.raises(Forbidden):
        services.store.read(decide(who), "Patient", stranger)

    # Attending the patient already (the emergency doctor): the new stay may be anywhere.
    attending = patient(services)
    encounter(services, attending, attender=me)
    services.store.create(decide(who), admission(attending, elsewhere, attender=me))

    # A live break-the-glass grant: the admission is written, and the stay then counts for the
    # unit after the grant is gone.
    emergency = patient(services)
    doctor = new_staff(services, Role.CLINICIAN, practitioner=me, units=(ward,))
    grant_id, _ = services.access.break_glass.grant(
        doctor.principal(), CTX, f"Patient/{emergency}", "patient inconscient admis cette nuit"
    )
    services.store.create(decide(doctor.principal()), admission(emergency, ward))
    with services.engine.begin() as conn:
        conn.execute(update(break_glass).where(break_glass.c.id == grant_id).values(expires=1))
    decision = decide(doctor.principal())
    assert services.store.read(decision, "Patient", emergency).res_id == emergency
    assert decision.explain(emergency).endswith("currently stays in a unit of this account")

    # A patient the clinician registers is theirs to admit.
    created = services.store.create(decide(who), {"resourceType": "Patient", "gender": "male"})
    services.store.create(decide(who), admission(created.res_id, ward, attender=me))


def test_a_search_fails_closed_when_a_row_is_not_covered_on_its_own(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each patient of a page is checked again on its own (`store/search.py`, `_explain`): if
    that check and the scope's SQL ever disagree, the search is refused rather than served."""
    me = practitioner(services)
    attending = patient(services)
    encounter(services, attending, attender=me)
    who = clinician(me, services=services)
    assert visible(services, who, [attending]) == {attending}
    # The page's per-patient check (a column of its SELECT, `ReadLink`) says no.
    never = ReadLink("never", null().label("care_link"), {})
    monkeypatch.setattr(Relationships, "read_link", lambda self: never)
    with pytest.raises(Forbidden):
        search(services.store, decide(who), parse_search("Patient", [("_count", "200")]))


def test_reads_and_searches_ask_the_care_link_in_their_own_select_as_covers_would(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read (vread, history) and a search page carry the care-link question as a column of
    their SELECT (`scope.ReadLink`): for every kind of relationship, and for a clinician with
    and without a Practitioner, with and without break-the-glass, and a front desk, it answers
    exactly as `covers` does, with the same reason, without running `covers`' own query."""
    me, colleague = practitioner(services), practitioner(services)
    ward = unit(services)
    attending = patient(services)
    encounter(services, attending, attender=me)
    in_ward = patient(services)
    encounter(services, in_ward, provider=ward, attender=colleague)
    treated = patient(services, generalPractitioner=[{"reference": me}])
    stranger = patient(services)
    encounter(services, stranger, attender=colleague)
    glass = patient(services)
    doctor = new_staff(services, Role.CLINICIAN, practitioner=me, units=(ward,))
    services.access.break_glass.grant(
        doctor.principal(), CTX, f"Patient/{glass}", "patient inconscient admis cette nuit"
    )
    desk = new_staff(services, Role.SECRETARY, units=(ward,))
    everyone = [attending, in_ward, treated, stranger, glass, "no-such-patient"]
    whos = [
        doctor.principal(),  # practitioner, unit, break-the-glass
        clinician(me, services=services),  # practitioner only
        clinician(None, ward, services=services),  # unit only
        desk.principal(),  # places: stays and visits
    ]
    expected: dict[tuple[int, str], str | None] = {}
    for n, who in enumerate(whos):
        scope = decide(who).patients
        with services.engine.connect() as conn:
            for pid in everyone:
                expected[n, pid] = scope.covers(conn, pid)
    assert expected[0, glass] is not None
    assert expected[1, glass] is None
    assert expected[0, treated] is not None
    assert expected[2, treated] is None
    assert expected[3, in_ward] is not None
    assert expected[3, stranger] is None

    def no_query(self: Relationships, conn: object, patient: str) -> str | None:
        raise AssertionError("the read ran the care-link query of its own")

    monkeypatch.setattr(Relationships, "covers", no_query)
    for n, who in enumerate(whos):
        for pid in everyone:
            decision = decide(who)
            if expected[n, pid] is None:
                with pytest.raises(Forbidden):
                    services.store.read(decision, "Patient", pid)
                with pytest.raises(Forbidden):
                    services.store.vread(decide(who), "Patient", pid, 1)
            else:
                assert services.store.read(decision, "Patient", pid).res_id == pid
                assert decision.explain() == f"{decision.reason}: {expected[n, pid]}"
                history = decide(who)
                assert [s.version for s in services.store.history(history, "Patient", pid)] == [1]
                assert history.explain() == f"{history.reason}: {expected[n, pid]}"
        # A search's page: each patient's reason, from the page's own SELECT.
        decision = decide(who)
        found, _ = search(services.store, decision, parse_search("Patient", [("_count", "200")]))
        reached = {s.res_id for s in found} & set(everyone)
        assert reached == {pid for pid in everyone if expected[n, pid] is not None}
        for pid in reached:
            assert decision.explain(pid) == f"{decision.reason}: {expected[n, pid]}"


def test_a_care_link_answer_read_for_another_scope_opens_nothing(services: Services) -> None:
    """`may_read` takes a column's value only for the question its own scope asks."""
    me = practitioner(services)
    mine = patient(services)
    encounter(services, mine, attender=me)
    other = patient(services)
    who, someone = clinician(None, services=services), clinician(me, services=services)
    their_decision = decide(someone)
    theirs = their_decision.read_link()
    assert theirs is not None
    decision = decide(who)
    with services.engine.connect() as conn:
        forged = (theirs, "participant")
        assert not decision.may_read("Patient", other, conn=conn, link=forged)
        assert not decision.may_read("Patient", mine, conn=conn, link=forged)
        # For its own question the column's value is the answer, NULL included.
        assert their_decision.may_read("Patient", other, conn=conn, link=forged)
        assert not their_decision.may_read("Patient", mine, conn=conn, link=(theirs, None))
