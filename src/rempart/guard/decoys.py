"""Decoy (honeytoken) patients: realistic records no legitimate workflow reaches.

They are stored only as `HMAC-SHA256(guard key, "rempart/decoy/" + patient id)[:16]`, under a
data key of its own (owner `_guard`, wrapped by the key provider like every data key), so the
database alone cannot say which patients are decoys: only a process holding the key can test
an id. The tags are held in memory and reloaded every few seconds, so a check costs one HMAC
and a set lookup; a decoy planted by another process is known here within that delay (one
planted in this process, at once). The seed's decoys are registered when the seed commits, so
no client ever meets one before the guard knows it.

Every protected read is checked, so the tags of recently named patients are memoized (a read
of a Patient names it twice, as patient and as resource; an HMAC cost ~4 us a tag in Python,
twice the rest of the check): the process holds the key anyway, and the tag of an id never
changes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Iterable
from urllib.parse import unquote_plus

from sqlalchemy import Connection, Engine, select

from rempart.audit.records import AuditRecord
from rempart.clock import now_micros
from rempart.guard.tables import guard_decoy

GUARD_OWNER = "_guard"
RELOAD_SECONDS = 5.0
MEMO = 65_536  # memoized tags (cleared when full)
_planted_here = [0]  # bumped by every plant in this process: its guards reload at once
_DETAIL_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})")
_DETAIL_ID = re.compile(r"(?:^|[ &])_id=([A-Za-z0-9\-.,]{1,2000})")


class Decoys:
    def __init__(self, engine: Engine, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the guard key is 32 bytes")
        self._engine = engine
        self._mac = hmac.new(key, b"rempart/decoy/", hashlib.sha256)
        self._tags: frozenset[bytes] = frozenset()
        self._loaded = -RELOAD_SECONDS
        self._generation = _planted_here[0]
        self._lock = threading.Lock()
        self._memo: dict[str, bytes] = {}

    def tag(self, patient: str) -> bytes:
        found = self._memo.get(patient)
        if found is not None:
            return found
        mac = self._mac.copy()
        mac.update(patient.encode())
        found = mac.digest()[:16]
        if len(self._memo) >= MEMO:
            self._memo.clear()
        self._memo[patient] = found
        return found

    def plant(self, conn: Connection, patients: Iterable[str], origin: str) -> int:
        """Registers decoys in the caller's transaction; how many were new."""
        tags = {self.tag(p) for p in patients}
        if not tags:
            return 0
        known = set(
            conn.execute(select(guard_decoy.c.tag).where(guard_decoy.c.tag.in_(tags))).scalars()
        )
        new = [{"tag": t, "planted": now_micros(), "origin": origin[:64]} for t in tags - known]
        if new:
            conn.execute(guard_decoy.insert(), new)
        _planted_here[0] += 1
        return len(new)

    def count(self) -> int:
        return len(self._current())

    def is_decoy(self, patient: str) -> bool:
        return self.tag(patient) in self._current()

    def hit(self, records: Iterable[AuditRecord]) -> tuple[str, AuditRecord] | None:
        """The first decoy a batch of records names: the patient of served data, the id of a
        Patient asked for (even refused), or a Patient named in a search's query."""
        tags = self._current()
        if not tags:
            return None
        for record in records:
            for patient in _named(record):
                if self.tag(patient) in tags:
                    return patient, record
        return None

    def _current(self) -> frozenset[bytes]:
        if self._stale():
            with self._lock:
                if self._stale():
                    generation = _planted_here[0]
                    with self._engine.connect() as conn:
                        self._tags = frozenset(conn.execute(select(guard_decoy.c.tag)).scalars())
                    self._loaded = time.monotonic()
                    self._generation = generation
        return self._tags

    def _stale(self) -> bool:
        return (
            self._generation != _planted_here[0]
            or time.monotonic() - self._loaded >= RELOAD_SECONDS
        )


def _named(record: AuditRecord) -> Iterable[str]:
    if record.patient:
        yield record.patient
    if record.resource_type == "Patient" and record.resource_id:
        yield record.resource_id
    if record.detail and record.action in ("search", "read", "break-glass"):
        text = unquote_plus(record.detail)
        yield from _DETAIL_REF.findall(text)
        if record.resource_type == "Patient":
            for ids in _DETAIL_ID.findall(text):
                yield from ids.split(",")
