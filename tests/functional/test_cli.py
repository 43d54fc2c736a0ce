"""The command line: init is idempotent, seed is deterministic, start-up refuses without a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from rempart.access.pdp import system_decision
from rempart.config import load_settings
from rempart.store.tables import resource
from rempart.wiring import open_services


def rempart(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rempart.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.mark.parametrize("command", ["init", "serve", "demo", "seed", "import", "login"])
def test_every_command_has_help(command: str) -> None:
    result = rempart(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_init_is_idempotent_and_keeps_the_key(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "h"
    first = rempart("--home", str(home), "--database", database_url, "init")
    assert first.returncode == 0, first.stderr
    key_file = home / "keys.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    second = rempart("--home", str(home), "--database", database_url, "init")
    assert second.returncode == 0, second.stderr
    assert key_file.read_bytes() == key
    assert 'profile = "production"' in (home / "config.toml").read_text()


def _snapshot(home: Path, url: str) -> dict[str, str]:
    services = open_services(load_settings(home, url), pool_size=1)
    # The whole store, as the operator sees it (no clinician may read it all since #4).
    decision = system_decision("test: compare the stored records")
    try:
        with services.engine.connect() as conn:
            rows = conn.execute(select(resource.c.res_type, resource.c.res_id)).all()
        out = {}
        for row in rows:
            body = services.store.read(decision, row.res_type, row.res_id).json()
            body["meta"].pop("lastUpdated")
            out[f"{row.res_type}/{row.res_id}"] = json.dumps(body, sort_keys=True)
        return out
    finally:
        services.close()


def test_seed_is_deterministic_and_writes_credentials(tmp_path: Path) -> None:
    snapshots = []
    for name in ("a", "b"):
        home = tmp_path / name
        creds = tmp_path / f"{name}.json"
        result = rempart(
            "--home",
            str(home),
            "seed",
            "--patients",
            "12",
            "--seed",
            "42",
            "--credentials-out",
            str(creds),
        )
        assert result.returncode == 0, result.stderr
        assert creds.stat().st_mode & 0o777 == 0o600
        doc = json.loads(creds.read_text())
        assert "demo" in doc["warning"].lower()
        roles = [a["role"] for a in doc["accounts"]]
        assert roles.count("admin") >= 2
        assert roles.count("security_officer") >= 1
        assert roles.count("secretary") == 2
        assert roles.count("patient") == 5
        for account in doc["accounts"]:
            assert set(account) >= {
                "username",
                "password",
                "totp_secret",
                "role",
                "practitioner",
                "patient",
            }
        assert 'profile = "demo"' in (home / "config.toml").read_text()
        snapshots.append(_snapshot(home, f"sqlite:///{home / 'rempart.sqlite3'}"))
    assert snapshots[0] == snapshots[1]
    assert sum(k.startswith("Patient/") for k in snapshots[0]) == 12


def test_serve_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert rempart("--home", str(home), "init").returncode == 0
    key_file = home / "keys.json"
    key_file.chmod(0o644)
    wide = rempart("--home", str(home), "serve", "--port", "1")
    assert wide.returncode == 2
    assert "chmod" in wide.stderr
    key_file.unlink()
    missing = rempart("--home", str(home), "serve", "--port", "1")
    assert missing.returncode == 2
    assert "keys.json" in missing.stderr


def test_serve_refuses_an_uninitialised_database(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert rempart("--home", str(home), "init").returncode == 0
    other = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    result = rempart("--home", str(home), "--database", other, "serve", "--port", "1")
    assert result.returncode == 2
    assert "rempart init" in result.stderr


def test_import_reports_rejections(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert rempart("--home", str(home), "init").returncode == 0
    ndjson = tmp_path / "mixed.ndjson"
    ndjson.write_text(
        "\n".join(
            [
                json.dumps({"resourceType": "Organization", "id": "org-1", "name": "Clinique"}),
                "{broken",
                json.dumps({"resourceType": "Patient", "id": "p1", "gender": "sometimes"}),
                json.dumps(
                    {
                        "resourceType": "Patient",
                        "id": "p2",
                        "managingOrganization": {"reference": "Organization/org-1"},
                    }
                ),
                json.dumps(
                    {
                        "resourceType": "Patient",
                        "id": "p3",
                        "managingOrganization": {"reference": "Organization/missing"},
                    }
                ),
            ]
        )
    )
    result = rempart("--home", str(home), "import", str(ndjson))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["imported"] == {"Organization": 1, "Patient": 1}
    reasons = {r["source"]: r["reason"] for r in summary["rejected"]}
    assert set(reasons) == {"mixed.ndjson:2", "mixed.ndjson:3", "mixed.ndjson:5"}
    assert "does not exist" in reasons["mixed.ndjson:5"]
