"""Pkcs11KeyProvider against a real SoftHSM2 token (skipped without Debian's softhsm2)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from rempart.crypto import (
    CryptoError,
    IntegrityError,
    KekNotFound,
    KeyProvider,
    KeyProviderUnavailable,
    Pkcs11KeyProvider,
    WrappedKey,
    load_key_provider,
    new_data_key,
)
from rempart.crypto.providers import pkcs11 as pkcs11_module
from softhsm import SoftHsmToken

AAD = b"patient-key|p-42"


def provider_for(token: SoftHsmToken, prefix: str, pin: str | None = None) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider(
        token.library_path, token.token_label, pin or token.pin, key_label_prefix=prefix
    )


def raw_token(token: SoftHsmToken) -> pkcs11.Token:
    """Direct access to the token through the module, bypassing the provider.

    The provider loads the module by its real path; loading it again under the symlinked
    name would initialise it twice, so use the same real path.
    """
    lib = pkcs11.lib(os.path.realpath(token.library_path))
    return lib.get_token(token_label=token.token_label)


def test_wrap_unwrap_round_trip(hsm: Pkcs11KeyProvider, kek_prefix: str) -> None:
    assert isinstance(hsm, KeyProvider)
    hsm.check()
    data_key = new_data_key()
    wrapped = hsm.wrap(data_key, AAD)
    assert wrapped.kek_id == f"{kek_prefix}-000001" == hsm.current_kek_id()
    assert len(wrapped.blob) == 12 + 32 + 16
    assert data_key not in wrapped.blob
    assert hsm.unwrap(wrapped, AAD) == data_key
    # Fresh nonce per wrap.
    assert hsm.wrap(data_key, AAD).blob != wrapped.blob


def test_a_second_provider_on_the_token_unwraps(
    hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken, kek_prefix: str
) -> None:
    data_key = new_data_key()
    wrapped = hsm.wrap(data_key, AAD)
    with provider_for(softhsm_token, kek_prefix) as other:
        assert other.unwrap(wrapped, AAD) == data_key
    # Closing the second provider must not log the first one out.
    assert hsm.unwrap(wrapped, AAD) == data_key


def test_tamper_and_aad_mismatch_raise_integrity_error(hsm: Pkcs11KeyProvider) -> None:
    wrapped = hsm.wrap(new_data_key(), AAD)
    with pytest.raises(IntegrityError):
        hsm.unwrap(wrapped, b"patient-key|p-43")
    for index in (0, 11, 12, 40, len(wrapped.blob) - 1):
        blob = bytearray(wrapped.blob)
        blob[index] ^= 0x01
        with pytest.raises(IntegrityError):
            hsm.unwrap(WrappedKey(wrapped.kek_id, bytes(blob)), AAD)
    with pytest.raises(IntegrityError):
        hsm.unwrap(WrappedKey(wrapped.kek_id, wrapped.blob[:20]), AAD)
    # The session is still usable after failed decryptions.
    assert len(hsm.unwrap(wrapped, AAD)) == 32


def test_rotation_and_retire(hsm: Pkcs11KeyProvider, kek_prefix: str) -> None:
    old_id = hsm.current_kek_id()
    data_key = new_data_key()
    old_wrapped = hsm.wrap(data_key, AAD)

    new_id = hsm.create_kek()

    assert new_id == f"{kek_prefix}-000002" == hsm.current_kek_id()
    assert hsm.kek_ids() == [old_id, new_id]
    assert hsm.wrap(new_data_key(), AAD).kek_id == new_id
    assert hsm.unwrap(old_wrapped, AAD) == data_key
    # A blob wrapped under one KEK does not open under another.
    with pytest.raises(IntegrityError):
        hsm.unwrap(WrappedKey(new_id, old_wrapped.blob), AAD)

    rewrapped = hsm.wrap(hsm.unwrap(old_wrapped, AAD), AAD)
    with pytest.raises(CryptoError, match="current KEK"):
        hsm.retire_kek(new_id)
    hsm.retire_kek(old_id)

    assert hsm.kek_ids() == [new_id]
    with pytest.raises(KekNotFound, match="retired"):
        hsm.unwrap(old_wrapped, AAD)
    assert hsm.unwrap(rewrapped, AAD) == data_key
    # Numbers are never reused, so an old blob cannot meet a new key under its old name.
    assert hsm.create_kek() == f"{kek_prefix}-000003"


def test_rotation_is_seen_by_another_provider(
    hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken, kek_prefix: str
) -> None:
    with provider_for(softhsm_token, kek_prefix) as server:
        server.check()
        new_id = hsm.create_kek()  # e.g. the CLI rotates while the server runs
        wrapped = hsm.wrap(new_data_key(), AAD)
        assert wrapped.kek_id == new_id
        assert server.unwrap(wrapped, AAD) == hsm.unwrap(wrapped, AAD)


def test_kek_is_not_extractable(
    hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken, kek_prefix: str
) -> None:
    label = hsm.current_kek_id()
    token = raw_token(softhsm_token)
    # The provider keeps the process logged in, so a plain session sees private objects.
    with token.open(rw=True) as session:
        kek = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=label)
        assert kek[Attribute.SENSITIVE] is True
        assert kek[Attribute.EXTRACTABLE] is False
        assert kek[Attribute.NEVER_EXTRACTABLE] is True
        assert kek[Attribute.WRAP] is False
        assert kek[Attribute.SIGN] is False
        with pytest.raises(p11.AttributeSensitive):
            _ = kek[Attribute.VALUE]
        # Nor can it be wrapped out under another key the attacker controls.
        exporter: Any = session.generate_key(KeyType.AES, 256, label=f"{kek_prefix}-exporter")
        with pytest.raises((p11.KeyUnextractable, p11.KeyNotWrappable)):
            exporter.wrap_key(kek, mechanism=Mechanism.AES_KEY_WRAP)


def test_check_refuses_an_extractable_key_under_our_label(
    hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken, kek_prefix: str
) -> None:
    token = raw_token(softhsm_token)
    with token.open(rw=True) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=f"{kek_prefix}-000002",
            store=True,
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(KeyProviderUnavailable, match="extractable"):
        hsm.check()


def test_wrong_pin_is_refused(softhsm_token: SoftHsmToken, kek_prefix: str) -> None:
    # No provider holds the login here, so the token itself checks the PIN.
    with pytest.raises(KeyProviderUnavailable, match="rejected the PIN"):
        provider_for(softhsm_token, kek_prefix, pin="0000-wrong").check()


def test_wrong_pin_is_refused_while_the_process_is_logged_in(
    hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken, kek_prefix: str
) -> None:
    hsm.check()
    with pytest.raises(KeyProviderUnavailable, match="rejected the PIN"):
        provider_for(softhsm_token, kek_prefix, pin="0000-wrong").check()
    hsm.check()


def test_wrong_token_label_and_library_are_refused(
    softhsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    wrong_label = Pkcs11KeyProvider(softhsm_token.library_path, "no-such-token", softhsm_token.pin)
    with pytest.raises(KeyProviderUnavailable, match=r"no token labelled 'no-such-token'.*present"):
        wrong_label.check()
    missing = Pkcs11KeyProvider(str(tmp_path / "libnothing.so"), "x", "1234")
    with pytest.raises(KeyProviderUnavailable, match="not found; install"):
        missing.check()


def test_token_without_kek_is_unusable(softhsm_token: SoftHsmToken, kek_prefix: str) -> None:
    with provider_for(softhsm_token, kek_prefix) as empty:
        with pytest.raises(KeyProviderUnavailable, match="holds no KEK"):
            empty.check()
        with pytest.raises(KeyProviderUnavailable, match="holds no KEK"):
            empty.wrap(new_data_key(), AAD)


def test_unknown_kek_id_is_reported(hsm: Pkcs11KeyProvider) -> None:
    wrapped = hsm.wrap(new_data_key(), AAD)
    with pytest.raises(KekNotFound):
        hsm.unwrap(WrappedKey("kek-from-another-install", wrapped.blob), AAD)


def test_concurrent_wraps_and_unwraps(hsm: Pkcs11KeyProvider) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(300):
                aad = f"p-{n}-{i}".encode()
                key = new_data_key()
                assert hsm.unwrap(hsm.wrap(key, aad), aad) == key
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_load_key_provider_pkcs11(
    softhsm_token: SoftHsmToken, kek_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HSM_PIN", softhsm_token.pin)
    provider = load_key_provider(
        "pkcs11",
        Path("/unused"),
        library_path=softhsm_token.library_path,
        token_label=softhsm_token.token_label,
        pin_env="TEST_HSM_PIN",
        key_label_prefix=kek_prefix,
    )
    assert isinstance(provider, Pkcs11KeyProvider)
    try:
        provider.create_kek()
        provider.check()
    finally:
        provider.close()


def test_prefixes_are_separate_key_sets(
    hsm: Pkcs11KeyProvider, softhsm_token: SoftHsmToken
) -> None:
    wrapped = hsm.wrap(new_data_key(), AAD)
    with provider_for(softhsm_token, "other-prefix") as other:
        other.create_kek()
        assert other.current_kek_id() == "other-prefix-000001"
        with pytest.raises(KekNotFound):
            other.unwrap(wrapped, AAD)
        with pytest.raises(KekNotFound):
            other.retire_kek(wrapped.kek_id)
    assert len(hsm.unwrap(wrapped, AAD)) == 32


def run_in_other_process(token: SoftHsmToken, prefix: str, code: str) -> str:
    """Run ``code`` with a provider ``p`` in a separate Python process (the CLI's view)."""
    script = (
        "import sys\n"
        "from rempart.crypto import Pkcs11KeyProvider, WrappedKey, new_data_key\n"
        f"p = Pkcs11KeyProvider({token.library_path!r}, {token.token_label!r}, {token.pin!r}, "
        f"key_label_prefix={prefix!r})\n" + code + "\np.close()\n"
    )
    # SOFTHSM2_CONF is inherited from the softhsm_token fixture's environment.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_rotation_by_another_process_is_picked_up(
    hsm: Pkcs11KeyProvider,
    softhsm_token: SoftHsmToken,
    kek_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pkcs11_module, "RESCAN_SECONDS", 3600.0)
    old_id = hsm.current_kek_id()
    old_wrapped = hsm.wrap(new_data_key(), AAD)
    out = run_in_other_process(
        softhsm_token,
        kek_prefix,
        "new = p.create_kek()\n"
        "k = new_data_key()\n"
        f"w = p.wrap(k, {AAD!r})\n"
        "print(new, w.blob.hex(), k.hex())",
    )
    new_id, blob_hex, key_hex = out.split()
    # wrap() moves to the new current KEK once its view is older than RESCAN_SECONDS.
    assert hsm.wrap(new_data_key(), AAD).kek_id == old_id  # view younger than the delay
    monkeypatch.setattr(pkcs11_module, "RESCAN_SECONDS", 0.0)
    assert hsm.wrap(new_data_key(), AAD).kek_id == new_id
    assert hsm.unwrap(WrappedKey(new_id, bytes.fromhex(blob_hex)), AAD) == bytes.fromhex(key_hex)

    run_in_other_process(softhsm_token, kek_prefix, f"p.retire_kek({old_id!r})")
    with pytest.raises(KekNotFound):
        hsm.unwrap(old_wrapped, AAD)


class _Vanished:
    """An object the token listed and another process destroyed before its label was read."""

    def __getitem__(self, _attribute: Any) -> Any:
        raise p11.ObjectHandleInvalid()


class _ListingRace:
    """The provider's session, with a destroyed object among those the listing returns."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def get_objects(self, template: Any) -> Any:
        yield _Vanished()
        yield from self.real.get_objects(template)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_kek_retired_while_the_token_is_listed_is_skipped(
    hsm: Pkcs11KeyProvider, kek_prefix: str
) -> None:
    """Found by the rotation-under-load test: a process listing the token while the rotation
    command retires the old KEK read a label of a destroyed object, and failed the request."""
    current = hsm.current_kek_id()
    wrapped = hsm.wrap(new_data_key(), AAD)
    login = hsm._connect()
    real = login.session
    login.session = _ListingRace(real)
    try:
        assert current in hsm._scan(login)
        assert current in hsm.kek_ids()
        assert len(hsm.unwrap(wrapped, AAD)) == 32
    finally:
        login.session = real
