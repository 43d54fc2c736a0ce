"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from REMPART_TEST_DATABASE_URL (a server URL whose database is used as the
admin connection) or 127.0.0.1:5432. Each test gets a fresh database cloned from a migrated
template (fast), and each xdist worker its own template. Where no server answers, the
PostgreSQL half skips and says how to run it; in CI (REMPART_TEST_REQUIRE_POSTGRES=1) it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rempart.bootstrap import initialise
from rempart.config import Settings, load_settings
from rempart.wiring import Services, open_services

PG_URL = os.environ.get(
    "REMPART_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SKIP_PG = (
    "PostgreSQL not reachable at {url} ({error}); start one (e.g. `pg_ctlcluster 15 main start`) "
    "or set REMPART_TEST_DATABASE_URL=postgresql+psycopg://user@host:port/db to run these tests"
)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _server_url(dbname: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(_libpq(PG_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("REMPART_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here but unreachable: {exc}")
        pytest.skip(SKIP_PG.format(url=PG_URL, error=str(exc).strip().splitlines()[0]))
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def pg_template(
    pg_admin: psycopg.Connection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"rempart_tmpl_{worker}_{uuid.uuid4().hex[:6]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    home = tmp_path_factory.mktemp("pg-template-home")
    initialise(load_settings(home, _server_url(name)))
    yield name
    pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_pg_database(pg_admin: psycopg.Connection, template: str) -> str:
    name = f"rempart_t_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_pg_database(pg_admin: psycopg.Connection, name: str) -> None:
    """Every database a test creates is dropped after it (a developer's server keeps none)."""
    pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rempart.sqlite3'}"
        return
    admin: psycopg.Connection = request.getfixturevalue("pg_admin")
    template: str = request.getfixturevalue("pg_template")
    name = fresh_pg_database(admin, template)
    yield _server_url(name)
    drop_pg_database(admin, name)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    home = tmp_path / "home"
    initialise(load_settings(home, database_url))
    return load_settings(home, database_url)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = open_services(settings, pool_size=4)
    yield svc
    svc.close()
