"""`rempart import`: validate, resolve references, and store FHIR files in batches.

Resources are stored in dependency order (organisations before the practitioners' roles that
point at them, patients before their records), because conditional references
(`Practitioner?identifier=...`) are resolved by searching what is already stored. A resource
whose reference cannot be resolved after its dependencies are in is rejected, not stored
half-way; the summary names it and says why.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rempart.access.pdp import system_decision
from rempart.errors import RempartError
from rempart.fhir import validate
from rempart.ingest.files import Item, Unreadable
from rempart.store.ingest import ingest_batch
from rempart.store.references import Resolver
from rempart.store.repository import ID_PATTERN, ResourceStore

# Earlier phases are committed before later ones resolve conditional references against them.
PHASES: list[frozenset[str]] = [
    frozenset({"Organization"}),
    frozenset({"Location", "Practitioner", "Medication"}),
    frozenset({"PractitionerRole"}),
    frozenset({"Patient"}),
]
BATCH = 500


@dataclass
class Summary:
    imported: Counter[str] = field(default_factory=Counter)
    rejected: list[dict[str, str]] = field(default_factory=list)

    def reject(self, source: str, res_type: str, reason: str) -> None:
        self.rejected.append({"source": source, "resourceType": res_type, "reason": reason})

    def as_json(self) -> dict[str, Any]:
        return {"imported": dict(sorted(self.imported.items())), "rejected": self.rejected}


@dataclass
class _Pending:
    source: str
    resource: dict[str, Any]


def import_items(
    store: ResourceStore,
    items: Iterable[Item | Unreadable],
    *,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    summary = Summary()
    urn_map: dict[str, str] = {}
    pending: list[_Pending] = []
    for item in items:
        if isinstance(item, Unreadable):
            summary.reject(item.source, "", item.reason)
            continue
        accepted = _accept(item, urn_map, summary)
        if accepted is not None:
            pending.append(accepted)
    decision = system_decision("operator import from files")
    known = {f"{p.resource['resourceType']}/{p.resource['id']}" for p in pending}
    resolver = Resolver(store, decision, urn_map=urn_map, known=known)
    for phase in [*PHASES, None]:
        batch = [
            p
            for p in pending
            if (phase is None and not any(p.resource["resourceType"] in f for f in PHASES))
            or (phase is not None and p.resource["resourceType"] in phase)
        ]
        _store_phase(store, resolver, batch, summary, progress)
    return summary


def _accept(item: Item, urn_map: dict[str, str], summary: Summary) -> _Pending | None:
    raw = item.resource
    res_type = str(raw.get("resourceType", "")) if isinstance(raw, dict) else ""
    full_url = raw.pop("__fullUrl", None) if isinstance(raw, dict) else None
    try:
        resource = validate(raw)
    except RempartError as exc:
        summary.reject(item.source, res_type, exc.message)
        return None
    res_id = resource.get("id")
    if res_id is None:
        res_id = resource["id"] = str(uuid.uuid4())
    if not isinstance(res_id, str) or not ID_PATTERN.fullmatch(res_id):
        summary.reject(item.source, res_type, f"id {res_id!r} is not a valid FHIR id")
        return None
    if isinstance(full_url, str):
        urn_map[full_url] = f"{res_type}/{res_id}"
    return _Pending(item.source, resource)


def _store_phase(
    store: ResourceStore,
    resolver: Resolver,
    batch: list[_Pending],
    summary: Summary,
    progress: Callable[[int], None] | None,
) -> None:
    for start in range(0, len(batch), BATCH):
        chunk = batch[start : start + BATCH]
        ready: list[dict[str, Any]] = []
        with store.engine.begin() as conn:
            for pending in chunk:
                try:
                    resolver.resolve(conn, pending.resource)
                except RempartError as exc:
                    res_type = pending.resource["resourceType"]
                    summary.reject(pending.source, res_type, exc.message)
                    # Nothing may resolve to a resource that was not stored.
                    resolver.known.discard(f"{res_type}/{pending.resource['id']}")
                    continue
                ready.append(pending.resource)
            ingest_batch(store, conn, resolver.decision, ready)
        summary.imported.update(r["resourceType"] for r in ready)
        if progress is not None:
            progress(len(chunk))
