"""A private SoftHSM2 token for tests, and the pytest fixture that provides it.

SoftHSM reads ``SOFTHSM2_CONF`` when the module is initialised, and python-pkcs11's
``pkcs11.lib(path)`` loads and initialises a module once per process. So the fixture is
session-scoped: it writes its own configuration under a temporary directory, points
``SOFTHSM2_CONF`` at it *before* anything loads the module, and every PKCS#11 test of the run
shares that one token (tests keep apart by using their own key-label prefix).

Use it from a conftest with ``from softhsm import softhsm_token`` (with ``tests/`` on
``sys.path``). Without the Debian package ``softhsm2`` the fixture skips the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SKIP_MESSAGE = "install Debian package softhsm2 to run the PKCS#11 tests"

# Where distributions put the module; the first two are Debian's (the first is a symlink).
LIBRARY_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
LIBRARY_ENV = "REMPART_TEST_PKCS11_LIBRARY"  # overrides the search, e.g. for a real HSM's module

TOKEN_LABEL = "rempart-test"
USER_PIN = "4242-test-pin"
SO_PIN = "9999-test-so-pin"


@dataclass(frozen=True)
class SoftHsmToken:
    library_path: str
    token_label: str
    pin: str
    so_pin: str
    conf_path: Path
    token_dir: Path


def find_library() -> str | None:
    """The SoftHSM2 PKCS#11 module, or None."""
    override = os.environ.get(LIBRARY_ENV)
    candidates = (override,) if override else LIBRARY_CANDIDATES
    return next((path for path in candidates if path and os.path.isfile(path)), None)


def init_token(base: Path, library_path: str, label: str = TOKEN_LABEL) -> SoftHsmToken:
    """Create ``base/tokens`` and ``base/softhsm2.conf`` and initialise one token there."""
    util = shutil.which("softhsm2-util")
    if util is None:
        raise FileNotFoundError("softhsm2-util")
    token_dir = base / "tokens"
    token_dir.mkdir(parents=True, mode=0o700)
    conf_path = base / "softhsm2.conf"
    conf_path.write_text(
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n",
        encoding="utf-8",
    )
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf_path)},
        check=True,
        capture_output=True,
        text=True,
    )
    return SoftHsmToken(library_path, label, USER_PIN, SO_PIN, conf_path, token_dir)


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    """One initialised SoftHSM2 token for the whole test session (see module docstring)."""
    library = find_library()
    if library is None or shutil.which("softhsm2-util") is None:
        pytest.skip(SKIP_MESSAGE)
    loaded = sys.modules.get("pkcs11")
    if loaded is not None and getattr(loaded, "_loaded", {}):
        # Someone initialised a PKCS#11 module already, under another SOFTHSM2_CONF; our
        # token would be invisible. Fail loudly rather than test the wrong token.
        pytest.fail("a PKCS#11 module was loaded before the softhsm_token fixture ran")
    token = init_token(tmp_path_factory.mktemp("softhsm"), library)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf_path)
    try:
        yield token
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
