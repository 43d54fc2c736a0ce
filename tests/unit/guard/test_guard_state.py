"""The guard's state and its changes, on SQLite and PostgreSQL: guard settings need four eyes,
decoys are keyed tags nobody can list, the seed and the plant-decoys request register them, a
transaction Bundle is contained like a read, and counting survives new Services."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import create_engine, select

from rempart.access.kinds import AnyRequest
from rempart.access.roles import Role
from rempart.config import Settings
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource
from rempart.guard import decoys
from rempart.guard.errors import GuardContained
from rempart.guard.settings import ROLE_LIMITS, Thresholds
from rempart.guard.tables import guard_decoy
from rempart.identity.errors import LoginFailed
from rempart.identity.tables import account, session
from rempart.store.tables import resource
from rempart.wiring import Services, open_services
from tests.unit.access.support import encounter, new_staff, patient, practitioner

CTX = RequestContext("10.0.0.9", "test")
_ANY: TypeAdapter[Any] = TypeAdapter(AnyRequest)


def test_guard_settings_change_only_with_an_admin_and_an_officer(services: Services) -> None:
    a1, a2 = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
    officer = new_staff(services, Role.SECURITY_OFFICER)
    requests = services.access.requests
    limit = ROLE_LIMITS["clinician"][0]
    body = {"kind": "guard-settings", "values": {limit.key: 12, "guard.response.baseline": 2}}
    made = requests.submit(a1.principal(), CTX, _ANY.validate_python(body))
    assert made.status == "pending"
    with pytest.raises(Forbidden):
        requests.approve(a1.principal(), CTX, made.id, None)  # not one's own
    assert requests.approve(a2.principal(), CTX, made.id, None).status == "pending"
    assert services.guard.thresholds().role_limits("clinician")[0] == 50  # nothing yet
    assert requests.approve(officer.principal(), CTX, made.id, None).status == "done"
    services.policy.settings.invalidate()
    now: Thresholds = services.guard.thresholds()
    assert now.role_limits("clinician")[0] == 12
    assert int(now.response("baseline")) == 2
    with pytest.raises(InvalidResource):  # bounds: the guard cannot be turned off
        requests.submit(
            a1.principal(),
            CTX,
            _ANY.validate_python({"kind": "guard-settings", "values": {limit.key: 10**6}}),
        )
    with pytest.raises(InvalidResource):
        requests.submit(
            a1.principal(),
            CTX,
            _ANY.validate_python({"kind": "guard-settings", "values": {"guard.response.decoy": 0}}),
        )
    with pytest.raises(Forbidden):  # a clinician asks for nothing of the kind
        requests.submit(
            new_staff(services, Role.CLINICIAN).principal(), CTX, _ANY.validate_python(body)
        )


def test_planted_decoys_are_tags_only_and_lock_whoever_opens_one(services: Services) -> None:
    a1, a2 = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
    officer = new_staff(services, Role.SECURITY_OFFICER)
    requests = services.access.requests
    made = requests.submit(
        a1.principal(), CTX, _ANY.validate_python({"kind": "plant-decoys", "count": 3})
    )
    assert requests.approve(a2.principal(), CTX, made.id, None).status == "pending"
    assert requests.approve(officer.principal(), CTX, made.id, None).status == "done"
    done = requests.get(officer.principal(), made.id)
    assert "not shown" in (done.result or "")
    with services.engine.connect() as conn:
        tags = list(conn.execute(select(guard_decoy.c.tag)).scalars())
        patients = list(
            conn.execute(
                select(resource.c.res_id).where(resource.c.res_type == "Patient")
            ).scalars()
        )
    assert len(tags) == 3
    assert len(patients) == 3
    # The table holds no id: the tags are keyed, so only the guard's key tells which they are.
    assert not {p.encode() for p in patients} & set(tags)
    assert all(len(t) == 16 for t in tags)
    assert sorted(services.guard.decoys.is_decoy(p) for p in patients) == [True] * 3
    assert services.guard.decoys.is_decoy("some-other-patient") is False
    # Nobody has a care relationship with a decoy; a break-the-glass to one locks at once.
    clinician = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services))
    who = clinician.principal()
    with pytest.raises(GuardContained):
        services.access.break_glass.grant(
            who, CTX, f"Patient/{patients[0]}", "patient unconscious in the emergency room"
        )
    with services.engine.connect() as conn:
        assert conn.execute(
            select(account.c.locked_at).where(account.c.id == clinician.id)
        ).scalar()


def _session(services: Services, account_id: str, role: Role) -> tuple[str, str]:
    with services.engine.begin() as conn:
        opened = services.identity.core.sessions.open(
            conn,
            account_id=account_id,
            role=role,
            factors="password+totp",
            now=time.time_ns() // 1000,
        )
    return opened.access_token, opened.session_id


def test_a_transaction_bundle_of_reads_is_contained_and_nothing_leaves(
    services: Services,
) -> None:
    doctor = practitioner(services)
    ids = []
    for _ in range(52):
        pid = patient(services)
        encounter(services, pid, attender=doctor)
        ids.append(pid)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    token, session_id = _session(services, clinician.id, Role.CLINICIAN)
    who = services.identity.authenticate(token)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}} for pid in ids],
    }
    with pytest.raises(GuardContained):
        services.bundles.process(who, CTX, bundle)
    deadline = time.monotonic() + 5  # written outside the rolled-back transaction
    revoked = False
    while time.monotonic() < deadline and not revoked:
        with services.engine.connect() as conn:
            revoked = bool(
                conn.execute(select(session.c.revoked).where(session.c.id == session_id)).scalar()
            )
        time.sleep(0.05)
    assert revoked
    with pytest.raises(LoginFailed):
        services.identity.authenticate(token)


def test_counting_survives_new_services(services: Services, settings: Settings) -> None:
    doctor = practitioner(services)
    ids = []
    for _ in range(51):
        pid = patient(services)
        encounter(services, pid, attender=doctor)
        ids.append(pid)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    token, _ = _session(services, clinician.id, Role.CLINICIAN)
    who = services.identity.authenticate(token)
    for pid in ids[:20]:
        services.records.read(who, CTX, "Patient", pid)
    services.close()
    restarted = open_services(settings, pool_size=2)
    try:
        for pid in ids[20:50]:
            restarted.records.read(who, CTX, "Patient", pid)
        with pytest.raises(GuardContained):
            restarted.records.read(who, CTX, "Patient", ids[50])
    finally:
        restarted.close()


def test_the_seed_registers_its_decoys(
    services: Services, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rempart.ingest.seeding import seed_hospital
    from rempart.seed import hospital as generator

    monkeypatch.setattr(generator, "DECOY_ONE_IN", 4)  # a few decoys among 12 patients
    seed_hospital(services, patients=12, seed=3, credentials_out=None)
    expected = generator.generate(12, 3).decoy_patient_ids()
    assert expected
    assert all(services.guard.decoys.is_decoy(p) for p in expected)
    assert services.guard.decoys.count() == len(expected)


def test_decoy_tags_are_memoized_within_a_bound_and_stay_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tags are memoized (every protected read checks one or two), bounded, and always the
    keyed HMAC of the id."""
    monkeypatch.setattr(decoys, "MEMO", 4)
    key = bytes(range(32))
    guard_decoys = decoys.Decoys(create_engine("sqlite://"), key)

    def expected(pid: str) -> bytes:
        return hmac.new(key, b"rempart/decoy/" + pid.encode(), hashlib.sha256).digest()[:16]

    ids = [f"patient-{n}" for n in range(10)]
    for _ in range(2):
        assert [guard_decoys.tag(p) for p in ids] == [expected(p) for p in ids]
        assert len(guard_decoys._memo) <= 4
    assert guard_decoys.tag(ids[-1]) is guard_decoys._memo[ids[-1]]
