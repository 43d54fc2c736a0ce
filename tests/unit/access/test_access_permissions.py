"""Permissions are one alphabetical enum; roles map to them in one file; the roles that manage
the system hold nothing that reaches a patient."""

from __future__ import annotations

import re

from rempart.access.permissions import (
    ALL_TYPES,
    CLINICAL_PERMISSIONS,
    CLINICAL_TYPES,
    DIRECTORY_TYPES,
    Permission,
)
from rempart.access.roles import PERMISSIONS, READ, WRITE, Role
from rempart.fhir import SUPPORTED_TYPES


def test_permission_names_are_scope_resource_action_and_alphabetical() -> None:
    values = [p.value for p in Permission]
    assert values == sorted(values)
    for member in Permission:
        assert re.fullmatch(r"[a-z]+:[a-z-]+:[a-z]+", member.value), member
        assert member.name == member.value.replace(":", "_").replace("-", "_").upper()


def test_every_role_has_a_permission_set_and_every_type_is_classified() -> None:
    assert set(PERMISSIONS) == set(Role)
    assert ALL_TYPES == SUPPORTED_TYPES


def test_administrators_and_security_officers_hold_no_clinical_permission() -> None:
    for role in (Role.ADMIN, Role.SECURITY_OFFICER):
        assert not PERMISSIONS[role] & CLINICAL_PERMISSIONS, role
        assert READ[role] == DIRECTORY_TYPES
        assert not WRITE[role] - DIRECTORY_TYPES


def test_integration_clients_read_no_patient_data() -> None:
    assert READ[Role.INTEGRATION] == DIRECTORY_TYPES
    assert WRITE[Role.INTEGRATION] <= CLINICAL_TYPES
    assert not WRITE[Role.INTEGRATION] & {"Encounter", "CareTeam", "Patient"}


def test_secretaries_and_patients() -> None:
    assert not READ[Role.SECRETARY] & CLINICAL_TYPES
    assert not WRITE[Role.PATIENT]
    assert Permission.ACCESS_BREAK_GLASS_CREATE in PERMISSIONS[Role.CLINICIAN]
    assert Permission.ACCESS_BREAK_GLASS_CREATE not in PERMISSIONS[Role.SECRETARY]
