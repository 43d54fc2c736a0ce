"""RFC 9162 hashing, compact ranges and proofs, against the RFC's recursive definitions."""

from __future__ import annotations

import hashlib

import pytest

from rempart.audit.merkle import (
    Frontier,
    consistency_path,
    empty_root,
    inclusion_path,
    leaf_hash,
    mth,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [leaf_hash(b"entry %d" % i) for i in range(300)]


def _oracle(start: int, size: int) -> bytes:
    return mth(LEAVES[start : start + size])


def test_hashes_are_domain_separated_as_in_rfc_9162() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert empty_root() == hashlib.sha256(b"").digest()
    # A leaf can never pass for an interior node with the same bytes.
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


def test_frontier_root_equals_the_recursive_definition_at_every_size() -> None:
    frontier = Frontier()
    assert frontier.root() == empty_root()
    for n, leaf in enumerate(LEAVES, 1):
        frontier.append(leaf)
        assert frontier.root() == mth(LEAVES[:n]), n


def test_frontier_reports_stored_subtrees_and_survives_pack_unpack() -> None:
    nodes: list[tuple[int, int, bytes]] = []
    frontier = Frontier()
    for leaf in LEAVES[:300]:
        frontier.append(leaf, lambda lvl, idx, h: nodes.append((lvl, idx, h)))
    assert nodes == [(8, 0, mth(LEAVES[:256]))]
    again = Frontier.unpack(frontier.size, frontier.pack())
    assert again.root() == frontier.root() == mth(LEAVES[:300])
    with pytest.raises(ValueError, match="hashes"):
        Frontier(5, [b"x" * 32])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64, 100, 257])
def test_inclusion_proofs_verify_for_every_leaf(size: int) -> None:
    root = mth(LEAVES[:size])
    for index in range(size):
        path = inclusion_path(index, size, _oracle)
        assert verify_inclusion(index, size, LEAVES[index], path, root)
        # The same path does not prove another leaf, nor the leaf at another index.
        assert not verify_inclusion(index, size, LEAVES[index + 1], path, root)
        if size > 1:
            assert not verify_inclusion((index + 1) % size, size, LEAVES[index], path, root)


def test_consistency_proofs_verify_for_every_pair_of_sizes() -> None:
    for new in range(1, 40):
        new_root = mth(LEAVES[:new])
        for old in range(1, new + 1):
            proof = consistency_path(old, new, _oracle)
            old_root = mth(LEAVES[:old])
            assert verify_consistency(old, new, old_root, new_root, proof), (old, new)
            if old < new:
                forged = mth([*LEAVES[: old - 1], leaf_hash(b"forged")])
                assert not verify_consistency(old, new, forged, new_root, proof), (old, new)
