"""The CapabilityStatement served at /metadata, generated from the parameter table so that what
we advertise is exactly what parse_search accepts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rempart import __version__
from rempart.fhir.params import SUPPORTED_TYPES, search_parameters

FHIR_VERSION = "4.0.1"
TYPE_INTERACTIONS = ("read", "vread", "update", "create", "history-instance", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch")
# The audit log as AuditEvent (issue #5): read and search, security officer only; what
# `rempart.audit.fhir_view.parse_event_query` accepts (a test holds the two together).
AUDIT_EVENT_SEARCH = (
    ("agent", "reference", "the account (Account id) or Practitioner/<id> who acted"),
    ("agent-name", "string", "the username of the account who acted"),
    ("patient", "reference", "Patient/<id> whose data was accessed"),
    ("entity", "reference", "same as patient"),
    ("date", "date", "when (eq, ge, gt, le, lt; a date or dateTime)"),
    ("action", "token", "C, R, U, D, E, or a rempart action (read, search, login...)"),
    ("subtype", "token", "the rempart action (read, vread, search, create, login...)"),
    ("outcome", "token", "0 success, 4 refused or not found, 8 error (or their names)"),
)


def capability_statement(
    base_url: str,
    *,
    interactions: Sequence[str] = TYPE_INTERACTIONS,
    system_interactions: Sequence[str] = SYSTEM_INTERACTIONS,
    software_version: str = __version__,
    date: datetime | None = None,
    security_description: str | None = None,
) -> dict[str, Any]:
    """R4 CapabilityStatement (kind "instance") for the server at `base_url`."""
    when = (date or datetime.now(UTC)).astimezone(UTC)
    resources = [
        {
            "type": rtype,
            "versioning": "versioned",
            "readHistory": "vread" in interactions,
            "interaction": [{"code": code} for code in interactions],
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.documentation}
                for p in search_parameters(rtype)
            ],
        }
        for rtype in sorted(SUPPORTED_TYPES)
    ]
    resources.append(
        {
            "type": "AuditEvent",
            "documentation": "The audit log (read-only; the security officer only).",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": kind, "documentation": doc}
                for name, kind, doc in AUDIT_EVENT_SEARCH
            ],
        }
    )
    resources.sort(key=lambda r: str(r["type"]))
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": (
            "Search: strict handling (unknown parameters are errors); string parameters match "
            "'starts with' (also at each word), case and accents ignored; paging with _count "
            "and _offset."
        ),
        "resource": resources,
        "interaction": [{"code": code} for code in system_interactions],
    }
    if security_description:
        rest["security"] = {"description": security_description}
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "publisher": "rempart",
        "kind": "instance",
        "software": {"name": "rempart", "version": software_version},
        "implementation": {"description": "rempart FHIR R4 server", "url": base_url.rstrip("/")},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [rest],
    }
