"""KEK rotation: a new key-encryption key re-wraps every data key, online, without re-encrypting.

Only `data_key` rows change (32-byte keys re-wrapped under the new KEK); resource blobs, their
data keys and the key cache are untouched, so readers and writers carry on during a rotation.

Steps, and why each waits:
1. `create_kek()` makes a new KEK current. Other server processes see it late: the file provider
   at once (it stats the key file before each wrap), the PKCS#11 provider within
   `RESCAN_SECONDS` (1 s). Until then they still wrap *new* data keys under an old KEK.
2. A first pass re-wraps every row not under the new KEK, in small keyset-paginated batches,
   each its own short transaction (SQLite's single writer is held for one batch's updates
   only, never for the crypto).
3. After `settle_seconds` (the provider delay plus a margin), and once every transaction begun
   before then has ended (one may hold a key it wrapped under the old KEK, still invisible to
   other sessions), a final sweep re-wraps whatever was written under an old KEK meanwhile;
   sweeps repeat until one finds nothing to do.
4. Only then are the old KEKs retired. A KEK still named by a row (one that failed to unwrap:
   tampered, and alerted) is kept, and the report says so.

Every `WrappedKey` rempart stores lives in `data_key`; that is what makes step 4 safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, bindparam, func, select, text, update

from rempart import alerts
from rempart.crypto import CryptoError, IntegrityError, KekNotFound, KeyProvider, WrappedKey
from rempart.crypto.providers.pkcs11 import RESCAN_SECONDS
from rempart.store.keyring import wrap_aad
from rempart.store.tables import data_key

# The provider's propagation delay plus a margin for transactions that wrapped a new key under
# the old KEK just before they saw the new one, and have not committed yet.
SETTLE_SECONDS = RESCAN_SECONDS + 2.0
MAX_SWEEPS = 10
# How long the final sweep waits for transactions older than it before giving up (retiring
# nothing): a bulk import batch takes seconds, an idle-in-transaction session forever.
BARRIER_SECONDS = 120.0


class RotationAborted(CryptoError):
    """The rotation stopped before retiring anything (another rotation made a newer KEK)."""


@dataclass
class RotationReport:
    new_kek: str
    rewrapped: int = 0
    sweeps: int = 0
    retired: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # old KEKs still named by unreadable rows
    failed_owners: list[str] = field(default_factory=list)


def keys_per_kek(engine: Engine) -> dict[str, int]:
    """How many data keys each KEK wraps (for `rempart keys status` and the rotation check)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(data_key.c.kek_id, func.count()).group_by(data_key.c.kek_id)
        ).all()
    return {str(kek): int(n) for kek, n in rows}


def rotate(
    engine: Engine,
    provider: KeyProvider,
    *,
    batch_size: int = 500,
    settle_seconds: float = SETTLE_SECONDS,
    pause_seconds: float = 0.0,
    barrier_seconds: float = BARRIER_SECONDS,
    progress: Callable[[int], None] | None = None,
) -> RotationReport:
    """Create a new KEK, re-wrap every data key under it, retire the old KEKs."""
    old = provider.kek_ids()
    new = provider.create_kek()
    created = time.monotonic()
    report = RotationReport(new_kek=new)
    failed: set[str] = set()

    def sweep() -> int:
        done = _rewrap_pass(engine, provider, new, batch_size, pause_seconds, failed, progress)
        report.sweeps += 1
        report.rewrapped += done
        return done

    sweep()
    for _ in range(MAX_SWEEPS):
        time.sleep(max(0.0, settle_seconds - (time.monotonic() - created)))
        created = time.monotonic()  # the next sweep must also wait for writes seen meanwhile
        # A transaction that wrapped a new key under the old KEK may not have committed yet,
        # and its row is invisible to a sweep: wait until every transaction begun before now
        # has ended.
        _transaction_barrier(engine, barrier_seconds)
        if sweep() == 0:
            break
    else:
        raise RotationAborted(
            f"data keys were still being wrapped under an old KEK after {MAX_SWEEPS} sweeps; "
            f"nothing was retired. Is a server running with a stale key configuration?"
        )
    report.failed_owners = sorted(failed)
    still_named = set(keys_per_kek(engine)) - {new}
    for kek_id in old:
        if kek_id in still_named:
            report.kept.append(kek_id)
        else:
            provider.retire_kek(kek_id)
            report.retired.append(kek_id)
    alerts.raise_alert(
        engine,
        "kek-rotated",
        alerts.WARNING if report.kept else alerts.INFO,
        "key-encryption key rotated"
        + (f"; {len(report.kept)} old KEK(s) kept for unreadable data keys" if report.kept else ""),
        {
            "new_kek": new,
            "retired": ",".join(report.retired),
            "kept": ",".join(report.kept),
            "rewrapped": report.rewrapped,
            "failed": len(report.failed_owners),
        },
    )
    return report


def _transaction_barrier(engine: Engine, timeout: float) -> None:
    """Return once no transaction that began before this call is still open."""
    if engine.dialect.name == "sqlite":
        # One writer at a time: taking the write lock waits for any open write transaction
        # (one that inserted a data key holds it) to end.
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute("ROLLBACK")
            cursor.close()
        finally:
            raw.close()
        return
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        barrier = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        conn.rollback()
        while True:
            older = conn.execute(
                text(
                    "SELECT pid, xact_start FROM pg_stat_activity WHERE datname = "
                    "current_database() AND pid <> pg_backend_pid() AND xact_start < :t"
                ),
                {"t": barrier},
            ).first()
            conn.rollback()  # our own snapshot must not be the old transaction we wait for
            if older is None:
                return
            if time.monotonic() > deadline:
                raise RotationAborted(
                    f"a database session (pid {older.pid}) has kept a transaction open since "
                    f"{older.xact_start}, from before the new KEK; a data key it wrapped could "
                    f"be lost, so nothing was retired. End it and run `rempart keys rotate` again"
                )
            time.sleep(0.05)


def _rewrap_pass(
    engine: Engine,
    provider: KeyProvider,
    target: str,
    batch_size: int,
    pause_seconds: float,
    failed: set[str],
    progress: Callable[[int], None] | None,
) -> int:
    """Re-wrap, in batches, every data key not under `target`; returns how many."""
    done = 0
    after = ""
    change = (
        update(data_key)
        .where(data_key.c.owner == bindparam("o"), data_key.c.kek_id == bindparam("old"))
        .values(kek_id=bindparam("kek"), wrapped=bindparam("blob"))
    )
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(data_key.c.owner, data_key.c.kek_id, data_key.c.wrapped)
                .where(data_key.c.kek_id != target, data_key.c.owner > after)
                .order_by(data_key.c.owner)
                .limit(batch_size)
            ).all()
        if not rows:
            return done
        after = rows[-1].owner
        params = []
        for row in rows:
            if row.owner in failed:
                continue
            rewrapped = _rewrap_one(engine, provider, row.owner, row.kek_id, row.wrapped, failed)
            if rewrapped is None:
                continue
            if rewrapped.kek_id != target:
                raise RotationAborted(
                    f"KEK {rewrapped.kek_id} became current during the rotation to {target} "
                    f"(another rotation?); nothing was retired, run `rempart keys rotate` again"
                )
            params.append(
                {"o": row.owner, "old": row.kek_id, "kek": rewrapped.kek_id, "blob": rewrapped.blob}
            )
        if params:
            # A row changed meanwhile (shredded, or re-wrapped by a concurrent sweep) matches no
            # longer and is left alone; the final sweep looks at it again.
            with engine.begin() as conn:
                conn.execute(change, params)
        done += len(params)
        if progress is not None:
            progress(len(params))
        if pause_seconds:
            time.sleep(pause_seconds)


def _rewrap_one(
    engine: Engine,
    provider: KeyProvider,
    owner: str,
    kek_id: str,
    blob: bytes,
    failed: set[str],
) -> WrappedKey | None:
    try:
        key = provider.unwrap(WrappedKey(kek_id, blob), wrap_aad(owner))
    except (IntegrityError, KekNotFound) as exc:
        # Keep the row as it is (and its KEK, so nothing more is lost) and tell the officer.
        failed.add(owner)
        alerts.raise_alert(
            engine,
            "rotation-unwrap-failed",
            alerts.CRITICAL,
            f"a data key could not be re-wrapped during KEK rotation ({type(exc).__name__})",
            {"owner": owner, "kek_id": kek_id},
        )
        return None
    return provider.wrap(key, wrap_aad(owner))
