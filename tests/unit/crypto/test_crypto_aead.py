from __future__ import annotations

import pytest

from rempart.crypto import IntegrityError, new_data_key, open_sealed, seal
from rempart.crypto.aead import NONCE_SIZE, TAG_SIZE

AAD = b"resource|Patient|p-1|v1"
PAYLOAD = bytes(range(256)) * 8  # 2 KB, every byte value


def test_round_trip() -> None:
    key = new_data_key()
    blob = seal(key, PAYLOAD, AAD)
    assert open_sealed(key, blob, AAD) == PAYLOAD
    assert len(blob) == NONCE_SIZE + len(PAYLOAD) + TAG_SIZE
    assert PAYLOAD[:64] not in blob


def test_empty_plaintext_round_trips_and_is_still_authenticated() -> None:
    key = new_data_key()
    blob = seal(key, b"", AAD)
    assert open_sealed(key, blob, AAD) == b""
    with pytest.raises(IntegrityError):
        open_sealed(key, blob, AAD + b"x")


def test_flipping_any_byte_is_detected() -> None:
    key = new_data_key()
    blob = seal(key, b"Dupont, Marie, INS 2 84 05 75 123 456 78", AAD)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(IntegrityError):
            open_sealed(key, bytes(tampered), AAD)


def test_truncated_or_extended_blob_is_detected() -> None:
    key = new_data_key()
    blob = seal(key, PAYLOAD, AAD)
    for bad in (blob[:-1], blob[: NONCE_SIZE + TAG_SIZE - 1], b"", blob + b"\x00"):
        with pytest.raises(IntegrityError):
            open_sealed(key, bad, AAD)


def test_row_swap_changes_aad_and_is_refused() -> None:
    key = new_data_key()
    row_a = seal(key, b"patient A", b"Patient|a|1")
    row_b = seal(key, b"patient B", b"Patient|b|1")
    # An attacker with SQL access swaps the two ciphertexts.
    with pytest.raises(IntegrityError):
        open_sealed(key, row_b, b"Patient|a|1")
    with pytest.raises(IntegrityError):
        open_sealed(key, row_a, b"Patient|b|1")


def test_wrong_key_is_refused() -> None:
    blob = seal(new_data_key(), PAYLOAD, AAD)
    with pytest.raises(IntegrityError):
        open_sealed(new_data_key(), blob, AAD)


def test_nonces_and_ciphertexts_differ_across_seals() -> None:
    key = new_data_key()
    blobs = [seal(key, PAYLOAD, AAD) for _ in range(200)]
    assert len({b[:NONCE_SIZE] for b in blobs}) == 200
    assert len(set(blobs)) == 200


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(b"k" * 16, PAYLOAD, AAD)
    with pytest.raises(ValueError, match="32 bytes"):
        open_sealed(b"k" * 24, seal(new_data_key(), PAYLOAD, AAD), AAD)


def test_new_data_keys_are_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 32 for k in keys)
