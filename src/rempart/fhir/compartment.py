"""patient_compartment: the Patient a resource belongs to, which decides whose data key seals it.

One element per type names the owner (the element R4's Patient CompartmentDefinition and our
`patient` search parameter use). Only a local "Patient/<id>" counts: an absolute URL may name a
patient of another server, and urn:uuid:/conditional references must have been rewritten first
(transactions and imports do that before storing). A Patient being created without an id has no
compartment yet: the store assigns the id first.
"""

from __future__ import annotations

from typing import Any

from rempart.fhir.references import parse_local

# Types that may belong to a patient, and the element that says which.
OWNER_ELEMENT: dict[str, str] = {
    "Encounter": "subject",
    "Condition": "subject",
    "Observation": "subject",
    "Procedure": "subject",
    "MedicationRequest": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "CareTeam": "subject",
    "AllergyIntolerance": "patient",
    "Immunization": "patient",
    "Device": "patient",
    "Coverage": "beneficiary",
    "Provenance": "target",
}


def patient_compartment(resource: dict[str, Any]) -> str | None:
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    element = OWNER_ELEMENT.get(rtype) if isinstance(rtype, str) else None
    if element is None:
        return None  # Practitioner, Organization, Location, Medication, PractitionerRole...
    value = resource.get(element)
    candidates = value if isinstance(value, list) else [value]
    owners = {pid for ref in candidates if (pid := _patient_id(ref)) is not None}
    # Provenance lists several targets; it belongs to a patient only if they agree on one.
    return owners.pop() if len(owners) == 1 else None


def _patient_id(ref: Any) -> str | None:
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    local = parse_local(ref["reference"])
    return local[1] if local is not None and local[0] == "Patient" else None
