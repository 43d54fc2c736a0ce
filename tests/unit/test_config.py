"""config.toml: switching the profile keeps what a hospital wrote; its other settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from rempart.config import load_settings, set_profile, write_config
from rempart.store.db import reads_on_loop


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


def test_reads_on_the_event_loop_is_a_checked_setting(tmp_path: Path) -> None:
    assert load_settings(tmp_path).reads_on_event_loop == "auto"
    path = tmp_path / "config.toml"
    path.write_text('reads_on_event_loop = "no"\n', encoding="utf-8")
    assert load_settings(tmp_path).reads_on_event_loop == "no"
    path.write_text('reads_on_event_loop = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="reads_on_event_loop must be one of auto, yes, no"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("url", "setting", "on_loop"),
    [
        ("sqlite:///rempart.sqlite3", "auto", True),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/rempart", "auto", True),
        ("postgresql+psycopg://postgres@localhost/rempart", "auto", True),
        ("postgresql+psycopg://postgres@[::1]:5432/rempart", "auto", True),
        ("postgresql+psycopg://postgres@/rempart?host=/var/run/postgresql", "auto", True),
        # A database across a network: a query's wait would hold every request of the loop.
        ("postgresql+psycopg://postgres@db.hopital.example:5432/rempart", "auto", False),
        ("postgresql+psycopg://postgres@10.1.2.3/rempart", "auto", False),
        ("postgresql+psycopg://postgres@/rempart?host=db.hopital.example", "auto", False),
        ("postgresql+psycopg://postgres@db.hopital.example/rempart", "yes", True),
        ("postgresql+psycopg://postgres@127.0.0.1/rempart", "no", False),
        ("sqlite:///rempart.sqlite3", "no", False),
    ],
)
def test_reads_run_on_the_loop_only_where_no_network_is_waited_on(
    url: str, setting: str, on_loop: bool
) -> None:
    engine = create_engine(url)
    try:
        assert reads_on_loop(engine, setting) is on_loop
    finally:
        engine.dispose()
