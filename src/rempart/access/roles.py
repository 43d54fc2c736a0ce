"""Which resource types each role may read and write. One file, so a reviewer sees it whole.

Interim rules of the record-server milestone: the care-relationship policy (issue #4) will narrow
clinicians and secretaries to their own patients. Administrators and security officers hold no
clinical type at all, from the first day: they manage the directory and the accounts, not care.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    CLINICIAN = "clinician"
    PATIENT = "patient"
    SECRETARY = "secretary"
    SECURITY_OFFICER = "security_officer"


# Resources that describe the hospital, not a patient.
DIRECTORY_TYPES = frozenset(
    {"Organization", "Location", "Practitioner", "PractitionerRole", "Medication"}
)
# What a front desk handles: identity, contact, coverage, scheduling.
ADMINISTRATIVE_TYPES = frozenset({"Patient", "Coverage", "Encounter"})
CLINICAL_TYPES = frozenset(
    {
        "AllergyIntolerance",
        "CareTeam",
        "Condition",
        "Device",
        "DocumentReference",
        "Immunization",
        "MedicationRequest",
        "Observation",
        "Procedure",
    }
)
PATIENT_DATA_TYPES = ADMINISTRATIVE_TYPES | CLINICAL_TYPES
ALL_TYPES = DIRECTORY_TYPES | PATIENT_DATA_TYPES

READ: dict[Role, frozenset[str]] = {
    Role.ADMIN: DIRECTORY_TYPES,
    Role.SECURITY_OFFICER: DIRECTORY_TYPES,
    Role.CLINICIAN: ALL_TYPES,
    Role.SECRETARY: DIRECTORY_TYPES | ADMINISTRATIVE_TYPES,
    Role.PATIENT: ALL_TYPES,
}
WRITE: dict[Role, frozenset[str]] = {
    Role.ADMIN: DIRECTORY_TYPES,
    Role.SECURITY_OFFICER: frozenset(),
    Role.CLINICIAN: PATIENT_DATA_TYPES,
    Role.SECRETARY: ADMINISTRATIVE_TYPES,
    Role.PATIENT: frozenset(),
}
