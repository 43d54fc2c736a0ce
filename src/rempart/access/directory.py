"""Moving a unit in the hospital directory: a four-eyes change, like adding a membership.

Whose patients a clinician or a front desk reaches follows the directory: the members of a unit
and of every unit or establishment above it (`scope.py`, `unit_parent`). Moving a ward under
another establishment, or under a unit someone belongs to, would open the ward's patients to
those members at once, as adding each of them to the ward would. So a write that changes an
existing unit's parents is refused (`relations._record_parents`), and an approved "move-unit"
request makes the change here, through the store, inside `relations.approved_move`.

An Organization's parent is its `partOf`; a Location's is its `partOf` when the parent is a
Location and its `managingOrganization` when it is an Organization (the other one is kept).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from rempart.access import relations
from rempart.access.kinds import MoveUnit
from rempart.access.pdp import directory_decision
from rempart.errors import InvalidResource
from rempart.store.repository import ResourceStore


def check_move(store: ResourceStore, conn: Connection, p: MoveUnit) -> None:
    unit_type, _, unit_id = p.unit.partition("/")
    if not store.exists(conn, unit_type, unit_id):
        raise InvalidResource(f"{p.unit} is not in the hospital directory")
    if p.parent is None:
        return
    parent_type, _, parent_id = p.parent.partition("/")
    if p.parent == p.unit:
        raise InvalidResource("a unit cannot sit under itself")
    if unit_type == "Organization" and parent_type != "Organization":
        raise InvalidResource("an Organization sits under another Organization")
    if not store.exists(conn, parent_type, parent_id):
        raise InvalidResource(f"{p.parent} is not in the hospital directory")


def move_unit(store: ResourceStore, p: MoveUnit, request_id: str) -> str:
    with store.engine.connect() as conn:
        check_move(store, conn, p)  # again: the directory may have changed since the request
    decision = directory_decision(request_id)
    unit_type, _, unit_id = p.unit.partition("/")
    moved = with_parent(store.read(decision, unit_type, unit_id).json(), p.parent)
    parents = relations.parents_of(moved)
    with relations.approved_move(p.unit, parents):
        store.update(decision, unit_type, unit_id, moved)
    return f"{p.unit} now sits under {', '.join(parents) or 'nothing'}"


def with_parent(body: dict[str, Any], parent: str | None) -> dict[str, Any]:
    """`body` with `parent` as its parent (None: none at all)."""
    moved = dict(body)
    if parent is None:
        moved.pop("partOf", None)
        moved.pop("managingOrganization", None)
    elif moved.get("resourceType") == "Location" and parent.startswith("Organization/"):
        moved["managingOrganization"] = {"reference": parent}
    else:
        moved["partOf"] = {"reference": parent}
    return moved
