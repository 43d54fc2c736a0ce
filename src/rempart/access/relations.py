"""The care-relationship index: derived from the records, written with them.

The records are encrypted, so the policy cannot read an Encounter to find out who attended it.
Instead, every write of an Encounter, CareTeam or Patient (and of the Organizations/Locations of
the directory) also writes, in the same transaction, the few opaque facts the policy needs:

- participant: a Practitioner in Encounter.participant.individual (arrived to finished);
  counts while the encounter is ongoing, or ended within the care window.
- stay: the unit Organization (serviceProvider) and Locations of an ongoing encounter (arrived,
  triaged, in-progress, onleave); counts while the stay lasts (unit members).
- visit: the same places for planned and finished encounters; counts while planned or ended
  within the care window (front desks of the establishment).
- team: a Practitioner in CareTeam.participant.member (active, or inactive/suspended within the
  care window).
- gp: a Practitioner in Patient.generalPractitioner (the declared treating physician).
- registrant: the account that created the Patient record, within the care window.

Only local references to Practitioner/Organization/Location count (a PractitionerRole or an
absolute URL names no one the policy can match). `until` is rounded up to the next midnight
UTC: the index says on which day a relationship ended, not at what time.

The directory hierarchy (`unit_parent`) decides whom a unit's patients reach: the members of
the unit and of every unit or establishment above it. Moving an existing unit is therefore a
four-eyes change like adding a membership: a direct write that changes its parents is refused,
and only an approved "move-unit" request (`access/directory.py`) applies one, inside
`approved_move`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from rempart.access.tables import care_link, unit_parent
from rempart.clock import datetime_to_micros, now_micros
from rempart.errors import Forbidden
from rempart.fhir.dates import parse_range
from rempart.store.bulk import bulk_insert

PARTICIPANT = "participant"
STAY = "stay"
VISIT = "visit"
TEAM = "team"
GP = "gp"
REGISTRANT = "registrant"

# Encounter.status values meaning "the patient is here now".
ONGOING = frozenset({"arrived", "triaged", "in-progress", "onleave"})
SOURCE_TYPES = frozenset({"Encounter", "CareTeam", "Patient"})
DIRECTORY_TYPES = frozenset({"Organization", "Location"})
DAY = 86_400_000_000  # microseconds
_LINK_COLUMNS = ("source_type", "source_id", "kind", "actor", "patient", "until")


@dataclass(frozen=True, slots=True)
class Link:
    kind: str
    actor: str
    until: int | None


def _local(ref: object, *types: str) -> str | None:
    if not isinstance(ref, dict):
        return None
    value = ref.get("reference")
    if not isinstance(value, str):
        return None
    parts = value.split("/")
    if len(parts) == 2 and parts[0] in types and parts[1]:
        return value
    return None


def _day_ceiling(micros: int) -> int:
    return -(-micros // DAY) * DAY


def _latest(period: object, fallback: int) -> int:
    """The end of a period (or its start when open), as the midnight after it."""
    if not isinstance(period, dict):
        return _day_ceiling(fallback)
    for side in ("end", "start"):
        text = period.get(side)
        if isinstance(text, str) and (r := parse_range(text)) is not None:
            return _day_ceiling(datetime_to_micros(r[1]))
    return _day_ceiling(fallback)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def links_of(body: dict[str, Any], *, now: int) -> list[Link]:
    """The care links a resource body implies (pure; `now` stands in for a missing date)."""
    kind = body.get("resourceType")
    if kind == "Encounter":
        return _encounter(body, now)
    if kind == "CareTeam":
        return _care_team(body, now)
    if kind == "Patient":
        return [
            Link(GP, actor, None)
            for gp in _list(body.get("generalPractitioner"))
            if (actor := _local(gp, "Practitioner"))
        ]
    return []


def _encounter(body: dict[str, Any], now: int) -> list[Link]:
    status = body.get("status")
    if status in ONGOING:
        until, place, clinical = None, STAY, True
    elif status == "finished":
        until, place, clinical = _latest(body.get("period"), now), VISIT, True
    elif status == "planned":
        until, place, clinical = _latest(body.get("period"), now), VISIT, False
    else:  # cancelled, entered-in-error, unknown: nobody is caring for anyone
        return []
    links: list[Link] = []
    if clinical:
        for participant in _list(body.get("participant")):
            if isinstance(participant, dict):
                actor = _local(participant.get("individual"), "Practitioner")
                if actor:
                    links.append(Link(PARTICIPANT, actor, until))
    provider = _local(body.get("serviceProvider"), "Organization")
    if provider:
        links.append(Link(place, provider, until))
    for entry in _list(body.get("location")):
        if not isinstance(entry, dict):
            continue
        actor = _local(entry.get("location"), "Location")
        if actor is None:
            continue
        # A location the patient has left (a transfer) is a past visit, not the current stay.
        moved_out = place == STAY and entry.get("status") == "completed"
        links.append(
            Link(VISIT, actor, _day_ceiling(now)) if moved_out else Link(place, actor, until)
        )
    return links


def _care_team(body: dict[str, Any], now: int) -> list[Link]:
    status = body.get("status")
    if status == "active":
        until = None
    elif status in ("inactive", "suspended"):
        until = _latest(body.get("period"), now)
    else:  # proposed, entered-in-error
        return []
    return [
        Link(TEAM, actor, until)
        for participant in _list(body.get("participant"))
        if isinstance(participant, dict)
        and (actor := _local(participant.get("member"), "Practitioner"))
    ]


def parents_of(body: dict[str, Any]) -> list[str]:
    """Where a unit sits in the directory: Organization.partOf, Location.partOf and
    Location.managingOrganization."""
    kind = body.get("resourceType")
    if kind == "Organization":
        parent = _local(body.get("partOf"), "Organization")
        return [parent] if parent else []
    if kind == "Location":
        found = [
            _local(body.get("partOf"), "Location"),
            _local(body.get("managingOrganization"), "Organization"),
        ]
        return [p for p in found if p]
    return []


# ---- writes (inside the resource's own transaction) ----------------------------------------


def _rows(res_type: str, res_id: str, patient: str, links: Iterable[Link]) -> list[dict[str, Any]]:
    unique = {(link.kind, link.actor): link for link in links}
    return [
        {
            "source_type": res_type,
            "source_id": res_id,
            "kind": link.kind,
            "actor": link.actor,
            "patient": patient,
            "until": link.until,
        }
        for link in unique.values()
    ]


def record(
    conn: Connection,
    res_type: str,
    res_id: str,
    compartment: str | None,
    body: dict[str, Any],
    *,
    replace: bool,
    registrant: str | None = None,
) -> None:
    """Index the relationships of one resource version (a later version replaces them).

    `registrant` ("Account/<id>") is the account creating a new Patient record: it may follow
    the record it registered for the care window, as a front desk or an emergency physician
    who creates a record must be able to read it back.
    """
    if res_type in DIRECTORY_TYPES:
        _record_parents(conn, res_type, res_id, body, replace=replace)
        return
    if res_type not in SOURCE_TYPES or compartment is None:
        return
    now = now_micros()
    if replace:
        conn.execute(
            delete(care_link).where(
                care_link.c.source_type == res_type,
                care_link.c.source_id == res_id,
                care_link.c.kind != REGISTRANT,
            )
        )
    links = links_of(body, now=now)
    if registrant is not None and res_type == "Patient" and not replace:
        links.append(Link(REGISTRANT, registrant, _day_ceiling(now)))
    rows = _rows(res_type, res_id, compartment, links)
    if rows:
        conn.execute(insert(care_link), rows)


def record_many(
    conn: Connection, items: Iterable[tuple[str, str, str | None, dict[str, Any]]]
) -> None:
    """Bulk ingest of fresh resources (type, id, compartment, body): one insert per table."""
    links, parents = rows_many(items, now=now_micros())
    write_rows(conn, links, parents)


def rows_many(
    items: Iterable[tuple[str, str, str | None, dict[str, Any]]], *, now: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The care_link and unit_parent rows of fresh resources (pure: bulk ingest computes them in
    worker processes, then `write_rows` stores them in the records' transaction)."""
    links: list[tuple[Any, ...]] = []
    parents: list[tuple[Any, ...]] = []
    for res_type, res_id, compartment, body in items:
        if res_type in DIRECTORY_TYPES:
            child = f"{res_type}/{res_id}"
            parents.extend((child, p) for p in dict.fromkeys(parents_of(body)))
        elif res_type in SOURCE_TYPES and compartment is not None:
            links.extend(
                tuple(row[c] for c in _LINK_COLUMNS)
                for row in _rows(res_type, res_id, compartment, links_of(body, now=now))
            )
    return links, parents


def write_rows(
    conn: Connection, links: list[tuple[Any, ...]], parents: list[tuple[Any, ...]]
) -> None:
    bulk_insert(conn, care_link, _LINK_COLUMNS, links)
    bulk_insert(conn, unit_parent, ("child", "parent"), parents)


# (unit, its new parents) while an approved move-unit request writes that unit.
_APPROVED_MOVE: ContextVar[tuple[str, frozenset[str]] | None] = ContextVar(
    "rempart_approved_unit_move", default=None
)


@contextmanager
def approved_move(unit: str, parents: Iterable[str]) -> Iterator[None]:
    """Lets the write of `unit` inside the block give it exactly `parents` (an approved
    move-unit request's executor only)."""
    token = _APPROVED_MOVE.set((unit, frozenset(parents)))
    try:
        yield
    finally:
        _APPROVED_MOVE.reset(token)


def _record_parents(
    conn: Connection, res_type: str, res_id: str, body: dict[str, Any], *, replace: bool
) -> None:
    child = f"{res_type}/{res_id}"
    parents = list(dict.fromkeys(parents_of(body)))
    if replace:
        old = set(
            conn.execute(select(unit_parent.c.parent).where(unit_parent.c.child == child))
            .scalars()
            .all()
        )
        if old == set(parents):
            return  # the usual case: a unit renamed or its telecom changed
        if _APPROVED_MOVE.get() != (child, frozenset(parents)):
            raise Forbidden(
                f"moving {child} in the directory changes whose patients its parents' members "
                "reach: ask for it with a four-eyes request (kind move-unit)"
            )
        conn.execute(delete(unit_parent).where(unit_parent.c.child == child))
    rows = [{"child": child, "parent": p} for p in parents]
    if rows:
        conn.execute(insert(unit_parent), rows)


def forget_patient(conn: Connection, patient: str) -> int:
    """Drop an erased patient's links (their records are unreadable; so is who cared for them)."""
    return conn.execute(delete(care_link).where(care_link.c.patient == patient)).rowcount
