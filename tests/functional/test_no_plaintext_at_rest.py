"""A stolen database holds no readable patient data: raw SQLite (file + WAL) and pg_dump."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rempart.config import Settings
from rempart.ingest.seeding import seed_hospital
from rempart.seed import generate
from rempart.wiring import open_services

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
    assert leaked == []
