"""Per-owner data keys: created on first use, wrapped by the key provider, cached unwrapped briefly.

An owner is a patient id, or one of the reserved owners below. Losing the key provider makes
every blob unreadable, which is the point: the database alone holds only wrapped keys.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from rempart.clock import now_micros
from rempart.crypto import IntegrityError, KeyCache, KeyProvider, WrappedKey, new_data_key
from rempart.errors import StoredDataTampered
from rempart.store.tables import data_key

log = logging.getLogger("rempart.security")

DIRECTORY_OWNER = "_directory"  # resources outside any patient compartment, account secrets
SEARCH_OWNER = "_search"  # the blind-index HMAC key


def _aad(owner: str) -> bytes:
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
        self._provider = provider
        # Bounded in count and time: a memory dump of a running server holds at most this many
        # unwrapped keys, none older than `cache_seconds`.
        self._cache: KeyCache[str, bytes] = KeyCache(cache_entries, cache_seconds)

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    def key_for(self, conn: Connection, owner: str, *, create: bool) -> bytes | None:
        """The owner's data key; with `create`, made (inside `conn`'s transaction) when absent."""
        cached = self._cache.get(owner)
        if cached is not None:
            return cached
        row = conn.execute(
            select(data_key.c.kek_id, data_key.c.wrapped).where(data_key.c.owner == owner)
        ).first()
        if row is None:
            if not create:
                return None
            key = new_data_key()
            wrapped = self._provider.wrap(key, _aad(owner))
            conn.execute(
                insert(data_key).values(
                    owner=owner, kek_id=wrapped.kek_id, wrapped=wrapped.blob, created=now_micros()
                )
            )
        else:
            key = self._unwrap(owner, row.kek_id, row.wrapped)
        self._cache.put(owner, key)
        return key

    def _unwrap(self, owner: str, kek_id: str, wrapped: bytes) -> bytes:
        try:
            return self._provider.unwrap(WrappedKey(kek_id, wrapped), _aad(owner))
        except IntegrityError:
            # A wrapped key moved to another owner's row, altered, or under a foreign KEK.
            log.critical("data key of owner %s failed to unwrap: tampered or wrong KEK", owner)
            raise StoredDataTampered(
                "a data key failed its integrity check; the security officer is alerted"
            ) from None

    def keys_for(self, conn: Connection, owners: set[str]) -> dict[str, bytes]:
        """Keys of many existing owners in one query (search results, bulk reads)."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for owner in owners:
            cached = self._cache.get(owner)
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
                key = self._unwrap(row.owner, row.kek_id, row.wrapped)
                self._cache.put(row.owner, key)
                found[row.owner] = key
        return found

    def create_many(self, conn: Connection, owners: set[str]) -> dict[str, bytes]:
        """Keys for a bulk ingest: existing ones unwrapped, the others created in one insert."""
        found = self.keys_for(conn, owners)
        new_rows = []
        for owner in owners - found.keys():
            key = new_data_key()
            wrapped = self._provider.wrap(key, _aad(owner))
            new_rows.append(
                {"owner": owner, "kek_id": wrapped.kek_id, "wrapped": wrapped.blob, "created": 0}
            )
            found[owner] = key
        if new_rows:
            now = now_micros()
            for row in new_rows:
                row["created"] = now
            conn.execute(insert(data_key), new_rows)
        for owner in owners:
            self._cache.put(owner, found[owner])
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
