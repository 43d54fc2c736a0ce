"""The directory: establishments, units, locations, practitioners with RPPS, roles, payers."""

import re
from collections import Counter

from rempart.seed import generate
from rempart.seed.codes import FINESS, RPPS
from rempart.seed.directory import luhn_digit


def of_type(resources: list[dict], resource_type: str) -> list[dict]:
    return [r for r in resources if r["resourceType"] == resource_type]


def test_three_establishments_with_finess(directory: list[dict]) -> None:
    establishments = [
        o for o in of_type(directory, "Organization") if o["type"][0]["coding"][0]["code"] == "prov"
    ]
    assert len(establishments) == 3
    for org in establishments:
        finess = org["identifier"][0]
        assert finess["system"] == FINESS
        assert re.fullmatch(r"\d{9}", finess["value"])
        assert luhn_digit(finess["value"][:8]) == finess["value"][8]
        assert "partOf" not in org


def test_units_belong_to_an_establishment_and_have_a_location(directory: list[dict]) -> None:
    organizations = {o["id"]: o for o in of_type(directory, "Organization")}
    units = [o for o in organizations.values() if o["type"][0]["coding"][0]["code"] == "dept"]
    assert len(units) >= 10
    names = " ".join(u["name"] for u in units)
    for specialty in (
        "Cardiologie",
        "Urgences",
        "Pédiatrie",
        "Oncologie",
        "Gériatrie",
        "Médecine interne",
        "Chirurgie",
    ):
        assert specialty in names
    for unit in units:
        parent = organizations[unit["partOf"]["reference"].split("/")[1]]
        assert parent["type"][0]["coding"][0]["code"] == "prov"
    managed = Counter(
        loc["managingOrganization"]["reference"] for loc in of_type(directory, "Location")
    )
    for unit in units:
        assert managed[f"Organization/{unit['id']}"] == 1


def test_practitioners_have_rpps_and_roles(directory: list[dict]) -> None:
    practitioners = {p["id"]: p for p in of_type(directory, "Practitioner")}
    rpps = [p["identifier"][0] for p in practitioners.values()]
    assert all(i["system"] == RPPS and re.fullmatch(r"\d{11}", i["value"]) for i in rpps)
    assert all(luhn_digit(i["value"][:10]) == i["value"][10] for i in rpps)
    assert len({i["value"] for i in rpps}) == len(rpps)
    locations = {loc["id"]: loc for loc in of_type(directory, "Location")}
    per_unit: Counter[str] = Counter()
    general_practitioners = 0
    for role in of_type(directory, "PractitionerRole"):
        assert role["practitioner"]["reference"].split("/")[1] in practitioners
        if "organization" not in role:
            general_practitioners += 1  # médecins traitants work outside the hospital
            continue
        unit = role["organization"]["reference"]
        location = locations[role["location"][0]["reference"].split("/")[1]]
        assert location["managingOrganization"]["reference"] == unit
        per_unit[unit] += 1
    assert min(per_unit.values()) >= 2
    assert general_practitioners >= 10


def test_general_practitioners_are_in_the_directory(
    directory: list[dict], patients: list[list[dict]]
) -> None:
    gp_ids = {
        f"Practitioner/{r['practitioner']['reference'].split('/')[1]}"
        for r in of_type(directory, "PractitionerRole")
        if "organization" not in r
    }
    for resources in patients:
        assert resources[0]["generalPractitioner"][0]["reference"] in gp_ids


def test_staff_scales_with_patients() -> None:
    small = of_type(generate(100, seed=1).directory(), "Practitioner")
    large = of_type(generate(60_000, seed=1).directory(), "Practitioner")
    assert len(large) >= 60_000 // 150 + 60_000 // 1000
    assert len(large) > 3 * len(small)


def test_payers_exist_for_coverages(directory: list[dict], patients: list[list[dict]]) -> None:
    organizations = {f"Organization/{o['id']}" for o in of_type(directory, "Organization")}
    for resources in patients[:300]:
        for coverage in of_type(resources, "Coverage"):
            assert coverage["payor"][0]["reference"] in organizations
