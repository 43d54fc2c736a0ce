"""Inclusion and consistency proofs (RFC 9162 2.1.3, 2.1.4) for external auditors.

Proofs are computed from the stored subtree hashes (`audit_node`, levels 8, 16, 24, 32) and at
most a few hundred leaf hashes, so a proof in a log of ten million records costs a handful of
indexed reads. Each proof is given against a *signed* head: an auditor checks the signature
with the published public key, then the path, with nothing of ours to trust.
"""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import Connection, Engine, select

from rempart.audit.entry import COLUMNS, canonical
from rempart.audit.heads import HeadSigner, SignedHead
from rempart.audit.merkle import (
    STORED_LEVELS,
    consistency_path,
    inclusion_path,
    leaf_hash,
    mth,
    node_hash,
)
from rempart.audit.tables import audit_event, audit_head, audit_node, audit_prune
from rempart.errors import InvalidSearch, ResourceNotFound


class _Subtrees:
    """MTH of any range, from stored tiles and leaf hashes (memoised for one proof)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._memo: dict[tuple[int, int], bytes] = {}

    def __call__(self, start: int, size: int) -> bytes:
        key = (start, size)
        if key not in self._memo:
            self._memo[key] = self._compute(start, size)
        return self._memo[key]

    def _compute(self, start: int, size: int) -> bytes:
        if size & (size - 1) == 0 and start % size == 0:
            return self._aligned(start, size.bit_length() - 1)
        k = 1 << ((size - 1).bit_length() - 1)
        return node_hash(self(start, k), self(start + k, size - k))

    def _aligned(self, start: int, level: int) -> bytes:
        if level in STORED_LEVELS:
            row = self._conn.execute(
                select(audit_node.c.hash).where(
                    audit_node.c.level == level, audit_node.c.idx == start >> level
                )
            ).first()
            if row is not None:
                return bytes(row.hash)
        if level <= 8:
            leaves = self._leaves(start, 1 << level)
            return mth(leaves)
        half = 1 << (level - 1)
        return node_hash(self(start, half), self(start + half, half))

    def _leaves(self, start: int, count: int) -> list[bytes]:
        rows = self._conn.execute(
            select(audit_event.c.leaf_hash)
            .where(audit_event.c.seq >= start, audit_event.c.seq < start + count)
            .order_by(audit_event.c.seq)
        ).all()
        if len(rows) != count:
            raise ResourceNotFound(
                f"records {start} to {start + count - 1} are not all in the log (pruned?)"
            )
        return [bytes(r.leaf_hash) for r in rows]


def _head(conn: Connection, size: int | None) -> SignedHead:
    query = select(audit_head)
    query = (
        query.order_by(audit_head.c.tree_size.desc()).limit(1)
        if size is None
        else query.where(audit_head.c.tree_size == size)
    )
    row = conn.execute(query).first()
    if row is None:
        raise ResourceNotFound(
            "no signed tree head"
            + ("" if size is None else f" at size {size}")
            + " (heads are signed every few seconds; list them with `rempart audit heads`)"
        )
    return SignedHead(row.tree_size, row.at, row.root, row.key_id, row.signature)


def _pruned_below(conn: Connection) -> int:
    size = conn.execute(select(audit_prune.c.size).order_by(audit_prune.c.size.desc())).first()
    return int(size[0]) if size else 0


def inclusion_proof(engine: Engine, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    with engine.connect() as conn:
        head = _head(conn, tree_size)
        if not 0 <= seq < head.tree_size:
            raise InvalidSearch(f"record {seq} is not in the tree of size {head.tree_size}")
        if seq < _pruned_below(conn):
            raise ResourceNotFound(f"record {seq} was removed by retention pruning")
        row = conn.execute(
            select(*(audit_event.c[name] for name in COLUMNS)).where(audit_event.c.seq == seq)
        ).first()
        if row is None:
            raise ResourceNotFound(f"record {seq} is not in the log")
        entry = canonical(tuple(row))
        path = inclusion_path(seq, head.tree_size, _Subtrees(conn))
    return {
        "leaf_index": seq,
        "tree_size": head.tree_size,
        "entry": base64.b64encode(entry).decode("ascii"),
        "leaf_hash": leaf_hash(entry).hex(),
        "path": [p.hex() for p in path],
        "head": head.to_json(),
    }


def consistency_proof(engine: Engine, old: int, new: int | None = None) -> dict[str, Any]:
    with engine.connect() as conn:
        new_head = _head(conn, new)
        old_head = _head(conn, old)
        if old_head.tree_size > new_head.tree_size:
            raise InvalidSearch("the old size must not exceed the new size")
        if old_head.tree_size < _pruned_below(conn) and old_head.tree_size % 256:
            raise ResourceNotFound(f"the tree at size {old} reaches into pruned records")
        path = consistency_path(old_head.tree_size, new_head.tree_size, _Subtrees(conn))
    return {
        "old": old_head.to_json(),
        "new": new_head.to_json(),
        "path": [p.hex() for p in path],
    }


def recent_heads(engine: Engine, limit: int) -> list[SignedHead]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_head).order_by(audit_head.c.tree_size.desc()).limit(limit)
        ).all()
    return [SignedHead(r.tree_size, r.at, r.root, r.key_id, r.signature) for r in rows]


def latest_head(engine: Engine, signer: HeadSigner) -> dict[str, Any]:
    with engine.connect() as conn:
        head = _head(conn, None)
    return {"head": head.to_json(), "public_key_pem": signer.public_pem(), "key_id": signer.key_id}
