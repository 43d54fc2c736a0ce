from __future__ import annotations

import hashlib
import hmac
import os
import random

import pytest

from rempart.crypto import BlindIndex

KEY = bytes(range(32))


def test_digest_is_hmac_sha256_of_the_domain_and_token_truncated_to_16_bytes() -> None:
    expected = hmac.new(KEY, b"Patient|family|dupont", hashlib.sha256).digest()[:16]
    assert BlindIndex(KEY).digest("Patient", "family", "dupont") == expected


def test_deterministic_across_instances() -> None:
    a = BlindIndex(KEY).digest("Patient", "identifier", "284057512345678")
    b = BlindIndex(KEY).digest("Patient", "identifier", "284057512345678")
    assert a == b
    assert len(a) == 16


def test_key_dependent() -> None:
    other = bytes(reversed(range(32)))
    assert BlindIndex(KEY).digest("Patient", "family", "dupont") != BlindIndex(other).digest(
        "Patient", "family", "dupont"
    )


def test_domain_separated_by_type_and_param() -> None:
    index = BlindIndex(KEY)
    digests = {
        index.digest("Patient", "family", "martin"),
        index.digest("Practitioner", "family", "martin"),
        index.digest("Patient", "given", "martin"),
        index.digest("Patient", "family", "martine"),
    }
    assert len(digests) == 4


def test_separator_in_type_or_param_is_refused() -> None:
    index = BlindIndex(KEY)
    with pytest.raises(ValueError, match="must not contain"):
        index.digest("Patient|family", "x", "y")
    with pytest.raises(ValueError, match="must not contain"):
        index.digest_many("Patient", "family|x", ["y"])


def test_token_may_contain_the_separator() -> None:
    index = BlindIndex(KEY)
    assert index.digest("Patient", "name", "a|b") != index.digest("Patient", "name", "a")


def test_utf8_tokens() -> None:
    index = BlindIndex(KEY)
    assert index.digest("Patient", "family", "Lefèvre") != index.digest(
        "Patient", "family", "Lefevre"
    )


def test_digest_many_matches_digest() -> None:
    index = BlindIndex(KEY)
    tokens = ["dupont", "", "Lefèvre", "a|b", "dupont"]
    assert index.digest_many("Patient", "family", tokens) == [
        index.digest("Patient", "family", t) for t in tokens
    ]
    assert index.digest_many("Patient", "family", []) == []


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        BlindIndex(b"short")


def test_digest_equals_the_hmac_module_for_random_keys_and_inputs() -> None:
    # `digest` writes the HMAC construction out over hashlib states (speed, bulk ingest): it
    # must agree with the standard library byte for byte, for any key, domain and token,
    # including a state reused across calls and domains met in any order.
    rng = random.Random(1)
    for _ in range(50):
        key = os.urandom(32)
        index = BlindIndex(key)
        for _ in range(40):
            res_type = rng.choice(["Patient", "Observation", "", "Encounter"])
            param = rng.choice(["family", "code", "_pad", "", "subject"])
            token = "".join(rng.choice("aé|:Z0 \u4e2d") for _ in range(rng.randrange(0, 90)))
            message = f"{res_type}|{param}|{token}".encode()
            expected = hmac.new(key, message, hashlib.sha256).digest()[:16]
            assert index.digest(res_type, param, token) == expected
