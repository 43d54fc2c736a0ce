"""Throttling and lockout over HTTP: per username (delay after 10, lock after 100), per address
and network (429 + Retry-After, shared by every process through the database), and a
credential-stuffing run slowed to a crawl with an alert for the security officer."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from rempart.alerts import security_alert
from rempart.identity.service import IdentityService
from rempart.identity.settings import ThrottleLimits
from rempart.store.keyring import DIRECTORY_OWNER
from tests.unit.identity.harness import Stack, bearer, stack_fixture

stack = stack_fixture()
small_windows = stack_fixture(
    throttle=ThrottleLimits(ip_failures=20, network_failures=50, ip_attempts=60)
)
# A third of the default network quota, so the run below hashes 100 guesses, not 300.
stuffing = stack_fixture(throttle=ThrottleLimits(network_failures=100))


def _attempt(stack: Stack, username: str, password: str, ip: str = "10.1.2.3") -> int:
    response = stack.client(ip).post(
        "/auth/login", json={"username": username, "password": password}
    )
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["resourceType"] == "OperationOutcome"
    return response.status_code


def test_ten_failures_bring_an_increasing_delay_and_need_a_second_factor(stack: Stack) -> None:
    user = stack.user()
    for _ in range(10):
        assert _attempt(stack, user.username, "wrong password wrong") == 401
    # The 11th attempt right away waits, even with the right password.
    assert _attempt(stack, user.username, user.password) == 429
    stack.clock.advance(1.1)
    challenge = stack.challenge(user)  # the password alone still opens nothing
    assert challenge["mfa_required"] is True
    # The count is not reset by the password: each further failure doubles the wait.
    assert _attempt(stack, user.username, "wrong password wrong") == 429
    stack.clock.advance(2.1)
    assert _attempt(stack, user.username, "wrong password wrong") == 401  # 11 failures: 2 s
    stack.clock.advance(2.1)
    assert _attempt(stack, user.username, "wrong password wrong") == 401  # 12 failures: 4 s
    stack.clock.advance(2.1)
    assert _attempt(stack, user.username, "wrong password wrong") == 429
    # A completed second factor resets it.
    stack.clock.advance(4.1)
    token = stack.challenge(user)["mfa_token"]
    ok = stack.client().post("/auth/mfa", json={"mfa_token": token, "code": user.code()})
    assert ok.status_code == 200
    assert _attempt(stack, user.username, "wrong password wrong") == 401
    assert _attempt(stack, user.username, "wrong password wrong") == 401


def test_one_hundred_failures_lock_until_a_security_officer_unlocks(stack: Stack) -> None:
    user = stack.user()
    session = stack.login(user)
    for n in range(100):
        stack.clock.advance(16 * 60)  # past any delay; also keeps the IP windows empty
        assert _attempt(stack, user.username, f"wrong password {n:03d}", f"10.9.{n}.1") == 401
    # Locked: the right password is refused, and the live session ends at its next request.
    assert stack.client().get("/fhir/Organization", headers=bearer(session)).status_code == 401
    locked = stack.client().post(
        "/auth/login", json={"username": user.username, "password": user.password}
    )
    assert locked.status_code == 403
    assert "security officer" in locked.json()["issue"][0]["diagnostics"]
    # An unknown username gets exactly the same answers: locking reveals no account.
    for n in range(100):
        stack.clock.advance(16 * 60)
        _attempt(stack, "nobody.at.all", f"wrong password {n:03d}", f"10.8.{n}.1")
    ghost = stack.client().post(
        "/auth/login", json={"username": "nobody.at.all", "password": user.password}
    )
    assert (ghost.status_code, ghost.json()) == (locked.status_code, locked.json())
    assert ("lockout", "success") in stack.audit.actions(user.account_id)
    stack.identity.unlock(user.account_id, "s.officer", "called the ward, it was her")
    assert stack.login(user)
    assert ("unlock", "success") in stack.audit.actions(user.account_id)


def test_per_address_window_answers_429_with_retry_after(small_windows: Stack) -> None:
    stack = small_windows
    for n in range(20):
        assert _attempt(stack, f"user{n}", "wrong password wrong", "192.0.2.10") == 401
    response = stack.client("192.0.2.10").post(
        "/auth/login", json={"username": "user99", "password": "wrong password wrong"}
    )
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 15 * 60
    # Another address of another network is not affected...
    assert _attempt(stack, "user0", "wrong password wrong", "198.51.100.7") == 401
    # ...and the window moves: once it has passed, the address may try again.
    stack.clock.advance(15 * 60 + 1)
    assert _attempt(stack, "user0", "wrong password wrong", "192.0.2.10") == 401


def test_the_limit_holds_across_server_processes(small_windows: Stack) -> None:
    """A second IdentityService on its own engine (as another worker process would have)."""
    stack = small_windows
    from rempart.store.db import make_engine

    other_engine = make_engine(stack.services.settings.database_url, pool_size=1)
    try:
        other = IdentityService(
            other_engine,
            stack.services.keyring.ensure(DIRECTORY_OWNER),
            audit=stack.audit,
            config=stack.services.settings.identity,
            clock=stack.clock,
        )
        from rempart.context import RequestContext
        from rempart.identity.errors import LoginFailed, Throttled

        ctx = RequestContext(ip="203.0.113.9", user_agent="worker-2")
        for n in range(10):
            with pytest.raises(LoginFailed):
                other.login(f"user{n}", "wrong password wrong", ctx)
        for n in range(10):
            assert _attempt(stack, f"user{n}", "wrong password wrong", "203.0.113.9") == 401
        assert _attempt(stack, "user1", "wrong password wrong", "203.0.113.9") == 429
        with pytest.raises(Throttled) as refused:
            other.login("user1", "wrong password wrong", ctx)
        assert refused.value.retry_after >= 1
    finally:
        other_engine.dispose()


def test_credential_stuffing_is_slowed_to_a_crawl_and_raises_an_alert(stuffing: Stack) -> None:
    """1,000 usernames x 3 passwords from one /24, spread over its addresses."""
    stack = stuffing
    victim = stack.user()
    checked = refused = 0
    start = time.perf_counter()
    for attempt in range(3_000):
        username = victim.username if attempt == 2_999 else f"agent.{attempt % 1000:04d}"
        ip = f"198.51.100.{attempt % 250 + 1}"
        status = _attempt(stack, username, f"Summer2024!{attempt // 1000}x", ip)
        checked += status == 401
        refused += status == 429
    elapsed = time.perf_counter() - start
    limits = stack.services.settings.identity.throttle
    # At most the network's quota of guesses per 15-minute window reach a password check:
    # 3,000 guesses take 30 windows (7.5 hours) here, 10 (2.5 hours) with the default quota,
    # instead of the seconds they took unthrottled.
    assert checked == limits.network_failures
    assert refused == 3_000 - limits.network_failures
    for quota in (limits.network_failures, ThrottleLimits().network_failures):
        assert 3_000 / quota * limits.window_seconds >= 2.5 * 3600
    with stack.services.engine.connect() as conn:
        alerts = conn.execute(
            select(security_alert.c.kind, security_alert.c.details).where(
                security_alert.c.kind == "credential-stuffing"
            )
        ).all()
    assert len(alerts) == 1, alerts
    assert "198.51.100.0/24" in alerts[0].details
    # The victim, signing in from elsewhere, is not locked out by the attack.
    assert stack.login(victim, ip="172.20.1.5")
    print(f"credential stuffing: {checked} checked, {refused} refused in {elapsed:.1f} s")
