"""Per-unit thresholds, on SQLite and PostgreSQL: set through the four-eyes `guard-settings`
request only, bounded like the role's, applied from the clinician's unit memberships (the most
permissive of its units)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import TypeAdapter

from rempart.access.kinds import AnyRequest
from rempart.access.roles import Role
from rempart.context import RequestContext
from rempart.errors import InvalidResource
from rempart.guard.units import most_permissive, parse
from rempart.wiring import Services
from tests.unit.access.support import encounter, new_staff, patient, practitioner, unit
from tests.unit.guard.support import scrape

CTX = RequestContext("10.0.0.8", "test")
_ANY: TypeAdapter[Any] = TypeAdapter(AnyRequest)
DEFAULT = 50  # the clinician's 5-minute threshold
EMERGENCY = 80
READS = 60  # above the default, below the emergency unit's threshold


def approve(services: Services, values: dict[str, int]) -> None:
    """A guard-settings request through its four eyes: asked by an administrator, approved by
    another administrator and a security officer."""
    a1, a2 = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
    officer = new_staff(services, Role.SECURITY_OFFICER)
    requests = services.access.requests
    made = requests.submit(
        a1.principal(), CTX, _ANY.validate_python({"kind": "guard-settings", "values": values})
    )
    assert requests.approve(a2.principal(), CTX, made.id, None).status == "pending"
    assert requests.approve(officer.principal(), CTX, made.id, None).status == "done"


def key(unit_ref: str, window: str = "short") -> str:
    return f"guard.unit.{unit_ref.rpartition('/')[2]}.patients_{window}"


def test_an_emergency_clinician_reads_past_the_default_a_geriatrics_one_does_not(
    services: Services,
) -> None:
    emergency, geriatrics = unit(services), unit(services)
    doctor = practitioner(services)
    ids = []
    for _ in range(READS):
        pid = patient(services)
        encounter(services, pid, attender=doctor)
        ids.append(pid)
    approve(services, {key(emergency): EMERGENCY, key(geriatrics, "hour"): 90})
    er = new_staff(services, Role.CLINICIAN, practitioner=doctor, units=(emergency,))
    ward = new_staff(services, Role.CLINICIAN, practitioner=doctor, units=(geriatrics,))
    listed = services.guard.units.listing(services.policy.settings.current())  # guard status
    assert listed[emergency.rpartition("/")[2]] == {"short": EMERGENCY, "hour": None, "day": None}
    assert scrape(services, er, ids, CTX) == READS  # 60 distinct patients: not contained
    assert scrape(services, ward, ids, CTX) == DEFAULT  # contained at the 51st
    officer = new_staff(services, Role.SECURITY_OFFICER)
    page = services.security.alerts(officer.principal(), kind="guard-session-velocity")
    (alert,) = page.alerts
    assert alert["details"]["account_id"] == ward.id
    assert alert["details"]["threshold"] == DEFAULT


def test_the_most_permissive_unit_wins_and_a_stricter_one_applies_alone(
    services: Services,
) -> None:
    strict, lenient = unit(services), unit(services)
    doctor = practitioner(services)
    ids = []
    for _ in range(35):
        pid = patient(services)
        encounter(services, pid, attender=doctor)
        ids.append(pid)
    approve(services, {key(strict): 20, key(lenient): 70})
    both = new_staff(services, Role.CLINICIAN, practitioner=doctor, units=(strict, lenient))
    only_strict = new_staff(services, Role.CLINICIAN, practitioner=doctor, units=(strict,))
    assert scrape(services, both, ids, CTX) == 35
    assert scrape(services, only_strict, ids, CTX) == 20
    officer = new_staff(services, Role.SECURITY_OFFICER)
    (alert,) = services.security.alerts(officer.principal(), kind="guard-session-velocity").alerts
    assert "its units' threshold 20" in alert["message"]


def test_unit_thresholds_are_bounded_and_named_exactly(services: Services) -> None:
    admin = new_staff(services, Role.ADMIN)
    for values in (
        {"guard.unit.abc.patients_short": 10**6},  # no unit may turn the guard off
        {"guard.unit.abc.patients_short": 1},
        {"guard.unit.abc.patients_week": 10},
        {"guard.unit..patients_day": 10},
    ):
        with pytest.raises(InvalidResource):
            services.access.requests.submit(
                admin.principal(),
                CTX,
                _ANY.validate_python({"kind": "guard-settings", "values": values}),
            )


def test_most_permissive_counts_a_unit_without_override_at_the_default() -> None:
    overrides = parse(
        [
            ("guard.unit.er.patients_short", "80"),
            ("guard.unit.geri.patients_short", "20"),
            ("guard.unit.geri.patients_day", "9999999"),  # edited in the database: clamped
            ("guard.unit.bad.patients_short", "x"),
        ]
    )
    defaults = (50, 100, 250)
    assert overrides["geri"] == (20, None, 20_000)
    assert most_permissive(overrides, ["er"], defaults) == (80, 100, 250)
    assert most_permissive(overrides, ["geri"], defaults) == (20, 100, 20_000)
    assert most_permissive(overrides, ["geri", "er"], defaults) == (80, 100, 20_000)
    assert most_permissive(overrides, ["geri", "cardio"], defaults) == (50, 100, 20_000)
    assert most_permissive(overrides, ["cardio"], defaults) is None


def test_a_clinician_s_limits_follow_a_new_override_and_new_units_at_once(
    services: Services,
) -> None:
    """The answer is memoized per account (one per read otherwise), and still changes with
    the next snapshot of the settings (an approved override) and with the units' next load."""
    ward, other = unit(services), unit(services)
    doctor = practitioner(services)
    staff = new_staff(services, Role.CLINICIAN, practitioner=doctor, units=(ward,))
    guard = services.guard
    first = guard.units.apply(guard.thresholds(), staff.id, "clinician")
    assert first.role_limits("clinician")[0] == DEFAULT
    assert guard.units.apply(guard.thresholds(), staff.id, "clinician") is first
    approve(services, {key(ward): EMERGENCY})
    after = guard.units.apply(guard.thresholds(), staff.id, "clinician")
    assert after.role_limits("clinician")[0] == EMERGENCY
    # Its units as the next load finds them (a second unit: covering two wards).
    guard.units._units[staff.id] = (time.monotonic(), [other.rpartition("/")[2].lower()])
    moved = guard.units.apply(guard.thresholds(), staff.id, "clinician")
    assert moved.role_limits("clinician")[0] == DEFAULT
