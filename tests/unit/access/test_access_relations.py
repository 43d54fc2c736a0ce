"""The care-relationship index is derived from the records exactly as documented."""

from __future__ import annotations

from typing import Any

import pytest

from rempart.access.relations import (
    DAY,
    GP,
    PARTICIPANT,
    STAY,
    TEAM,
    VISIT,
    Link,
    links_of,
    parents_of,
)

NOW = 1_800_000_000 * 1_000_000


def encounter(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": status,
        "subject": {"reference": "Patient/p"},
        "participant": [
            {"individual": {"reference": "Practitioner/dr"}},
            {"individual": {"reference": "PractitionerRole/role"}},  # names no one we match
        ],
        "serviceProvider": {"reference": "Organization/unit"},
        "location": [{"location": {"reference": "Location/ward"}, "status": "active"}],
        **extra,
    }


def test_an_ongoing_stay_links_its_attending_and_its_unit_with_no_end() -> None:
    links = set(links_of(encounter("in-progress"), now=NOW))
    assert links == {
        Link(PARTICIPANT, "Practitioner/dr", None),
        Link(STAY, "Organization/unit", None),
        Link(STAY, "Location/ward", None),
    }


def test_a_finished_encounter_counts_until_the_midnight_after_its_end() -> None:
    body = encounter("finished", period={"start": "2026-03-01", "end": "2026-03-04T10:30:00Z"})
    links = links_of(body, now=NOW)
    until = {link.until for link in links}
    assert len(until) == 1
    (value,) = until
    assert value is not None
    assert value % DAY == 0
    assert {link.kind for link in links} == {PARTICIPANT, VISIT}


def test_planned_encounters_link_the_place_only() -> None:
    links = links_of(encounter("planned", period={"start": "2027-01-10T09:00:00Z"}), now=NOW)
    assert {link.kind for link in links} == {VISIT}


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error", "unknown"])
def test_void_encounters_link_nobody(status: str) -> None:
    assert links_of(encounter(status), now=NOW) == []


def test_a_transferred_patient_no_longer_stays_in_the_old_location() -> None:
    body = encounter(
        "in-progress",
        location=[
            {"location": {"reference": "Location/old"}, "status": "completed"},
            {"location": {"reference": "Location/new"}, "status": "active"},
        ],
    )
    kinds = {link.actor: link.kind for link in links_of(body, now=NOW)}
    assert kinds["Location/old"] == VISIT
    assert kinds["Location/new"] == STAY


def test_care_team_and_treating_physician() -> None:
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "participant": [{"member": {"reference": "Practitioner/a"}}],
    }
    assert links_of(team, now=NOW) == [Link(TEAM, "Practitioner/a", None)]
    assert links_of({**team, "status": "proposed"}, now=NOW) == []
    ended = links_of({**team, "status": "inactive", "period": {"end": "2026-01-01"}}, now=NOW)
    assert ended[0].until is not None
    patient = {
        "resourceType": "Patient",
        "generalPractitioner": [
            {"reference": "Practitioner/gp"},
            {"reference": "Organization/cabinet"},
        ],
    }
    assert links_of(patient, now=NOW) == [Link(GP, "Practitioner/gp", None)]


def test_directory_parents() -> None:
    unit = {"resourceType": "Organization", "partOf": {"reference": "Organization/site"}}
    assert parents_of(unit) == ["Organization/site"]
    ward = {
        "resourceType": "Location",
        "partOf": {"reference": "Location/building"},
        "managingOrganization": {"reference": "Organization/unit"},
    }
    assert parents_of(ward) == ["Location/building", "Organization/unit"]
    assert parents_of({"resourceType": "Practitioner"}) == []


def test_no_name_or_code_reaches_the_index() -> None:
    body = encounter(
        "in-progress",
        reasonCode=[{"coding": [{"code": "C50.9"}], "text": "Cancer du sein"}],
        subject={"reference": "Patient/p", "display": "Jeanne DUPONT"},
    )
    flat = repr(links_of(body, now=NOW))
    for secret in ("C50", "DUPONT", "sein"):
        assert secret not in flat
