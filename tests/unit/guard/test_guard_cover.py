"""A clinician on call for two wards lists both: the short and hour thresholds scale with the
units the clinician is a member of (up to `guard.clinician.cover_units`), the 24-hour one does
not. Found by `rempart simulate --clinicians 50 --normal-only` at 7,500 patients (30 beds a
unit): the doctor on call for a pair of units read 60-90 distinct patients in the first
minutes of every night and weekend shift and was suspended (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from rempart.access.kinds import AnyRequest
from rempart.access.roles import Role
from rempart.access.settings import PolicySettings
from rempart.context import RequestContext
from rempart.guard.errors import GuardContained
from rempart.guard.settings import COVER_UNITS, Thresholds
from rempart.guard.units import covering
from rempart.wiring import Services
from tests.unit.access.support import Staff, encounter, new_staff, patient, unit

CTX = RequestContext("10.0.0.9", "test")
_ANY: TypeAdapter[Any] = TypeAdapter(AnyRequest)
SHORT = 50  # the clinician's default 5-minute threshold
WARD = 35  # patients staying in each ward


def test_thresholds_scale_with_the_wards_covered_up_to_the_setting() -> None:
    t = Thresholds(PolicySettings({}))
    assert covering(t, 0) == covering(t, 1) == (50, 100, 250)
    assert covering(t, 2) == (100, 200, 250)  # the 24-hour lock threshold does not scale
    assert covering(t, 3) == covering(t, 12) == (150, 300, 250)
    assert covering(Thresholds(PolicySettings({COVER_UNITS.key: 1})), 2) == (50, 100, 250)
    big = Thresholds(PolicySettings({COVER_UNITS.key: 10, "guard.clinician.patients_short": 400}))
    assert covering(big, 10)[0] == 2_000  # never past the setting's own bound


def _ward(services: Services, beds: int) -> str:
    ward = unit(services)
    for _ in range(beds):
        encounter(services, patient(services), provider=ward)
    return ward


def _list(services: Services, staff: Staff, ward: str) -> int:
    """The ward's worklist: its ongoing stays, one search page; how many it listed."""
    bundle = services.records.search(
        staff.principal(),
        CTX,
        "Encounter",
        [("service-provider", ward), ("status", "in-progress"), ("_count", "100")],
        "http://rempart.test/fhir",
    )
    return len(bundle["entry"])


def test_the_doctor_on_call_for_two_wards_lists_both(services: Services) -> None:
    first, second = _ward(services, WARD), _ward(services, WARD)
    on_call = new_staff(services, Role.CLINICIAN, units=(first, second))
    assert _list(services, on_call, first) == WARD
    assert _list(services, on_call, second) == WARD  # 70 patients in a minute: not contained


def test_a_doctor_of_one_ward_is_still_held_to_the_role_threshold(services: Services) -> None:
    big = _ward(services, SHORT + 10)
    ward_doctor = new_staff(services, Role.CLINICIAN, units=(big,))
    with pytest.raises(GuardContained):
        _list(services, ward_doctor, big)


def test_scaling_off_a_two_ward_doctor_is_contained_like_any(services: Services) -> None:
    first, second = _ward(services, WARD), _ward(services, WARD)
    a1, a2 = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
    officer = new_staff(services, Role.SECURITY_OFFICER)
    requests = services.access.requests
    body = {"kind": "guard-settings", "values": {COVER_UNITS.key: 1}}
    made = requests.submit(a1.principal(), CTX, _ANY.validate_python(body))
    requests.approve(a2.principal(), CTX, made.id, None)
    assert requests.approve(officer.principal(), CTX, made.id, None).status == "done"
    on_call = new_staff(services, Role.CLINICIAN, units=(first, second))
    assert _list(services, on_call, first) == WARD
    with pytest.raises(GuardContained):
        _list(services, on_call, second)
