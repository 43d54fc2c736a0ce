"""config.toml: switching the profile keeps what a hospital wrote."""

from __future__ import annotations

import tomllib
from pathlib import Path

from rempart.config import load_settings, set_profile, write_config


def test_set_profile_keeps_other_sections(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    write_config(settings)
    path = tmp_path / "config.toml"
    path.write_text(path.read_text() + "\n[identity.argon2]\ntime_cost = 3\n", encoding="utf-8")
    set_profile(tmp_path, "demo")
    data = tomllib.loads(path.read_text())
    assert data["profile"] == "demo"
    assert data["identity"]["argon2"]["time_cost"] == 3
    assert data["key_provider"]["kind"] == "file"
    assert load_settings(tmp_path).profile == "demo"


def test_set_profile_when_file_starts_with_a_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[key_provider]\nkind = "file"\n', encoding="utf-8")
    set_profile(tmp_path, "demo")
    data = tomllib.loads(path.read_text())
    assert data == {"profile": "demo", "key_provider": {"kind": "file"}}
