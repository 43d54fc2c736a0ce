"""Which patient compartments a decision covers, answered in SQL on plaintext metadata only.

A scope never loads a clinician's patient list into memory: a read asks one indexed question
("is this actor linked to this patient?"), and a search joins the same question as a subquery,
so a clinician with thousands of patients costs what a clinician with three does, and `total`
only ever counts permitted patients. Nothing here opens a key or a blob. The care-link SQL of
the `Relationships` scope is built in `linksql.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Select,
    bindparam,
    exists,
    false,
    select,
)

from rempart.access import relations
from rempart.access.linksql import (
    BREAK_GLASS,
    Shape,
    covers_column,
    covers_statement,
    scope_subquery,
    scope_template,
    units_cte,
)
from rempart.access.tables import export_member
from rempart.store.tables import resource


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

    def where_sql(self) -> ScopeSql | None:
        """`where` as a part of a cached statement (None: this scope has none; use `where`)."""


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


@dataclass(frozen=True, eq=False)  # `subquery` is SQL, as ReadLink's column
class ScopeSql:
    """`where` for a cached statement: `subquery` (the scope's patients, for
    `compartment IN (...)`) holds unvalued parameters, `params` their values, and statements
    built on it are cached by `key`. Why: a clinician's search built its SQLAlchemy statement
    anew each time, and building it and computing its cache key took about a quarter of the
    search's Python (py-spy, docs/benchmarks.md 2026-12-01)."""

    key: object
    subquery: Any
    params: dict[str, Any]


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

    def where_sql(self) -> ScopeSql | None:
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

    def where_sql(self) -> ScopeSql | None:
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

    def where_sql(self) -> ScopeSql | None:
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

    def where_sql(self) -> ScopeSql | None:
        return None


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
    def _shape(self) -> Shape:
        return Shape(self.personal if self.practitioner else (), self.places, self.break_glass)

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
        kind = covers_statement(self._shape).scalar(conn, params)
        return None if kind is None else _explain(str(kind))

    def where(self, compartment: ColumnElement[Any]) -> ColumnElement[bool] | None:
        values = self._values()
        return compartment.in_(scope_subquery(self._shape, values))

    def read_link(self) -> ReadLink | None:
        shape = self._shape
        return ReadLink(shape, covers_column(shape), self._values())

    def where_sql(self) -> ScopeSql | None:
        shape = self._shape
        return ScopeSql(shape, scope_template(shape), self._values())

    def _units(self) -> CTE:
        return units_cte(bindparam("scope_account", self.account_id))

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
