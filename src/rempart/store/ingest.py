"""Bulk ingest for `seed` and `import`: many version-1 rows per statement.

The caller has validated the resources and resolved their references; this writes them with the
same encryption and blind indexes as the API path, in batches sized for one transaction each.
Resources that already exist are updated through the normal path (new version).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from rempart.access import relations
from rempart.access.decision import Decision
from rempart.clock import micros_to_iso, now_micros
from rempart.errors import Forbidden
from rempart.fhir import patient_compartment
from rempart.store.bulk import bulk_insert
from rempart.store.codec import index_digests, seal_resource
from rempart.store.repository import ResourceStore, owner_of
from rempart.store.tables import resource, resource_version, search_index

CURRENT_COLUMNS = ("res_type", "res_id", "version", "compartment", "last_updated")
VERSION_COLUMNS = ("res_type", "res_id", "version", "owner", "last_updated", "payload")
INDEX_COLUMNS = ("res_type", "digest", "res_id")


def ingest_batch(
    store: ResourceStore, conn: Connection, decision: Decision, batch: list[dict[str, Any]]
) -> int:
    """Write a batch of resources that carry their ids; returns how many were written."""
    existing = _existing(conn, batch)
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


def _existing(conn: Connection, batch: list[dict[str, Any]]) -> set[tuple[str, str]]:
    by_type: dict[str, list[str]] = {}
    for body in batch:
        by_type.setdefault(body["resourceType"], []).append(body["id"])
    found: set[tuple[str, str]] = set()
    for res_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(resource.c.res_id).where(
                    resource.c.res_type == res_type, resource.c.res_id.in_(ids[start : start + 500])
                )
            )
            found.update((res_type, r.res_id) for r in rows)
    return found
