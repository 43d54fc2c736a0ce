"""`rempart identity ...`: the operator unlocks, ends sessions, and hands out enrolment codes;
`rempart init` alone is the production profile."""

from __future__ import annotations

from pathlib import Path

import pyotp

from rempart.access.roles import Role
from rempart.config import load_settings
from rempart.wiring import open_services
from tests.functional.test_cli import rempart


def test_identity_commands_on_a_production_home(tmp_path: Path) -> None:
    home = tmp_path / "prod"
    url = f"sqlite:///{tmp_path / 'prod.sqlite3'}"
    assert rempart("--home", str(home), "--database", url, "init").returncode == 0
    settings = load_settings(home, url)
    assert settings.profile == "production"
    services = open_services(settings, pool_size=1)
    try:
        admin = services.identity.create_account(
            username="a.martin",
            password="the orange lighthouse hums quietly",
            role=Role.ADMIN,
            display_name="Agathe MARTIN",
            totp_secret=pyotp.random_base32(),
        )
        services.identity.lock(admin, by="test", reason="lost badge")
    finally:
        services.close()
    base = ("--home", str(home), "--database", url, "identity")
    unlocked = rempart(*base, "unlock", "--user", "a.martin", "--by", "ops", "--reason", "found")
    assert unlocked.returncode == 0, unlocked.stderr
    revoked = rempart(*base, "revoke-sessions", "--user", "a.martin", "--by", "ops")
    assert revoked.returncode == 0
    assert "0 sessions" in revoked.stderr
    code = rempart(*base, "enrol-code", "--user", "a.martin", "--by", "ops", "--reset")
    assert code.returncode == 0, code.stderr
    assert len(code.stdout.strip()) >= 20
    missing = rempart(*base, "unlock", "--user", "nobody", "--by", "ops", "--reason", "x")
    assert missing.returncode == 2
