"""Reference elements: finding every one in a resource, and reading local `Type/id` references.

`references()` serves transactions and bulk imports, which must rewrite `urn:uuid:` and
conditional (`Practitioner?identifier=...`) references to the ids the server assigned; the caller
sets `ref["reference"]` on the returned dicts in place. It finds References by shape rather than
by schema (a JSON object with a string `reference`, or a logical reference: an `identifier`
object and no `resourceType`), which in R4 only References have, including in extensions
(`valueReference`) and contained resources.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_LOCAL_RE = re.compile(
    r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)


def parse_local(reference: str) -> tuple[str, str] | None:
    """("Patient", "123") for "Patient/123" or "Patient/123/_history/2"; None for absolute URLs,
    urn:uuid:, conditional ("Patient?identifier=...") and contained ("#p1") references."""
    m = _LOCAL_RE.fullmatch(reference)
    return (m.group(1), m.group(2)) if m else None


def references(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every Reference element as (FHIRPath-like location, the Reference dict itself), in document
    order, e.g. ("Encounter.participant[0].individual", {"reference": "Practitioner?..."})."""
    root = resource.get("resourceType")
    return list(_walk(resource, root if isinstance(root, str) else "", top=True))


def _is_reference(node: dict[str, Any]) -> bool:
    if "resourceType" in node:
        return False
    return isinstance(node.get("reference"), str) or isinstance(node.get("identifier"), dict)


def _walk(node: Any, path: str, *, top: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if not top and _is_reference(node):
            yield path, node
            # A Reference holds an Identifier whose `assigner` is itself a Reference.
        for key, child in node.items():
            if isinstance(child, dict | list):
                yield from _walk(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _walk(item, f"{path}[{i}]")
