"""Required value-set bindings of top-level `code` elements of the supported types (FHIR 4.0.1).

fhir.resources checks structure and datatypes but not bindings, so without this table an R5
status such as Encounter.status "completed" (R4 says "finished") or a made-up gender "M" would be
stored as valid R4. The same systems serve as the implied system of these codes in token search.
"""

from __future__ import annotations

_GENDER = ("http://hl7.org/fhir/administrative-gender", "male female other unknown")
_EVENT = "http://hl7.org/fhir/event-status"

_TABLE: dict[str, dict[str, tuple[str, str]]] = {
    "Patient": {"gender": _GENDER},
    "Practitioner": {"gender": _GENDER},
    "Location": {
        "status": ("http://hl7.org/fhir/location-status", "active suspended inactive"),
        "mode": ("http://hl7.org/fhir/location-mode", "instance kind"),
    },
    "Encounter": {
        "status": (
            "http://hl7.org/fhir/encounter-status",
            "planned arrived triaged in-progress onleave finished cancelled entered-in-error"
            " unknown",
        ),
    },
    "AllergyIntolerance": {
        "type": ("http://hl7.org/fhir/allergy-intolerance-type", "allergy intolerance"),
        "category": (
            "http://hl7.org/fhir/allergy-intolerance-category",
            "food medication environment biologic",
        ),
        "criticality": (
            "http://hl7.org/fhir/allergy-intolerance-criticality",
            "low high unable-to-assess",
        ),
    },
    "MedicationRequest": {
        "status": (
            "http://hl7.org/fhir/CodeSystem/medicationrequest-status",
            "active on-hold cancelled completed entered-in-error stopped draft unknown",
        ),
        "intent": (
            "http://hl7.org/fhir/CodeSystem/medicationrequest-intent",
            "proposal plan order original-order reflex-order filler-order instance-order option",
        ),
        "priority": ("http://hl7.org/fhir/request-priority", "routine urgent asap stat"),
    },
    "Medication": {
        "status": (
            "http://hl7.org/fhir/CodeSystem/medication-status",
            "active inactive entered-in-error",
        ),
    },
    "Observation": {
        "status": (
            "http://hl7.org/fhir/observation-status",
            "registered preliminary final amended corrected cancelled entered-in-error unknown",
        ),
    },
    "Procedure": {
        "status": (
            _EVENT,
            "preparation in-progress not-done on-hold stopped completed entered-in-error unknown",
        ),
    },
    "Immunization": {"status": (_EVENT, "completed entered-in-error not-done")},
    "Coverage": {
        "status": ("http://hl7.org/fhir/fm-status", "active cancelled draft entered-in-error"),
    },
    "DocumentReference": {
        "status": (
            "http://hl7.org/fhir/document-reference-status",
            "current superseded entered-in-error",
        ),
        "docStatus": (
            "http://hl7.org/fhir/composition-status",
            "preliminary final amended entered-in-error",
        ),
    },
    "Device": {
        "status": ("http://hl7.org/fhir/device-status", "active inactive entered-in-error unknown"),
    },
    "CareTeam": {
        "status": (
            "http://hl7.org/fhir/care-team-status",
            "proposed active suspended inactive entered-in-error",
        ),
    },
    "DiagnosticReport": {
        "status": (
            "http://hl7.org/fhir/diagnostic-report-status",
            "registered partial preliminary final amended corrected appended cancelled"
            " entered-in-error unknown",
        ),
    },
}

# {type: {element: (system, allowed codes)}}
BINDINGS: dict[str, dict[str, tuple[str, frozenset[str]]]] = {
    rtype: {elem: (system, frozenset(codes.split())) for elem, (system, codes) in elems.items()}
    for rtype, elems in _TABLE.items()
}


def binding_system(resource_type: str, element: str) -> str:
    return BINDINGS[resource_type][element][0]


def binding_errors(resource: dict[str, object], resource_type: str) -> list[str]:
    """ "<Type>.<element>: '<code>' is not in <system>" for each code outside its value set."""
    errors: list[str] = []
    for elem, (system, allowed) in BINDINGS.get(resource_type, {}).items():
        value = resource.get(elem)
        values = value if isinstance(value, list) else [value]
        for i, code in enumerate(values):
            if isinstance(code, str) and code not in allowed:
                where = f"{resource_type}.{elem}" + (f"[{i}]" if isinstance(value, list) else "")
                errors.append(
                    f"{where}: '{code}' is not a code of {system} "
                    f"(R4 allows: {', '.join(sorted(allowed))})"
                )
    return errors
