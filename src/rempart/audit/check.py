"""Checking a proof document offline, with nothing but the public key: what an auditor runs.

An inclusion proof holds the record's canonical bytes, so the auditor also sees exactly what
was logged (identifiers; the sealed free text stays sealed).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rempart.audit.heads import HeadVerifier, SignedHead
from rempart.audit.merkle import leaf_hash, verify_consistency, verify_inclusion


def check_proof_document(doc: Any, public: Ed25519PublicKey) -> tuple[bool, str]:
    """(valid, why) for a proof printed by `rempart audit prove` or the proof endpoints."""
    verifier = HeadVerifier(public)
    try:
        if isinstance(doc, dict) and "leaf_index" in doc:
            return _inclusion(doc, verifier)
        if isinstance(doc, dict) and "old" in doc and "new" in doc:
            return _consistency(doc, verifier)
    except (KeyError, ValueError, TypeError) as exc:
        return False, f"malformed proof: {exc}"
    return False, "not an inclusion or consistency proof"


def _inclusion(doc: dict[str, Any], verifier: HeadVerifier) -> tuple[bool, str]:
    head = SignedHead.from_json(doc["head"])
    if not verifier.head_valid(head):
        return False, "the head is not signed by this key"
    leaf = leaf_hash(base64.b64decode(doc["entry"], validate=True))
    path = [bytes.fromhex(p) for p in doc["path"]]
    index = int(doc["leaf_index"])
    if not verify_inclusion(index, head.tree_size, leaf, path, head.root):
        return False, f"record {index} is NOT in the tree of size {head.tree_size}"
    return True, f"record {index} is in the signed tree of size {head.tree_size}"


def _consistency(doc: dict[str, Any], verifier: HeadVerifier) -> tuple[bool, str]:
    old, new = SignedHead.from_json(doc["old"]), SignedHead.from_json(doc["new"])
    if not (verifier.head_valid(old) and verifier.head_valid(new)):
        return False, "a head is not signed by this key"
    path = [bytes.fromhex(p) for p in doc["path"]]
    if not verify_consistency(old.tree_size, new.tree_size, old.root, new.root, path):
        return False, f"the tree of size {old.tree_size} is NOT a prefix of {new.tree_size}"
    return True, f"the tree of size {old.tree_size} is a prefix of {new.tree_size}"
