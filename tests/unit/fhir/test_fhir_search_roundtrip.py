"""extract_index + parse_search against brute force over the Synthea fixture.

The store finds a resource when every clause has one of its tokens among the resource's index
entries, then keeps it when every post-filter accepts it. Each test runs that evaluation over all
resources of a type and compares the result with a direct computation on the JSON.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rempart.fhir import IndexEntry, extract_index, parse_search

Resource = dict[str, Any]
_INDEX: dict[int, tuple[list[IndexEntry], dict[str, set[str]]]] = {}


def _entries(resource: Resource) -> tuple[list[IndexEntry], dict[str, set[str]]]:
    key = id(resource)
    if key not in _INDEX:
        entries = extract_index(resource)
        assert len(entries) == len(set(entries))  # deduplicated
        assert entries == extract_index(resource)  # deterministic
        by_param: dict[str, set[str]] = {}
        for e in entries:
            by_param.setdefault(e.param, set()).add(e.token)
        _INDEX[key] = (entries, by_param)
    return _INDEX[key]


def search(rtype: str, params: list[tuple[str, str]], resources: Iterable[Resource]) -> set[str]:
    """What the store does: token lookups per clause, then post-filters and ids."""
    query = parse_search(rtype, params)
    found: set[str] = set()
    for n, r in enumerate(resources):
        entries, tokens = _entries(r)
        hit = all(any(t in tokens.get(c.param, ()) for t in c.any_of) for c in query.clauses)
        hit = hit and all(f(r) for f in query.post_filters)
        hit = hit and (query.ids is None or r["id"] in query.ids)
        if n < 50:  # SearchQuery.matches is the same evaluation, packaged for in-memory use
            assert hit == query.matches(r, entries)
        if hit:
            found.add(r["id"])
    return found


def brute(resources: Iterable[Resource], pred: Callable[[Resource], bool]) -> set[str]:
    return {r["id"] for r in resources if pred(r)}


def _accented(text: str) -> str:
    """Same letters, other case and accents: what a user types should not matter."""
    marks = {"a": "À", "e": "É", "i": "Î", "o": "Ö", "u": "Ü", "c": "Ç"}
    return "".join(marks.get(ch.lower(), ch.swapcase()) for ch in text)


def _fold(text: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).casefold()


def test_patient_family_prefix_any_case_and_accents(
    synthea_resolved: dict[str, list[Resource]],
) -> None:
    patients = synthea_resolved["Patient"]
    checked = 0
    for p in patients:
        for name in p["name"]:
            prefix = name["family"][:3]
            found = search("Patient", [("family", _accented(prefix))], patients)
            assert p["id"] in found
            assert found == brute(patients, lambda r, pre=prefix: any(
                _fold(n.get("family", "")).startswith(_fold(pre)) for n in r["name"]))  # fmt: skip
            exact = search("Patient", [("family:exact", name["family"])], patients)
            assert p["id"] in exact
            assert not search("Patient", [("family:exact", name["family"].upper())], patients)
            checked += 1
    assert checked >= 13


def test_name_and_given(synthea_resolved: dict[str, list[Resource]]) -> None:
    patients = synthea_resolved["Patient"]
    for p in patients:
        given = p["name"][0]["given"][0]
        assert p["id"] in search("Patient", [("given", given[:4].lower())], patients)
        assert p["id"] in search("Patient", [("name", given.upper())], patients)
        # AND of two parameters, OR inside one.
        both = search("Patient", [("name", given), ("family", "zz," + p["name"][0]["family"])],
                      patients)  # fmt: skip
        assert p["id"] in both


def test_identifier_and_gender(synthea_resolved: dict[str, list[Resource]]) -> None:
    patients = synthea_resolved["Patient"]
    for p in patients:
        for ident in p["identifier"]:
            token = f"{ident['system']}|{ident['value']}"
            assert search("Patient", [("identifier", token)], patients) == brute(
                patients, lambda r, i=ident: any(
                    x.get("system") == i["system"] and x.get("value") == i["value"]
                    for x in r["identifier"]))  # fmt: skip
    for gender in ("male", "female"):
        assert search("Patient", [("gender", gender)], patients) == brute(
            patients, lambda r, g=gender: r.get("gender") == g)  # fmt: skip


def _range(text: str) -> tuple[datetime, datetime]:
    """Independent reading of the fixture's dates (full dateTimes, or dates)."""
    if len(text) == 10:
        lo = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return lo, lo + timedelta(days=1)
    lo = datetime.fromisoformat(text).astimezone(UTC)
    digits = re.match(r"\.(\d+)", text[19:])
    width = timedelta(microseconds=10 ** (6 - len(digits[1]))) if digits else timedelta(seconds=1)
    return lo, lo + width


def _bounds(raw: str) -> tuple[str, datetime, datetime]:
    prefix = raw[:2] if raw[:2].isalpha() else "eq"
    value = raw[2:] if raw[:2].isalpha() else raw
    if len(value) == 4:
        y = int(value)
        return prefix, datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
    if len(value) == 7:
        y, m = int(value[:4]), int(value[5:])
        end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        return prefix, datetime(y, m, 1, tzinfo=UTC), end
    lo, hi = _range(value)
    return prefix, lo, hi


def _fhir_date_match(raw: str, lo: datetime | None, hi: datetime | None) -> bool:
    prefix, qlo, qhi = _bounds(raw)
    lo_ = lo or datetime.min.replace(tzinfo=UTC)
    hi_ = hi or datetime.max.replace(tzinfo=UTC)
    return {
        "eq": qlo <= lo_ and hi_ <= qhi and hi is not None and lo is not None,
        "ge": hi_ > qlo,  # overlaps [qlo, +inf)
        "gt": hi_ > qhi,
        "le": lo_ < qhi,  # overlaps (-inf, qhi)
        "lt": lo_ < qlo,
    }[prefix]


DATE_QUERIES = [
    "ge2015",
    "le2000",
    "gt2015-06",
    "lt1990-03",
    "eq2019",
    "2019-05",
    "ge2021-08-31",
    "le1968-02-29",
    "gt2020-03-01T12:00:00Z",
    "ge1800",
    "le2200",
]


@pytest.mark.parametrize(
    ("rtype", "param", "element"),
    [
        ("Encounter", "date", "period"),
        ("Procedure", "date", "performedPeriod"),
        ("Condition", "onset-date", "onsetDateTime"),
        ("Condition", "recorded-date", "recordedDate"),
        ("MedicationRequest", "authoredon", "authoredOn"),
        ("Immunization", "date", "occurrenceDateTime"),
        ("DocumentReference", "date", "date"),
        ("AllergyIntolerance", "date", "recordedDate"),
        ("Patient", "birthdate", "birthDate"),
    ],
)
def test_date_search_equals_brute_force(
    synthea_resolved: dict[str, list[Resource]], rtype: str, param: str, element: str
) -> None:
    resources = synthea_resolved[rtype]

    def interval(r: Resource) -> tuple[datetime | None, datetime | None] | None:
        value = r.get(element)
        if value is None:
            return None
        if isinstance(value, dict):
            return (_range(value["start"])[0] if "start" in value else None,
                    _range(value["end"])[1] if "end" in value else None)  # fmt: skip
        return _range(value)

    # Queries on the exact days of some values, besides the fixed ones.
    sample = [interval(r) for r in resources[:: max(1, len(resources) // 5)]]
    edges = [x.date() for iv in sample if iv for x in (iv[0], iv[1] - timedelta(seconds=1)) if x]
    extra = [f"{p}{d.isoformat()}" for d in edges for p in ("", "ge", "gt", "le", "lt")]
    for raw in DATE_QUERIES + extra:
        expected = brute(resources, lambda r, q=raw: (iv := interval(r)) is not None
                         and _fhir_date_match(q, *iv))  # fmt: skip
        assert search(rtype, [(param, raw)], resources) == expected, raw


def test_encounter_date_ge2015_is_period_overlap(
    synthea_resolved: dict[str, list[Resource]],
) -> None:
    encounters = synthea_resolved["Encounter"]
    since = datetime(2015, 1, 1, tzinfo=UTC)
    expected = brute(encounters, lambda e: "end" not in e["period"]
                     or datetime.fromisoformat(e["period"]["end"]) >= since)  # fmt: skip
    assert 0 < len(expected) < len(encounters)
    assert search("Encounter", [("date", "ge2015")], encounters) == expected
    # ANDed with a patient, as in the fixture README's example.
    for pid in {e["subject"]["reference"].split("/")[1] for e in encounters}:
        got = search("Encounter", [("patient", pid), ("date", "ge2015")], encounters)
        assert got == {
            i
            for i in expected
            if any(
                e["id"] == i and e["subject"]["reference"] == f"Patient/{pid}" for e in encounters
            )
        }


def test_condition_codes(synthea_resolved: dict[str, list[Resource]]) -> None:
    conditions = synthea_resolved["Condition"]
    codings = {(c["system"], c["code"]) for r in conditions for c in r["code"]["coding"]}
    assert len(codings) > 20
    for system, code in sorted(codings):
        expected = brute(conditions, lambda r, s=system, k=code: any(
            c["system"] == s and c["code"] == k for c in r["code"]["coding"]))  # fmt: skip
        assert search("Condition", [("code", f"{system}|{code}")], conditions) == expected
        assert search("Condition", [("code", code)], conditions) == expected
        assert not search("Condition", [("code", f"|{code}")], conditions)
    assert search("Condition", [("code", "http://snomed.info/sct|")], conditions) == brute(
        conditions,
        lambda r: any(c["system"] == "http://snomed.info/sct" for c in r["code"]["coding"]),
    )
    active = search("Condition", [("clinical-status", "active")], conditions)
    assert active == brute(
        conditions, lambda r: r["clinicalStatus"]["coding"][0]["code"] == "active"
    )


REFERENCE_CASES = [
    ("Condition", "patient", "subject"), ("Condition", "subject", "subject"),
    ("Condition", "encounter", "encounter"), ("Encounter", "patient", "subject"),
    ("Procedure", "patient", "subject"), ("MedicationRequest", "patient", "subject"),
    ("Immunization", "patient", "patient"), ("AllergyIntolerance", "patient", "patient"),
    ("DocumentReference", "patient", "subject"), ("Device", "patient", "patient"),
    ("Encounter", "service-provider", "serviceProvider"), ("Procedure", "location", "location"),
    ("Location", "organization", "managingOrganization"),
    ("PractitionerRole", "practitioner", "practitioner"),
    ("PractitionerRole", "organization", "organization"),
    ("MedicationRequest", "requester", "requester"),
]  # fmt: skip


@pytest.mark.parametrize(("rtype", "param", "element"), REFERENCE_CASES)
def test_reference_search(
    synthea_resolved: dict[str, list[Resource]], rtype: str, param: str, element: str
) -> None:
    resources = synthea_resolved[rtype]
    targets = {r[element]["reference"] for r in resources if element in r}
    assert targets
    for target in sorted(targets)[:40]:
        expected = brute(resources, lambda r, t=target: r.get(element, {}).get("reference") == t)
        assert search(rtype, [(param, target)], resources) == expected
        bare = target.split("/")[1]
        assert search(rtype, [(param, bare)], resources) == expected


def test_encounter_practitioner_and_location(synthea_resolved: dict[str, list[Resource]]) -> None:
    encounters = synthea_resolved["Encounter"]
    practitioners = {p["individual"]["reference"] for e in encounters for p in e["participant"]}
    for ref in sorted(practitioners)[:20]:
        expected = brute(encounters, lambda e, t=ref: any(
            p["individual"]["reference"] == t for p in e["participant"]))  # fmt: skip
        assert search("Encounter", [("practitioner", ref)], encounters) == expected
        assert search("Encounter", [("participant", ref.split("/")[1])], encounters) == expected
    locations = {loc["location"]["reference"] for e in encounters for loc in e["location"]}
    for ref in sorted(locations)[:10]:
        expected = brute(encounters, lambda e, t=ref: any(
            loc["location"]["reference"] == t for loc in e["location"]))  # fmt: skip
        assert search("Encounter", [("location", ref)], encounters) == expected


def test_reference_by_identifier_before_resolution(synthea: list[Resource]) -> None:
    roles = [r for r in synthea if r["resourceType"] == "PractitionerRole"]
    for role in roles[:10]:
        ident = role["practitioner"]["identifier"]
        token = f"{ident['system']}|{ident['value']}"
        assert role["id"] in search("PractitionerRole", [("practitioner:identifier", token)], roles)


def test_ids_and_status(synthea_resolved: dict[str, list[Resource]]) -> None:
    docs = synthea_resolved["DocumentReference"]
    some = [d["id"] for d in docs[:3]]
    assert search("DocumentReference", [("_id", ",".join(some))], docs) == set(some)
    assert search("DocumentReference", [("status", "superseded")], docs) == brute(
        docs, lambda d: d["status"] == "superseded"
    )
    assert search("DocumentReference", [("status", "current,superseded")], docs) == brute(
        docs, lambda d: d["status"] in ("current", "superseded")
    )
