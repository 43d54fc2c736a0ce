"""Concurrent reads on a pool of two connections all succeed: no request holds a pooled
connection while it waits for another (a read once held its connection while the guard and the
audit log checked out theirs, and 32 concurrent reads starved a pool of 20)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from rempart.access.roles import Role
from rempart.api.app import create_app
from rempart.config import Settings
from rempart.wiring import open_services
from tests.functional.test_guard_containment import open_session
from tests.unit.access.support import encounter, new_staff, patient, practitioner

READERS = 8
READS_EACH = 6


def test_concurrent_reads_on_a_small_pool_all_succeed(settings: Settings) -> None:
    services = open_services(settings, pool_size=1)  # 1 pooled + 1 on demand
    services.engine.pool._timeout = 5  # type: ignore[attr-defined]  # starvation fails fast
    try:
        doctor = practitioner(services)
        ids = [patient(services) for _ in range(READERS)]
        for pid in ids:
            encounter(services, pid, attender=doctor)
        clinician = new_staff(services, Role.CLINICIAN, practitioner=doctor)
        headers = open_session(services, clinician)
        with TestClient(create_app(services), base_url="http://127.0.0.1") as client:

            def reads(pid: str) -> list[int]:
                return [
                    client.get(f"/fhir/Patient/{pid}", headers=headers).status_code
                    for _ in range(READS_EACH)
                ]

            with ThreadPoolExecutor(READERS) as pool:
                codes = [c for each in pool.map(reads, ids) for c in each]
        assert codes == [200] * (READERS * READS_EACH)
    finally:
        services.close()
