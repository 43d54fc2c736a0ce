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
