"""The protected read's one statement: a resource's current version, and with it, for a
decision whose scope asks the database, whether the row's patient is covered (`ReadLink`).

Built once: constructing a SQLAlchemy statement per read cost more than the indexed lookup.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, select

from rempart.access.decision import Decision
from rempart.access.scope import ReadLink
from rempart.store.prepared import Prepared
from rempart.store.tables import resource, resource_version

_READ_SELECT = (
    select(
        resource.c.version,
        resource.c.compartment,
        resource.c.last_updated,
        resource_version.c.payload,
    )
    .select_from(
        resource.join(
            resource_version,
            and_(
                resource_version.c.res_type == resource.c.res_type,
                resource_version.c.res_id == resource.c.res_id,
                resource_version.c.version == resource.c.version,
            ),
        )
    )
    .where(resource.c.res_type == bindparam("res_type"), resource.c.res_id == bindparam("res_id"))
)
_READ_CURRENT = Prepared(_READ_SELECT)
_READ_WITH_LINK: dict[object, Prepared] = {}  # by `ReadLink.key`: a handful of scope shapes


def read_current(
    conn: Connection, decision: Decision, res_type: str, res_id: str
) -> tuple[Any, tuple[ReadLink, object] | None]:
    """The current version's row; with the decision's care-link check in the same SELECT when
    it has one (`ReadLink`: one statement, one round trip, fewer)."""
    params: dict[str, Any] = {"res_type": res_type, "res_id": res_id}
    link = decision.read_link()
    if link is None:
        return _READ_CURRENT.first(conn, params), None
    statement = _READ_WITH_LINK.get(link.key)
    if statement is None:
        statement = Prepared(_READ_SELECT.add_columns(link.column))
        _READ_WITH_LINK[link.key] = statement
    row = statement.first(conn, {**params, **link.params})
    return row, None if row is None else (link, row.care_link)
