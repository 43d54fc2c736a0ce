"""A thief holding the password and the TOTP secret (an infostealer's haul) of an account that
also holds a security key: signed in with the code, the first refusal of patient data asks for
the key, which the thief does not have, and the account gets no more data in any session that
has not presented it, in this process or another; the holder, signed in with the key, goes on.
Presenting the key where it was asked, or a security officer's release, lifts the hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from rempart import clock
from rempart.access.roles import Role
from rempart.config import Settings
from rempart.identity.tables import session, webauthn_credential
from rempart.simulate.softkey import SoftKey
from rempart.wiring import Services
from tests.functional.test_guard_containment import (
    Ward,
    build_ward,
    guard_alerts,
    open_session,
    read,
    second_process,
)
from tests.unit.access.support import login, patient


@pytest.fixture
def ward(services: Services, settings: Settings) -> Iterator[Ward]:
    yield from build_ward(services, settings)


REASON = "Avis demandé par le service des urgences pour ce patient"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _register(client: TestClient, headers: dict[str, str], key: SoftKey) -> None:
    options = client.post("/auth/factors/webauthn/options", headers=headers)
    assert options.status_code == 200, options.text
    done = client.post(
        "/auth/factors/webauthn",
        headers=headers,
        json={"credential": key.register(options.json()), "label": "badge"},
    )
    assert done.status_code == 200, done.text


def _key_login(client: TestClient, username: str, password: str, key: SoftKey) -> dict[str, str]:
    first = client.post("/auth/login", json={"username": username, "password": password})
    assert first.status_code == 200, first.text
    assertion = key.assertion(first.json()["webauthn"])
    second = client.post(
        "/auth/mfa", json={"mfa_token": first.json()["mfa_token"], "webauthn": assertion}
    )
    assert second.status_code == 200, second.text
    return _bearer(second.json()["access_token"])


def _key_step_up(client: TestClient, headers: dict[str, str], key: SoftKey) -> Any:
    options = client.post("/auth/step-up/options", headers=headers)
    assert options.status_code == 200, options.text
    assertion = key.assertion(options.json()["webauthn"])
    return client.post("/auth/step-up", headers=headers, json={"webauthn": assertion})


def _latest_session(ward: Ward, account_id: str) -> Any:
    with ward.services.engine.connect() as conn:
        return conn.execute(
            select(session.c.keyed, session.c.key_at)
            .where(session.c.account_id == account_id)
            .order_by(session.c.created.desc())
            .limit(1)
        ).one()


def _unconfirmed_session(ward: Ward) -> dict[str, str]:
    """Another sign-in with the password and the TOTP code, as `login` leaves it (the real
    path is taken once per test: a TOTP code is accepted once per 30 s)."""
    staff = ward.clinician
    with ward.services.engine.begin() as conn:
        opened = ward.services.identity.core.sessions.open(
            conn,
            account_id=staff.id,
            role=staff.role,
            factors="password+totp",
            now=clock.now_micros(),
            keyed=True,
        )
    return _bearer(opened.access_token)


def _with_key(ward: Ward) -> SoftKey:
    key = SoftKey()
    _register(ward.client, open_session(ward.services, ward.clinician), key)
    return key


def test_a_thief_signed_in_with_the_totp_code_is_asked_for_the_key_at_its_first_refusal(
    ward: Ward,
) -> None:
    key = _with_key(ward)
    stranger = patient(ward.services)  # no care relationship with the clinician
    thief = login(ward.client, ward.clinician)  # password + TOTP, through the API
    row = _latest_session(ward, ward.clinician.id)
    assert row.keyed
    assert row.key_at == 0
    assert read(ward.client, thief, ward.patients[0]) == 200  # its own scope, before anything
    refused = ward.client.get(f"/fhir/Patient/{stranger}", headers=thief)
    assert refused.status_code == 403
    assert "security key" in refused.json()["issue"][0]["diagnostics"]
    # From now on nothing, not even the holder's own patients, and no way round it.
    assert read(ward.client, thief, ward.patients[1]) == 403
    code = ward.client.post("/auth/step-up", headers=thief, json={"code": "123456"})
    assert code.status_code == 403
    assert code.json()["resourceType"] == "OperationOutcome"
    assert "security key" in code.json()["issue"][0]["diagnostics"]
    body = {"patient": f"Patient/{stranger}", "reason": REASON}
    glass = ward.client.post("/access/break-glass", headers=thief, json=body)
    assert glass.status_code == 403
    again = _unconfirmed_session(ward)  # signing in again with the code does not help
    assert read(ward.client, again, ward.patients[2]) == 403
    for other in second_process(ward.settings):  # nor another server process
        assert read(other, again, ward.patients[3]) == 403
    # The holder, signed in with the key, works on; a refusal to it is an ordinary "no".
    holder = _key_login(ward.client, ward.clinician.username, ward.clinician.password, key)
    assert read(ward.client, holder, ward.patients[4]) == 200
    other_stranger = ward.client.get(f"/fhir/Patient/{patient(ward.services)}", headers=holder)
    assert other_stranger.status_code == 403
    assert "security key" not in other_stranger.text
    assert read(ward.client, holder, ward.patients[5]) == 200
    officer = open_session(ward.services, ward.officer)
    (alert,) = guard_alerts(ward, officer, "guard-unconfirmed")
    assert "signed in without its security key" in alert["message"]
    assert f"Patient/{stranger}" in alert["message"]
    assert alert["details"]["response"] == "step-up"


def test_the_key_presented_where_it_was_asked_lifts_the_hold(ward: Ward) -> None:
    key = _with_key(ward)
    forgot = _unconfirmed_session(ward)  # the holder, key left at home, signed in with the code
    other = _unconfirmed_session(ward)
    assert read(ward.client, forgot, patient(ward.services)) == 403
    assert read(ward.client, other, ward.patients[0]) == 403
    assert _key_step_up(ward.client, forgot, key).status_code == 200
    assert read(ward.client, forgot, ward.patients[0]) == 200
    assert read(ward.client, other, ward.patients[1]) == 200


def test_a_security_officer_release_lifts_the_hold(ward: Ward) -> None:
    _with_key(ward)
    thief = _unconfirmed_session(ward)
    assert read(ward.client, thief, patient(ward.services)) == 403
    assert read(ward.client, thief, ward.patients[0]) == 403
    officer = open_session(ward.services, ward.officer)
    released = ward.client.post(
        f"/security/accounts/{ward.clinician.id}/unlock",
        headers=officer,
        json={"reason": "the holder confirmed on the phone that the refusal was theirs"},
    )
    assert released.status_code == 200, released.text
    assert read(ward.client, thief, ward.patients[0]) == 200


def test_accounts_without_a_key_keep_the_refusal_as_an_ordinary_no(ward: Ward) -> None:
    headers = login(ward.client, ward.outsider)
    assert _latest_session(ward, ward.outsider.id).keyed is False
    assert read(ward.client, headers, ward.patients[0]) == 403
    assert read(ward.client, headers, patient(ward.services)) == 403
    mine = ward.client.get("/fhir/Organization", headers=headers)
    assert mine.status_code == 200
    assert ward.outsider.role == Role.CLINICIAN


def test_a_session_whose_account_lost_its_key_confirms_with_the_code(ward: Ward) -> None:
    _with_key(ward)
    headers = _unconfirmed_session(ward)
    with ward.services.engine.begin() as conn:  # the key disabled (found cloned, say)
        conn.execute(
            update(webauthn_credential)
            .where(webauthn_credential.c.account_id == ward.clinician.id)
            .values(disabled_at=clock.now_micros())
        )
    code = pyotp.TOTP(ward.clinician.totp_secret).now()
    stepped = ward.client.post("/auth/step-up", headers=headers, json={"code": code})
    assert stepped.status_code == 200, stepped.text
    assert _latest_session(ward, ward.clinician.id).keyed is False
    assert read(ward.client, headers, patient(ward.services)) == 403  # an ordinary "no"
    assert read(ward.client, headers, ward.patients[0]) == 200
