"""A database connection lost under the server (restart, failover) costs one 503, never a 500."""

from __future__ import annotations

from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from rempart.api.app import create_app
from rempart.bootstrap import initialise
from rempart.config import load_settings
from rempart.wiring import open_services
from tests.conftest import _server_url, drop_pg_database, fresh_pg_database


def test_killed_connections_give_a_503_then_recover(
    pg_admin: psycopg.Connection, pg_template: str, tmp_path: Path
) -> None:
    name = fresh_pg_database(pg_admin, pg_template)
    settings = load_settings(tmp_path / "home", _server_url(name))
    initialise(settings)
    services = open_services(settings, pool_size=2)
    bogus = {"Authorization": "Bearer not-a-session"}
    with TestClient(create_app(services), base_url="http://127.0.0.1") as client:
        assert client.get("/fhir/Patient/x", headers=bogus).status_code == 401  # pool warm
        killed = pg_admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        lost = client.get("/fhir/Patient/x", headers=bogus)
        assert lost.status_code == 503, lost.text
        assert lost.json()["resourceType"] == "OperationOutcome"
        assert "Traceback" not in lost.text
        # The pool was invalidated: the next request gets a fresh connection.
        assert client.get("/fhir/Patient/x", headers=bogus).status_code == 401
    services.close()
    drop_pg_database(pg_admin, name)
