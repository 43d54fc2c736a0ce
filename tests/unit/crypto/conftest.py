"""Fixtures for the crypto tests: key files and a shared SoftHSM2 token."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/softhsm.py is a shared helper, not a package module; make tests/ importable.
_TESTS_DIR = str(Path(__file__).resolve().parents[2])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from rempart.crypto import FileKeyProvider, Pkcs11KeyProvider  # noqa: E402
from softhsm import SoftHsmToken, softhsm_token  # noqa: E402

__all__ = ["softhsm_token"]  # re-exported so pytest registers the fixture here


@pytest.fixture
def key_file(tmp_path: Path) -> FileKeyProvider:
    return FileKeyProvider.create(tmp_path / "data" / "keys.json")


@pytest.fixture
def kek_prefix() -> str:
    # Every test gets its own label prefix, so KEKs from other tests on the shared token are
    # invisible to it (rotation tests count KEKs).
    return f"t{uuid.uuid4().hex[:12]}-kek"


@pytest.fixture
def hsm(softhsm_token: SoftHsmToken, kek_prefix: str) -> Iterator[Pkcs11KeyProvider]:
    provider = Pkcs11KeyProvider(
        softhsm_token.library_path,
        softhsm_token.token_label,
        softhsm_token.pin,
        key_label_prefix=kek_prefix,
    )
    provider.create_kek()
    try:
        yield provider
    finally:
        provider.close()
