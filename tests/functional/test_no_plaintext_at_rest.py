"""A stolen database or backup holds no readable patient data.

Raw SQLite (file + WAL), a VACUUM INTO copy and a plain pg_dump; and the backups made exactly as
README.md "Backups" says, which must also restore into a working server with the key file.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from rempart.access.pdp import system_decision
from rempart.config import Settings, load_settings
from rempart.ingest.seeding import seed_hospital
from rempart.seed import generate
from rempart.store.tables import resource
from rempart.wiring import open_services
from tests.conftest import _libpq

PATIENTS = 25
SEED = 3


def secrets_of(resources: list[dict[str, Any]]) -> set[str]:
    """The identifying and clinical strings a thief would look for."""
    found: set[str] = set()
    for r in resources:
        if r["resourceType"] == "Patient":
            for name in r.get("name", []):
                found.add(name["family"])
                found.update(g for g in name.get("given", []) if len(g) >= 4)
            found.update(i["value"] for i in r.get("identifier", []))
            found.update(t["value"] for t in r.get("telecom", []))
            for addr in r.get("address", []):
                found.update(addr.get("line", []))
            found.add(r["birthDate"])
        elif r["resourceType"] in ("Condition", "AllergyIntolerance", "Observation"):
            for coding in r.get("code", {}).get("coding", []):
                found.add(f'"{coding["code"]}"')
                if coding.get("display"):
                    found.add(coding["display"])
        elif r["resourceType"] == "DocumentReference":
            for content in r.get("content", []):
                data = content.get("attachment", {}).get("data")
                if data:
                    text = base64.b64decode(data).decode("utf-8")
                    found.add(text[:40])
                    found.add(data[:40])
    return {s for s in found if len(s) >= 5}


def test_database_bytes_hold_no_patient_plaintext(settings: Settings, tmp_path: Path) -> None:
    services = open_services(settings, pool_size=2)
    try:
        seed_hospital(services, patients=PATIENTS, seed=SEED, credentials_out=None)
        hospital = generate(PATIENTS, SEED)
        resources = [r for batch in hospital.patient_batches(100) for r in batch]
        needles = secrets_of(resources)
        assert len(needles) > 200, "the check must look for many real values"
        if settings.database_url.startswith("sqlite"):
            db = Path(settings.database_url.removeprefix("sqlite:///"))
            files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
            raw = b"".join(p.read_bytes() for p in files)
            backup = tmp_path / "backup.sqlite3"
            with services.engine.connect() as conn:
                conn.exec_driver_sql(f"VACUUM INTO '{backup}'")
            raw += backup.read_bytes()
        else:
            pg_dump = shutil.which("pg_dump")
            if pg_dump is None:
                pytest.skip("pg_dump not installed (Debian package postgresql-client)")
            url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
            raw = subprocess.run([pg_dump, url], capture_output=True, check=True).stdout
    finally:
        services.close()
    assert len(raw) > 100_000
    text = raw.decode("latin-1")
    leaked = sorted(n for n in needles if n in text or n.encode("utf-8").decode("latin-1") in text)
    assert leaked == [], _contexts(text, leaked)


def _contexts(text: str, leaked: list[str]) -> str:
    """Where each leaked value sits in the raw bytes (which table or column leaked it)."""
    out = []
    for n in leaked:
        at = text.find(n)
        if at < 0:
            at = text.find(n.encode("utf-8").decode("latin-1"))
        out.append(f"{n!r} in ...{text[max(0, at - 120) : at + 60]!r}...")
    return "\n".join(out)


def leaked_in(raw: bytes, needles: set[str]) -> list[str]:
    text = raw.decode("latin-1")
    return sorted(n for n in needles if n in text or n.encode("utf-8").decode("latin-1") in text)


def test_documented_backup_holds_no_plaintext_and_restores(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The README procedure, step by step: database backup and key file apart, then restore."""
    services = open_services(settings, pool_size=2)
    try:
        seed_hospital(services, patients=PATIENTS, seed=SEED, credentials_out=None)
        with services.engine.connect() as conn:
            pid = conn.execute(
                select(resource.c.res_id).where(resource.c.res_type == "Patient").limit(1)
            ).scalar_one()
        decision = system_decision("backup test")
        original = services.store.read(decision, "Patient", pid).json()
        needles = secrets_of([r for b in generate(PATIENTS, SEED).patient_batches(100) for r in b])
        backups = tmp_path / "backups"
        backups.mkdir()
        if settings.database_url.startswith("sqlite"):
            # README: sqlite3 rempart-data/rempart.sqlite3 ".backup '<file>'" (online, WAL included)
            db = settings.database_url.removeprefix("sqlite:///")
            backup = backups / "rempart.sqlite3"
            run(["sqlite3", db, f".backup '{backup}'"])
            readable = backup.read_bytes()
            restored_db = tmp_path / "restored.sqlite3"
            run(["sqlite3", str(restored_db), f".restore '{backup}'"])
            restored_url = f"sqlite:///{restored_db}"
        else:
            # README: pg_dump --format=custom --file=<file> <url>; compressed, so it is read back
            # as SQL text with pg_restore to look for plaintext.
            backup = backups / "rempart.dump"
            url = _libpq(settings.database_url)
            run(["pg_dump", "--format=custom", f"--file={backup}", url])
            readable = run(["pg_restore", "--file=-", str(backup)])
            admin = request.getfixturevalue("pg_admin")
            name = f"rempart_restored_{tmp_path.name[-8:].replace('-', '_')}"
            admin.execute(f'CREATE DATABASE "{name}"')
            request.addfinalizer(
                lambda: admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )
            restored_url = url.rsplit("/", 1)[0] + f"/{name}"
            run(["pg_restore", "--no-owner", f"--dbname={restored_url}", str(backup)])
            restored_url = restored_url.replace("postgresql://", "postgresql+psycopg://")
        # README: the key file is backed up apart, mode 0600.
        key_backup = tmp_path / "key-backups" / "keys.json"
        key_backup.parent.mkdir(mode=0o700)
        run(["install", "-m", "600", str(settings.key_file), str(key_backup)])
    finally:
        services.close()
    assert len(readable) > 100_000
    assert leaked_in(readable, needles) == []
    assert settings.key_file.read_bytes() not in readable

    # Restore: a fresh home holding the backed-up key file, on the restored database.
    home = tmp_path / "restored-home"
    home.mkdir(mode=0o700)
    run(["install", "-m", "600", str(key_backup), str(home / "keys.json")])
    restored = open_services(load_settings(home, restored_url), pool_size=2)
    try:
        assert restored.store.read(decision, "Patient", pid).json() == original
    finally:
        restored.close()


def run(command: list[str]) -> bytes:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} not installed")
    return subprocess.run(command, capture_output=True, check=True, timeout=300).stdout
