"""Search over blind indexes: the query's tokens are HMAC'd and matched as opaque digests.

Clauses narrow candidates in SQL; the policy's patient scope is applied in the same query, so
`total` only ever counts what the caller may see. Exact post-filters (date ranges, which the
index only approximates by year buckets) run on decrypted candidates, bounded in number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from rempart.access.decision import Decision, issued
from rempart.access.permissions import DIRECTORY_TYPES
from rempart.access.scope import ReadLink
from rempart.clock import datetime_to_micros
from rempart.errors import Forbidden, InvalidSearch
from rempart.fhir import SearchQuery
from rempart.store import searchsql
from rempart.store.codec import open_resource
from rempart.store.repository import ResourceStore, Stored, owner_of
from rempart.store.shred import not_erased
from rempart.store.tables import resource, search_index

log = logging.getLogger("rempart.store")

# A post-filtered search decrypts its candidates; past this many it must be narrowed instead of
# letting one request decrypt a hospital.
MAX_POST_FILTER_CANDIDATES = 20_000

_OPS = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
}


def search(
    store: ResourceStore,
    decision: Decision,
    query: SearchQuery,
    *,
    conn: Connection | None = None,
) -> tuple[list[Stored], int]:
    """The page of matches the decision permits, and how many there are in all."""
    issued(decision)
    if conn is None:
        # The reader pool (autocommit on PostgreSQL): a search only reads, and a pooled
        # connection given back inside a transaction is rolled back, which makes psycopg forget
        # its prepared statements, so every search would be planned anew (1-3 ms a statement).
        with store.reader.connect() as own:
            return search(store, decision, query, conn=own)
    res_type = query.resource_type
    if res_type not in decision.read_types:
        raise Forbidden(f"searching {res_type} is not permitted")
    # The per-patient check rides on the page's own SELECT (`scope.ReadLink`): one statement,
    # where it took one more per patient of the page (a round trip each on PostgreSQL). Not on
    # a post-filtered search's candidates: up to 20,000 rows would each be checked for a page
    # of a few.
    linked = not query.post_filters
    found = _cached(store, decision, query, linked) or _built(store, decision, query, linked)
    if not query.post_filters:
        page = found.rows(conn, query.count, query.offset)
        total = _total(query, page)
        if total is None:
            total = found.count(conn)
        if found.restricted:
            _explain(decision, conn, res_type, [_checked(r, found.link) for r in page])
        return _open_rows(store, conn, decision, res_type, page), total
    candidates = found.rows(conn, MAX_POST_FILTER_CANDIDATES + 1, 0)
    if len(candidates) > MAX_POST_FILTER_CANDIDATES:
        raise InvalidSearch(
            "this search matches too many records to filter by date; add a patient, code "
            "or a narrower date"
        )
    opened = _open_rows(store, conn, decision, res_type, candidates)
    matched = [s for s in opened if _passes(query, s.json())]
    page_of = matched[query.offset : query.offset + query.count]
    if found.restricted:
        owner = {r.res_id: _checked(r, None) for r in candidates}
        _explain(decision, conn, res_type, [owner[s.res_id] for s in page_of])
    return page_of, len(matched)


@dataclass(frozen=True)
class _Found:
    """A search's two statements, ready to run: its rows in order (with `link`'s care-link
    column, when it has one) and the count of them all."""

    rows: Callable[[Connection, int, int], Sequence[Any]]  # (conn, limit, offset)
    count: Callable[[Connection], int]
    restricted: bool  # the policy's patient scope is one of the conditions
    link: ReadLink | None


def _cached(
    store: ResourceStore, decision: Decision, query: SearchQuery, linked: bool
) -> _Found | None:
    """Through statements cached by shape (`searchsql`); None when this search has no cached
    form (a scope without one, too many values): `_built` then builds them."""
    res_type = query.resource_type
    scope = decision.search_scope(res_type, query.echo)
    restricted = scope is not None and res_type not in DIRECTORY_TYPES
    scope_sql = scope.where_sql() if restricted and scope is not None else None
    if restricted and scope_sql is None:
        return None
    digests = [store.blind.digest_many(res_type, c.param, c.any_of) for c in query.clauses]
    ids = query.ids
    if any(len(values) > searchsql.MAX_VALUES for values in (*digests, ids or ())):
        return None
    link = decision.read_link() if restricted and linked else None
    shape = searchsql.Shape(
        res_type,
        tuple(len(d) for d in digests),
        None if ids is None else len(ids),
        tuple(op for op, _ in query.last_updated),
        None if scope_sql is None else scope_sql.key,
        None if link is None else link.key,
        decision.restricted,
    )
    cached = searchsql.statements(shape, _OPS, scope_sql, link)
    params = searchsql.values(
        res_type, digests, ids, [datetime_to_micros(when) for _, when in query.last_updated]
    )
    for extra in (scope_sql.params if scope_sql else {}, link.params if link else {}):
        if any(params.get(k, v) != v for k, v in extra.items()):
            # The scope and its care-link column share their parameters' names: they are
            # always the same values (one scope); anything else must not run.
            raise Forbidden(f"searching {res_type} is not permitted")
        params.update(extra)

    def rows(conn: Connection, limit: int, offset: int) -> Sequence[Any]:
        return cached.page.all(conn, {**params, "page_limit": limit, "page_offset": offset})

    def count(conn: Connection) -> int:
        return int(cached.count.scalar(conn, params) or 0)

    return _Found(rows, count, restricted, link)


def _built(store: ResourceStore, decision: Decision, query: SearchQuery, linked: bool) -> _Found:
    """The statements built for this one search."""
    conds, restricted = _conditions(store, decision, query)
    link = decision.read_link() if restricted and linked else None
    params = {} if link is None else link.params
    column = None if link is None else link.column
    ordered = searchsql.ordered_rows(conds, column, decision.restricted)

    def rows(conn: Connection, limit: int, offset: int) -> Sequence[Any]:
        return conn.execute(ordered.limit(limit).offset(offset), params).all()

    def count(conn: Connection) -> int:
        counted = select(func.count()).select_from(resource).where(*conds)
        return int(conn.execute(counted).scalar_one())

    return _Found(rows, count, restricted, link)


def _total(query: SearchQuery, page: Sequence[Any]) -> int | None:
    """A page short of its size is the last: the total is known without counting (a patient's
    encounters, a name among one clinician's patients: most searches). On PostgreSQL the count
    is a second statement, planned again at each search. None: count."""
    if len(page) < query.count and (page or not query.offset):
        return query.offset + len(page)
    return None


_Checked = tuple[str | None, tuple[ReadLink, object] | None]


def _checked(row: Any, link: ReadLink | None) -> _Checked:
    """A row's compartment, with the answer its care-link column gave (when it has one)."""
    return row.compartment, None if link is None else (link, row.care_link)


def _explain(decision: Decision, conn: Connection, res_type: str, rows: Sequence[_Checked]) -> None:
    """Each patient of the page checked again on its own, as a read is: the decision then holds
    the care relationship that lets each one through (`Decision.explain(patient)`, which the
    audit record of that patient names), and a row that the scope's SQL let through but the
    per-patient check (`covers`, a separate formulation of the same rule) does not fails the
    search closed. Only for a search the scope restricts (not a front desk's exact identity
    lookup, not the directory)."""
    for compartment, link in dict(rows).items():  # one check per patient
        if compartment is None:
            continue
        if not decision.may_read(res_type, compartment, conn=conn, link=link):
            log.critical("a %s search returned a patient its decision does not cover", res_type)
            raise Forbidden(f"searching {res_type} is not permitted")


def matching_compartments(
    store: ResourceStore, decision: Decision, query: SearchQuery, *, limit: int
) -> list[str]:
    """Distinct patient compartments of the matches, decrypting nothing (cohort selection).

    At most `limit` + 1 are returned, so the caller can tell "too many". A query that needs
    exact post-filters (date ranges) cannot be answered without decrypting: refused.
    """
    issued(decision)
    if query.resource_type not in decision.read_types:
        raise Forbidden(f"searching {query.resource_type} is not permitted")
    if query.post_filters:
        raise InvalidSearch("a cohort cannot be selected by date ranges or long names yet")
    conds, _ = _conditions(store, decision, query)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(resource.c.compartment)
            .where(*conds, resource.c.compartment.is_not(None))
            .distinct()
            .order_by(resource.c.compartment)
            .limit(limit + 1)
        ).scalars()
        return [str(c) for c in rows]


def _passes(query: SearchQuery, body: dict[str, Any]) -> bool:
    return all(f(body) for f in query.post_filters)


def _conditions(
    store: ResourceStore, decision: Decision, query: SearchQuery
) -> tuple[list[ColumnElement[bool]], bool]:
    """The WHERE clauses, and whether the policy's patient scope is one of them."""
    res_type = query.resource_type
    # Erased patients' rows stay (the audit trail refers to them) but are never candidates.
    conds: list[ColumnElement[bool]] = [
        resource.c.res_type == res_type,
        not_erased(resource.c.compartment),
    ]
    for clause in query.clauses:
        digests = store.blind.digest_many(res_type, clause.param, clause.any_of)
        conds.append(resource.c.res_id.in_(_matching(res_type, digests)))
    if query.ids is not None:
        conds.append(resource.c.res_id.in_(query.ids))
    for op, when in query.last_updated:
        conds.append(_OPS[op](resource.c.last_updated, datetime_to_micros(when)))
    scope = decision.search_filter(res_type, query.echo, resource.c.compartment)
    if scope is not None and res_type not in DIRECTORY_TYPES:
        # Patient data only within the decision, as `compartment IN (subquery)` on the
        # care-relationship index: `total` counts only permitted patients, and the database
        # drives the search from the caller's patients (index on compartment), so its cost
        # follows the caller's scope, not the size of the hospital. (Patient-data resources
        # outside any compartment are for unrestricted decisions only, as on reads.)
        conds.append(scope)
        return conds, True
    return conds, False


def _matching(res_type: str, digests: list[bytes]) -> Select[tuple[str]]:
    return select(search_index.c.res_id).where(
        search_index.c.res_type == res_type, search_index.c.digest.in_(digests)
    )


def _open_rows(
    store: ResourceStore,
    conn: Connection,
    decision: Decision,
    res_type: str,
    rows: Sequence[Any],
) -> list[Stored]:
    owners = {owner_of(r.compartment) for r in rows}
    keys = store.keyring.keys_for(conn, owners)
    out = []
    for r in rows:
        owner = owner_of(r.compartment)
        body = open_resource(keys.get(owner), r.payload, res_type, r.res_id, r.version, owner)
        body = decision.view(res_type, body)
        out.append(Stored(res_type, r.res_id, r.version, r.last_updated, body))
    return out
