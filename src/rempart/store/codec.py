"""How a resource version becomes a row: sealed JSON and blind-index digests.

The associated data of each blob is (type, id, version, owner): a blob copied onto another row,
another version or another patient fails authentication instead of being served.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from rempart.alerts import CRITICAL, raise_bound_alert
from rempart.crypto import BlindIndex, IntegrityError, open_sealed, seal
from rempart.errors import StoredDataTampered
from rempart.fhir.extract import extract_pairs

log = logging.getLogger("rempart.security")

# Index rows per resource are padded to a multiple of this, so the row count does not reveal the
# length of a name (string prefixes are indexed one row per prefix).
INDEX_PAD = 8


def aad(res_type: str, res_id: str, version: int, owner: str) -> bytes:
    return f"rempart/resource/{res_type}/{res_id}/{version}/{owner}".encode()


def seal_resource(
    key: bytes, resource: dict[str, Any], res_type: str, res_id: str, version: int, owner: str
) -> bytes:
    return seal(key, orjson.dumps(resource), aad(res_type, res_id, version, owner))


def open_resource(
    key: bytes | None, payload: bytes, res_type: str, res_id: str, version: int, owner: str
) -> bytes:
    """The version's JSON bytes, or StoredDataTampered: never a partial or unverified record."""
    if key is None:
        # An erased owner raised PatientErased in the keyring already: this key was deleted.
        raise_bound_alert(
            "data-key-missing",
            CRITICAL,
            "a record's data key row is missing (deleted outside crypto-shredding)",
            {"res_type": res_type, "res_id": res_id, "version": version, "owner": owner},
        )
        raise StoredDataTampered(f"{res_type}/{res_id} cannot be decrypted: its data key is gone")
    try:
        return open_sealed(key, payload, aad(res_type, res_id, version, owner))
    except IntegrityError:
        raise_bound_alert(
            "record-integrity",
            CRITICAL,
            "a stored record failed authentication: altered, swapped or wrong key",
            {"res_type": res_type, "res_id": res_id, "version": version, "owner": owner},
        )
        raise StoredDataTampered(
            f"{res_type}/{res_id} failed its integrity check; the security officer is alerted"
        ) from None


def index_digests(
    blind: BlindIndex, res_type: str, res_id: str, resource: dict[str, Any]
) -> list[bytes]:
    digests = set(blind.digest_pairs(res_type, extract_pairs(resource)))
    pad = -len(digests) % INDEX_PAD
    if pad:
        # Deterministic pads, so an update can recompute and delete exactly the rows it wrote.
        # Never memoised (each is its resource's own): `digest_many` bypasses a memo.
        tokens = [f"{res_id}:{i}" for i in range(pad)]
        digests.update(blind.digest_many(res_type, "_pad", tokens))
    return sorted(digests)
