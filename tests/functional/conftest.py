"""A small seeded hospital per backend, served in-process, and logged-in clients.

Functional tests drive the real HTTP application (no mocks). TOTP codes are single use, so a
login per user per 30-second step is all the server allows: tokens are cached per user here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyotp
import pytest
from fastapi.testclient import TestClient

from rempart.api.app import create_app
from rempart.bootstrap import initialise
from rempart.config import Settings, load_settings
from rempart.ingest.seeding import seed_hospital
from rempart.wiring import Services, open_services
from tests.conftest import _server_url, drop_pg_database, fresh_pg_database

SEED_PATIENTS = 40


@dataclass
class Hospital:
    settings: Settings
    accounts: list[dict[str, Any]]
    client: TestClient
    _tokens: dict[str, str] = field(default_factory=dict)

    def account(self, role: str, index: int = 0) -> dict[str, Any]:
        return [a for a in self.accounts if a["role"] == role][index]

    def token(self, username: str) -> str:
        if username not in self._tokens:
            self._tokens[username] = login(self.client, self.by_name(username))
        return self._tokens[username]

    def by_name(self, username: str) -> dict[str, Any]:
        return next(a for a in self.accounts if a["username"] == username)

    def headers(self, role: str, index: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(self.account(role, index)['username'])}"}


def totp_code(secret: str, *, avoid_step: int | None = None) -> str:
    totp = pyotp.TOTP(secret)
    if avoid_step is not None:
        while int(time.time() // 30) <= avoid_step:
            time.sleep(0.2)
    return totp.now()


def login(client: TestClient, account: dict[str, Any]) -> str:
    first = client.post(
        "/auth/login", json={"username": account["username"], "password": account["password"]}
    )
    assert first.status_code == 200, first.text
    challenge = first.json()
    assert challenge["mfa_required"] is True
    assert "totp" in challenge["methods"]
    second = client.post(
        "/auth/mfa",
        json={"mfa_token": challenge["mfa_token"], "code": totp_code(account["totp_secret"])},
    )
    assert second.status_code == 200, second.text
    return str(second.json()["access_token"])


def relax_guard(services: Services) -> None:
    """This shared hospital serves tests that walk refusals, unknown ids and every patient on
    purpose (the policy's proofs): the guard would rightly contain those sessions. Its
    thresholds are set to their bounds here and the seed's decoys forgotten; the guard's own
    tests (`test_guard_*.py`) use their own databases, with the defaults and decoys."""
    from rempart.access.settings import definitions
    from rempart.access.tables import access_setting
    from rempart.guard.settings import guard_keys
    from rempart.guard.tables import guard_decoy

    defs = definitions()
    with services.engine.begin() as conn:
        conn.execute(guard_decoy.delete())
        for key in guard_keys():
            if key.startswith("guard.response."):
                continue
            bound = defs[key].low if key.endswith("_start_hour") else defs[key].high
            conn.execute(
                access_setting.insert().values(key=key, value=str(bound), changed=0, request_id="t")
            )
    services.policy.settings.invalidate()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hospital(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hospital]:
    home = tmp_path_factory.mktemp(f"hospital-{request.param}")
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'rempart.sqlite3'}"
    else:
        admin: psycopg.Connection = request.getfixturevalue("pg_admin")
        name = fresh_pg_database(admin, request.getfixturevalue("pg_template"))
        url = _server_url(name)
    initialise(load_settings(home, url), profile="demo")
    settings = load_settings(home, url)
    services = open_services(settings, pool_size=4)
    credentials = home / "credentials.json"
    seed_hospital(services, patients=SEED_PATIENTS, seed=7, credentials_out=credentials)
    relax_guard(services)
    accounts = json.loads(Path(credentials).read_text())["accounts"]
    with TestClient(create_app(services), base_url="http://127.0.0.1") as client:
        yield Hospital(settings, accounts, client)
    services.close()
    if name is not None:
        drop_pg_database(admin, name)
