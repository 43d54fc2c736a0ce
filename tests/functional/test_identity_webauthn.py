"""WebAuthn end to end with a software authenticator: registration, sign-in, step-up, the
production rule for administrators, and the attacks (cloned key, replay, wrong origin or
challenge), each refused with the same 401."""

from __future__ import annotations

from typing import Any

from rempart.access.roles import Role
from tests.unit.identity.harness import Stack, User, bearer, stack_fixture
from tests.unit.identity.softkey import SoftKey

stack = stack_fixture()
demo_stack = stack_fixture(profile="demo")


def _register(stack: Stack, token: str, key: SoftKey, **kw: Any) -> int:
    client = stack.client()
    options = client.post("/auth/factors/webauthn/options", headers=bearer(token))
    assert options.status_code == 200, options.text
    credential = key.register(options.json(), **kw)
    response = client.post(
        "/auth/factors/webauthn",
        headers=bearer(token),
        json={"credential": credential, "label": "badge key"},
    )
    return response.status_code


def _key_login(stack: Stack, user: User, key: SoftKey, **kw: Any) -> Any:
    challenge = stack.challenge(user)
    assert "webauthn" in challenge["methods"]
    assertion = key.assertion(challenge["webauthn"], **kw)
    return stack.client().post(
        "/auth/mfa", json={"mfa_token": challenge["mfa_token"], "webauthn": assertion}
    )


def test_register_a_key_then_sign_in_with_it(stack: Stack) -> None:
    user = stack.user(Role.CLINICIAN)
    token = stack.login(user)
    key = SoftKey()
    assert _register(stack, token, key) == 200
    # Adding a factor ends the account's other sessions, not this one.
    assert stack.client().get("/fhir/Organization", headers=bearer(token)).status_code == 200
    response = _key_login(stack, user, key)
    assert response.status_code == 200, response.text
    session = response.json()["access_token"]
    assert stack.client().get("/fhir/Organization", headers=bearer(session)).status_code == 200
    actions = stack.audit.actions(user.account_id)
    assert ("factor-add", "success") in actions
    assert actions.count(("mfa", "success")) == 2


def test_a_cloned_key_is_refused_and_disabled(stack: Stack) -> None:
    user = stack.user(Role.SECRETARY)
    key = SoftKey()
    assert _register(stack, stack.login(user), key) == 200
    copy = key.clone()  # taken when the counter was 0
    for _ in range(3):
        assert _key_login(stack, user, key).status_code == 200  # counter now 3
    assert _key_login(stack, user, copy).status_code == 401  # the copy signs 1: went back
    # The credential is now disabled: even the genuine key no longer opens anything.
    challenge = stack.challenge(user)
    assert "webauthn" not in challenge["methods"]
    assert ("factor-disable", "success") in stack.audit.actions(user.account_id)


def test_replayed_wrong_origin_and_wrong_challenge_assertions_are_refused(stack: Stack) -> None:
    user = stack.user(Role.CLINICIAN)
    key = SoftKey()
    assert _register(stack, stack.login(user), key) == 200
    client = stack.client()
    bodies = set()
    # Phishing site: the browser reports its real origin, the key signs its rp id.
    for kw in ({"origin": "https://rempart-login.example"}, {"rp_id": "evil.example"}):
        response = _key_login(stack, user, key, **kw)
        assert response.status_code == 401
        bodies.add(response.text)
    # An assertion for another challenge.
    challenge = stack.challenge(user)
    other = key.assertion(None, challenge="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    response = client.post(
        "/auth/mfa", json={"mfa_token": challenge["mfa_token"], "webauthn": other}
    )
    assert response.status_code == 401
    bodies.add(response.text)
    # A good assertion, replayed on a second login.
    first = stack.challenge(user)
    good = key.assertion(first["webauthn"])
    assert (
        client.post(
            "/auth/mfa", json={"mfa_token": first["mfa_token"], "webauthn": good}
        ).status_code
        == 200
    )
    second = stack.challenge(user)
    replay = client.post("/auth/mfa", json={"mfa_token": second["mfa_token"], "webauthn": good})
    assert replay.status_code == 401
    bodies.add(replay.text)
    assert len(bodies) == 1, "every refusal is the same answer"
    # Garbage in the assertion is a clean 4xx too.
    junk = client.post(
        "/auth/mfa",
        json={"mfa_token": stack.challenge(user)["mfa_token"], "webauthn": {"id": 3}},
    )
    assert junk.status_code in (400, 401)


def test_production_admins_must_use_a_security_key(stack: Stack) -> None:
    admin = stack.user(Role.ADMIN)  # created with a TOTP secret, which production ignores
    challenge = stack.challenge(admin)
    assert challenge["methods"] == []
    refused = stack.client().post(
        "/auth/mfa", json={"mfa_token": challenge["mfa_token"], "code": admin.code()}
    )
    assert refused.status_code == 401
    # The way in: an enrolment code from the security officer opens a session that may only
    # register a key.
    code = stack.identity.issue_enrolment_code(admin.account_id, by="s.officer")
    enrol = stack.client().post(
        "/auth/mfa", json={"mfa_token": stack.challenge(admin)["mfa_token"], "enrolment_code": code}
    )
    assert enrol.status_code == 200
    assert enrol.json()["scope"] == "enrol"
    enrol_token = enrol.json()["access_token"]
    assert stack.client().get("/fhir/Organization", headers=bearer(enrol_token)).status_code == 401
    totp = stack.client().post("/auth/factors/totp", headers=bearer(enrol_token))
    assert totp.status_code == 403  # TOTP is not an administrator's factor in production
    key = SoftKey()
    assert _register(stack, enrol_token, key) == 200
    assert stack.client().get("/auth/factors", headers=bearer(enrol_token)).status_code == 401
    response = _key_login(stack, admin, key)
    assert response.status_code == 200
    assert "rempart-demo-mode" not in response.headers
    # The code was single use.
    again = stack.client().post(
        "/auth/mfa", json={"mfa_token": stack.challenge(admin)["mfa_token"], "enrolment_code": code}
    )
    assert again.status_code == 401


def test_demo_profile_lets_admins_use_totp_and_says_so(demo_stack: Stack) -> None:
    admin = demo_stack.user(Role.ADMIN)
    challenge = demo_stack.challenge(admin)
    assert "totp" in challenge["methods"]
    token = demo_stack.login(admin)
    response = demo_stack.client().get("/fhir/Organization", headers=bearer(token))
    assert response.status_code == 200
    assert "demo" in response.headers["rempart-demo-mode"]


def test_step_up_with_a_key_refreshes_factor_at(stack: Stack) -> None:
    user = stack.user(Role.CLINICIAN)
    token = stack.login(user)
    key = SoftKey()
    assert _register(stack, token, key) == 200
    before = stack.identity.authenticate(token).factor_at
    stack.clock.advance(10 * 60)  # the factor is no longer fresh
    assert (
        stack.client().post("/auth/factors/recovery-codes", headers=bearer(token)).status_code
        == 403
    )
    options = stack.client().post("/auth/step-up/options", headers=bearer(token)).json()
    assertion = key.assertion(options["webauthn"])
    stepped = stack.client().post(
        "/auth/step-up", headers=bearer(token), json={"webauthn": assertion}
    )
    assert stepped.status_code == 200, stepped.text
    after = stack.identity.authenticate(token).factor_at
    assert after == stack.clock.now > before
    # The same assertion cannot step up twice.
    replay = stack.client().post(
        "/auth/step-up", headers=bearer(token), json={"webauthn": assertion}
    )
    assert replay.status_code == 401
    codes = stack.client().post("/auth/factors/recovery-codes", headers=bearer(token))
    assert codes.status_code == 200
    assert len(codes.json()["codes"]) == 10
