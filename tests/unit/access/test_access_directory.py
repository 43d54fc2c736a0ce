"""Moving a unit in the directory opens its patients to the members of its new parents: only an
approved four-eyes request does it; a direct write that would is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import select

from rempart.access.directory import with_parent
from rempart.access.kinds import AnyRequest
from rempart.access.relations import approved_move
from rempart.access.roles import Role
from rempart.access.tables import unit_parent
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource
from rempart.wiring import Services
from tests.unit.access.support import (
    SYSTEM,
    encounter,
    new_staff,
    patient,
    practitioner,
    unit,
    write,
)

CTX = RequestContext("10.0.0.3", "test")
_ANY: TypeAdapter[Any] = TypeAdapter(AnyRequest)


def parents(services: Services, child: str) -> set[str]:
    with services.engine.connect() as conn:
        rows = conn.execute(select(unit_parent.c.parent).where(unit_parent.c.child == child))
        return set(rows.scalars())


def test_a_unit_moves_only_through_an_approved_request(services: Services) -> None:
    a1, a2 = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
    mine, theirs = unit(services), unit(services)
    pid = patient(services)
    encounter(services, pid, provider=theirs)  # a patient staying in the other unit
    doctor = new_staff(services, Role.CLINICIAN, practitioner=practitioner(services), units=(mine,))

    def doctor_reads() -> bool:
        try:
            services.store.read(services.policy.decide(doctor.principal()), "Patient", pid)
        except Forbidden:
            return False
        return True

    assert not doctor_reads()
    admin = services.policy.decide(a1.principal())
    theirs_id = theirs.split("/")[1]
    body = services.store.read(admin, "Organization", theirs_id).json()
    # One administrator writing the directory cannot move the unit under the doctor's ...
    with pytest.raises(Forbidden, match="move-unit"):
        services.store.update(admin, "Organization", theirs_id, with_parent(body, mine))
    # An approval holds for the exact unit and parents it names, nothing else.
    with approved_move(theirs, [unit(services)]), pytest.raises(Forbidden):
        services.store.update(admin, "Organization", theirs_id, with_parent(body, mine))
    assert parents(services, theirs) == set()
    assert not doctor_reads()
    # ... but may rename it, and create a new unit under an existing one.
    services.store.update(admin, "Organization", theirs_id, {**body, "name": "Renamed"})
    child = services.store.create(
        admin, {"resourceType": "Organization", "name": "New", "partOf": {"reference": mine}}
    )
    assert parents(services, f"Organization/{child.res_id}") == {mine}

    request = _ANY.validate_python({"kind": "move-unit", "unit": theirs, "parent": mine})
    made = services.access.requests.submit(a1.principal(), CTX, request)
    assert made.status == "pending"
    assert "members of its new parents" in made.summary
    with pytest.raises(Forbidden):
        services.access.requests.approve(a1.principal(), CTX, made.id, None)
    assert not doctor_reads()
    done = services.access.requests.approve(a2.principal(), CTX, made.id, None)
    assert done.status == "done", done.result
    assert parents(services, theirs) == {mine}
    stored = services.store.read(SYSTEM, "Organization", theirs_id).json()
    assert stored["partOf"] == {"reference": mine}
    assert stored["name"] == "Renamed"  # the rest of the unit is kept
    assert doctor_reads()

    # Back to the top: the same path closes it again.
    back = _ANY.validate_python({"kind": "move-unit", "unit": theirs, "parent": None})
    made = services.access.requests.submit(a2.principal(), CTX, back)
    assert services.access.requests.approve(a1.principal(), CTX, made.id, None).status == "done"
    assert parents(services, theirs) == set()
    assert not doctor_reads()


def test_a_move_names_units_of_the_directory(services: Services) -> None:
    a1 = new_staff(services, Role.ADMIN)
    site = unit(services)
    room = write(
        services,
        {"resourceType": "Location", "name": "Box 3", "managingOrganization": {"reference": site}},
    ).res_id
    for body in (
        {"kind": "move-unit", "unit": "Organization/nowhere", "parent": site},
        {"kind": "move-unit", "unit": site, "parent": "Organization/nowhere"},
        {"kind": "move-unit", "unit": site, "parent": site},
        {"kind": "move-unit", "unit": site, "parent": f"Location/{room}"},
    ):
        with pytest.raises(InvalidResource):
            services.access.requests.submit(a1.principal(), CTX, _ANY.validate_python(body))
    # A Location's organisation is its managingOrganization; its partOf is another Location.
    located = with_parent({"resourceType": "Location", "partOf": {"reference": "Location/b"}}, site)
    assert located == {
        "resourceType": "Location",
        "partOf": {"reference": "Location/b"},
        "managingOrganization": {"reference": site},
    }
    assert with_parent(located, None) == {"resourceType": "Location"}
