"""Helpers the guard's tests share: a ward of patients under one doctor, and a scrape."""

from __future__ import annotations

from rempart.context import RequestContext
from rempart.guard.errors import GuardContained
from rempart.wiring import Services
from tests.unit.access.support import Staff, encounter, patient, practitioner


def ward(services: Services, size: int) -> tuple[str, list[str]]:
    """A new practitioner attending `size` new patients: (Practitioner id, patient ids)."""
    doctor = practitioner(services)
    ids = []
    for _ in range(size):
        pid = patient(services)
        encounter(services, pid, attender=doctor)
        ids.append(pid)
    return doctor, ids


def scrape(services: Services, staff: Staff, ids: list[str], ctx: RequestContext) -> int:
    """Reads the patients in turn until the guard contains the session: how many were served."""
    who = staff.principal()
    served = 0
    for pid in ids:
        try:
            services.records.read(who, ctx, "Patient", pid)
        except GuardContained:
            break
        served += 1
    return served
