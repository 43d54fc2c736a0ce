"""`alembic upgrade head` then `alembic check` on a fresh SQLite file and a fresh PostgreSQL
database, as CI must: the models and the migrations may never drift apart."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("REMPART_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def alembic(url: str) -> None:
    env = {**os.environ, "REMPART_DATABASE_URL": url}
    for args in (["upgrade", "heads"], ["check"]):
        subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        alembic(f"sqlite:///{tmp}/check.sqlite3")
        print("migrations: SQLite ok")
    name = f"rempart_migcheck_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            print(f"migrations: PostgreSQL unreachable in CI: {exc}", file=sys.stderr)
            return 1
        print(f"migrations: PostgreSQL skipped ({exc}); set REMPART_TEST_PG_ADMIN to run it")
        return 0
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            alembic(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
            print("migrations: PostgreSQL ok")
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
