"""Crypto-shredding: legal erasure of one patient by destroying their data key.

Every version of a patient's records is sealed under that patient's data key, so deleting the
one wrapped key row makes all of it unreadable at once, including copies we cannot reach (old
WAL frames, replicas). The ciphertext rows stay: the audit log names resource versions, and its
hashes must keep verifying. The patient's blind-index rows are deleted too, so no search finds
them any more, and a tombstone row records the erasure so that reads answer 410 "erased"
rather than an integrity alarm, and no new record can be attached to the erased patient.

Backups made before the erasure still hold the wrapped key; they become unreadable when the
KEK that wrapped it is retired by the next rotation (`rempart keys rotate`), see README.

This module has no HTTP or CLI entry point on purpose: erasure is destructive and irreversible,
and is reached only through the four-eyes approval flow ("erase-patient").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    String,
    Table,
    delete,
    exists,
    insert,
    or_,
    select,
    tuple_,
)

from rempart.clock import now_micros
from rempart.errors import RempartError, ResourceNotFound
from rempart.store.tables import data_key, metadata, resource, search_index

if TYPE_CHECKING:
    from rempart.store.keyring import Keyring

RESERVED_OWNERS = frozenset({"_directory", "_search"})

erased_owner = Table(
    "erased_owner",
    metadata,
    Column("owner", String(64), primary_key=True),
    # Microseconds since the epoch, UTC; other processes poll it to drop cached keys.
    Column("erased", BigInteger, nullable=False, index=True),
)


class PatientErased(RempartError):
    """The record belonged to a patient whose data was erased (crypto-shredded)."""

    status = 410
    code = "deleted"


def not_erased(compartment: ColumnElement[str | None]) -> ColumnElement[bool]:
    """A search condition leaving out rows of erased patients (directory rows stay).

    For `store/search.py`: without it, a search that does not go through the (deleted) index
    rows, such as an unfiltered listing or `_id`, meets an erased row and answers 410 for the
    whole page.
    """
    return or_(
        compartment.is_(None),
        ~exists().where(erased_owner.c.owner == compartment),
    )


def erased_among(conn: Connection, owners: set[str] | list[str]) -> set[str]:
    """Which of `owners` were erased."""
    found: set[str] = set()
    items = list(owners)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        found.update(
            conn.execute(select(erased_owner.c.owner).where(erased_owner.c.owner.in_(chunk)))
            .scalars()
            .all()
        )
    return found


def shred_patient(engine: Engine, keyring: Keyring, patient_id: str) -> None:
    """Erase `patient_id`: destroy their data key, delete their index rows, leave a tombstone.

    Idempotent: erasing an erased patient does nothing. An id that names no patient (no
    Patient resource, no data key) raises ResourceNotFound, so a mistyped id in an approved
    request is reported instead of silently "erased".
    """
    if patient_id in RESERVED_OWNERS or not patient_id:
        raise ValueError(f"{patient_id!r} is not a patient id")
    with engine.begin() as conn:
        if erased_among(conn, [patient_id]):
            keyring.forget(patient_id)
            return
        has_key = conn.execute(
            select(data_key.c.owner).where(data_key.c.owner == patient_id)
        ).first()
        is_patient = conn.execute(
            select(resource.c.res_id).where(
                resource.c.res_type == "Patient", resource.c.res_id == patient_id
            )
        ).first()
        if has_key is None and is_patient is None:
            raise ResourceNotFound(f"Patient/{patient_id} is not known")
        owned = select(resource.c.res_type, resource.c.res_id).where(
            resource.c.compartment == patient_id
        )
        conn.execute(
            delete(search_index).where(
                tuple_(search_index.c.res_type, search_index.c.res_id).in_(owned)
            )
        )
        # The tombstone first, in the same transaction: no reader ever sees "no key" without
        # also seeing "erased" (which would look like tampering and raise a false alarm).
        conn.execute(insert(erased_owner).values(owner=patient_id, erased=now_micros()))
        conn.execute(delete(data_key).where(data_key.c.owner == patient_id))
    keyring.forget(patient_id)
