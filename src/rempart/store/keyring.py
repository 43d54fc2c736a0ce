"""Per-owner data keys: created on first use, wrapped by the key provider, cached unwrapped briefly.

An owner is a patient id, or one of the reserved owners below. Losing the key provider makes
every blob unreadable, which is the point: the database alone holds only wrapped keys.

An erased (crypto-shredded) owner has no key row and a tombstone in `erased_owner`; asking for
its key raises PatientErased (410), for reading and for writing alike. Other processes learn of
an erasure by polling the tombstones at most every ERASURE_POLL_SECONDS, which bounds how long
they may keep serving a shredded key from their cache.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from rempart import alerts
from rempart.clock import now_micros
from rempart.crypto import (
    IntegrityError,
    KekNotFound,
    KeyCache,
    KeyProvider,
    KeyProviderUnavailable,
    WrappedKey,
    new_data_key,
)
from rempart.errors import StoredDataTampered
from rempart.store import newkeys
from rempart.store.shred import PatientErased, erased_among, erased_owner
from rempart.store.tables import data_key

DIRECTORY_OWNER = "_directory"  # resources outside any patient compartment, account secrets
SEARCH_OWNER = "_search"  # the blind-index HMAC key

ERASURE_POLL_SECONDS = 1.0
# Tombstones are looked up from a little before the previous poll: an erasure committed late,
# or stamped by a host whose clock lags ours, is still seen.
_ERASURE_POLL_MARGIN_MICROS = 60_000_000


def wrap_aad(owner: str) -> bytes:
    # Binds a wrapped key to its owner, so swapping two rows' wrapped keys fails to unwrap.
    return b"rempart/data-key/" + owner.encode()


class Keyring:
    def __init__(
        self,
        engine: Engine,
        provider: KeyProvider,
        *,
        cache_entries: int = 50_000,
        cache_seconds: float = 300.0,
    ) -> None:
        self._engine = engine
        newkeys.watch(engine)
        self._provider = provider
        # Bounded in count and time: a memory dump of a running server holds at most this many
        # unwrapped keys, none older than `cache_seconds`.
        self._cache: KeyCache[str, bytes] = KeyCache(cache_entries, cache_seconds)
        self._poll_lock = threading.Lock()
        self._polled_at = time.monotonic()
        self._poll_since = now_micros() - _ERASURE_POLL_MARGIN_MICROS

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    @property
    def engine(self) -> Engine:
        return self._engine

    def key_for(self, conn: Connection, owner: str, *, create: bool) -> bytes | None:
        """The owner's data key; with `create`, made (inside `conn`'s transaction) when absent.

        None when the key is missing (which the caller treats as tampering); PatientErased
        when the owner was erased.
        """
        alerts.bind_engine(self._engine)
        self._poll_erasures(conn)
        cached = self._cache.get(owner) or newkeys.pending(conn, owner)
        if cached is not None:
            return cached
        row = conn.execute(
            select(data_key.c.kek_id, data_key.c.wrapped).where(data_key.c.owner == owner)
        ).first()
        if row is None:
            if erased_among(conn, [owner]):
                raise _erased(owner)
            if not create:
                return None
            key = new_data_key()
            wrapped = self._wrap(key, owner)
            conn.execute(
                insert(data_key).values(
                    owner=owner, kek_id=wrapped.kek_id, wrapped=wrapped.blob, created=now_micros()
                )
            )
            newkeys.created(conn, owner, key)
            return key
        key = self._unwrap(conn, owner, row.kek_id, row.wrapped)
        self._remember(conn, owner, key)
        return key

    def keys_for(self, conn: Connection, owners: set[str]) -> dict[str, bytes]:
        """Keys of many existing owners in one query (search results, bulk reads).

        Owners without a key row are left out (the caller fails closed on them), unless they
        were erased: then PatientErased.
        """
        alerts.bind_engine(self._engine)
        self._poll_erasures(conn)
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for owner in owners:
            cached = self._cache.get(owner) or newkeys.pending(conn, owner)
            if cached is None:
                missing.append(owner)
            else:
                found[owner] = cached
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            rows = conn.execute(
                select(data_key.c.owner, data_key.c.kek_id, data_key.c.wrapped).where(
                    data_key.c.owner.in_(chunk)
                )
            )
            for row in rows:
                key = self._unwrap(conn, row.owner, row.kek_id, row.wrapped)
                self._remember(conn, row.owner, key)
                found[row.owner] = key
        absent = set(missing) - found.keys()
        if absent and (gone := erased_among(conn, absent)):
            raise _erased(min(gone))
        return found

    def create_many(self, conn: Connection, owners: set[str]) -> dict[str, bytes]:
        """Keys for a bulk ingest: existing ones unwrapped, the others created in one insert."""
        found = self.keys_for(conn, owners)
        new_owners = owners - found.keys()
        if new_owners and (gone := erased_among(conn, new_owners)):
            raise _erased(min(gone))
        new_rows = []
        for owner in new_owners:
            key = new_data_key()
            wrapped = self._wrap(key, owner)
            new_rows.append(
                {"owner": owner, "kek_id": wrapped.kek_id, "wrapped": wrapped.blob, "created": 0}
            )
            found[owner] = key
        if new_rows:
            now = now_micros()
            for row in new_rows:
                row["created"] = now
            conn.execute(insert(data_key), new_rows)
            for owner in new_owners:
                newkeys.created(conn, owner, found[owner])
        return found

    def ensure(self, owner: str) -> bytes:
        """A reserved key (directory, search), created in its own transaction if needed."""
        try:
            with self._engine.begin() as conn:
                key = self.key_for(conn, owner, create=True)
        except DbIntegrityError:
            # Another process created it between our read and insert: read theirs.
            with self._engine.connect() as conn:
                key = self.key_for(conn, owner, create=False)
        if key is None:  # pragma: no cover - the insert above succeeded or a row exists
            raise RuntimeError(f"data key {owner} could not be created")
        return key

    def forget(self, owner: str) -> None:
        self._cache.evict(owner)

    def cached_count(self) -> int:
        """How many unwrapped keys this process holds now (bounded by cache_entries)."""
        return len(self._cache)

    # ---- internals ---------------------------------------------------------------------------

    def _remember(self, conn: Connection, owner: str, key: bytes) -> None:
        """Cache a key read from its row, unless that row is this transaction's own insert."""
        if newkeys.uncommitted(conn, owner):
            newkeys.keep(conn, owner, key)
        else:
            self._cache.put(owner, key)

    def _wrap(self, key: bytes, owner: str) -> WrappedKey:
        try:
            return self._provider.wrap(key, wrap_aad(owner))
        except KeyProviderUnavailable as exc:
            self._provider_alert(owner, None, exc)
            raise

    def _unwrap(self, conn: Connection, owner: str, kek_id: str, wrapped: bytes) -> bytes:
        try:
            try:
                return self._provider.unwrap(WrappedKey(kek_id, wrapped), wrap_aad(owner))
            except KekNotFound:
                # A rotation may have re-wrapped the row and retired its KEK since we read it:
                # read the row once more before calling the key lost.
                row = conn.execute(
                    select(data_key.c.kek_id, data_key.c.wrapped).where(data_key.c.owner == owner)
                ).first()
                if row is None or row.kek_id == kek_id:
                    raise
                kek_id = row.kek_id
                return self._provider.unwrap(WrappedKey(kek_id, row.wrapped), wrap_aad(owner))
        except IntegrityError:
            # A wrapped key moved to another owner's row, altered, or under a foreign KEK.
            alerts.raise_alert(
                self._engine,
                "data-key-integrity",
                alerts.CRITICAL,
                "a stored data key failed to unwrap: altered, moved to another owner's row, "
                "or wrapped under a different key-encryption key",
                {"owner": owner, "kek_id": kek_id},
            )
            raise StoredDataTampered(
                "a data key failed its integrity check; the security officer is alerted"
            ) from None
        except (KekNotFound, KeyProviderUnavailable) as exc:
            self._provider_alert(owner, kek_id, exc)
            raise  # the API answers 503: the key service, not the record, is at fault

    def _provider_alert(self, owner: str, kek_id: str | None, exc: Exception) -> None:
        kind = "kek-missing" if isinstance(exc, KekNotFound) else "key-provider-unavailable"
        alerts.raise_alert(
            self._engine,
            kind,
            alerts.CRITICAL,
            f"the key provider could not serve a data key: {type(exc).__name__}",
            {"owner": owner, "kek_id": kek_id},
        )

    def _poll_erasures(self, conn: Connection) -> None:
        """Drop cached keys of owners erased by any process since the last poll."""
        if time.monotonic() - self._polled_at < ERASURE_POLL_SECONDS:
            return
        if not self._poll_lock.acquire(blocking=False):
            return  # another thread is polling right now
        try:
            started = now_micros()
            erased = conn.execute(
                select(erased_owner.c.owner).where(erased_owner.c.erased >= self._poll_since)
            ).scalars()
            for owner in erased:
                self._cache.evict(owner)
            self._poll_since = started - _ERASURE_POLL_MARGIN_MICROS
            self._polled_at = time.monotonic()
        finally:
            self._poll_lock.release()


def _erased(owner: str) -> PatientErased:
    return PatientErased(f"the records of patient {owner} were erased at the patient's request")
