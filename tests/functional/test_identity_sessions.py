"""Sessions end when they should, on the next request: logout, password change, factor change,
lock, revoke-all, idle and absolute lifetimes per role. Recovery codes, password changes,
Argon2 upgrades on login, the audit trail, and bad input."""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select, update

from rempart.access.roles import Role
from rempart.clock import SimulatedTime
from rempart.identity.tables import account
from tests.unit.identity.harness import FAST_ARGON2, Stack, bearer, stack_fixture

stack = stack_fixture()


def _works(stack: Stack, token: str) -> bool:
    status = stack.client().get("/fhir/Organization", headers=bearer(token)).status_code
    assert status in (200, 401)
    return status == 200


def test_password_change_ends_other_sessions_and_enforces_the_policy(stack: Stack) -> None:
    user = stack.user()
    one, two = stack.login(user), stack.login(user)
    weak = stack.client().post(
        "/auth/password",
        headers=bearer(one),
        json={"current_password": user.password, "new_password": "motdepasse2024!!"},
    )
    assert weak.status_code == 400
    assert "attackers try first" in weak.json()["issue"][0]["diagnostics"]
    wrong = stack.client().post(
        "/auth/password",
        headers=bearer(one),
        json={"current_password": "not it at all", "new_password": "violet tractor sings at dawn"},
    )
    assert wrong.status_code == 401
    ok = stack.client().post(
        "/auth/password",
        headers=bearer(one),
        json={"current_password": user.password, "new_password": "violet tractor sings at dawn"},
    )
    assert ok.status_code == 200
    assert _works(stack, one)
    assert not _works(stack, two)
    assert ("password-change", "success") in stack.audit.actions(user.account_id)


def test_factor_change_lock_and_revoke_all_take_effect_on_the_next_request(stack: Stack) -> None:
    user = stack.user()
    with SimulatedTime() as later:
        # Three sign-ins take three TOTP steps: the clock moves to the third (a test would
        # otherwise wait up to 30 s for it).
        one, two = stack.login(user), stack.login(user)
        later.advance(30)
        three = stack.login(user)
    assert (
        stack.client().post("/auth/factors/recovery-codes", headers=bearer(one)).status_code == 200
    )
    assert _works(stack, one)
    assert not _works(stack, two)
    assert not _works(stack, three)
    stack.identity.revoke_all_sessions(user.account_id, by="s.officer")
    assert not _works(stack, one)
    other = stack.user()  # a fresh account: three logins used this one's TOTP steps
    four = stack.login(other)
    stack.identity.lock(other.account_id, by="s.officer", reason="laptop stolen")
    assert not _works(stack, four)
    assert (
        stack.client()
        .post("/auth/login", json={"username": other.username, "password": other.password})
        .status_code
        == 403
    )
    assert ("session-revoke", "success") in stack.audit.actions(user.account_id)
    assert ("lock", "success") in stack.audit.actions(other.account_id)


def test_logout_and_sign_out_everywhere(stack: Stack) -> None:
    user = stack.user()
    one, two = stack.login(user), stack.login(user)
    assert stack.client().post("/auth/logout", headers=bearer(one)).status_code == 200
    assert not _works(stack, one)
    assert _works(stack, two)
    assert stack.client().post("/auth/sessions/revoke-all", headers=bearer(two)).json() == {
        "revoked": 1
    }
    assert not _works(stack, two)
    assert ("logout", "success") in stack.audit.actions(user.account_id)


def test_idle_and_absolute_lifetimes_per_role(stack: Stack) -> None:
    clinician = stack.user(Role.CLINICIAN)
    token = stack.login(clinician)
    stack.clock.advance(29 * 60)
    assert _works(stack, token)  # 29 min idle: still fine for a clinician, and it is touched
    for _ in range(23):  # keep it busy: 24 x 29 min = 11 h 36 min in all
        stack.clock.advance(29 * 60)
        assert _works(stack, token)
    stack.clock.advance(29 * 60)  # past 12 hours: over, however busy
    assert not _works(stack, token)
    other = stack.login(clinician)
    stack.clock.advance(31 * 60)
    assert not _works(stack, other)
    # Security officers (like administrators): 15 minutes idle. Their production factor is a
    # key, so the session is opened directly here; the idle rule is the same code path.
    officer = stack.user(Role.SECURITY_OFFICER)
    with stack.services.engine.begin() as conn:
        opened = stack.identity.core.sessions.open(
            conn,
            account_id=officer.account_id,
            role=Role.SECURITY_OFFICER,
            factors="password+webauthn",
            now=stack.clock.now,
        )
    stack.clock.advance(14 * 60)
    assert _works(stack, opened.access_token)
    stack.clock.advance(16 * 60)
    assert not _works(stack, opened.access_token)


def test_recovery_codes_work_once_each(stack: Stack) -> None:
    user = stack.user()
    token = stack.login(user)
    codes = (
        stack.client().post("/auth/factors/recovery-codes", headers=bearer(token)).json()["codes"]
    )
    assert len(set(codes)) == 10
    challenge = stack.challenge(user)
    assert "recovery" in challenge["methods"]
    used = stack.client().post(
        "/auth/mfa", json={"mfa_token": challenge["mfa_token"], "recovery_code": codes[0].lower()}
    )
    assert used.status_code == 200
    again = stack.client().post(
        "/auth/mfa",
        json={"mfa_token": stack.challenge(user)["mfa_token"], "recovery_code": codes[0]},
    )
    assert again.status_code == 401
    with stack.services.engine.connect() as conn:
        from rempart.identity.tables import recovery_code

        stored = conn.execute(select(recovery_code.c.digest)).scalars().all()
    assert all(code.encode() not in bytes(d) for d in stored for code in codes)


def test_an_older_argon2_hash_is_upgraded_at_the_next_login(stack: Stack) -> None:
    user = stack.user()
    old = PasswordHasher(time_cost=2, memory_cost=FAST_ARGON2.memory_kib - 1024, parallelism=1)
    with stack.services.engine.begin() as conn:
        conn.execute(
            update(account)
            .where(account.c.id == user.account_id)
            .values(password_hash=old.hash(user.password))
        )
    stack.challenge(user)
    with stack.services.engine.connect() as conn:
        upgraded = conn.execute(
            select(account.c.password_hash).where(account.c.id == user.account_id)
        ).scalar_one()
    assert f"m={FAST_ARGON2.memory_kib},t=2,p=1" in upgraded
    assert upgraded.startswith("$argon2id$")


def test_every_sign_in_event_is_audited_without_the_attempted_secret(stack: Stack) -> None:
    user = stack.user()
    stack.client().post("/auth/login", json={"username": user.username, "password": "nope" * 5})
    stack.client().post("/auth/login", json={"username": "hunter2hunter2", "password": "x"})
    stack.login(user)
    actions = stack.audit.actions()
    assert ("login", "failed") in actions
    assert ("login", "success") in actions
    assert ("mfa", "success") in actions
    for record in stack.audit.records:
        text = repr(record)
        assert "hunter2hunter2" not in text
        assert "nopenope" not in text
        assert record.ip == "10.1.2.3"


def test_bad_input_gets_clean_4xx(stack: Stack) -> None:
    client = stack.client()
    user = stack.user()
    token = stack.challenge(user)["mfa_token"]
    cases = [
        client.post(
            "/auth/login", content=b"x" * 70_000, headers={"Content-Type": "application/json"}
        ),
        client.post("/auth/login", content=b"{}", headers={"Content-Type": "text/plain"}),
        client.post("/auth/mfa", json={"mfa_token": token}),
        client.post("/auth/mfa", json={"mfa_token": token, "code": "123456", "recovery_code": "x"}),
        client.post("/auth/mfa", json={"mfa_token": token, "webauthn": {"k": "v" * 5000}}),
        client.post("/auth/step-up", json={"code": "123456"}),
        client.post("/auth/mfa", json={"mfa_token": "expired-or-made-up", "code": "123456"}),
        client.get("/auth/oidc/nowhere/start"),
        client.get("/auth/oidc/nowhere/callback?code=a&state=b"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    stack.clock.advance(6 * 60)  # the challenge expired
    late = client.post("/auth/mfa", json={"mfa_token": token, "code": user.code()})
    assert late.status_code == 401
