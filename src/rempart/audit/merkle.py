"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, compact ranges and proofs.

leaf hash  = SHA-256(0x00 || entry);  node hash = SHA-256(0x01 || left || right).
MTH of n leaves splits at the largest power of two k < n: MTH(D[0:k]) and MTH(D[k:n]).

A *frontier* (compact range) of size n is the list of roots of the complete aligned subtrees that
make up [0, n), largest first: one per set bit of n. Appending a leaf merges equal-sized subtrees
(like a binary counter), so the writer never re-reads old leaves, and the tree head at any size is
the right-to-left fold of its frontier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
_sha256 = hashlib.sha256

# Levels at which complete subtree hashes are stored (audit_node): 256 leaves, 65,536, ...
STORED_LEVELS = (8, 16, 24, 32)


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    return _sha256(b"").digest()


def root_of_frontier(frontier: Sequence[bytes]) -> bytes:
    """The tree head of the tree whose compact range is `frontier` (largest subtree first)."""
    if not frontier:
        return empty_root()
    root = frontier[-1]
    for h in reversed(frontier[:-1]):
        root = node_hash(h, root)
    return root


def frontier_levels(size: int) -> list[int]:
    """The level (log2 of the leaf count) of each subtree in the compact range of `size`."""
    return [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]


class Frontier:
    """The compact range of a growing tree; `append` reports each completed stored subtree."""

    __slots__ = ("hashes", "levels", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        levels = frontier_levels(size)
        if len(levels) != len(hashes):
            raise ValueError(
                f"a frontier of size {size} has {len(levels)} hashes, not {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)
        self.levels = levels

    def append(self, leaf: bytes, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        h, level, index = leaf, 0, self.size
        hashes, levels = self.hashes, self.levels
        while levels and levels[-1] == level:
            h = node_hash(hashes.pop(), h)
            levels.pop()
            level += 1
            index >>= 1
            if on_node is not None and level in STORED_LEVELS:
                on_node(level, index, h)
        hashes.append(h)
        levels.append(level)
        self.size += 1

    def append_subtree(
        self, h: bytes, level: int, on_node: Callable[[int, int, bytes], None] | None = None
    ) -> None:
        """Append the root of a complete subtree of 2**level leaves (the size must be aligned)."""
        width = 1 << level
        if self.size % width or (self.levels and self.levels[-1] < level):
            raise ValueError(f"a subtree of level {level} cannot follow a tree of {self.size}")
        size, index = self.size + width, self.size >> level
        hashes, levels = self.hashes, self.levels
        while levels and levels[-1] == level:
            h = node_hash(hashes.pop(), h)
            levels.pop()
            level += 1
            index >>= 1
            if on_node is not None and level in STORED_LEVELS:
                on_node(level, index, h)
        hashes.append(h)
        levels.append(level)
        self.size = size

    def root(self) -> bytes:
        return root_of_frontier(self.hashes)

    def pack(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def unpack(cls, size: int, packed: bytes) -> Frontier:
        return cls(size, [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)])

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, straight from the RFC's recursive definition (tests and proofs)."""
    n = len(leaves)
    if n == 0:
        return empty_root()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


# ---- proofs over an abstract "subtree hash" oracle --------------------------------------------
# `subtree(start, size)` returns MTH of leaves [start, start + size) for an aligned power-of-two
# size, or for the final partial range of the tree. Proof generation asks only O(log n) of them;
# the store answers from audit_node tiles and leaf hashes (rempart.audit.proofs).

Subtree = Callable[[int, int], bytes]


def _k(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_path(index: int, size: int, subtree: Subtree, start: int = 0) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]) for leaf `index` (absolute) in [start, start + size)."""
    if size <= 1:
        return []
    k = _k(size)
    if index - start < k:
        return [*inclusion_path(index, k, subtree, start), subtree(start + k, size - k)]
    return [*inclusion_path(index, size - k, subtree, start + k), subtree(start, k)]


def consistency_path(old: int, new: int, subtree: Subtree) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[n])."""
    if old in (0, new):
        return []
    return _subproof(old, 0, new, True, subtree)


def _subproof(m: int, start: int, n: int, complete: bool, subtree: Subtree) -> list[bytes]:
    if m == n:
        return [] if complete else [subtree(start, n)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, start, k, complete, subtree), subtree(start + k, n - k)]
    return [*_subproof(m - k, start + k, n - k, False, subtree), subtree(start, k)]


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Iterable[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2."""
    if old > new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
