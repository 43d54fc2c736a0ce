"""Production key setup: `rempart init` with an HSM (SoftHSM2), and `rempart serve` refusing to
start, with a clear message and exit code 2, when the HSM cannot be used.

Every PKCS#11 use runs in a subprocess with its own SOFTHSM2_CONF, as a server would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.softhsm import SoftHsmToken, find_library, init_token

ROOT = Path(__file__).resolve().parents[2]
HSM_VARIABLES = ("REMPART_PKCS11_PIN", "SOFTHSM2_CONF")


@pytest.fixture
def token(tmp_path: Path) -> SoftHsmToken:
    library = find_library()
    if library is None:
        pytest.skip("install Debian package softhsm2 to run the PKCS#11 tests")
    return init_token(tmp_path / "hsm", library)


def rempart(
    home: Path, url: str, env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("REMPART_PKCS11_PIN", "SOFTHSM2_CONF")
    }
    return subprocess.run(
        [sys.executable, "-m", "rempart.cli", "--home", str(home), "--database", url, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**clean, **env},
        cwd=ROOT,
        timeout=timeout,
    )


def hsm_env(token: SoftHsmToken, pin: str | None = None) -> dict[str, str]:
    return {"SOFTHSM2_CONF": str(token.conf_path), "REMPART_PKCS11_PIN": pin or token.pin}


def init_pkcs11(home: Path, url: str, token: SoftHsmToken, *extra: str) -> None:
    done = rempart(
        home,
        url,
        hsm_env(token),
        "init",
        "--key-provider",
        "pkcs11",
        "--pkcs11-library",
        token.library_path,
        "--pkcs11-token",
        token.token_label,
        *extra,
    )
    assert done.returncode == 0, done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused(home: Path, url: str, env: dict[str, str]) -> str:
    """`rempart serve` must exit 2 before listening; returns what it said."""
    done = rempart(
        home, url, env, "serve", "--port", str(free_port()), "--workers", "1", timeout=60
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "rempart cannot start" in done.stderr
    return " ".join(done.stderr.split())


def test_init_with_an_hsm_then_serve(
    token: SoftHsmToken, database_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    init_pkcs11(home, database_url, token)
    config = (home / "config.toml").read_text()
    assert 'kind = "pkcs11"' in config
    assert 'pin_env = "REMPART_PKCS11_PIN"' in config
    assert token.pin not in config  # the PIN is never written down
    assert not (home / "keys.json").exists()
    status = rempart(home, database_url, hsm_env(token), "keys", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("rempart-kek-000001 (current): ")
    again = rempart(home, database_url, hsm_env(token), "init")  # idempotent: no second KEK
    assert again.returncode == 0, again.stderr
    assert rempart(home, database_url, hsm_env(token), "keys", "status").stdout == status.stdout

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k != "REMPART_PKCS11_PIN"}
    base = [sys.executable, "-m", "rempart.cli", "--home", str(home), "--database", database_url]
    server = subprocess.Popen(
        [*base, "serve", "--port", str(port), "--workers", "1"],
        env={**clean, **hsm_env(token)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert answer is not None, server.stderr.read() if server.stderr else "no output"
        assert answer.status_code == 200
        assert answer.json()["resourceType"] == "CapabilityStatement"
        # The server made its directory, search and guard (decoy tag) keys under the HSM's KEK.
        status = rempart(home, database_url, hsm_env(token), "keys", "status")
        assert status.stdout.strip() == "rempart-kek-000001 (current): 3 data keys"
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_serve_refuses_without_a_usable_hsm(token: SoftHsmToken, tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    init_pkcs11(home, url, token)

    said = refused(home, url, hsm_env(token, pin="0000-wrong"))
    assert f"token '{token.token_label}' rejected the PIN" in said

    said = refused(home, url, {"SOFTHSM2_CONF": str(token.conf_path)})
    assert "environment variable REMPART_PKCS11_PIN, which is not set" in said

    # The HSM is unreachable: the module finds no token of that label (another slot config).
    empty = init_token(tmp_path / "other-hsm", token.library_path, label="not-ours")
    said = refused(home, url, hsm_env(empty))
    assert f"no token labelled '{token.token_label}'" in said
    assert "not-ours" in said

    config = home / "config.toml"
    original = config.read_text()
    config.write_text(original.replace(token.library_path, "/nonexistent/libhsm.so"))
    said = refused(home, url, hsm_env(token))
    assert "PKCS#11 module /nonexistent/libhsm.so not found" in said

    config.write_text(original.replace('pin_env = "REMPART_PKCS11_PIN"', f'pin = "{token.pin}"'))
    said = refused(home, url, hsm_env(token))
    assert "must not be written in the configuration" in said


def test_pin_from_a_0600_file(token: SoftHsmToken, tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    pin_file.chmod(0o600)
    init_pkcs11(home, url, token, "--pkcs11-pin-file", str(pin_file))
    assert f'pin_file = "{pin_file}"' in (home / "config.toml").read_text()
    env = {"SOFTHSM2_CONF": str(token.conf_path)}  # no PIN in the environment
    status = rempart(home, url, env, "keys", "status")
    assert status.returncode == 0, status.stderr
    pin_file.chmod(0o644)
    said = refused(home, url, env)
    assert f"PIN file {pin_file} has mode 0644" in said
    assert f"chmod 600 {pin_file}" in said


def test_init_refuses_to_switch_an_initialised_home(token: SoftHsmToken, tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert rempart(home, url, {}, "init").returncode == 0
    switched = rempart(
        home,
        url,
        hsm_env(token),
        "init",
        "--key-provider",
        "pkcs11",
        "--pkcs11-library",
        token.library_path,
        "--pkcs11-token",
        token.token_label,
    )
    assert switched.returncode == 2
    assert "already initialised with the 'file' key provider" in " ".join(switched.stderr.split())
    lonely = rempart(home, url, {}, "init", "--pkcs11-token", "x")
    assert lonely.returncode == 2
    assert "need --key-provider pkcs11" in lonely.stderr
