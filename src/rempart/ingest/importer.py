"""`rempart import`: validate, resolve references, and store FHIR files in batches.

Resources are stored in dependency order (organisations before the practitioners' roles that
point at them, patients before their records), because conditional references
(`Practitioner?identifier=...`) are resolved by searching what is already stored. A resource
whose reference cannot be resolved after its dependencies are in is rejected, not stored
half-way; the summary names it and says why.

Nothing searches a phase while it is written, so each phase's blind-index rows are merged
into the index at its end, as the seed's are (`IndexStage`); unpacked into the index batch by
batch, each batch's rows landed on every leaf of its B-tree, and an import of 104,788 resources
took 72 s on SQLite where it took 38-45 s after. On PostgreSQL, into an index holding fewer
rows than the phase brings (a new server's first import), the index's key is dropped for the
phase and built at its end: a server searching the same database meanwhile scans the index.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from rempart.access.pdp import system_decision
from rempart.clock import now_micros
from rempart.errors import RempartError
from rempart.fhir import validate
from rempart.ingest.files import Item, Unreadable
from rempart.ingest.workers import Lanes, default_workers, prepare_chunk
from rempart.store.bulk import bulk_connection
from rempart.store.indexstage import IndexStage
from rempart.store.ingest import refresh_statistics, write_prepared
from rempart.store.keyring import SEARCH_OWNER
from rempart.store.references import Resolver
from rempart.store.repository import ID_PATTERN, ResourceStore
from rempart.store.tables import search_index

# Earlier phases are committed before later ones resolve conditional references against them.
PHASES: list[frozenset[str]] = [
    frozenset({"Organization"}),
    frozenset({"Location", "Practitioner", "Medication"}),
    frozenset({"PractitionerRole"}),
    frozenset({"Patient"}),
]
BATCH = 500
# Blind-index rows a resource brings, rounded down (the seed's hospital: 27): what each phase
# tells its index stage to expect.
INDEX_ROWS_PER_RESOURCE = 25
# Below this many resources, worker processes are not worth it: starting two costs ~3 s of CPU
# (imports), and the 7,160-resource Synthea fixture imported slower with them than without on
# the shared 2-core machine (docs/benchmarks.md).
PARALLEL_FROM = 20_000


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
    readable: list[tuple[Item, object]] = []  # with the entry's fullUrl, taken off the resource
    for item in items:
        if isinstance(item, Unreadable):
            summary.reject(item.source, "", item.reason)
            continue
        raw = item.resource
        full_url = raw.pop("__fullUrl", None) if isinstance(raw, dict) else None
        readable.append((item, full_url))
    workers = default_workers(2 if len(readable) >= PARALLEL_FROM else 1)
    with Lanes(store.keyring.ensure(SEARCH_OWNER), workers=workers) as lanes:
        # The workers start (~1.5 s of CPU each) while this process validates every resource
        # read from a file. Since fastcheck (~40 µs a resource) that takes about as long here
        # as in the workers (7.0 against 7.1 s for 104,788, worker start-up included), minus
        # the CPU of pickling each resource to a worker and back (~2 s).
        lanes.warm()
        urn_map: dict[str, str] = {}
        pending: list[_Pending] = []
        for item, full_url in readable:
            accepted = _accept(item, full_url, _verdict(item.resource), urn_map, summary)
            if accepted is not None:
                pending.append(accepted)
        decision = system_decision("operator import from files")
        known = {f"{p.resource['resourceType']}/{p.resource['id']}" for p in pending}
        resolver = Resolver(store, decision, urn_map=urn_map, known=known)
        phases = [[p for p in pending if p.resource["resourceType"] in f] for f in PHASES]
        phases.append(
            [p for p in pending if not any(p.resource["resourceType"] in f for f in PHASES)]
        )
        with bulk_connection(store.engine) as conn:
            for batch in phases:
                # Index rows merged at the phase's end, unless a resource comes twice: its
                # second coming, a new version, replaces the first's rows in the index, so
                # they must be there by then.
                ids = {(p.resource["resourceType"], p.resource["id"]) for p in batch}
                expected = len(batch) * INDEX_ROWS_PER_RESOURCE
                stage = IndexStage(
                    conn, search_index, deferred=len(ids) == len(batch), expected=expected
                )
                try:
                    _store_phase(store, conn, lanes, resolver, stage, batch, summary, progress)
                finally:
                    # Also when a batch failed: what was committed becomes findable.
                    stage.merge()
    refresh_statistics(store.engine)
    return summary


def _verdict(raw: object) -> str | None:
    """None for a valid resource, else why not (validate's message, never the value)."""
    try:
        validate(raw)
    except RempartError as exc:
        return exc.message
    return None


def _accept(
    item: Item, full_url: object, verdict: str | None, urn_map: dict[str, str], summary: Summary
) -> _Pending | None:
    raw = item.resource
    res_type = str(raw.get("resourceType", "")) if isinstance(raw, dict) else ""
    if verdict is not None or not isinstance(raw, dict):
        summary.reject(item.source, res_type, verdict or "not a JSON object")
        return None
    resource: dict[str, Any] = raw
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
    conn: Connection,
    lanes: Lanes,
    resolver: Resolver,
    stage: IndexStage,
    batch: list[_Pending],
    summary: Summary,
    progress: Callable[[int], None] | None,
) -> None:
    """Resolve each chunk's references here, prepare it in a worker, write it here.

    Every chunk is resolved before the first is written: a conditional reference resolves
    against the phases before its own (committed, and merged into the index), never against
    its own, whose index rows are merged at its end (on PostgreSQL into an index that may be
    keyless meanwhile, which no search should scan).
    """
    chunks = [batch[i : i + BATCH] for i in range(0, len(batch), BATCH)]

    def resolved(chunk: list[_Pending]) -> list[dict[str, Any]]:
        ready: list[dict[str, Any]] = []
        with store.engine.connect() as reader:
            for pending in chunk:
                try:
                    resolver.resolve(reader, pending.resource)
                except RempartError as exc:
                    res_type = pending.resource["resourceType"]
                    summary.reject(pending.source, res_type, exc.message)
                    # Nothing may resolve to a resource that was not stored.
                    resolver.known.discard(f"{res_type}/{pending.resource['id']}")
                    continue
                ready.append(pending.resource)
        return ready

    ready = [resolved(chunk) for chunk in chunks]
    # Each chunk's lastUpdated is read as it is handed out, so chunks stay in order.
    jobs = ((resources, now_micros()) for resources in ready)
    for chunk, prepared in zip(chunks, lanes.map(prepare_chunk, jobs), strict=True):
        with conn.begin():
            write_prepared(store, conn, resolver.decision, prepared, stage=stage)
        summary.imported.update(res_type for res_type, _, _, _ in prepared.entries)
        if progress is not None:
            progress(len(chunk))
