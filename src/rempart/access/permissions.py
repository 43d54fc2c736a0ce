"""Every permission rempart knows, as one enum named `scope:resource:action`, kept alphabetical.

A permission says what kind of act a role may perform; *which patients* it may perform it on is
the care-relationship scope (`access/scope.py`), decided per request by the PDP. Routes and the
PDP name members of this enum, never strings, so a typo is an AttributeError at import time and
`grep Permission.X` finds every place an act is allowed.

The FHIR resource types behind each `fhir:*` permission are listed here too, so that the one
table a reviewer needs (role -> permissions -> types) is in two small files.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    ACCESS_BREAK_GLASS_CREATE = "access:break-glass:create"
    ACCESS_BREAK_GLASS_REVIEW = "access:break-glass:review"
    ACCESS_EXPORT_DOWNLOAD = "access:export:download"
    ACCESS_EXPORT_REQUEST = "access:export:request"
    ADMIN_ACCOUNT_DISABLE = "admin:account:disable"
    ADMIN_ACCOUNT_READ = "admin:account:read"
    ADMIN_REQUEST_APPROVE = "admin:request:approve"
    ADMIN_REQUEST_CREATE = "admin:request:create"
    ADMIN_REQUEST_READ = "admin:request:read"
    FHIR_ADMINISTRATIVE_READ = "fhir:administrative:read"
    FHIR_ADMINISTRATIVE_WRITE = "fhir:administrative:write"
    FHIR_CLINICAL_READ = "fhir:clinical:read"
    FHIR_CLINICAL_WRITE = "fhir:clinical:write"
    FHIR_DIRECTORY_READ = "fhir:directory:read"
    FHIR_DIRECTORY_WRITE = "fhir:directory:write"
    FHIR_PATIENT_LOOKUP = "fhir:patient:lookup"
    FHIR_RESULT_WRITE = "fhir:result:write"
    SECURITY_ALERT_READ = "security:alert:read"
    SECURITY_REQUEST_APPROVE = "security:request:approve"


# Resources that describe the hospital, not a patient.
DIRECTORY_TYPES = frozenset(
    {"Organization", "Location", "Practitioner", "PractitionerRole", "Medication"}
)
# What a front desk handles: identity, contact, coverage, scheduling (Encounter minus its
# clinical elements, see `access/views.py`).
ADMINISTRATIVE_TYPES = frozenset({"Patient", "Coverage", "Encounter"})
CLINICAL_TYPES = frozenset(
    {
        "AllergyIntolerance",
        "CareTeam",
        "Condition",
        "Device",
        "DiagnosticReport",
        "DocumentReference",
        "Immunization",
        "MedicationRequest",
        "Observation",
        "Procedure",
        "Provenance",
    }
)
# What an integration client (a laboratory, an imaging system) may push: results, never the
# resources that create care relationships (Encounter, CareTeam, Patient).
RESULT_TYPES = frozenset({"DiagnosticReport", "DocumentReference", "Observation"})
PATIENT_DATA_TYPES = ADMINISTRATIVE_TYPES | CLINICAL_TYPES
ALL_TYPES = DIRECTORY_TYPES | PATIENT_DATA_TYPES

TYPES_READ: dict[Permission, frozenset[str]] = {
    Permission.FHIR_ADMINISTRATIVE_READ: ADMINISTRATIVE_TYPES,
    Permission.FHIR_CLINICAL_READ: CLINICAL_TYPES,
    Permission.FHIR_DIRECTORY_READ: DIRECTORY_TYPES,
}
TYPES_WRITTEN: dict[Permission, frozenset[str]] = {
    Permission.FHIR_ADMINISTRATIVE_WRITE: ADMINISTRATIVE_TYPES,
    Permission.FHIR_CLINICAL_WRITE: CLINICAL_TYPES,
    Permission.FHIR_DIRECTORY_WRITE: DIRECTORY_TYPES,
    Permission.FHIR_RESULT_WRITE: RESULT_TYPES,
}
# Permissions that reach patient data. `tests/unit/access` pins that administrators, security
# officers and integration clients hold none of the readable ones.
CLINICAL_PERMISSIONS = frozenset(
    {
        Permission.ACCESS_BREAK_GLASS_CREATE,
        Permission.ACCESS_EXPORT_DOWNLOAD,
        Permission.ACCESS_EXPORT_REQUEST,
        Permission.FHIR_ADMINISTRATIVE_READ,
        Permission.FHIR_ADMINISTRATIVE_WRITE,
        Permission.FHIR_CLINICAL_READ,
        Permission.FHIR_CLINICAL_WRITE,
        Permission.FHIR_PATIENT_LOOKUP,
        Permission.FHIR_RESULT_WRITE,
    }
)


def read_types(permissions: frozenset[Permission]) -> frozenset[str]:
    return frozenset().union(*(TYPES_READ.get(p, frozenset()) for p in permissions))


def write_types(permissions: frozenset[Permission]) -> frozenset[str]:
    return frozenset().union(*(TYPES_WRITTEN.get(p, frozenset()) for p in permissions))
