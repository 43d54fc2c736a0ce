"""Data keys created by a transaction that has not committed yet.

A key is cached (`Keyring`) only once its row is known to be committed. A key created in a
transaction that then rolls back would otherwise stay in the cache with no row behind it: the
process's next write for that owner would seal under it and commit, and the record could never
be read again (its key exists nowhere once the cache forgets it). Until its transaction commits,
a new key lives here, attached to that transaction; a later transaction reads the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, event

_INFO = "rempart.new_data_keys"


@dataclass
class _Held:
    transaction: object
    keys: dict[str, bytes] = field(default_factory=dict)
    # Owners whose row this transaction inserted: found again by a query, such a row is not
    # committed either, and a savepoint rolled back may have taken the key out of `keys`.
    created: set[str] = field(default_factory=set)


def _held(conn: Connection, *, make: bool) -> _Held | None:
    held = conn.info.get(_INFO)
    transaction = conn.get_transaction()
    if isinstance(held, _Held) and transaction is not None and held.transaction is transaction:
        return held
    if not make or transaction is None:
        return None
    held = _Held(transaction)
    conn.info[_INFO] = held
    return held


def created(conn: Connection, owner: str, key: bytes) -> None:
    """`owner`'s key was just inserted in `conn`'s transaction."""
    held = _held(conn, make=True)
    if held is None:  # pragma: no cover - an insert always runs inside a transaction
        raise RuntimeError("a data key was created outside a transaction")
    held.keys[owner] = key
    held.created.add(owner)


def pending(conn: Connection, owner: str) -> bytes | None:
    """The key this transaction created for `owner`, if any."""
    held = _held(conn, make=False)
    return None if held is None else held.keys.get(owner)


def uncommitted(conn: Connection, owner: str) -> bool:
    """Whether `owner`'s row, as this transaction sees it, may be its own uncommitted insert."""
    held = _held(conn, make=False)
    return held is not None and owner in held.created


def keep(conn: Connection, owner: str, key: bytes) -> None:
    """Hold a key unwrapped from this transaction's own row (not cacheable yet)."""
    held = _held(conn, make=True)
    if held is not None:
        held.keys[owner] = key


def watch(engine: Engine) -> None:
    """Forget held keys when a savepoint rolls back (its inserts are gone; the row, if any
    remains, is read again)."""
    if not event.contains(engine, "rollback_savepoint", _forget):
        event.listen(engine, "rollback_savepoint", _forget)


def _forget(conn: Connection, name: str, context: object) -> None:
    held = _held(conn, make=False)
    if held is not None:
        held.keys.clear()
