"""The HSM PIN comes from an environment variable or a 0600 file, never from config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from rempart.crypto import KeyProviderUnavailable
from rempart.crypto.providers import read_pin


def test_pin_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PIN", "12-34")
    assert read_pin("SOME_PIN", "") == "12-34"
    monkeypatch.delenv("SOME_PIN")
    with pytest.raises(KeyProviderUnavailable, match="SOME_PIN, which is not set"):
        read_pin("SOME_PIN", "")


def test_pin_from_a_private_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin = tmp_path / "pin"
    pin.write_text("56-78\n")
    pin.chmod(0o600)
    monkeypatch.setenv("SOME_PIN", "ignored")
    assert read_pin("SOME_PIN", str(pin)) == "56-78"  # the file wins, trailing newline dropped
    pin.chmod(0o640)
    with pytest.raises(KeyProviderUnavailable, match=r"mode 0640.*chmod 600"):
        read_pin("", str(pin))
    pin.write_text("\n")
    pin.chmod(0o400)
    with pytest.raises(KeyProviderUnavailable, match="is empty"):
        read_pin("", str(pin))
    with pytest.raises(KeyProviderUnavailable, match="cannot read the HSM PIN file"):
        read_pin("", str(tmp_path / "missing"))
