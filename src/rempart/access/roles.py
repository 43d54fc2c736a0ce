"""Roles and the permissions each one holds. One file, so a reviewer sees it whole.

Separation of duties: the roles that manage the system (`admin`, `security_officer`) hold no
permission that reaches a patient, not even demographics; the roles that care for patients hold
no permission over accounts. No role bypasses the care-relationship scope, and there is no
"log in as" anywhere: a permission below is all a session ever gets.

Which patients a permission applies to is not decided here but by the role's *scope*:

- clinician: care relationships (encounter, unit stay, care team, treating physician) and
  their own break-the-glass grants;
- secretary: stays and appointments in their establishment, plus exact-identity lookups;
- patient: their own record;
- integration: writes results for any patient, reads none;
- admin, security_officer: none.
"""

from __future__ import annotations

from enum import StrEnum

from rempart.access.permissions import (
    ADMINISTRATIVE_TYPES,
    ALL_TYPES,
    CLINICAL_TYPES,
    DIRECTORY_TYPES,
    PATIENT_DATA_TYPES,
    RESULT_TYPES,
    Permission,
    read_types,
    write_types,
)

__all__ = [
    "ADMINISTRATIVE_TYPES",
    "ALL_TYPES",
    "CLINICAL_TYPES",
    "DIRECTORY_TYPES",
    "PATIENT_DATA_TYPES",
    "PERMISSIONS",
    "READ",
    "RESULT_TYPES",
    "WRITE",
    "Role",
]


class Role(StrEnum):
    ADMIN = "admin"
    CLINICIAN = "clinician"
    INTEGRATION = "integration"
    PATIENT = "patient"
    SECRETARY = "secretary"
    SECURITY_OFFICER = "security_officer"


P = Permission
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        {
            P.ADMIN_ACCOUNT_DISABLE,
            P.ADMIN_ACCOUNT_READ,
            P.ADMIN_REQUEST_APPROVE,
            P.ADMIN_REQUEST_CREATE,
            P.ADMIN_REQUEST_READ,
            P.FHIR_DIRECTORY_READ,
            P.FHIR_DIRECTORY_WRITE,
        }
    ),
    Role.CLINICIAN: frozenset(
        {
            P.ACCESS_BREAK_GLASS_CREATE,
            P.ACCESS_EXPORT_DOWNLOAD,
            P.ACCESS_EXPORT_REQUEST,
            P.FHIR_ADMINISTRATIVE_READ,
            P.FHIR_ADMINISTRATIVE_WRITE,
            P.FHIR_CLINICAL_READ,
            P.FHIR_CLINICAL_WRITE,
            P.FHIR_DIRECTORY_READ,
        }
    ),
    Role.INTEGRATION: frozenset({P.FHIR_DIRECTORY_READ, P.FHIR_RESULT_WRITE}),
    Role.PATIENT: frozenset(
        {P.FHIR_ADMINISTRATIVE_READ, P.FHIR_CLINICAL_READ, P.FHIR_DIRECTORY_READ}
    ),
    Role.SECRETARY: frozenset(
        {
            P.FHIR_ADMINISTRATIVE_READ,
            P.FHIR_ADMINISTRATIVE_WRITE,
            P.FHIR_DIRECTORY_READ,
            P.FHIR_PATIENT_LOOKUP,
        }
    ),
    Role.SECURITY_OFFICER: frozenset(
        {
            P.ACCESS_BREAK_GLASS_REVIEW,
            P.ADMIN_ACCOUNT_DISABLE,
            P.ADMIN_ACCOUNT_READ,
            P.ADMIN_REQUEST_CREATE,
            P.ADMIN_REQUEST_READ,
            P.FHIR_DIRECTORY_READ,
            P.SECURITY_ALERT_READ,
            P.SECURITY_REQUEST_APPROVE,
        }
    ),
}

# The resource types each role may read and write, derived from the permissions above.
READ: dict[Role, frozenset[str]] = {role: read_types(perms) for role, perms in PERMISSIONS.items()}
WRITE: dict[Role, frozenset[str]] = {
    role: write_types(perms) for role, perms in PERMISSIONS.items()
}

# Roles an administrator may ask for (four-eyes). Patient accounts come from patient enrolment
# and integration clients from their own request kind, never from a role change.
STAFF_ROLES = frozenset({Role.ADMIN, Role.CLINICIAN, Role.SECRETARY, Role.SECURITY_OFFICER})


def has(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]
