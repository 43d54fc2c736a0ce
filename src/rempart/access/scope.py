"""Which patient compartments a decision covers, answered in SQL on plaintext metadata only.

A scope never loads a clinician's patient list into memory: a read asks one indexed question
("is this actor linked to this patient?"), and a search joins the same question as a subquery,
so a clinician with thousands of patients costs what a clinician with three does, and `total`
only ever counts permitted patients. Nothing here opens a key or a blob.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    false,
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
from rempart.access.tables import (
    break_glass,
    care_link,
    export_member,
    unit_membership,
    unit_parent,
)
from rempart.store.prepared import Prepared
from rempart.store.tables import resource

BREAK_GLASS = "break-the-glass"


class PatientScope(Protocol):
    """The patient half of a decision (the type half is a plain set on the Decision)."""

    @property
    def everyone(self) -> bool: ...

    def covers(self, conn: Connection, patient: str) -> str | None:
        """The care relationship that covers `patient`, or None."""

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        """A SQL condition on a compartment column; None means no restriction."""

    def admits(self, conn: Connection, body: dict[str, Any]) -> str | None:
        """Whether writing `body` (a front desk's admission) brings its patient into scope."""

    def describe(self) -> str: ...

    def read_link(self) -> ReadLink | None:
        """`covers` as a column the read's own SELECT can carry (None: nothing to ask the
        database, or no such column)."""


@dataclass(frozen=True, eq=False)  # `column` is SQL: `==` on it builds an expression
class ReadLink:
    """The care-link question of `covers`, as a column of a SELECT on `resource`.

    Why: on PostgreSQL each query of a read is a round trip, and the care link was one of the
    read's three; carried by the resource's own SELECT it costs no round trip, and on SQLite one
    statement less (~35 µs of Python, `store.prepared`). `column` is NULL when the row's
    compartment is not covered, else the kind of link that covers it (`explain` words it).
    """

    key: object  # what the column's SQL depends on: statements built on it are cached by it
    column: Any  # a scalar subquery correlated to `resource.compartment`, unvalued parameters
    params: dict[str, Any]  # the values of its parameters

    def reason(self, kind: object) -> str | None:
        return None if kind is None else _explain(str(kind))

    def same_question(self, other: ReadLink | None) -> bool:
        return other is not None and self.key == other.key and self.params == other.params


@dataclass(frozen=True)
class Everyone:
    """The local operator's bulk commands (seed, import) and integration clients' writes."""

    reason: str

    @property
    def everyone(self) -> bool:
        return True

    def covers(self, conn: Connection, patient: str) -> str | None:
        return self.reason

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return None

    def admits(self, conn: Connection, body: dict[str, Any]) -> str | None:
        return self.reason

    def describe(self) -> str:
        return self.reason

    def read_link(self) -> ReadLink | None:
        return None


@dataclass(frozen=True)
class Nobody:
    reason: str

    @property
    def everyone(self) -> bool:
        return False

    def covers(self, conn: Connection, patient: str) -> str | None:
        return None

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return false()

    def admits(self, conn: Connection, body: dict[str, Any]) -> str | None:
        return None

    def describe(self) -> str:
        return self.reason

    def read_link(self) -> ReadLink | None:
        return None


@dataclass(frozen=True)
class Fixed:
    """A patient's own record."""

    patients: frozenset[str]
    reason: str

    @property
    def everyone(self) -> bool:
        return False

    def covers(self, conn: Connection, patient: str) -> str | None:
        return self.reason if patient in self.patients else None

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return compartment.in_(sorted(self.patients)) if self.patients else false()

    def admits(self, conn: Connection, body: dict[str, Any]) -> str | None:
        return None

    def describe(self) -> str:
        return self.reason

    def read_link(self) -> ReadLink | None:
        return None


@dataclass(frozen=True)
class Cohort:
    """The patients of one approved export (their ids are in `export_member`)."""

    export_id: str

    @property
    def everyone(self) -> bool:
        return False

    def _members(self) -> Select[tuple[str]]:
        return select(export_member.c.patient).where(export_member.c.export_id == self.export_id)

    def covers(self, conn: Connection, patient: str) -> str | None:
        found = conn.execute(
            self._members().where(export_member.c.patient == patient).limit(1)
        ).first()
        return self.describe() if found else None

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return compartment.in_(self._members())

    def admits(self, conn: Connection, body: dict[str, Any]) -> str | None:
        return None

    def describe(self) -> str:
        return f"approved cohort export {self.export_id}"

    def read_link(self) -> ReadLink | None:
        return None  # exports read in bulk, through searches


@dataclass(frozen=True)
class Relationships:
    """Care relationships of one account, from `care_link`, plus its live break-the-glass grants.

    Clinicians: `personal` kinds (participant, team, gp) on their Practitioner within the care
    window, `stay` links on the units they belong to (current stays only), the records they
    registered, and break-the-glass. Secretaries: `stay` and `visit` links on their units and
    establishments within the window, and the records they registered; only they admit
    (`admissions`).
    """

    account_id: str
    practitioner: str | None  # "Practitioner/<id>"
    personal: tuple[str, ...]
    places: tuple[str, ...]
    break_glass: bool
    since: int  # links that ended before this (microseconds) no longer count
    now: int
    label: str
    # Whether an admission or appointment this account writes in one of its units brings a
    # patient it is not related to into its scope (`admits`): the front desk's job. Never a
    # clinician's: a hijacked clinician session could otherwise open any patient whose id it
    # has by "admitting" them into its own unit, with no break-the-glass, reason or alert.
    admissions: bool = False

    @property
    def everyone(self) -> bool:
        return False

    @property
    def account_ref(self) -> str:
        return f"Account/{self.account_id}"

    def describe(self) -> str:
        return self.label

    @property
    def _shape(self) -> _Shape:
        return _Shape(self.personal if self.practitioner else (), self.places, self.break_glass)

    def _values(self) -> dict[str, Any]:
        return {
            "scope_account": self.account_id,
            "scope_account_ref": self.account_ref,
            "scope_practitioner": self.practitioner or "",
            "scope_since": self.since,
            "scope_now": self.now,
        }

    def covers(self, conn: Connection, patient: str) -> str | None:
        # One prepared statement per shape of scope, reused: building and caching a SQLAlchemy
        # statement per read costs more than the indexed lookup itself.
        params = {**self._values(), "scope_patient": patient}
        kind = _covers_statement(self._shape).scalar(conn, params)
        return None if kind is None else _explain(str(kind))

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        values = self._values()
        return compartment.in_(_scope_subquery(self._shape, values))

    def read_link(self) -> ReadLink | None:
        shape = self._shape
        return ReadLink(shape, _covers_column(shape), self._values())

    def _units(self) -> CTE:
        return _units_cte(bindparam("scope_account", self.account_id))

    def admits(self, conn: Connection, body: dict[str, Any]) -> str | None:
        """An admission or appointment in one of the account's units brings its patient in
        (front desks only: a clinician reaches a new patient through a relationship it already
        has, a record it registers, or break-the-glass)."""
        if not self.admissions or not self.places or body.get("resourceType") != "Encounter":
            return None
        places = {
            link.actor
            for link in relations.links_of(body, now=self.now)
            if link.kind in (relations.STAY, relations.VISIT)
        }
        if not places:
            return None
        units = self._units()
        hit = conn.execute(
            select(units.c.unit).where(units.c.unit.in_(sorted(places))).limit(1)
        ).first()
        return "admission in a unit of this account" if hit else None


@dataclass(frozen=True)
class _Shape:
    """What varies between scopes' SQL (not the values): cached statements are keyed on it."""

    personal: tuple[str, ...]  # empty when the account is linked to no practitioner
    places: tuple[str, ...]
    break_glass: bool


def _units_cte(account: Any, name: str = "member_units") -> CTE:
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
    shape: _Shape, units: CTE, values: dict[str, Any] | None
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
def _covers_statement(shape: _Shape) -> Prepared:
    """Is this patient linked to this account? (Unvalued parameters, bound at execution.)"""
    return Prepared(_covers_select(shape, bindparam("scope_patient")))


@lru_cache(maxsize=32)
def _covers_column(shape: _Shape) -> Any:
    """The same question about the compartment of the `resource` row a SELECT reads."""
    return _covers_select(shape, resource.c.compartment).scalar_subquery().label("care_link")


def _covers_select(shape: _Shape, patient: Any) -> Any:
    # Named apart from `where`'s CTE: a search's page carries both in one statement.
    units = _units_cte(bindparam("scope_account"), "covers_units")
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


def _scope_subquery(shape: _Shape, values: dict[str, Any]) -> Any:
    """The account's patients, as a subquery for `compartment IN (...)` (values bound)."""
    units = _units_cte(bindparam("scope_account", values["scope_account"]))
    # `actor IN (units)` is driven from the account's few units through the actor index on
    # both databases once they have statistics (ANALYZE); a join form made SQLite scan the index
    # table instead, and PostgreSQL without statistics scans it either way.
    parts: list[Select[Any]] = [
        select(care_link.c.patient).where(cond) for cond in _link_conditions(shape, units, values)
    ]
    if shape.break_glass:
        parts.append(
            select(break_glass.c.patient).where(
                break_glass.c.account_id == bindparam("scope_account", values["scope_account"]),
                break_glass.c.expires > bindparam("scope_now", values["scope_now"]),
            )
        )
    return union(*parts) if len(parts) > 1 else parts[0]


def compartment_is_empty(conn: Connection, patient: str) -> bool:
    """No record of any type belongs to `patient` yet (a Patient being created)."""
    return not conn.execute(select(exists().where(resource.c.compartment == patient))).scalar()


_REASONS = {
    relations.PARTICIPANT: "participant in an encounter of the patient (ongoing or recent)",
    relations.STAY: "the patient currently stays in a unit of this account",
    relations.VISIT: "the patient has a stay or an appointment in this account's establishment",
    relations.TEAM: "member of the patient's care team",
    relations.GP: "the patient's declared treating physician",
    relations.REGISTRANT: "registered this patient record",
    BREAK_GLASS: "break-the-glass grant",
}


def _explain(kind: str) -> str:
    return _REASONS.get(kind, kind)
