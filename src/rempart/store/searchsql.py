"""A search page's statements, built once per shape of search and cached; values bound at
execution.

Why: a clinician's `Encounter?patient=` built its SQLAlchemy statements anew each time, and
building them (the scope's UNION of care-link branches, the clauses) and SQLAlchemy's cache key
over them took about a quarter of the search's Python (a py-spy of the server under load,
docs/benchmarks.md 2026-12-01). Cached here, they run as `Prepared` statements on the driver's
cursor, with the same SQL as before.

A shape is what the SQL depends on: the type, how many digests each clause has, the `_id`
count, the `_lastUpdated` operators, the scope's and the care-link column's keys. Every value
(digests, ids, instants, the scope's account, the page's limit and offset) is an unvalued
parameter: a value missing at execution is an error, never an old value reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, func, select

from rempart.access.scope import ReadLink, ScopeSql
from rempart.store.prepared import Prepared
from rempart.store.shred import not_erased
from rempart.store.tables import resource, resource_version, search_index

MAX_VALUES = 16  # a clause with more digests (or more `_id`s) is built per search, not cached
MAX_SHAPES = 512  # past this many, new shapes are built per search (nothing is evicted)


@dataclass(frozen=True)
class Shape:
    res_type: str
    clauses: tuple[int, ...]  # digests per clause
    ids: int | None  # how many `_id` values (None: no `_id`)
    last_updated: tuple[str, ...]  # the operators of `_lastUpdated`
    scope: object | None  # `ScopeSql.key` (None: no patient restriction)
    link: object | None  # `ReadLink.key` (None: no care-link column)
    by_compartment: bool  # the order that starts from the caller's patients (ordered_rows)


@dataclass(frozen=True)
class Statements:
    page: Prepared
    count: Prepared


_CACHE: dict[Shape, Statements] = {}
_LOCK = threading.Lock()


def statements(
    shape: Shape,
    ops: dict[str, Callable[[Any, Any], ColumnElement[bool]]],
    scope: ScopeSql | None,
    link: ReadLink | None,
) -> Statements:
    found = _CACHE.get(shape)
    if found is None:
        found = _build(shape, ops, scope, link)
        with _LOCK:
            if len(_CACHE) < MAX_SHAPES:
                found = _CACHE.setdefault(shape, found)
    return found


def values(
    res_type: str,
    digests: Sequence[Sequence[bytes]],
    ids: Sequence[str] | None,
    last_updated: Sequence[int],
) -> dict[str, Any]:
    """The parameters of a shape's statements, but for the scope's and the link's own and the
    page's `page_limit` and `page_offset`."""
    params: dict[str, Any] = {"res_type": res_type}
    for i, clause in enumerate(digests):
        for j, digest in enumerate(clause):
            params[f"d{i}_{j}"] = digest
    for k, res_id in enumerate(ids or ()):
        params[f"id{k}"] = res_id
    for k, instant in enumerate(last_updated):
        params[f"lu{k}"] = instant
    return params


def _build(
    shape: Shape,
    ops: dict[str, Callable[[Any, Any], ColumnElement[bool]]],
    scope: ScopeSql | None,
    link: ReadLink | None,
) -> Statements:
    res_type: Any = bindparam("res_type")
    conds: list[ColumnElement[bool]] = [
        resource.c.res_type == res_type,
        not_erased(resource.c.compartment),
    ]
    for i, n in enumerate(shape.clauses):
        digests: list[Any] = [bindparam(f"d{i}_{j}") for j in range(n)]
        matching = select(search_index.c.res_id).where(
            search_index.c.res_type == res_type, search_index.c.digest.in_(digests)
        )
        conds.append(resource.c.res_id.in_(matching))
    if shape.ids is not None:
        conds.append(resource.c.res_id.in_([bindparam(f"id{k}") for k in range(shape.ids)]))
    for k, op in enumerate(shape.last_updated):
        conds.append(ops[op](resource.c.last_updated, bindparam(f"lu{k}")))
    if scope is not None:
        conds.append(resource.c.compartment.in_(scope.subquery))
    page = ordered_rows(conds, None if link is None else link.column, shape.by_compartment)
    page = page.limit(bindparam("page_limit", type_=Integer)).offset(
        bindparam("page_offset", type_=Integer)
    )
    count = select(func.count()).select_from(resource).where(*conds)
    return Statements(Prepared(page), Prepared(count))


def ordered_rows(
    conds: Sequence[ColumnElement[bool]], link_column: Any, by_compartment: bool
) -> Select[Any]:
    """The current versions matching `conds` (with the care-link column, if given), in id
    order, before a page's LIMIT and OFFSET.

    For a decision restricted to some patients (`by_compartment`), ordering by the bare column
    would let SQLite walk the whole type in primary-key order testing each row against the
    caller's patients (cost: the hospital); `res_id || ''` (same order) makes it start from the
    caller's patients through the compartment index (cost: their records)."""
    cols: list[Any] = [
        resource.c.res_id,
        resource.c.version,
        resource.c.compartment,
        resource.c.last_updated,
        resource_version.c.payload,
    ]
    if link_column is not None:
        cols.append(link_column)
    joined = resource.join(
        resource_version,
        and_(
            resource_version.c.res_type == resource.c.res_type,
            resource_version.c.res_id == resource.c.res_id,
            resource_version.c.version == resource.c.version,
        ),
    )
    order = resource.c.res_id.concat("") if by_compartment else resource.c.res_id
    return select(*cols).select_from(joined).where(*conds).order_by(order)
