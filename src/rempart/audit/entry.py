"""An audit record as stored: columns, the sealed free text, and the canonical leaf bytes.

The leaf of record `seq` is SHA-256(0x00 || canonical), where canonical is the compact JSON
array (orjson, UTF-8, no spaces) of FORMAT followed by the columns in COLUMNS order, exactly as
stored (`sealed` as its base64 text). Recomputing it needs no key, so an external auditor holding
a database copy and the public key can verify the log.

Free text (the username, a break-the-glass reason, a detail line) may name a patient, so it is
sealed with AES-256-GCM under the directory key, its associated data binding it to `seq`: the
database alone reveals identifiers only.
"""

from __future__ import annotations

import base64
import os
import threading
from binascii import b2a_base64
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rempart.audit.merkle import leaf_hash
from rempart.audit.records import AuditRecord
from rempart.crypto import IntegrityError

FORMAT = "rempart-audit/1"
COLUMNS = (
    "seq",
    "at",
    "action",
    "outcome",
    "account_id",
    "role",
    "practitioner",
    "session_id",
    "request_id",
    "resource_type",
    "resource_id",
    "patient",
    "ip",
    "user_agent",
    "sealed",
)
_PRIVATE = {"username": "u", "reason": "r", "detail": "d"}
_MAX_PRIVATE = 2000


def _aad(seq: int) -> bytes:
    return b"rempart/audit/%d" % seq


class Sealer:
    """Seals and opens the free-text part of records (AES-256-GCM, directory key).

    Nonces follow NIST SP 800-38D's deterministic construction: a random 64-bit field per
    Sealer (per process) followed by a 32-bit counter, renewed before the counter wraps. Unique
    without a system call per record; two processes collide only if their random fields do.
    """

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._lock = threading.Lock()
        self._renew()

    def _renew(self) -> None:
        self._field = os.urandom(8)
        self._counter = 0

    def _nonce(self) -> bytes:
        with self._lock:
            if self._counter >= 0xFFFFFFFF:
                self._renew()
            self._counter += 1
            return self._field + self._counter.to_bytes(4, "big")

    def seal(self, seq: int, record: AuditRecord) -> str | None:
        username, reason, detail = record.username, record.reason, record.detail
        if not (username or reason or detail):
            return None
        private: dict[str, str] = {}
        if username:
            private["u"] = username[:_MAX_PRIVATE]
        if reason:
            private["r"] = reason[:_MAX_PRIVATE]
        if detail:
            private["d"] = detail[:_MAX_PRIVATE]
        nonce = self._nonce()
        blob = nonce + self._aead.encrypt(nonce, orjson.dumps(private), _aad(seq))
        return b2a_base64(blob, newline=False).decode("ascii")  # = base64.b64encode, one call

    def open(self, seq: int, sealed: str | None) -> dict[str, str]:
        """{"username", "reason", "detail"} present in the record; raises IntegrityError."""
        if not sealed:
            return {}
        try:
            blob = base64.b64decode(sealed, validate=True)
            plain = self._aead.decrypt(blob[:12], blob[12:], _aad(seq))
        except Exception:
            raise IntegrityError(f"audit record {seq}: sealed text does not open") from None
        data: dict[str, str] = orjson.loads(plain)
        return {name: data[short] for name, short in _PRIVATE.items() if short in data}


def to_row(seq: int, record: AuditRecord, sealer: Sealer) -> tuple[Any, ...]:
    """The stored column values of `record` at position `seq`, in COLUMNS order. Values longer
    than their column are cut here, before hashing, so one oversized value (a 1,000-character
    id in a URL) can never fail a whole group commit."""
    # Inline rather than a helper per column (this runs once per record on the commit path):
    # `v and v[:n]` keeps None and "" as they are, and slicing a short str returns it unchanged.
    r = record
    account, role, practitioner, session = r.account_id, r.role, r.practitioner, r.session_id
    request, rtype, rid, patient = r.request_id, r.resource_type, r.resource_id, r.patient
    return (
        seq,
        int(r.at),
        (r.action or "")[:40],
        (r.outcome or "")[:16],
        account and account[:64],
        role and role[:32],
        practitioner and practitioner[:80],
        session and session[:64],
        request and request[:64],
        rtype and rtype[:40],
        rid and rid[:64],
        patient and patient[:64],
        (r.ip or "")[:64],
        (r.user_agent or "")[:256],
        sealer.seal(seq, r),
    )


def canonical(row: Sequence[Any]) -> bytes:
    return orjson.dumps((FORMAT, *row))


def row_leaf(row: Sequence[Any]) -> bytes:
    return leaf_hash(orjson.dumps((FORMAT, *row)))


def stored_rows(
    first: int, records: Sequence[AuditRecord], sealer: Sealer
) -> list[tuple[Any, ...]]:
    """The rows of `records` placed from position `first` on: the COLUMNS values followed by
    the leaf hash (`to_row` and `row_leaf` in one pass: the writer's per-record work)."""
    rows: list[tuple[Any, ...]] = []
    dumps, add = orjson.dumps, rows.append
    for seq, record in enumerate(records, first):
        row = to_row(seq, record, sealer)
        add((*row, leaf_hash(dumps((FORMAT, *row)))))
    return rows
