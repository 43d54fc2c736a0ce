"""The search parameters of each supported type: one table, read by indexing, parsing and the
CapabilityStatement alike, so the three cannot drift apart.

Each parameter lists the elements it reads as "dotted.path:kind". The path walks objects and
flattens arrays (choice types are spelt out: `onsetDateTime`, `onsetPeriod`); the kind says how an
element becomes tokens (see extract.py). Names, types, paths and targets follow the FHIR R4
SearchParameter definitions; an addition is marked "(rempart)" in its documentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rempart.errors import UnsupportedResourceType
from rempart.fhir.bindings import binding_system

ParamType = Literal["string", "token", "date", "reference"]
Kind = Literal[
    "string", "name", "address", "code", "coding", "concept", "identifier", "boolean",
    "phone", "email", "deceased", "date", "period", "reference",
]  # fmt: skip


@dataclass(frozen=True)
class ElementPath:
    segments: tuple[str, ...]
    kind: Kind


@dataclass(frozen=True)
class SearchParamDef:
    """One search parameter. `targets`: resource types a reference parameter may point to (empty
    = any type). `system`: implied code system of plain `code` elements (token search)."""

    name: str
    type: ParamType
    documentation: str
    paths: tuple[ElementPath, ...] = ()
    targets: tuple[str, ...] = ()
    system: str | None = None


def _p(
    name: str,
    type_: ParamType,
    doc: str,
    *paths: str,
    targets: tuple[str, ...] = (),
    system: str | None = None,
) -> SearchParamDef:
    parsed = []
    for spec in paths:
        path, kind = spec.rsplit(":", 1)
        segments = tuple(path.split(".")) if path != "." else ()
        parsed.append(ElementPath(segments, kind))  # type: ignore[arg-type]
    return SearchParamDef(name, type_, doc, tuple(parsed), targets, system)


def _s(name: str, doc: str, *paths: str) -> SearchParamDef:
    return _p(name, "string", doc, *paths)


def _t(name: str, doc: str, *paths: str, system: str | None = None) -> SearchParamDef:
    return _p(name, "token", doc, *paths, system=system)


def _d(name: str, doc: str, *paths: str) -> SearchParamDef:
    return _p(name, "date", doc, *paths)


def _r(name: str, doc: str, path: str, *targets: str) -> SearchParamDef:
    return _p(name, "reference", doc, f"{path}:reference", targets=targets)


def _status(rtype: str, doc: str = "Status of the resource") -> SearchParamDef:
    return _t("status", doc, "status:code", system=binding_system(rtype, "status"))


_ID = _t("identifier", "An identifier (system|value)", "identifier:identifier")
_PATIENT_OF = "Who the record is about, when a Patient (Patient/<id> or <id>)"


def _patient(path: str = "subject") -> SearchParamDef:
    return _r("patient", _PATIENT_OF, path, "Patient")


def _subject(*targets: str) -> SearchParamDef:
    return _r("subject", "Who the record is about", "subject", *targets)


def _encounter(path: str = "encounter") -> SearchParamDef:
    return _r("encounter", "The Encounter the record was made in", path, "Encounter")


def _code(path: str = "code", doc: str = "Code of the record (system|code)") -> SearchParamDef:
    return _t("code", doc, f"{path}:concept")


def _category(path: str = "category") -> SearchParamDef:
    return _t("category", "Category (system|code)", f"{path}:concept")


_HUMAN = (
    _s("family", "A portion of a family name (starts with, case and accents ignored)",
       "name.family:string"),
    _s("given", "A portion of a given name", "name.given:string"),
    _s("name", "A portion of any part of a name (family, given, prefix, suffix, text)",
       "name:name"),
    _t("phone", "A phone number (exact, spaces and punctuation ignored)", "telecom:phone"),
    _t("email", "An email address (exact, case ignored)", "telecom:email"),
    _t("gender", "Gender (male | female | other | unknown)", "gender:code",
       system=binding_system("Patient", "gender")),
    _t("active", "Whether the record is in active use (true | false)", "active:boolean"),
)  # fmt: skip

_PRACTITIONERS = ("Practitioner", "PractitionerRole")
_ACTORS = ("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device")

_DEFS: dict[str, tuple[SearchParamDef, ...]] = {
    "Patient": (
        _ID, *_HUMAN,
        _d("birthdate", "The patient's date of birth", "birthDate:date"),
        _t("deceased", "Whether the patient is dead (true | false)", ".:deceased"),
        _d("death-date", "Date of death", "deceasedDateTime:date"),
        _r("general-practitioner", "The patient's nominated care provider", "generalPractitioner",
           "Organization", *_PRACTITIONERS),
        _r("organization", "Organization that is the custodian of the record",
           "managingOrganization", "Organization"),
        _s("address-city", "A city in an address", "address.city:string"),
        _s("address-postalcode", "A postal code in an address", "address.postalCode:string"),
    ),
    "Practitioner": (
        _ID, *_HUMAN,
    ),
    "PractitionerRole": (
        _ID,
        _r("practitioner", "The practitioner in the role", "practitioner", "Practitioner"),
        _r("organization", "The organization the role is for", "organization", "Organization"),
        _r("location", "Where the role is performed", "location", "Location"),
        _t("role", "The role (system|code)", "code:concept"),
        _t("specialty", "The specialty (system|code)", "specialty:concept"),
        _t("active", "Whether the role is active (true | false)", "active:boolean"),
    ),
    "Organization": (
        _ID,
        _s("name", "A portion of the name or an alias", "name:string", "alias:string"),
        _r("partof", "The organization this one is part of", "partOf", "Organization"),
        _t("type", "Kind of organization (system|code)", "type:concept"),
        _t("active", "Whether the organization is active (true | false)", "active:boolean"),
    ),
    "Location": (
        _ID,
        _s("name", "A portion of the name or an alias", "name:string", "alias:string"),
        _r("organization", "Organization responsible for the location", "managingOrganization",
           "Organization"),
        _r("partof", "Location this one is part of", "partOf", "Location"),
        _t("type", "Type of location (system|code)", "type:concept"),
        _status("Location"),
    ),
    "Encounter": (
        _ID, _patient(), _subject("Patient", "Group"), _status("Encounter"),
        _t("class", "Classification of the encounter (system|code)", "class:coding"),
        _t("type", "Specific type of encounter (system|code)", "type:concept"),
        _d("date", "A date within the encounter's period", "period:period"),
        _r("practitioner", "A practitioner taking part", "participant.individual", "Practitioner"),
        _r("participant", "A person taking part", "participant.individual", *_PRACTITIONERS,
           "RelatedPerson"),
        _r("service-provider", "Organization responsible for the encounter", "serviceProvider",
           "Organization"),
        _r("location", "Where the encounter took place", "location.location", "Location"),
        _t("reason-code", "Coded reason for the encounter", "reasonCode:concept"),
    ),
    "Condition": (
        _ID, _patient(), _subject("Patient", "Group"), _encounter(), _code(), _category(),
        _t("clinical-status", "active | recurrence | relapse | inactive | remission | resolved",
           "clinicalStatus:concept"),
        _t("verification-status", "Verification status (system|code)",
           "verificationStatus:concept"),
        _d("onset-date", "Date (or period) of onset", "onsetDateTime:date", "onsetPeriod:period"),
        _d("recorded-date", "Date the condition was first recorded", "recordedDate:date"),
        _d("abatement-date", "Date (or period) of abatement", "abatementDateTime:date",
           "abatementPeriod:period"),
    ),
    "AllergyIntolerance": (
        _ID, _patient("patient"),
        _t("code", "Code of the allergy, or of a reaction's substance (system|code)",
           "code:concept", "reaction.substance:concept"),
        _t("clinical-status", "active | inactive | resolved", "clinicalStatus:concept"),
        _t("verification-status", "Verification status (system|code)",
           "verificationStatus:concept"),
        _t("type", "allergy | intolerance", "type:code",
           system=binding_system("AllergyIntolerance", "type")),
        _t("category", "food | medication | environment | biologic", "category:code",
           system=binding_system("AllergyIntolerance", "category")),
        _t("criticality", "low | high | unable-to-assess", "criticality:code",
           system=binding_system("AllergyIntolerance", "criticality")),
        _d("date", "Date first recorded", "recordedDate:date"),
    ),
    "MedicationRequest": (
        _ID, _patient(), _subject("Patient", "Group"), _encounter(),
        _status("MedicationRequest"),
        _t("intent", "Kind of request (order, plan...)", "intent:code",
           system=binding_system("MedicationRequest", "intent")),
        _code("medicationCodeableConcept", "Code of the medication requested"),
        _r("medication", "The Medication requested", "medicationReference", "Medication"),
        _d("authoredon", "When the request was written", "authoredOn:date"),
        _r("requester", "Who asked for the medication", "requester", *_ACTORS),
        _category(),
    ),
    "Medication": (
        _ID, _code(), _status("Medication"),
        _r("manufacturer", "Manufacturer of the medication", "manufacturer", "Organization"),
    ),
    "Observation": (
        _ID, _patient(), _subject("Patient", "Group", "Device", "Location"), _encounter(),
        _code(), _category(), _status("Observation"),
        _d("date", "Clinically relevant time of the observation", "effectiveDateTime:date",
           "effectivePeriod:period", "effectiveInstant:date"),
        _r("performer", "Who performed the observation", "performer", *_ACTORS[:5], "CareTeam"),
    ),
    "Procedure": (
        _ID, _patient(), _subject("Patient", "Group"), _encounter(), _code(), _category(),
        _status("Procedure"),
        _d("date", "When the procedure was performed", "performedDateTime:date",
           "performedPeriod:period"),
        _r("performer", "Who performed the procedure", "performer.actor", *_ACTORS),
        _r("location", "Where the procedure happened", "location", "Location"),
    ),
    "Immunization": (
        _ID, _patient("patient"),
        _r("encounter", "Encounter the vaccine was given in (rempart)", "encounter", "Encounter"),
        _t("vaccine-code", "Vaccine product administered (system|code)", "vaccineCode:concept"),
        _d("date", "When the vaccine was administered", "occurrenceDateTime:date"),
        _status("Immunization"),
        _r("location", "Where the vaccine was given", "location", "Location"),
        _r("performer", "Who administered the vaccine", "performer.actor", *_PRACTITIONERS,
           "Organization"),
    ),
    "Coverage": (
        _ID, _status("Coverage"),
        _r("beneficiary", "Plan beneficiary", "beneficiary", "Patient"),
        _r("patient", "Plan beneficiary (Patient/<id> or <id>)", "beneficiary", "Patient"),
        _r("payor", "Issuer of the policy", "payor", "Organization", "Patient", "RelatedPerson"),
        _r("subscriber", "Subscriber of the policy", "subscriber", "Patient", "RelatedPerson"),
        _r("policy-holder", "Owner of the policy", "policyHolder", "Patient", "RelatedPerson",
           "Organization"),
        _t("type", "Kind of coverage (system|code)", "type:concept"),
    ),
    "DocumentReference": (
        _ID, _patient(), _subject("Patient", "Practitioner", "Group", "Device"),
        _t("type", "Kind of document (system|code)", "type:concept"), _category(),
        _encounter("context.encounter"),
        _d("date", "When the document reference was created", "date:date"),
        _d("period", "Time of service documented", "context.period:period"),
        _status("DocumentReference"),
        _r("author", "Who wrote the document", "author", *_ACTORS),
    ),
    "Device": (
        _ID, _patient("patient"), _status("Device"),
        _t("type", "Kind of device (system|code)", "type:concept"),
        _r("organization", "Organization responsible for the device", "owner", "Organization"),
        _r("location", "Where the device is", "location", "Location"),
    ),
    "CareTeam": (
        _ID, _patient(), _subject("Patient", "Group"), _encounter(), _category(),
        _status("CareTeam"),
        _d("date", "Time period the team covers", "period:period"),
        _r("participant", "A member of the team", "participant.member", *_ACTORS[:5],
           "CareTeam"),
    ),
    "DiagnosticReport": (
        _ID, _patient(), _subject("Patient", "Group", "Device", "Location"), _encounter(),
        _code(), _category(), _status("DiagnosticReport"),
        _d("date", "Clinically relevant time of the report", "effectiveDateTime:date",
           "effectivePeriod:period"),
        _d("issued", "When the report was released", "issued:date"),
        _r("performer", "Who is responsible for the report", "performer", *_PRACTITIONERS,
           "Organization", "CareTeam"),
        _r("result", "An Observation of the report", "result", "Observation"),
    ),
    "Provenance": (
        _r("target", "The resource the provenance is about (Type/id)", "target"),
        _r("patient", "The Patient the provenance is about", "target", "Patient"),
        _r("agent", "Who took part", "agent.who", *_ACTORS),
        _d("recorded", "When the activity was recorded", "recorded:date"),
        _r("location", "Where the activity took place", "location", "Location"),
    ),
}  # fmt: skip

SUPPORTED_TYPES: frozenset[str] = frozenset(_DEFS)

# Parameters every type has; parse_search answers them from plain columns, not the index.
COMMON: tuple[SearchParamDef, ...] = (
    SearchParamDef("_id", "token", "Logical id of the resource (comma-separated for several)"),
    SearchParamDef("_lastUpdated", "date", "When the resource version was stored (eq ge gt le lt)"),
)

REGISTRY: dict[str, dict[str, SearchParamDef]] = {
    rtype: {d.name: d for d in defs} for rtype, defs in _DEFS.items()
}


def search_parameters(resource_type: str) -> list[SearchParamDef]:
    """All search parameters of a type, `_id` and `_lastUpdated` first (CapabilityStatement)."""
    return [*COMMON, *definitions(resource_type).values()]


def param_def(resource_type: str, name: str) -> SearchParamDef | None:
    return definitions(resource_type).get(name)


def require_type(resource_type: str) -> None:
    """UnsupportedResourceType unless the server handles this type."""
    definitions(resource_type)


def definitions(resource_type: str) -> dict[str, SearchParamDef]:
    """The indexed parameters of a type, by name (UnsupportedResourceType if unknown)."""
    try:
        return REGISTRY[resource_type]
    except KeyError:
        raise UnsupportedResourceType(
            f"Resource type '{resource_type}' is not supported by this server"
        ) from None
