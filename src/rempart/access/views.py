"""What part of a permitted resource a role sees, and which searches it may run.

Secretaries handle Encounters for scheduling and admission, but an Encounter also carries its
reason and diagnoses: those elements are withheld from them on every read, refused in what they
write, carried over from the stored version when they update, and the search parameters that
would match on them are refused (otherwise `Encounter?reason-code=C50` would tell who has
breast cancer without showing a single code).

A secretary finds a patient outside their establishment only by exact identity traits, as a
front desk does at admission: `identifier` (one value), or `family:exact` plus a full
`birthdate` (YYYY-MM-DD). Partial names, browsing and lists of values are refused.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# Top-level elements withheld from administrative staff, per resource type.
CLINICAL_ELEMENTS: dict[str, frozenset[str]] = {
    "Encounter": frozenset(
        {"text", "reasonCode", "reasonReference", "diagnosis", "hospitalization", "contained"}
    ),
}
# Search parameters that match on withheld elements.
CLINICAL_SEARCH_PARAMS: dict[str, frozenset[str]] = {
    "Encounter": frozenset({"reason-code", "reason-reference", "diagnosis"}),
}

_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PAGING = frozenset({"_count", "_offset", "_format", "_pretty", "_total"})


def redact(hidden: frozenset[str], body: bytes) -> bytes:
    doc = orjson.loads(body)
    if not any(name in doc for name in hidden):
        return body
    return orjson.dumps({k: v for k, v in doc.items() if k not in hidden})


def written_hidden(hidden: frozenset[str], body: dict[str, Any]) -> list[str]:
    return sorted(name for name in hidden if name in body)


def carry_over(hidden: frozenset[str], new: dict[str, Any], old: dict[str, Any]) -> None:
    """Keep the withheld elements of the stored version in an update by someone who cannot
    see them (otherwise a secretary rescheduling a stay would erase its diagnoses)."""
    for name in hidden:
        if name in old:
            new[name] = old[name]


def param_names(echo: list[tuple[str, str]]) -> list[str]:
    return [name.partition(":")[0] for name, _ in echo]


def is_identity_lookup(res_type: str, echo: list[tuple[str, str]]) -> bool:
    """An exact-trait lookup of a Patient, as a front desk does at admission."""
    if res_type != "Patient":
        return False
    params = [(name, value) for name, value in echo if name not in _PAGING]
    if any("," in value or not value.strip() for _, value in params):
        return False  # one value per trait: no lists to sweep the hospital with
    names = sorted(name for name, _ in params)
    if names == ["identifier"]:
        value = params[0][1]
        return bool(value.rpartition("|")[2].strip())
    if names == ["birthdate", "family:exact"]:
        birth = dict(params)["birthdate"].strip()
        return _FULL_DATE.fullmatch(birth) is not None
    return False
