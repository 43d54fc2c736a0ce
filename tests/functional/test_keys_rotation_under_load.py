"""`rempart keys rotate` under load: a separate server-like process keeps reading and writing
through the rotation and after the old KEK is retired, with zero failed operations.

Three processes, as in production: this test (the operator), a load process (a rempart server's
store: own key provider instance, own view of the KEK list) and the `rempart keys rotate` CLI.
Run on SQLite and PostgreSQL, with the key file and with a SoftHSM2 token.

The load process is this module run with `python -m` (see `load_main`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOAD_THREADS = 2
LOAD_MODULE = "tests.functional.test_keys_rotation_under_load"
MAX_LOAD_SECONDS = 240


def rempart(
    home: Path, url: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rempart.cli", "--home", str(home), "--database", url, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=300,
    )


def init_home(kind: str, url: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    if kind == "file":
        env: dict[str, str] = {}
        args: list[str] = []
    else:
        from tests.softhsm import find_library, init_token

        library = find_library()
        if library is None:
            pytest.skip("install Debian package softhsm2 to run the PKCS#11 tests")
        token = init_token(tmp_path / "hsm", library)
        env = {"SOFTHSM2_CONF": str(token.conf_path), "REMPART_PKCS11_PIN": token.pin}
        args = ["--key-provider", "pkcs11", "--pkcs11-library", library]
        args += ["--pkcs11-token", token.token_label]
    done = rempart(home, url, env, "init", *args)
    assert done.returncode == 0, done.stderr
    return home, env


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "pkcs11"])
def test_rotation_under_load_loses_no_request(kind: str, database_url: str, tmp_path: Path) -> None:
    home, env = init_home(kind, database_url, tmp_path)
    stop, out = tmp_path / "stop", tmp_path / "load.json"
    load = subprocess.Popen(
        [sys.executable, "-m", LOAD_MODULE, str(home), database_url, str(stop), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    try:
        assert load.stdout is not None
        ready = load.stdout.readline()
        assert ready.strip() == "ready", ready + (load.stderr.read() if load.stderr else "")
        time.sleep(1.0)
        before = rempart(home, database_url, env, "keys", "status")
        assert before.returncode == 0, before.stderr
        started = time.time()
        rotated = rempart(home, database_url, env, "keys", "rotate", "--batch-size", "25")
        ended = time.time()
        assert rotated.returncode == 0, rotated.stderr
        time.sleep(2.0)  # keep loading after the old KEK is gone
    finally:
        stop.touch()
        _, errors = load.communicate(timeout=120)
    assert load.returncode == 0, errors
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["failures"] == []
    during = [t for t in result["done_at"] if started <= t <= ended]
    assert len(during) >= 20, f"only {len(during)} operations ran during the rotation"
    assert result["creates_during_rotation_window"] >= 1 or len(during) >= 20
    assert result["final_check"]["unreadable"] == []
    assert result["final_check"]["read"] >= result["created"]

    (old_line,) = before.stdout.splitlines()
    old_kek = old_line.split()[0].rstrip(":")
    after = rempart(home, database_url, env, "keys", "status")
    assert after.returncode == 0, after.stderr
    (line,) = after.stdout.splitlines()  # one KEK left, holding every data key
    assert "(current)" in line
    assert "NOT HELD" not in line
    assert old_kek not in line
    assert f"retired {old_kek}" in rotated.stderr


# ---- the load process ---------------------------------------------------------------------


def _patient(rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": rng.choice(["Martin", "Bernard", "Petit", "Durand"])}],
        "birthDate": f"19{rng.randint(10, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
    }


def _observation(patient_id: str, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": rng.randint(50, 120), "unit": "/min"},
    }


def load_main(home: str, url: str, stop_file: str, out: str) -> None:
    """Read, create, update and search until `stop_file` appears; then check every record."""
    from rempart.access.pdp import system_decision
    from rempart.config import load_settings
    from rempart.crypto import BlindIndex
    from rempart.fhir import parse_search
    from rempart.store.db import make_engine
    from rempart.store.keyring import SEARCH_OWNER, Keyring
    from rempart.store.repository import ResourceStore
    from rempart.store.search import search
    from rempart.wiring import open_provider

    settings = load_settings(Path(home), url)
    provider = open_provider(settings)
    engine = make_engine(settings.database_url, pool_size=LOAD_THREADS + 2)
    # A key cache of a millisecond: nearly every operation unwraps its data key, under
    # whichever KEK its row names at that instant.
    keyring = Keyring(engine, provider, cache_seconds=0.001)
    store = ResourceStore(engine, keyring, BlindIndex(keyring.ensure(SEARCH_OWNER)))
    decision = system_decision("rotation load test")
    seed_rng = random.Random(1)
    shared = [store.create(decision, _patient(seed_rng)).res_id for _ in range(40)]
    created: list[tuple[str, str]] = [("Patient", pid) for pid in shared]
    failures: list[str] = []
    done_at: list[float] = []
    lock = threading.Lock()
    print("ready", flush=True)
    deadline = time.monotonic() + MAX_LOAD_SECONDS

    def run(seed: int) -> None:
        rng = random.Random(seed)
        own: list[str] = []
        n = 0
        while not os.path.exists(stop_file) and time.monotonic() < deadline:
            n += 1
            try:
                new: tuple[str, str] | None = None
                if n % 5 == 0:
                    pid = store.create(decision, _patient(rng)).res_id
                    own.append(pid)
                    new = ("Patient", pid)
                elif n % 5 == 1:
                    obs = store.create(decision, _observation(rng.choice(shared), rng))
                    new = ("Observation", obs.res_id)
                elif n % 5 == 2 and own:
                    pid = rng.choice(own)
                    body = store.read(decision, "Patient", pid).json()
                    body["gender"] = rng.choice(["male", "female", "other"])
                    store.update(decision, "Patient", pid, body)
                elif n % 5 == 3:
                    query = parse_search("Patient", [("family", "Martin")], default_count=20)
                    search(store, decision, query)
                else:
                    store.read(decision, "Patient", rng.choice(shared))
                with lock:
                    done_at.append(time.time())
                    if new is not None:
                        created.append(new)
            except Exception as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A fresh keyring, as a server started after the rotation: every record must open.
    fresh = ResourceStore(engine, Keyring(engine, provider), store.blind)
    unreadable = []
    for res_type, res_id in created:
        try:
            fresh.history(decision, res_type, res_id)
        except Exception as exc:
            unreadable.append(f"{res_type}/{res_id}: {type(exc).__name__}")
    Path(out).write_text(
        json.dumps(
            {
                "failures": failures[:20],
                "done_at": done_at,
                "created": len(created),
                "creates_during_rotation_window": len(created) - len(shared),
                "final_check": {"read": len(created) - len(unreadable), "unreadable": unreadable},
            }
        )
    )
    engine.dispose()
    close = getattr(provider, "close", None)
    if close is not None:
        close()


if __name__ == "__main__":
    load_main(*sys.argv[1:5])
