"""Searches through statements cached by shape (`store/searchsql.py`) answer exactly what the
statements built per search answer, on both databases, for every kind of scope and clause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import StatementError

from rempart.access import membership
from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.access.scope import Relationships, ScopeSql
from rempart.errors import Forbidden
from rempart.fhir import parse_search
from rempart.store import search as store_search
from rempart.wiring import Services
from tests.unit.access.support import admission, encounter, patient, practitioner, unit, write

QUERIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Patient", [("_count", "50")]),
    ("Patient", [("family", "Cachea")]),
    ("Patient", [("family", "Cachea"), ("_count", "2")]),
    ("Patient", [("family", "Cachea"), ("_count", "2"), ("_offset", "2")]),
    ("Patient", [("family", "Cachea"), ("_count", "2"), ("_offset", "40")]),
    ("Patient", [("family", "Cachea,Cacheb")]),
    ("Patient", [("family", "Cachea"), ("gender", "female")]),
    ("Patient", [("gender", "female"), ("_count", "0")]),
    ("Encounter", [("_count", "50")]),
    ("Encounter", [("status", "in-progress")]),
    ("Encounter", [("date", "ge2025-06-01")]),  # post-filtered: the candidates' statement
    ("Encounter", [("date", "lt2025-06-01"), ("_count", "2"), ("_offset", "1")]),
    ("Organization", [("_count", "50")]),
    ("Practitioner", [("_count", "50")]),
]


def test_cached_statements_answer_as_built_ones(services: Services) -> None:
    me = practitioner(services)
    ward = unit(services)
    mine = [patient(services, family="Cachea") for _ in range(5)]
    for i, pid in enumerate(mine):
        start = "2024-03-01T08:00:00Z" if i % 2 else "2026-01-01T08:00:00Z"
        encounter(services, pid, attender=me, start=start)
    staying = patient(services, family="Cacheb")
    write(services, admission(staying, ward))
    others = [patient(services, family="Cachea") for _ in range(3)]
    account = "acct-cached"
    with services.engine.begin() as conn:
        membership.add(conn, account, ward, None)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    everyone = [*mine, staying, *others]
    queries = [
        *QUERIES,
        *[("Encounter", [("patient", f"Patient/{p}")]) for p in (mine[0], others[0])],
        ("Patient", [("_id", ",".join(everyone))]),
        ("Patient", [("_id", mine[1]), ("_lastUpdated", f"ge{since}")]),
        ("Patient", [("_lastUpdated", f"lt{since}")]),
    ]
    callers = {
        "clinician": Principal(account, "dr", Role.CLINICIAN, me, None),
        "clinician without practitioner": Principal(account, "dr", Role.CLINICIAN, None, None),
        "secretary": Principal(account, "desk", Role.SECRETARY, None, None),
    }
    real = store_search._cached
    used = 0
    for name, who in callers.items():
        for res_type, params in queries:
            query = parse_search(res_type, params)
            answers: list[Any] = []
            for cached in (True, False):
                store_search._cached = real if cached else (lambda *_a, **_k: None)  # type: ignore[assignment]
                try:
                    found, total = store_search.search(services.store, decide(who), query)
                    answers.append(([(s.res_id, s.version, s.body) for s in found], total))
                except Forbidden as exc:
                    answers.append(str(exc))
                finally:
                    store_search._cached = real  # type: ignore[assignment]
            assert answers[0] == answers[1], (name, res_type, params)
            used += real(services.store, decide(who), query, True) is not None
    assert used >= len(queries)  # the cached form served these callers' searches
    # What the clinician sees through it: their attended patients and the ward's stay, only.
    found, total = store_search.search(
        services.store, decide(callers["clinician"]), parse_search("Patient", [("_count", "50")])
    )
    assert sorted(s.res_id for s in found) == sorted([*mine, staying])
    assert total == 6


def test_a_missing_value_fails_rather_than_reuses_another(services: Services) -> None:
    """Cached statements hold no values: one not given at execution is an error, never the
    value of an earlier search."""
    me = practitioner(services)
    pid = patient(services, family="Cachec")
    encounter(services, pid, attender=me)
    who = Principal("acct-missing", "dr", Role.CLINICIAN, me, None)
    query = parse_search("Encounter", [("patient", f"Patient/{pid}")])
    real_where_sql, real_link = Relationships.where_sql, Relationships.read_link
    # Without its care-link column (whose values would fill the gap) and its account's value.
    Relationships.read_link = lambda _self: None  # type: ignore[assignment,method-assign]
    assert len(store_search.search(services.store, decide(who), query)[0]) == 1

    def without_account(self: Relationships) -> ScopeSql | None:
        sql = real_where_sql(self)
        assert sql is not None
        params = {k: v for k, v in sql.params.items() if k != "scope_account"}
        return ScopeSql(sql.key, sql.subquery, params)

    Relationships.where_sql = without_account  # type: ignore[method-assign]
    try:
        with pytest.raises((StatementError, KeyError)):
            store_search.search(services.store, decide(who), query)
    finally:
        Relationships.where_sql = real_where_sql  # type: ignore[method-assign]
        Relationships.read_link = real_link  # type: ignore[method-assign]
