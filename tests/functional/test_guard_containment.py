"""The guard over HTTP, on SQLite and PostgreSQL: a scraping session is cut within the
threshold and the next request refused (also by a second Services on the same database, as
another server process would be), decoys lock, enumeration is contained, state survives a
restart, normal clinical work triggers nothing, the security officer alone sees and releases.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rempart import clock
from rempart.access.roles import Role
from rempart.api.app import create_app
from rempart.config import Settings
from rempart.guard.tables import guard_containment
from rempart.identity.tables import account, session
from rempart.wiring import Services, open_services
from tests.unit.access.support import Staff, encounter, login, new_staff, patient, practitioner

PATIENTS = 56  # above the clinician's 5-minute threshold (50)
THRESHOLD = 50


@dataclass
class Ward:
    services: Services
    settings: Settings
    client: TestClient
    patients: list[str]
    clinician: Staff
    outsider: Staff  # a clinician with no care relationship to the ward's patients
    officer: Staff


@pytest.fixture
def ward(services: Services, settings: Settings) -> Iterator[Ward]:
    yield from build_ward(services, settings)


def build_ward(services: Services, settings: Settings) -> Iterator[Ward]:
    doctor = practitioner(services)
    ids = []
    for _ in range(PATIENTS):
        pid = patient(services)
        encounter(services, pid, attender=doctor)
        ids.append(pid)
    clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
    outsider = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services))
    officer = new_staff(services, Role.SECURITY_OFFICER)
    with TestClient(create_app(services), base_url="http://127.0.0.1") as client:
        yield Ward(services, settings, client, ids, clinician, outsider, officer)


def open_session(services: Services, staff: Staff) -> dict[str, str]:
    """A session as a full sign-in leaves it (password + second factor just now). Officers and
    administrators need a security key in production; the sign-in itself is tested elsewhere."""
    with services.engine.begin() as conn:
        opened = services.identity.core.sessions.open(
            conn,
            account_id=staff.id,
            role=staff.role,
            factors="password+webauthn",
            now=clock.now_micros(),
        )
    return {"Authorization": f"Bearer {opened.access_token}"}


def second_process(settings: Settings) -> Iterator[TestClient]:
    """Another server process on the same database: its own Services, its own guard."""
    other = open_services(settings, pool_size=2)
    with TestClient(create_app(other), base_url="http://127.0.0.1") as client:
        yield client


def read(client: TestClient, headers: dict[str, str], pid: str) -> int:
    return client.get(f"/fhir/Patient/{pid}", headers=headers).status_code


def guard_alerts(ward: Ward, officer: dict[str, str], kind: str = "guard-") -> list[dict]:
    found = ward.client.get("/security/alerts", params={"kind": kind}, headers=officer)
    assert found.status_code == 200, found.text
    return list(found.json()["alerts"])


def test_a_fast_scrape_is_suspended_at_the_threshold_everywhere(ward: Ward) -> None:
    headers = open_session(ward.services, ward.clinician)
    codes = [read(ward.client, headers, pid) for pid in ward.patients[: THRESHOLD + 1]]
    assert codes[:THRESHOLD] == [200] * THRESHOLD
    refused = ward.client.get(f"/fhir/Patient/{ward.patients[THRESHOLD]}", headers=headers)
    assert codes[THRESHOLD] == 401
    assert refused.status_code == 401
    assert refused.json()["issue"][0]["code"] in ("security", "login")
    # The very next request, in this process and in another one, is refused: the session is
    # a revoked row, which every process checks on every request.
    assert read(ward.client, headers, ward.patients[0]) == 401
    for other in second_process(ward.settings):
        assert read(other, headers, ward.patients[1]) == 401
    with ward.services.engine.connect() as conn:
        revoked = conn.execute(
            select(session.c.revoked_reason).where(session.c.account_id == ward.clinician.id)
        ).scalars()
        assert "guard" in list(revoked)
    officer = open_session(ward.services, ward.officer)
    (alert,) = guard_alerts(ward, officer, "guard-session-velocity")
    assert f"read {THRESHOLD + 1} distinct patients in 5 min" in alert["message"]
    assert f"clinician threshold {THRESHOLD}" in alert["message"]
    assert alert["details"]["response"] == "suspend"
    assert alert["severity"] == "critical"
    assert ward.clinician.username in alert["message"]


def test_a_scrape_spread_over_two_processes_is_caught_as_fast(ward: Ward) -> None:
    headers = open_session(ward.services, ward.clinician)
    served = 0
    for other in second_process(ward.settings):
        for i, pid in enumerate(ward.patients):
            client = ward.client if i % 2 else other
            code = read(client, headers, pid)
            if code != 200:
                break
            served += 1
    assert served == THRESHOLD  # not twice the threshold: the counts are in the database


def test_state_survives_a_restart(ward: Ward) -> None:
    headers = open_session(ward.services, ward.clinician)
    first_half = THRESHOLD // 2
    assert [read(ward.client, headers, p) for p in ward.patients[:first_half]] == [200] * (
        first_half
    )
    # A new process (a restart): it counts on from what the first one recorded.
    served = first_half
    for other in second_process(ward.settings):
        for pid in ward.patients[first_half:]:
            if read(other, headers, pid) != 200:
                break
            served += 1
    assert served == THRESHOLD


def test_a_decoy_read_locks_the_account_until_an_officer_unlocks_it(ward: Ward) -> None:
    decoy = ward.patients[5]
    with ward.services.engine.begin() as conn:
        assert ward.services.guard.decoys.plant(conn, [decoy], "test") == 1
    headers = open_session(ward.services, ward.clinician)
    assert read(ward.client, headers, ward.patients[0]) == 200
    answer = ward.client.get(f"/fhir/Patient/{decoy}", headers=headers)
    assert answer.status_code == 401
    assert "locked" in answer.json()["issue"][0]["diagnostics"]
    assert read(ward.client, headers, ward.patients[1]) == 401
    with ward.services.engine.connect() as conn:
        assert conn.execute(
            select(account.c.locked_at).where(account.c.id == ward.clinician.id)
        ).scalar()
    # A new sign-in is refused too (the account is locked, not just the session).
    first = ward.client.post(
        "/auth/login",
        json={"username": ward.clinician.username, "password": ward.clinician.password},
    )
    assert first.status_code in (401, 403)
    officer = open_session(ward.services, ward.officer)
    (alert,) = guard_alerts(ward, officer, "guard-decoy")
    assert alert["details"]["response"] == "lock"
    assert alert["details"]["patient"] == f"Patient/{decoy}"
    # Only a security officer unlocks, and only with a written reason.
    admin = new_staff(ward.services, Role.ADMIN)
    as_admin = ward.client.post(
        f"/security/accounts/{ward.clinician.id}/unlock",
        json={"reason": "I know this doctor, it was a mistake"},
        headers=open_session(ward.services, admin),
    )
    assert as_admin.status_code == 403
    no_reason = ward.client.post(
        f"/security/accounts/{ward.clinician.id}/unlock", json={"reason": "ok"}, headers=officer
    )
    assert no_reason.status_code == 400
    done = ward.client.post(
        f"/security/accounts/{ward.clinician.id}/unlock",
        json={"reason": "called the doctor: opened the wrong bed's record by mistake"},
        headers=officer,
    )
    assert done.status_code == 200, done.text
    assert done.json()["unlocked"] is True
    with ward.services.engine.connect() as conn:
        rows = conn.execute(
            select(guard_containment.c.released_by, guard_containment.c.released_reason).where(
                guard_containment.c.account_id == ward.clinician.id
            )
        ).all()
    assert rows
    assert all(r.released_by == ward.officer.id and r.released_reason for r in rows)
    again = login(ward.client, ward.clinician)
    assert read(ward.client, again, ward.patients[2]) == 200


def test_even_a_refused_attempt_at_a_decoy_locks(ward: Ward) -> None:
    decoy = ward.patients[7]
    with ward.services.engine.begin() as conn:
        ward.services.guard.decoys.plant(conn, [decoy], "test")
    headers = open_session(
        ward.services, ward.outsider
    )  # no care relationship: the read is refused
    assert read(ward.client, headers, decoy) in (401, 403)
    assert read(ward.client, headers, ward.patients[0]) == 401
    with ward.services.engine.connect() as conn:
        assert conn.execute(
            select(account.c.locked_at).where(account.c.id == ward.outsider.id)
        ).scalar()


def test_a_decoy_found_by_a_search_locks(ward: Ward) -> None:
    decoy = ward.patients[9]
    with ward.services.engine.begin() as conn:
        ward.services.guard.decoys.plant(conn, [decoy], "test")
    headers = open_session(ward.services, ward.clinician)
    # Ten of the clinician's own patients, the decoy among them: well under the breadth
    # threshold, so only the decoy can cause the lock. (A first page of a browse could miss it:
    # pages are ordered by random ids.)
    wanted = ",".join(ward.patients[5:15])
    found = ward.client.get("/fhir/Patient", params={"_id": wanted}, headers=headers)
    assert found.status_code == 401
    assert "entry" not in found.text
    with ward.services.engine.connect() as conn:
        assert conn.execute(
            select(account.c.locked_at).where(account.c.id == ward.clinician.id)
        ).scalar()


def configure(ward: Ward, key: str, value: int) -> None:
    """A guard setting as an approved request would leave it (its four-eyes path is tested in
    the access tests)."""
    from rempart.access.tables import access_setting

    with ward.services.engine.begin() as conn:
        conn.execute(
            access_setting.insert().values(key=key, value=str(value), changed=0, request_id="t")
        )
    ward.services.policy.settings.invalidate()


def test_slow_refusals_lock_the_account(ward: Ward) -> None:
    headers = open_session(ward.services, ward.outsider)
    codes = [read(ward.client, headers, str(uuid.uuid4())) for _ in range(7)]
    assert codes[:5] == [403] * 5
    assert codes[5] == 401  # the sixth refusal of the day: the account is locked
    # Even a brand-new session of the locked account reads nothing.
    assert read(ward.client, open_session(ward.services, ward.outsider), ward.patients[0]) == 401
    officer = open_session(ward.services, ward.officer)
    (alert,) = guard_alerts(ward, officer, "guard-denials-day")
    assert alert["message"].startswith("account ")
    assert "refused 6 times in 24 h" in alert["message"]
    assert alert["details"]["response"] == "lock"


def test_enumerating_ids_is_contained(ward: Ward) -> None:
    configure(ward, "guard.denials_day", 1_000)  # the per-session window alone
    headers = open_session(ward.services, ward.outsider)
    codes = [read(ward.client, headers, str(uuid.uuid4())) for _ in range(12)]
    assert codes[:10] == [403] * 10
    assert codes[10] == 401
    assert read(ward.client, headers, ward.patients[0]) == 401
    officer = open_session(ward.services, ward.officer)
    (alert,) = guard_alerts(ward, officer, "guard-denials")
    assert "refused 11 times" in alert["message"]


def test_step_up_when_configured_then_the_session_goes_on(ward: Ward) -> None:
    with ward.services.engine.begin() as conn:
        from rempart.access.tables import access_setting

        conn.execute(
            access_setting.insert().values(
                key="guard.response.session-velocity", value="1", changed=0, request_id="test"
            )
        )
    ward.services.policy.settings.invalidate()
    headers = open_session(ward.services, ward.clinician)
    codes = [read(ward.client, headers, pid) for pid in ward.patients[: THRESHOLD + 1]]
    assert codes[-1] == 403
    assert read(ward.client, headers, ward.patients[0]) == 403  # until the step-up
    time.sleep(0.01)
    with ward.services.engine.connect() as conn:
        session_id = conn.execute(
            select(session.c.id).where(session.c.account_id == ward.clinician.id)
        ).scalar_one()
    ward.services.identity.core.sessions.mark_factor(session_id)  # as POST /auth/step-up does
    assert read(ward.client, headers, ward.patients[0]) == 200
    # One step-up per episode: the same burst does not ask again at once.
    assert read(ward.client, headers, ward.patients[THRESHOLD + 1]) == 200


def test_normal_clinical_work_over_a_day_triggers_nothing(
    ward: Ward, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = open_session(ward.services, ward.clinician)
    start = clock.now_micros()
    minute = 60_000_000
    moment = {"now": start}
    monkeypatch.setattr(clock, "now_micros", lambda: moment["now"])
    # The ward list (40 patients in one page), a ward round, then the day: 30 patients read
    # over 10 hours, many twice, a few searches, one typo'd id.
    ward_list = ward.client.get("/fhir/Encounter", params={"_count": "40"}, headers=headers)
    assert ward_list.status_code == 200
    assert len(ward_list.json()["entry"]) == 40
    for step, pid in enumerate(ward.patients[:30] + ward.patients[:10]):
        moment["now"] = start + step * 15 * minute
        assert read(ward.client, headers, pid) == 200
        if step % 7 == 0:
            listed = ward.client.get("/fhir/Encounter", params={"_count": "10"}, headers=headers)
            assert listed.status_code == 200
    assert read(ward.client, headers, "no-such-patient") in (403, 404)
    officer = open_session(ward.services, ward.officer)
    assert guard_alerts(ward, officer) == []
    with ward.services.engine.connect() as conn:
        assert conn.execute(select(guard_containment.c.id)).first() is None


def test_alerts_are_for_the_security_officer_only_and_paged(ward: Ward) -> None:
    configure(ward, "guard.denials_day", 1_000)
    headers = open_session(ward.services, ward.outsider)
    for _ in range(12):
        read(ward.client, headers, str(uuid.uuid4()))
    clinician = open_session(ward.services, ward.clinician)
    assert ward.client.get("/security/alerts", headers=clinician).status_code == 403
    scraper = open_session(ward.services, ward.clinician)
    for pid in ward.patients[: THRESHOLD + 1]:
        read(ward.client, scraper, pid)  # a second guard alert, for paging
    admin = open_session(ward.services, new_staff(ward.services, Role.ADMIN))
    assert ward.client.get("/security/alerts", headers=admin).status_code == 403
    assert ward.client.get("/security/containments", headers=admin).status_code == 403
    assert ward.client.get("/security/alerts").status_code == 401
    officer = open_session(ward.services, ward.officer)
    page = ward.client.get(
        "/security/alerts", params={"kind": "guard-", "limit": "1"}, headers=officer
    ).json()
    assert len(page["alerts"]) == 1
    assert page["next_before"] is not None
    older = ward.client.get(
        "/security/alerts",
        params={"kind": "guard-", "limit": "1", "before": str(page["next_before"])},
        headers=officer,
    ).json()["alerts"]
    assert {page["alerts"][0]["kind"], older[0]["kind"]} == {
        "guard-denials",
        "guard-session-velocity",
    }
    alert = next(a for a in (page["alerts"][0], older[0]) if a["kind"] == "guard-denials")
    assert alert["details"]["account_id"] == ward.outsider.id
    by_account = ward.client.get(
        "/security/alerts", params={"account": ward.outsider.id}, headers=officer
    ).json()["alerts"]
    assert by_account
    assert all(a["details"]["account_id"] == ward.outsider.id for a in by_account)
    done = ward.client.post(f"/security/alerts/{alert['id']}/acknowledge", headers=officer)
    assert done.status_code == 204
    pending = ward.client.get(
        "/security/alerts", params={"kind": alert["kind"], "pending": "true"}, headers=officer
    ).json()["alerts"]
    assert alert["id"] not in {a["id"] for a in pending}
    held = ward.client.get(
        "/security/containments", params={"account": ward.outsider.id}, headers=officer
    ).json()
    assert held[0]["level"] == "suspend"
    assert held[0]["signal"] == "denials"
    bad = ward.client.get("/security/alerts", params={"since": "yesterday"}, headers=officer)
    assert bad.status_code == 400


def test_a_release_through_another_process_holds_in_this_one(ward: Ward) -> None:
    decoy = ward.patients[11]
    with ward.services.engine.begin() as conn:
        ward.services.guard.decoys.plant(conn, [decoy], "test")
    headers = open_session(ward.services, ward.clinician)
    assert read(ward.client, headers, decoy) == 401  # locked by this process
    for other in second_process(ward.settings):
        released = other.post(
            f"/security/accounts/{ward.clinician.id}/unlock",
            json={"reason": "reviewed with the unit head: a test of the alarm"},
            headers=open_session(ward.services, ward.officer),
        )
        assert released.status_code == 200, released.text
    time.sleep(0.1)
    fresh = open_session(ward.services, ward.clinician)
    with pytest.MonkeyPatch.context() as patch:
        # Past the few seconds this process holds its own containment in memory.
        from rempart.guard import contain

        patch.setattr(contain, "HELD_SECONDS", 0.0)
        assert read(ward.client, fresh, ward.patients[0]) == 200


def test_the_operator_unlock_on_the_server_closes_the_guard_containments(
    ward: Ward, settings: Settings
) -> None:
    from tests.functional.test_cli import rempart

    decoy = ward.patients[13]
    with ward.services.engine.begin() as conn:
        ward.services.guard.decoys.plant(conn, [decoy], "test")
    headers = open_session(ward.services, ward.clinician)
    assert read(ward.client, headers, decoy) == 401  # locked, one containment open
    done = rempart(
        *("--home", str(settings.home), "--database", settings.database_url, "identity"),
        *("unlock", "--user", ward.clinician.username, "--by", "ops.night"),
        *("--reason", "called the doctor: wrong bed"),
    )
    assert done.returncode == 0, done.stderr
    assert "1 guard containments closed" in done.stderr
    with ward.services.engine.connect() as conn:
        rows = conn.execute(
            select(guard_containment.c.released_by, guard_containment.c.released_reason).where(
                guard_containment.c.account_id == ward.clinician.id
            )
        ).all()
        assert (
            conn.execute(
                select(account.c.locked_at).where(account.c.id == ward.clinician.id)
            ).scalar()
            is None
        )
    assert [(r.released_by, r.released_reason) for r in rows] == [
        ("operator:ops.night", "called the doctor: wrong bed")
    ]
    officer = open_session(ward.services, ward.officer)
    (alert,) = guard_alerts(ward, officer, "guard-release")
    assert "ops.night" in alert["message"]
    # Counting restarted: the unlocked clinician reads again (past this process's brief hold).
    with pytest.MonkeyPatch.context() as patch:
        from rempart.guard import contain

        patch.setattr(contain, "HELD_SECONDS", 0.0)
        assert read(ward.client, login(ward.client, ward.clinician), ward.patients[0]) == 200
