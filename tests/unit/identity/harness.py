"""A production-profile rempart with its own accounts, for identity tests (the seeded `hospital`
is in the demo profile and its accounts are shared). Argon2 runs at OWASP's floor to keep the
tests quick; the identity service gets a clock the test can move; audit records are collected
as well as written to the real log."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from rempart.access.roles import Role
from rempart.api.app import create_app
from rempart.audit.records import AuditRecord, AuditSink
from rempart.bootstrap import initialise
from rempart.clock import now_micros, now_seconds
from rempart.config import load_settings
from rempart.identity.service import IdentityService
from rempart.identity.settings import (
    Argon2Params,
    IdentityConfig,
    OidcProvider,
    SessionLimits,
    ThrottleLimits,
    WebAuthnSettings,
)
from rempart.store.keyring import DIRECTORY_OWNER
from rempart.wiring import Services, open_services
from tests.passwords import acceptable_password
from tests.unit.identity.softkey import ORIGIN, RP_ID

FAST_ARGON2 = Argon2Params(memory_kib=19 * 1024, time_cost=2, parallelism=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = now_micros()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


class Recording:
    """Forwards to the real audit log and keeps a copy for assertions."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self.records: list[AuditRecord] = []

    def record(self, *records: AuditRecord) -> None:
        self.sink.record(*records)
        self.records.extend(records)

    def actions(self, account_id: str | None = None) -> list[tuple[str, str]]:
        return [
            (r.action, r.outcome)
            for r in self.records
            if account_id is None or r.account_id == account_id
        ]


@dataclass
class User:
    account_id: str
    username: str
    password: str
    totp_secret: str | None
    role: Role
    last_step: int = -1

    def code(self) -> str:
        """A TOTP code of a step not used yet (current or next), waiting if both are. Never the
        previous step: the server accepts it only until the next boundary, which a slow request
        on a loaded machine can cross before the code is checked. Steps are read from the
        server's clock, which a test may move forward (`SimulatedTime`) rather than wait."""
        assert self.totp_secret
        while True:
            current = int(now_seconds() // 30)
            for step in (current, current + 1):
                if step > self.last_step:
                    self.last_step = step
                    return pyotp.TOTP(self.totp_secret).at(step * 30)
            time.sleep(0.5)


@dataclass
class Stack:
    services: Services
    clock: FakeClock
    audit: Recording
    app_client: TestClient
    clients: dict[str, TestClient] = field(default_factory=dict)

    @property
    def identity(self) -> IdentityService:
        return self.services.identity

    def client(self, ip: str = "10.1.2.3") -> TestClient:
        if ip not in self.clients:
            self.clients[ip] = TestClient(
                self.app_client.app, base_url="http://127.0.0.1", client=(ip, 40000)
            )
        return self.clients[ip]

    def user(self, role: Role = Role.CLINICIAN, *, totp: bool = True, **extra: Any) -> User:
        username = f"{role.value}.{secrets.token_hex(4)}"
        password = acceptable_password(username, f"Camille {username.upper()}", prefix="")
        secret = pyotp.random_base32() if totp else None
        account_id = self.identity.create_account(
            username=username,
            password=password,
            role=role,
            display_name=f"Camille {username.upper()}",
            totp_secret=secret,
            **extra,
        )
        return User(account_id, username, password, secret, role)

    def challenge(self, user: User, ip: str = "10.1.2.3") -> dict[str, Any]:
        response = self.client(ip).post(
            "/auth/login", json={"username": user.username, "password": user.password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def login(self, user: User, ip: str = "10.1.2.3") -> str:
        token = self.challenge(user, ip)["mfa_token"]
        response = self.client(ip).post("/auth/mfa", json={"mfa_token": token, "code": user.code()})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_stack(
    database_url: str,
    tmp_path: Path,
    *,
    profile: str = "production",
    throttle: ThrottleLimits | None = None,
    sessions: SessionLimits | None = None,
    oidc: tuple[OidcProvider, ...] = (),
) -> Iterator[Stack]:
    home = tmp_path / "identity-home"
    initialise(load_settings(home, database_url), profile="demo" if profile == "demo" else None)
    base = load_settings(home, database_url)
    config = IdentityConfig(
        argon2=FAST_ARGON2,
        throttle=throttle or ThrottleLimits(),
        sessions=sessions or SessionLimits(),
        webauthn=WebAuthnSettings(rp_id=RP_ID, origins=(ORIGIN,)),
        oidc=oidc,
    )
    settings = replace(base, identity=config)
    services = open_services(settings, pool_size=4)
    clock = FakeClock()
    recording = Recording(services.audit)
    services.identity = IdentityService(
        services.engine,
        services.keyring.ensure(DIRECTORY_OWNER),
        audit=recording,
        config=config,
        profile=settings.profile,
        clock=clock,
    )
    with TestClient(create_app(services), base_url="http://127.0.0.1") as client:
        stack = Stack(services, clock, recording, client)
        yield stack
        for extra in stack.clients.values():
            extra.close()


def stack_fixture(**options: Any) -> Callable[..., Iterator[Stack]]:
    """A per-test fixture on SQLite and PostgreSQL; assign it to a name in the test module."""

    @pytest.fixture
    def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
        yield from build_stack(database_url, tmp_path, **options)

    return stack
