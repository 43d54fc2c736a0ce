"""parse_search: FHIR search parameters -> blind-index clauses + exact post-filters.

A resource matches a SearchQuery when, for every clause, one of `any_of` is among its tokens for
`clause.param` (the store finds these through HMACs), every post-filter accepts the decrypted
resource, its id is in `ids` (when given) and its lastUpdated satisfies `last_updated`.
Repeating a parameter ANDs (one clause each); a comma inside a value ORs (one clause, several
tokens). Handling is strict (FHIR `handling=strict`): unknown parameters and modifiers are errors,
not silently dropped, since a dropped filter would return more records than the user asked for.
Empty values (`family=`) are ignored, as FHIR asks.

Paging is `_count` (page size, capped at max_count; 0 = the total alone, as FHIR R4 allows) and
`_offset` (records to skip); the Bundle links carry both. Accepted and ignored: `_total`,
`_format` (json only), `_pretty`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rempart.errors import InvalidSearch
from rempart.fhir import dates, strings
from rempart.fhir.extract import (
    IndexEntry,
    date_intervals,
    extract_index,
    normalise_phone,
    string_values,
)
from rempart.fhir.params import SearchParamDef, param_def, require_type
from rempart.fhir.references import parse_local
from rempart.fhir.tokens import query_token, split_unescaped, unescape

Resource = dict[str, Any]
PostFilter = Callable[[Resource], bool]

_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_IGNORED = {
    "_total": {"none", "estimate", "accurate"},
    "_format": {"json", "application/json", "application/fhir+json", "application/json+fhir"},
    "_pretty": {"true", "false"},
}
_NOT_SUPPORTED = ("_sort", "_include", "_revinclude", "_summary", "_elements", "_has", "_text",
                  "_content", "_list", "_query", "_filter", "_tag", "_profile", "_security",
                  "_source", "_contained", "_containedType", "_type")  # fmt: skip


@dataclass(frozen=True)
class Clause:
    param: str
    any_of: tuple[str, ...]


@dataclass
class SearchQuery:
    """`last_updated` holds (op, aware UTC datetime) with op "ge" or "lt" only: every FHIR prefix
    on a precision range reduces to those two comparisons on the stored instant."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    post_filters: list[PostFilter] = field(default_factory=list)
    ids: list[str] | None = None
    last_updated: list[tuple[str, datetime]] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    echo: list[tuple[str, str]] = field(default_factory=list)

    def matches(self, resource: Resource, index: Iterable[IndexEntry] | None = None) -> bool:
        """Reference evaluation of the whole query on one resource (tests, in-memory stores)."""
        if resource.get("resourceType") != self.resource_type:
            return False
        if self.ids is not None and resource.get("id") not in self.ids:
            return False
        if self.last_updated:
            stamp = resource.get("meta", {}).get("lastUpdated")
            r = dates.parse_range(stamp) if isinstance(stamp, str) else None
            if r is None or not all(_compare(op, r[0], bound) for op, bound in self.last_updated):
                return False
        entries = set(extract_index(resource) if index is None else index)
        for clause in self.clauses:
            if not any(IndexEntry(clause.param, t) in entries for t in clause.any_of):
                return False
        return all(f(resource) for f in self.post_filters)


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    *,
    default_count: int = 20,
    max_count: int = 200,
) -> SearchQuery:
    require_type(resource_type)
    query = SearchQuery(resource_type, count=min(default_count, max_count))
    for raw_name, raw_value in params:
        name, _, modifier = raw_name.partition(":")
        if name in _IGNORED:
            # "application/fhir+json" sent unencoded arrives with a space for the '+'.
            value = raw_value.strip().replace(" ", "+")
            if value and value not in _IGNORED[name]:
                raise InvalidSearch(f"Search parameter '{name}': unsupported value '{raw_value}'")
            continue
        if name in ("_count", "_offset") and raw_value.strip():
            number = _non_negative(name, raw_value)
            if name == "_count":
                # _count=0 asks for the total alone (clients such as fhirpy count this way).
                query.count = min(number, max_count)
            else:
                query.offset = number
            continue
        if not raw_value.strip():
            if name not in ("_id", "_lastUpdated", "_count", "_offset"):
                _definition(resource_type, name, modifier)  # still refuse unknown names
            continue
        if name == "_id":
            _no_modifier(name, modifier)
            _add_ids(query, raw_value)
        elif name == "_lastUpdated":
            _no_modifier(name, modifier)
            _add_last_updated(query, raw_value)
        else:
            pdef = _definition(resource_type, name, modifier)
            _add_param(query, pdef, modifier, raw_value)
        query.echo.append((raw_name, raw_value))
    return query


def _definition(resource_type: str, name: str, modifier: str) -> SearchParamDef:
    if "." in name or "." in modifier:
        raise InvalidSearch(f"Search parameter '{name}': chained search is not supported")
    if name in _NOT_SUPPORTED:
        raise InvalidSearch(f"Search parameter '{name}' is not supported by this server")
    pdef = param_def(resource_type, name)
    if pdef is None:
        raise InvalidSearch(f"Unknown search parameter '{name}' for {resource_type}")
    if modifier == "missing":
        raise InvalidSearch(f"Search parameter '{name}': modifier ':missing' is not supported")
    return pdef


def _add_param(query: SearchQuery, pdef: SearchParamDef, modifier: str, raw: str) -> None:
    alternatives = [v for v in split_unescaped(raw, ",") if v.strip()]
    if not alternatives:
        raise InvalidSearch(f"Search parameter '{pdef.name}': no value between the commas")
    if pdef.type == "string":
        _add_string(query, pdef, modifier, alternatives)
    elif pdef.type == "token":
        _no_modifier(pdef.name, modifier)
        kind = pdef.paths[0].kind
        if kind in ("phone", "email"):  # compared in the normal form they are indexed in
            norm = normalise_phone if kind == "phone" else str.casefold
            alternatives = [norm(v) for v in alternatives]
        query.clauses.append(
            Clause(pdef.name, _uniq(query_token(v, pdef.name) for v in alternatives))
        )
    elif pdef.type == "reference":
        _add_reference(query, pdef, modifier, alternatives)
    else:
        _no_modifier(pdef.name, modifier)
        bounds = [dates.parse_date_query(unescape(v), pdef.name) for v in alternatives]
        query.clauses.append(Clause(pdef.name, _uniq(t for b in bounds for t in b.tokens())))

        def date_filter(resource: Resource) -> bool:
            values = date_intervals(resource, pdef)
            return any(b.matches(iv) for b in bounds for iv in values)

        query.post_filters.append(date_filter)


def _add_string(
    query: SearchQuery, pdef: SearchParamDef, modifier: str, alternatives: list[str]
) -> None:
    if modifier == "exact":
        tokens = _uniq(strings.exact_token(unescape(v)) for v in alternatives)
        query.clauses.append(Clause(pdef.name, tokens))
        return
    if modifier:
        raise InvalidSearch(
            f"Search parameter '{pdef.name}': modifier ':{modifier}' is not supported "
            "(string parameters accept :exact; the default is 'starts with')"
        )
    norms = [strings.normalise(unescape(v)) for v in alternatives]
    if not all(norms):
        raise InvalidSearch(f"Search parameter '{pdef.name}': the value has no letter or digit")
    query.clauses.append(Clause(pdef.name, _uniq(strings.query_prefix_token(n) for n in norms)))
    if any(len(n) > strings.PREFIX_MAX for n in norms):
        # The index only holds the first PREFIX_MAX characters; finish the comparison exactly.
        def string_filter(resource: Resource) -> bool:
            values = string_values(resource, pdef)
            return any(strings.matches_prefix(v, n) for n in norms for v in values)

        query.post_filters.append(string_filter)


def _add_reference(
    query: SearchQuery, pdef: SearchParamDef, modifier: str, alternatives: list[str]
) -> None:
    if modifier == "identifier":
        idents = _uniq(query_token(v, pdef.name, ns="i") for v in alternatives)
        query.clauses.append(Clause(pdef.name, idents))
        return
    if modifier and (not modifier[:1].isupper() or (pdef.targets and modifier not in pdef.targets)):
        raise InvalidSearch(
            f"Search parameter '{pdef.name}': modifier ':{modifier}' is not supported here "
            f"(use :identifier or a target type: {', '.join(pdef.targets) or 'any'})"
        )
    tokens: list[str] = []
    for raw in alternatives:
        value = unescape(raw).strip()
        local = parse_local(value)
        if local is not None:
            rtype, rid = local
            if (pdef.targets and rtype not in pdef.targets) or (modifier and rtype != modifier):
                raise InvalidSearch(
                    f"Search parameter '{pdef.name}' cannot refer to a {rtype} "
                    f"(targets: {', '.join(pdef.targets)})"
                )
            tokens.append(f"r:{rtype}/{rid}")
        elif _ID_RE.fullmatch(value):
            targets = (modifier,) if modifier else pdef.targets
            if not targets:
                raise InvalidSearch(
                    f"Search parameter '{pdef.name}': give the reference as Type/id"
                )
            tokens.extend(f"r:{t}/{value}" for t in targets)
        else:
            raise InvalidSearch(
                f"Search parameter '{pdef.name}': the value is not a local reference "
                "(Type/id or id; absolute URLs are not supported)"
            )
    query.clauses.append(Clause(pdef.name, _uniq(tokens)))


def _add_ids(query: SearchQuery, raw: str) -> None:
    ids = [v.strip() for v in raw.split(",") if v.strip()]
    for v in ids:
        if not _ID_RE.fullmatch(v):
            raise InvalidSearch(f"Search parameter '_id': '{v}' is not a valid id")
    if query.ids is None:
        query.ids = list(dict.fromkeys(ids))
    else:  # a repeated _id ANDs: only ids named by every occurrence can match
        query.ids = [i for i in query.ids if i in ids]


def _add_last_updated(query: SearchQuery, raw: str) -> None:
    if "," in raw:
        raise InvalidSearch("Search parameter '_lastUpdated': OR (comma) is not supported")
    q = dates.parse_date_query(raw, "_lastUpdated")
    # A stored instant t matches as the interval [t, t+tick): each prefix is one or two bounds.
    bounds = {
        "eq": [("ge", q.lo), ("lt", q.hi)],
        "ge": [("ge", q.lo)],
        "gt": [("ge", q.hi)],
        "le": [("lt", q.hi)],
        "lt": [("lt", q.lo)],
    }[q.prefix]
    query.last_updated.extend(bounds)


def _compare(op: str, value: datetime, bound: datetime) -> bool:
    return value >= bound if op == "ge" else value < bound


def _non_negative(name: str, raw: str) -> int:
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        kind = "a positive" if name == "_count" else "a non-negative"
        raise InvalidSearch(f"Search parameter '{name}' must be {kind} integer")
    return int(value)


def _no_modifier(name: str, modifier: str) -> None:
    if modifier:
        raise InvalidSearch(f"Search parameter '{name}': modifier ':{modifier}' is not supported")


def _uniq(tokens: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tokens))
