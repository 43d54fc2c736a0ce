"""The care-link SQL of a `Relationships` scope (`scope.py`): is a patient linked to an account,
as a prepared statement (`covers_statement`), as a column correlated to the `resource` row a
SELECT reads (`covers_column`), and as the account's patients for `compartment IN (...)`
(`scope_subquery`). Statements are built once per shape of scope and cached; values are bound
at execution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Select,
    and_,
    bindparam,
    literal,
    literal_column,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import ScalarSelect
from sqlalchemy.sql.visitors import InternalTraversal

from rempart.access import relations
from rempart.access.tables import break_glass, care_link, unit_membership, unit_parent
from rempart.store.prepared import Prepared
from rempart.store.tables import resource

BREAK_GLASS = "break-the-glass"  # the kind a live grant answers with


@dataclass(frozen=True)
class Shape:
    """What varies between scopes' SQL (not the values): cached statements are keyed on it."""

    personal: tuple[str, ...]  # empty when the account is linked to no practitioner
    places: tuple[str, ...]
    break_glass: bool


def units_cte(account: Any, name: str = "member_units") -> CTE:
    # Units the account belongs to, and everything under them in the directory (a membership of
    # an establishment covers its units and their locations). UNION (not UNION ALL) stops on a
    # cycle in bad directory data instead of looping.
    base = select(unit_membership.c.unit.label("unit")).where(
        unit_membership.c.account_id == account
    )
    units = base.cte(name, recursive=True)
    below = select(unit_parent.c.child).join(units, unit_parent.c.parent == units.c.unit)
    return units.union(below)


def _param(name: str, values: dict[str, Any] | None) -> Any:
    return bindparam(name) if values is None else bindparam(name, values[name])


def _kind_in(kinds: tuple[str, ...]) -> ColumnElement[bool]:
    """`kind IN ('a', 'b')` written into the SQL: the kinds are this module's constants, and an
    expanding parameter would make every execution of a cached statement re-render its SQL."""
    if not all(k.replace("-", "").replace("_", "").isalnum() for k in kinds):
        raise ValueError(f"not a care-link kind: {kinds!r}")
    return care_link.c.kind.in_([literal_column(f"'{k}'") for k in kinds])


def _link_conditions(
    shape: Shape, units: CTE, values: dict[str, Any] | None
) -> list[ColumnElement[bool]]:
    since = _param("scope_since", values)
    recent = or_(care_link.c.until.is_(None), care_link.c.until >= since)
    conds: list[ColumnElement[bool]] = [
        and_(
            care_link.c.actor == _param("scope_account_ref", values),
            care_link.c.kind == relations.REGISTRANT,
            care_link.c.until >= since,
        )
    ]
    if shape.personal:
        conds.append(
            and_(
                care_link.c.actor == _param("scope_practitioner", values),
                _kind_in(shape.personal),
                recent,
            )
        )
    if shape.places:
        conds.append(
            and_(
                _kind_in(shape.places),
                recent,
                _AmongUnits(care_link.c.actor, select(units.c.unit).scalar_subquery()),
            )
        )
    return conds


class _AmongUnits(ColumnElement[bool]):
    """`actor IN (SELECT unit FROM <units>)`; on PostgreSQL `actor = ANY(ARRAY(SELECT ...))`.

    Why: PostgreSQL estimates a recursive CTE at hundreds of rows (an account has one to a
    few units), so for `IN` it chose to scan every `care_link` row and hash the units: 5 ms of
    a 2,000-patient hospital's search, in both its count and its page (`EXPLAIN ANALYZE`,
    docs/benchmarks.md 2026-12-01). An array from an InitPlan is probed through the actor index
    instead. SQLite already drives `IN` from the few units (and has no arrays).
    """

    inherit_cache = True
    # No Boolean type: SQLite's compiler would then write `... IN (...) = 1`, which its
    # planner no longer drives from the index.
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own class-level protocol)
        ("actor", InternalTraversal.dp_clauseelement),
        ("units", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, actor: ColumnElement[Any], units: ScalarSelect[Any]) -> None:
        self.actor = actor
        self.units = units


@compiles(_AmongUnits)
def _among_units(element: _AmongUnits, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.actor.in_(element.units), **kw))


@compiles(_AmongUnits, "postgresql")
def _among_units_pg(element: _AmongUnits, compiler: SQLCompiler, **kw: Any) -> str:
    actor = compiler.process(element.actor, **kw)
    return f"{actor} = ANY(ARRAY{compiler.process(element.units, **kw)})"


@lru_cache(maxsize=32)
def covers_statement(shape: Shape) -> Prepared:
    """Is this patient linked to this account? (Unvalued parameters, bound at execution.)"""
    return Prepared(_covers_select(shape, bindparam("scope_patient")))


@lru_cache(maxsize=32)
def covers_column(shape: Shape) -> Any:
    """The same question about the compartment of the `resource` row a SELECT reads."""
    return _covers_select(shape, resource.c.compartment).scalar_subquery().label("care_link")


def _covers_select(shape: Shape, patient: Any) -> Any:
    # Named apart from `where`'s CTE: a search's page carries both in one statement.
    units = units_cte(bindparam("scope_account"), "covers_units")
    # Correlated explicitly: inside a UNION, SQLAlchemy would otherwise add `resource` to each
    # part's FROM when `patient` is its column.
    linked = (
        select(care_link.c.kind)
        .where(care_link.c.patient == patient, or_(*_link_conditions(shape, units, None)))
        .correlate(resource)
    )
    if not shape.break_glass:
        return linked.limit(1)
    granted = (
        select(literal(BREAK_GLASS))
        .where(
            break_glass.c.account_id == bindparam("scope_account"),
            break_glass.c.patient == patient,
            break_glass.c.expires > bindparam("scope_now"),
        )
        .correlate(resource)
    )
    return union_all(linked, granted).limit(1)


@lru_cache(maxsize=32)
def scope_template(shape: Shape) -> Any:
    """`scope_subquery` with unvalued parameters, bound at execution (`ScopeSql`)."""
    return scope_subquery(shape, None)


def scope_subquery(shape: Shape, values: dict[str, Any] | None) -> Any:
    """The account's patients, as a subquery for `compartment IN (...)` (values bound, or
    parameters left unvalued with `values` None)."""
    units = units_cte(_param("scope_account", values))
    # The unit branch is driven from the account's few units through the actor index: SQLite
    # does so for `IN` once it has statistics (ANALYZE), PostgreSQL only for the array form
    # (`_AmongUnits`); a join form made SQLite scan the index table instead.
    parts: list[Select[Any]] = [
        select(care_link.c.patient).where(cond) for cond in _link_conditions(shape, units, values)
    ]
    if shape.break_glass:
        parts.append(
            select(break_glass.c.patient).where(
                break_glass.c.account_id == _param("scope_account", values),
                break_glass.c.expires > _param("scope_now", values),
            )
        )
    return union(*parts) if len(parts) > 1 else parts[0]
