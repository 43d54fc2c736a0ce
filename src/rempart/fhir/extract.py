"""extract_index: the normalised (param, token) pairs a resource is findable under.

The store HMACs each pair as f"{type}|{param}|{token}" under the search key; parse_search builds
its lookups from the same functions, so a token found equals a clause matched. Token formats:

  string     "p:<normalised prefix>" (1..24 chars, every word tail), "x:<exact value>"
  token      "c:<code>", "sc:<system>|<code>", "nc:<code>" (no system), "sy:<system>"
  reference  "r:<Type>/<id>" (local references only) and, for `:identifier`,
             "ic:<value>", "isc:<system>|<value>", "inc:<value>", "isy:<system>"
  date       "s:d<YYYY-MM-DD>", "s:m<YYYY-MM>", "s:y<YYYY>", "s:<", "s:>" and the same with "e:"
             (first and last UTC day of the value; see dates.py)

`_id` and `_lastUpdated` are not indexed: the store keeps them as plain columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rempart.fhir import dates, strings
from rempart.fhir.params import ElementPath, SearchParamDef, definitions
from rempart.fhir.references import parse_local
from rempart.fhir.tokens import code_tokens

_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")
_PHONE_NOISE = str.maketrans("", "", " .-()/\t")


@dataclass(frozen=True)
class IndexEntry:
    param: str
    token: str


def extract_index(resource: dict[str, Any]) -> list[IndexEntry]:
    """Deduplicated entries in a deterministic order (parameter table order, then document
    order). Unusable values (unparseable dates, non-local references) are skipped, not errors:
    validate() is the gate, indexing only decides what is findable."""
    return [IndexEntry(param, token) for param, token in extract_pairs(resource)]


def extract_pairs(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """extract_index as (param, token) tuples: bulk ingest indexes ~27 entries per resource,
    and tuples are built and deduplicated several times faster than IndexEntry objects."""
    seen: dict[tuple[str, str], None] = {}
    for pdef in definitions(resource["resourceType"]).values():
        name = pdef.name
        for path in pdef.paths:
            for element in walk(resource, path.segments):
                for token in _element_tokens(pdef, path, element):
                    seen[(name, token)] = None
    return list(seen)


def walk(node: Any, segments: tuple[str, ...]) -> Iterator[Any]:
    """Values at a dotted path, arrays flattened at every step."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item, segments)
    elif not segments:
        if node is not None:
            yield node
    elif isinstance(node, dict):
        child = node.get(segments[0])
        if child is not None:
            yield from walk(child, segments[1:])


def string_values(resource: dict[str, Any], pdef: SearchParamDef) -> list[str]:
    """Every string a string parameter compares against (the post-filter of long queries)."""
    out: list[str] = []
    for path in pdef.paths:
        for element in walk(resource, path.segments):
            out.extend(_strings_of(path, element))
    return out


def date_intervals(resource: dict[str, Any], pdef: SearchParamDef) -> list[dates.Interval]:
    """Every interval a date parameter compares against (the post-filter of date queries)."""
    out: list[dates.Interval] = []
    for path in pdef.paths:
        for element in walk(resource, path.segments):
            iv = _interval_of(path, element)
            if iv is not None:
                out.append(iv)
    return out


def normalise_phone(value: str) -> str:
    """Phone numbers are compared without spaces and punctuation: "06 12-34" == "061234"."""
    return value.translate(_PHONE_NOISE)


def _element_tokens(pdef: SearchParamDef, path: ElementPath, element: Any) -> list[str]:  # noqa: PLR0911, PLR0912
    kind = path.kind
    if kind in ("string", "name", "address"):
        out: list[str] = []
        for s in _strings_of(path, element):
            out.extend(strings.prefix_tokens(s))
            out.append(strings.exact_token(s))
        return out
    if kind in ("date", "period"):
        iv = _interval_of(path, element)
        return dates.interval_tokens(iv) if iv is not None else []
    if kind == "code":
        return code_tokens(pdef.system, element) if isinstance(element, str) else []
    if kind == "boolean":
        return code_tokens(None, _bool(element)) if isinstance(element, bool) else []
    if kind == "deceased":
        dead = element.get("deceasedBoolean") is True or "deceasedDateTime" in element
        return code_tokens(None, _bool(dead))
    if not isinstance(element, dict):
        return []
    if kind == "coding":
        return code_tokens(_str(element.get("system")), _str(element.get("code")))
    if kind == "concept":
        codings = element.get("coding")
        if not isinstance(codings, list):
            return []
        return [
            t for c in codings if isinstance(c, dict)
            for t in code_tokens(_str(c.get("system")), _str(c.get("code")))
        ]  # fmt: skip
    if kind == "identifier":
        return code_tokens(_str(element.get("system")), _str(element.get("value")))
    if kind in ("phone", "email"):
        value = _str(element.get("value"))
        if element.get("system") != kind or value is None:
            return []
        norm = normalise_phone(value) if kind == "phone" else value.casefold()
        return code_tokens(None, norm)
    if kind == "reference":
        return _reference_tokens(pdef, element)
    return []


def _reference_tokens(pdef: SearchParamDef, ref: dict[str, Any]) -> list[str]:
    out: list[str] = []
    literal = ref.get("reference")
    if isinstance(literal, str):
        local = parse_local(literal)
        if local is not None and (not pdef.targets or local[0] in pdef.targets):
            out.append(f"r:{local[0]}/{local[1]}")
    ident = ref.get("identifier")
    declared = ref.get("type")
    if isinstance(ident, dict) and (
        not pdef.targets or not isinstance(declared, str) or declared in pdef.targets
    ):
        out.extend(code_tokens(_str(ident.get("system")), _str(ident.get("value")), ns="i"))
    return out


def _strings_of(path: ElementPath, element: Any) -> list[str]:
    if path.kind == "string":
        return [element] if isinstance(element, str) else []
    if not isinstance(element, dict):
        return []
    parts = _NAME_PARTS if path.kind == "name" else _ADDRESS_PARTS
    out: list[str] = []
    for part in parts:
        value = element.get(part)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return out


def _interval_of(path: ElementPath, element: Any) -> dates.Interval | None:
    if path.kind == "date" and isinstance(element, str):
        return dates.interval_of(element)
    if path.kind == "period" and isinstance(element, dict):
        return dates.period_interval(element)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _bool(value: bool) -> str:
    return "true" if value else "false"
