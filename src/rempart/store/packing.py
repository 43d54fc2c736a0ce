"""Blind-index rows packed one row per resource, for bulk loads (`indexstage.IndexStage`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Blind-index rows travel and are staged packed: one row per resource, its 16-byte digests
# concatenated in PARTS slices of the digest space (by the digest's first 4 bits). The database
# unpacks them in SQL (`_UNPACK`), so a resource of ~27 index rows costs one bound row instead of
# 27 (2.6 us each on SQLite, the writing process's largest cost before).
PARTS = 16
DIGEST = 16
_SHIFT = 8 - (PARTS.bit_length() - 1)
PACKED_COLUMNS = ("res_type", "res_id", *(f"d{k}" for k in range(PARTS)))


def pack_index(res_type: str, res_id: str, digests: Sequence[bytes]) -> tuple[Any, ...]:
    """(res_type, res_id, part 0, ..., part 15) of one resource: each part the concatenation of
    its digests in that slice, in the order given, or None. `digests` must be sorted."""
    parts: list[bytes | None] = [None] * PARTS
    start, count = 0, len(digests)
    while start < count:
        k = digests[start][0] >> _SHIFT
        end = start + 1
        while end < count and digests[end][0] >> _SHIFT == k:
            end += 1
        parts[k] = b"".join(digests[start:end])
        start = end
    return (res_type, res_id, *parts)


def widest_part(packed: Sequence[tuple[Any, ...]]) -> int:
    """The most digests any one part of these packed rows holds (sizes the unpacking)."""
    return max((len(p) for row in packed for p in row[2:] if p), default=0) // DIGEST


def unpack_index(packed: Sequence[tuple[Any, ...]]) -> list[tuple[str, bytes, str]]:
    """The (res_type, digest, res_id) rows of packed rows, in no particular order."""
    rows: list[tuple[str, bytes, str]] = []
    for res_type, res_id, *parts in packed:
        for part in parts:
            if part:
                rows.extend(
                    (res_type, part[i : i + DIGEST], res_id) for i in range(0, len(part), DIGEST)
                )
    return rows
