"""Bulk ingest for `seed` and `import`: many version-1 rows per statement.

The caller has validated the resources and resolved their references; this writes them with the
same encryption and blind indexes as the API path, in batches sized for one transaction each.
Resources that already exist are updated through the normal path (new version).

Two ways in. `ingest_batch` takes resource dicts and does everything in the calling process.
`prepare` + `write_prepared` split the same work in two so that bulk commands can spread it over
processes: `prepare` (pure, no database, no data key) stamps the meta, serialises the JSON,
computes the blind-index digests and the care-relationship rows, in a worker process that holds
the search key; `write_prepared` (the writing process) looks up or creates the owners' data keys,
seals each JSON blob with AES-256-GCM and inserts the rows. Data keys never leave the writing
process; the search key is handed to worker processes of the same command, which run as the same
user and exit with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine

from rempart.access import relations
from rempart.access.decision import Decision
from rempart.clock import micros_to_iso, now_micros
from rempart.crypto import BlindIndex
from rempart.crypto.aead import check_key, seal_with
from rempart.errors import Forbidden
from rempart.fhir import patient_compartment
from rempart.store.bulk import bulk_insert, existing_ids
from rempart.store.codec import aad, index_digests, seal_resource
from rempart.store.indexstage import IndexStage
from rempart.store.packing import pack_index, unpack_index, widest_part
from rempart.store.repository import ResourceStore, owner_of
from rempart.store.tables import resource, resource_version, search_index

CURRENT_COLUMNS = ("res_type", "res_id", "version", "compartment", "last_updated")
VERSION_COLUMNS = ("res_type", "res_id", "version", "owner", "last_updated", "payload")
INDEX_COLUMNS = ("res_type", "digest", "res_id")


def ingest_batch(
    store: ResourceStore, conn: Connection, decision: Decision, batch: list[dict[str, Any]]
) -> int:
    """Write a batch of resources that carry their ids; returns how many were written."""
    existing = _existing(conn, [(r["resourceType"], r["id"]) for r in batch])
    fresh = [r for r in batch if (r["resourceType"], r["id"]) not in existing]
    for body in batch:
        if (body["resourceType"], body["id"]) in existing:
            store.update_in(conn, decision, body["resourceType"], body["id"], body)
    if not fresh:
        return len(batch)
    compartments = [patient_compartment(r) for r in fresh]
    for body, compartment in zip(fresh, compartments, strict=True):
        if not decision.may_write(body["resourceType"], compartment, conn=conn, body=body):
            raise Forbidden(f"ingest of {body['resourceType']} is not permitted")
    keys = store.keyring.create_many(conn, {owner_of(c) for c in compartments})
    now = now_micros()
    stamp = micros_to_iso(now)
    # Tuples in table column order, for bulk_insert.
    current_rows: list[tuple[Any, ...]] = []
    version_rows: list[tuple[Any, ...]] = []
    index_rows: list[tuple[Any, ...]] = []
    for body, compartment in zip(fresh, compartments, strict=True):
        res_type, res_id = body["resourceType"], body["id"]
        owner = owner_of(compartment)
        body["meta"] = {**(body.get("meta") or {}), "versionId": "1", "lastUpdated": stamp}
        current_rows.append((res_type, res_id, 1, compartment, now))
        payload = seal_resource(keys[owner], body, res_type, res_id, 1, owner)
        version_rows.append((res_type, res_id, 1, owner, now, payload))
        index_rows.extend(
            (res_type, d, res_id) for d in index_digests(store.blind, res_type, res_id, body)
        )
    bulk_insert(conn, resource, CURRENT_COLUMNS, current_rows)
    bulk_insert(conn, resource_version, VERSION_COLUMNS, version_rows)
    bulk_insert(conn, search_index, INDEX_COLUMNS, index_rows)
    # The care-relationship index, in the same transaction as the records it comes from.
    relations.record_many(
        conn,
        ((b["resourceType"], b["id"], c, b) for b, c in zip(fresh, compartments, strict=True)),
    )
    return len(batch)


@dataclass
class Prepared:
    """A batch made ready to store, except for sealing (which needs the owners' data keys).

    Plain tuples and bytes: it crosses a process boundary, and pickles far faster than the
    resource dicts it came from.
    """

    stamp: int  # microseconds: the batch's lastUpdated, in meta and in the rows
    # (type, id, compartment, JSON bytes with meta.versionId "1" and meta.lastUpdated)
    entries: list[tuple[str, str, str | None, bytes]] = field(default_factory=list)
    # One row per resource, its index digests packed by slice (`packing.pack_index`): 27 tuples
    # per resource cost more to pickle, unpickle and bind than everything else of a batch.
    index_packed: list[tuple[Any, ...]] = field(default_factory=list)
    index_widest: int = 0  # packing.widest_part(index_packed)
    link_rows: list[tuple[Any, ...]] = field(default_factory=list)
    parent_rows: list[tuple[Any, ...]] = field(default_factory=list)


def prepare(resources: list[dict[str, Any]], *, blind: BlindIndex, stamp: int) -> Prepared:
    """Everything of `ingest_batch` that needs neither the database nor a data key.

    The same functions compute the same rows (`index_digests`, `relations.rows_many`): a
    resource stored this way is indistinguishable from one stored by `ingest_batch`.
    `resources` get their meta set in place.
    """
    out = Prepared(stamp)
    iso = micros_to_iso(stamp)
    sources: list[tuple[str, str, str | None, dict[str, Any]]] = []
    for body in resources:
        res_type, res_id = body["resourceType"], body["id"]
        body["meta"] = {**(body.get("meta") or {}), "versionId": "1", "lastUpdated": iso}
        compartment = patient_compartment(body)
        out.entries.append((res_type, res_id, compartment, orjson.dumps(body)))
        digests = index_digests(blind, res_type, res_id, body)  # sorted
        out.index_packed.append(pack_index(res_type, res_id, digests))
        sources.append((res_type, res_id, compartment, body))
    out.index_widest = widest_part(out.index_packed)
    out.link_rows, out.parent_rows = relations.rows_many(sources, now=stamp)
    return out


def write_prepared(
    store: ResourceStore,
    conn: Connection,
    decision: Decision,
    batch: Prepared,
    *,
    stage: IndexStage | None = None,
) -> int:
    """Seal and insert a prepared batch inside `conn`'s transaction; returns its size.

    With `stage`, the index rows go through it (`IndexStage`: unpacked by the database, now or
    in one sorted merge at the end of the load) rather than from Python rows.

    The decision is asked about each resource's type and compartment, without the body: a
    decision that needs the body to admit a write refuses here (bulk commands run with the
    operator's decision, which needs none). A batch holding a resource that already exists goes
    through `ingest_batch`, which makes it a new version.
    """
    now = batch.stamp
    current_rows = [(t, i, 1, c, now) for t, i, c, _ in batch.entries]
    if not _insert_fresh(conn, current_rows):
        bodies: list[dict[str, Any]] = [orjson.loads(e[3]) for e in batch.entries]
        return ingest_batch(store, conn, decision, bodies)
    # Refused, the caller's transaction rolls back with the rows just inserted.
    for res_type, _, compartment, _ in batch.entries:
        if not decision.may_write(res_type, compartment, conn=conn):
            raise Forbidden(f"ingest of {res_type} is not permitted")
    keys = store.keyring.create_many(conn, {owner_of(e[2]) for e in batch.entries})
    ciphers: dict[str, AESGCM] = {}
    for owner, key in keys.items():
        check_key(key)
        ciphers[owner] = AESGCM(key)  # one per owner, not one per blob
    version_rows: list[tuple[Any, ...]] = []
    for res_type, res_id, compartment, body in batch.entries:
        owner = owner_of(compartment)
        payload = seal_with(ciphers[owner], body, aad(res_type, res_id, 1, owner))
        version_rows.append((res_type, res_id, 1, owner, now, payload))
    bulk_insert(conn, resource_version, VERSION_COLUMNS, version_rows)
    if stage is None:
        # Key order (digest, res_type, res_id): the B-tree walked forwards.
        rows = sorted(unpack_index(batch.index_packed), key=_index_key)
        bulk_insert(conn, search_index, INDEX_COLUMNS, rows)
    else:
        stage.add(batch.index_packed, batch.index_widest)
    relations.write_rows(conn, batch.link_rows, batch.parent_rows)
    return len(batch.entries)


def _index_key(row: tuple[str, bytes, str]) -> tuple[bytes, str, str]:
    return row[1], row[0], row[2]


def refresh_statistics(engine: Engine) -> None:
    """ANALYZE, so that searches are planned from the caller's patients (`access/scope.py`).

    A database just loaded in bulk has no statistics (SQLite never gathers them by itself;
    PostgreSQL's autovacuum does, minutes later): the scope subquery would then be planned blind
    and a clinician's search could scan `care_link`.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _insert_fresh(conn: Connection, rows: list[tuple[Any, ...]]) -> bool:
    """Insert the batch's `resource` rows, or nothing and False when one of them exists.

    Optimistic: the primary key finds a resource that exists, where a lookup before the insert
    walked the same random-keyed index once more per resource. That lookup was the largest
    single cost of a 100,000-patient seed on PostgreSQL (its statement was the one running in
    most samples of `pg_stat_activity`). The savepoint takes back the rows inserted before the
    conflict; nothing else of the batch has been written yet (no data key: see `newkeys`).

    SQLite keeps the lookup: there a SAVEPOINT opening the transaction would be taken by pysqlite
    for the transaction itself, and its release would commit the batch's first rows alone. Its
    lookup runs in process, a few microseconds a resource.
    """
    if conn.dialect.name != "postgresql":
        if _existing(conn, [(row[0], row[1]) for row in rows]):
            return False
        bulk_insert(conn, resource, CURRENT_COLUMNS, rows)
        return True
    unique_violation = conn.dialect.loaded_dbapi.IntegrityError
    savepoint = conn.begin_nested()
    try:
        bulk_insert(conn, resource, CURRENT_COLUMNS, rows)
    except unique_violation:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def _existing(conn: Connection, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    return {
        (res_type, res_id)
        for res_type, ids in by_type.items()
        for res_id in existing_ids(conn, resource, res_type, ids)
    }
