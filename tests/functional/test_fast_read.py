"""The read's own door (`api/fast_read.py`) answers exactly what FastAPI's router answers: the
same status, body and headers for a read, a refusal, a missing or malformed token, an unknown
type, and the paths it must leave to other routes. And it is the path reads actually take."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from rempart.api import fhir_routes
from rempart.api.app import create_app
from rempart.api.fast_read import FastRead
from tests.functional.conftest import Hospital
from tests.unit.access.support import services_of


@pytest.fixture(scope="module")
def router_only(hospital: Hospital) -> TestClient:
    """The same application on the same services, without the fast path."""
    app = create_app(services_of(hospital.client))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastRead]
    # Not entered as a context manager: its lifespan would close the shared services.
    return TestClient(app, base_url="http://127.0.0.1")


def _registered(hospital: Hospital, doctor: dict[str, str], family: str) -> str:
    """A patient the clinician creates (and so may read): its id."""
    made = hospital.client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": family, "given": ["Lina"]}]},
        headers={**doctor, "Content-Type": "application/fhir+json"},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _seen(response: httpx.Response) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k != "date"))
    return response.status_code, response.text, headers


def test_same_answers_as_the_router(
    hospital: Hospital, router_only: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor = hospital.headers("clinician")
    admin = hospital.headers("admin")
    mine = _registered(hospital, doctor, "Portefast")  # theirs to read
    cases: list[tuple[str, dict[str, str]]] = [
        (f"/fhir/Patient/{mine}", doctor),  # 200 with ETag and Last-Modified
        (f"/fhir/Patient/{mine}?_format=json", doctor),
        (f"/fhir/Patient/{mine}", admin),  # 403: no clinical permission
        ("/fhir/Patient/does-not-exist", doctor),  # 403, as for someone else's
        (f"/fhir/Patient/{mine}", {}),  # 401
        (f"/fhir/Patient/{mine}", {"Authorization": "Bearer not-a-token"}),  # 401
        (f"/fhir/Patient/{mine}", {"Authorization": "Basic abc"}),  # 401
        ("/fhir/NoSuchType/1", doctor),
        ("/fhir/AuditEvent/1", doctor),  # the audit route's, ahead of the read
        ("/fhir/Patient/_history", doctor),  # the router's
        (f"/fhir/Patient/{mine}/_history", doctor),  # three segments: the router's
    ]
    taken: list[str] = []
    original = fhir_routes.read

    async def counted(request: object, res_type: str, res_id: str) -> object:
        taken.append(f"{res_type}/{res_id}")
        return await original(request, res_type, res_id)  # type: ignore[arg-type]

    # The router holds the function itself; only the fast path looks it up by name.
    monkeypatch.setattr(fhir_routes, "read", counted)
    for path, headers in cases:
        fast = _seen(hospital.client.get(path, headers=headers))
        slow = _seen(router_only.get(path, headers=headers))
        assert fast == slow, path
    assert fast[0] in (200, 403)  # the last case: history of the caller's own patient
    assert taken == [
        f"Patient/{mine}",
        f"Patient/{mine}",
        f"Patient/{mine}",
        "Patient/does-not-exist",
        f"Patient/{mine}",
        f"Patient/{mine}",
        f"Patient/{mine}",
        "NoSuchType/1",
    ]
    first = hospital.client.get(f"/fhir/Patient/{mine}", headers=doctor)
    assert first.status_code == 200
    assert first.headers["etag"].startswith('W/"')
    assert first.headers["cache-control"] == "no-store"  # inside the security headers


def test_a_read_runs_on_the_event_loop_where_the_database_is_local(
    hospital: Hospital, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database on this machine (SQLite; PostgreSQL on 127.0.0.1 here) the read's work
    runs on the loop, with no thread hand-off; with a network between them (or
    `reads_on_event_loop = "no"`), in the thread pool, where a slow query stalls nobody else."""
    on_loop: list[bool] = []
    original = fhir_routes._read

    def watched(*args: object) -> object:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread has no running loop
            on_loop.append(False)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(fhir_routes, "_read", watched)
    doctor = hospital.headers("clinician")
    patient = f"/fhir/Patient/{_registered(hospital, doctor, 'Boucle')}"
    svc = services_of(hospital.client)
    assert svc.reads_inline  # both test databases answer from this machine
    assert hospital.client.get(patient, headers=doctor).status_code == 200
    refused = hospital.client.get("/fhir/Patient/does-not-exist", headers=doctor)
    assert refused.status_code == 403  # a refusal takes the same path, audited the same way
    monkeypatch.setattr(svc, "reads_inline", False)  # as for a database across a network
    assert hospital.client.get(patient, headers=doctor).status_code == 200
    assert hospital.client.get("/fhir/Patient/does-not-exist", headers=doctor).status_code == 403
    assert on_loop == [True, True, False, False]
