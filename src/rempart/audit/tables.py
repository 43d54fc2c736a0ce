"""The audit log's tables. Append-only: triggers (migration 0002_audit) refuse UPDATE and DELETE.

- `audit_event`: one row per record, at its position `seq` in the Merkle tree (0-based, no gaps).
  Identifiers only; the free text a record may carry (username, break-the-glass reason, detail) is
  in `sealed`, AES-256-GCM under the directory key, bound to `seq`. `leaf_hash` is
  SHA-256(0x00 || canonical bytes) (RFC 9162), stored so that a single altered row is named
  exactly, and so that proofs need not re-read every column.
- `audit_node`: hashes of complete aligned subtrees at levels 8, 16, 24 and 32 (256, 65,536...
  leaves), written as they complete: inclusion and consistency proofs read a few hundred hashes
  instead of millions of leaves, and survive retention pruning.
- `audit_batch`: one row per group commit: the tree size after it and the compact range
  ("frontier") at that size, so several server processes can append to one log in turn.
- `audit_head`: signed tree heads (Ed25519 over size, root, time). Copied outside the database.
- `audit_prune`: retention pruning points, each signed and naming its four-eyes approval; the
  delete trigger lets rows below the highest pruning point go, and nothing else.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from rempart.store.tables import metadata

_SEQ = BigInteger().with_variant(Integer(), "sqlite")

audit_event = Table(
    "audit_event",
    metadata,
    # On SQLite, INTEGER PRIMARY KEY makes seq the rowid (64-bit there): rows are stored in
    # position order, so `verify` reads the table sequentially instead of through an index.
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("action", String(40), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("account_id", String(64), nullable=True),
    Column("role", String(32), nullable=True),
    Column("practitioner", String(80), nullable=True),
    Column("session_id", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("resource_type", String(40), nullable=True),
    Column("resource_id", String(64), nullable=True),
    Column("patient", String(64), nullable=True),
    Column("ip", String(64), nullable=False),
    Column("user_agent", String(256), nullable=False),
    Column("sealed", Text, nullable=True),  # base64 of nonce || AES-GCM ciphertext || tag
    Column("leaf_hash", LargeBinary(32), nullable=False),
)
# The breach report and the AuditEvent search by agent: one account's accesses in a window. The
# report needs only these columns, so it is answered from the index without touching the table.
Index(
    "ix_audit_event_account_at",
    audit_event.c.account_id,
    audit_event.c.at,
    audit_event.c.outcome,
    audit_event.c.patient,
    audit_event.c.resource_type,
)
# A patient's access history and AuditEvent?patient=.
Index("ix_audit_event_patient_at", audit_event.c.patient, audit_event.c.at)
# Date-only searches and retention pruning.
Index("ix_audit_event_at", audit_event.c.at)

audit_node = Table(
    "audit_node",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

audit_batch = Table(
    "audit_batch",
    metadata,
    Column("size", _SEQ, primary_key=True, autoincrement=False),
    Column("first", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),  # concatenated 32-byte subtree roots
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("tree_size", _SEQ, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)

audit_prune = Table(
    "audit_prune",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("at", BigInteger, nullable=False),
    Column("cutoff", BigInteger, nullable=False),
    Column("approval_id", String(64), nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
)
