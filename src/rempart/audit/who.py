"""Names for a patient's access history: who (by name), in which unit, what kind of data.

The audit log holds identifiers only; the names come from the directory at display time: the
Practitioner resource (and the Organization of their PractitionerRole) read with the patient's
own decision, or the account's display name for staff who are not practitioners. Cached for a
few minutes: a patient's page names the same dozen people.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from rempart.access.pdp import Policy, Principal
from rempart.errors import RempartError
from rempart.fhir import parse_search
from rempart.store.repository import ResourceStore
from rempart.store.search import search

CACHE_SECONDS = 300
CACHE_SIZE = 10_000

KIND_OF_DATA = {
    "Patient": "identity and contact details",
    "Coverage": "insurance cover",
    "Encounter": "visits and stays",
    "AllergyIntolerance": "allergies",
    "CareTeam": "care team",
    "Condition": "diagnoses and problems",
    "Device": "medical devices",
    "DocumentReference": "documents and letters",
    "Immunization": "vaccinations",
    "MedicationRequest": "prescriptions",
    "Observation": "results and measurements",
    "Procedure": "procedures",
}


@dataclass(frozen=True)
class Person:
    name: str
    unit: str | None


class Directory:
    def __init__(
        self,
        store: ResourceStore,
        policy: Policy,
        display_name: Callable[[str], str | None],
    ) -> None:
        self._store = store
        self._policy = policy
        self._display_name = display_name
        self._cache: dict[tuple[str | None, str | None], tuple[float, Person]] = {}

    def kind_of_data(self, res_type: str | None) -> str:
        if res_type is None:
            return "your record"
        return KIND_OF_DATA.get(res_type, res_type)

    def person(self, viewer: Principal, account_id: str | None, practitioner: str | None) -> Person:
        key = (account_id, practitioner)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        person = self._lookup(viewer, account_id, practitioner)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (now, person)
        return person

    def _lookup(
        self, viewer: Principal, account_id: str | None, practitioner: str | None
    ) -> Person:
        fallback = (self._display_name(account_id) if account_id else None) or "hospital staff"
        if practitioner is None or not practitioner.startswith("Practitioner/"):
            return Person(fallback, None)
        pid = practitioner.removeprefix("Practitioner/")
        try:
            decision = self._policy.decide(viewer)
            doc = orjson.loads(self._store.read(decision, "Practitioner", pid).body)
            name = _human_name(doc) or fallback
            roles, _ = search(
                self._store,
                decision,
                parse_search("PractitionerRole", [("practitioner", practitioner), ("_count", "5")]),
            )
            unit = None
            for role in roles:
                org = role.json().get("organization", {}).get("reference", "")
                if org.startswith("Organization/"):
                    unit_doc = self._store.read(decision, "Organization", org.split("/", 1)[1])
                    unit = str(orjson.loads(unit_doc.body).get("name") or "") or None
                    break
        except RempartError:
            return Person(fallback, None)
        return Person(name, unit)


def _human_name(doc: dict[str, Any]) -> str | None:
    names = doc.get("name") or []
    if not names or not isinstance(names[0], dict):
        return None
    first = names[0]
    if first.get("text"):
        return str(first["text"])
    parts = [*first.get("prefix", []), *first.get("given", []), first.get("family", "")]
    return " ".join(str(p) for p in parts if p) or None
