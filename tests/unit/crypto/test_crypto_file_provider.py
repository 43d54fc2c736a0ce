from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rempart.crypto import (
    CryptoError,
    FileKeyProvider,
    IntegrityError,
    KekNotFound,
    KeyFileExists,
    KeyProvider,
    KeyProviderUnavailable,
    WrappedKey,
    load_key_provider,
    new_data_key,
)

AAD = b"patient-key|p-42"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_mode_0600_and_a_valid_document(key_file: FileKeyProvider) -> None:
    assert mode_of(key_file.path) == 0o600
    doc = json.loads(key_file.path.read_text())
    assert doc["version"] == 1
    assert doc["current"] in doc["keks"]
    assert set(doc) == {"version", "current", "keks", "audit_signing_key"}
    assert isinstance(key_file, KeyProvider)
    key_file.check()


def test_create_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        provider = FileKeyProvider.create(tmp_path / "keys.json")
    finally:
        os.umask(old)
    assert mode_of(provider.path) == 0o600


def test_create_refuses_to_overwrite(key_file: FileKeyProvider) -> None:
    before = key_file.path.read_bytes()
    with pytest.raises(KeyFileExists, match="refusing to overwrite"):
        FileKeyProvider.create(key_file.path)
    assert key_file.path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_wider_mode_is_refused_with_the_chmod_fix(key_file: FileKeyProvider, mode: int) -> None:
    key_file.path.chmod(mode)
    provider = FileKeyProvider(key_file.path)
    with pytest.raises(KeyProviderUnavailable) as info:
        provider.check()
    message = str(info.value)
    assert f"has mode {mode:04o}" in message
    assert f"chmod 600 {key_file.path}" in message
    # Nothing is usable through it either.
    with pytest.raises(KeyProviderUnavailable):
        provider.wrap(new_data_key(), AAD)


def test_owner_only_narrower_mode_is_accepted(key_file: FileKeyProvider) -> None:
    key_file.path.chmod(0o400)
    FileKeyProvider(key_file.path).check()


def test_missing_file_is_refused(tmp_path: Path) -> None:
    provider = FileKeyProvider(tmp_path / "nope.json")
    with pytest.raises(KeyProviderUnavailable, match=r"does not exist.*rempart init"):
        provider.check()
    with pytest.raises(KeyProviderUnavailable):
        provider.current_kek_id()


def test_directory_and_fifo_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir(mode=0o700)
    with pytest.raises(KeyProviderUnavailable, match="not a regular file"):
        FileKeyProvider(tmp_path / "dir.json").check()
    os.mkfifo(tmp_path / "fifo.json", 0o600)
    with pytest.raises(KeyProviderUnavailable, match="not a regular file"):
        FileKeyProvider(tmp_path / "fifo.json").check()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(current="kek-missing"),
        lambda d: d.update(keks={}),
        lambda d: d["keks"].update({d["current"]: "c2hvcnQ="}),
        lambda d: d.update(audit_signing_key="!!"),
    ],
)
def test_malformed_file_is_refused(key_file: FileKeyProvider, mutate: object) -> None:
    doc = json.loads(key_file.path.read_text())
    mutate(doc)  # type: ignore[operator]
    key_file.path.write_text(json.dumps(doc))
    with pytest.raises(KeyProviderUnavailable, match="malformed"):
        FileKeyProvider(key_file.path).check()


def test_wrap_unwrap_round_trip_from_a_fresh_instance(key_file: FileKeyProvider) -> None:
    data_key = new_data_key()
    wrapped = key_file.wrap(data_key, AAD)
    assert wrapped.kek_id == key_file.current_kek_id()
    assert data_key not in wrapped.blob
    reopened = FileKeyProvider(key_file.path)
    assert reopened.unwrap(wrapped, AAD) == data_key


def test_aad_mismatch_and_tamper_are_refused(key_file: FileKeyProvider) -> None:
    wrapped = key_file.wrap(new_data_key(), AAD)
    with pytest.raises(IntegrityError):
        key_file.unwrap(wrapped, b"patient-key|p-43")
    blob = bytearray(wrapped.blob)
    blob[20] ^= 0x80
    with pytest.raises(IntegrityError):
        key_file.unwrap(WrappedKey(wrapped.kek_id, bytes(blob)), AAD)


def test_wrap_refuses_non_keys(key_file: FileKeyProvider) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        key_file.wrap(b"a whole patient record, not a key", AAD)


def test_rotation_keeps_old_keys_readable(key_file: FileKeyProvider) -> None:
    old_id = key_file.current_kek_id()
    data_key = new_data_key()
    old_wrapped = key_file.wrap(data_key, AAD)

    new_id = key_file.create_kek()

    assert new_id != old_id
    assert key_file.current_kek_id() == new_id
    assert key_file.wrap(new_data_key(), AAD).kek_id == new_id
    assert key_file.unwrap(old_wrapped, AAD) == data_key
    assert sorted(key_file.kek_ids()) == sorted([old_id, new_id])
    # The rotation is on disk, not only in memory.
    assert FileKeyProvider(key_file.path).current_kek_id() == new_id
    assert mode_of(key_file.path) == 0o600


def test_retire_removes_the_old_kek(key_file: FileKeyProvider) -> None:
    old_id = key_file.current_kek_id()
    data_key = new_data_key()
    old_wrapped = key_file.wrap(data_key, AAD)
    key_file.create_kek()
    rewrapped = key_file.wrap(key_file.unwrap(old_wrapped, AAD), AAD)

    key_file.retire_kek(old_id)

    assert old_id not in json.loads(key_file.path.read_text())["keks"]
    with pytest.raises(KekNotFound, match=f"{old_id}.*retired"):
        key_file.unwrap(old_wrapped, AAD)
    with pytest.raises(KekNotFound):
        FileKeyProvider(key_file.path).unwrap(old_wrapped, AAD)
    assert key_file.unwrap(rewrapped, AAD) == data_key


def test_current_kek_cannot_be_retired(key_file: FileKeyProvider) -> None:
    with pytest.raises(CryptoError, match="current KEK"):
        key_file.retire_kek(key_file.current_kek_id())
    with pytest.raises(KekNotFound):
        key_file.retire_kek("kek-never-existed")


def test_another_instance_sees_rotation_on_unwrap(key_file: FileKeyProvider) -> None:
    server = FileKeyProvider(key_file.path)
    server.check()
    cli = FileKeyProvider(key_file.path)
    new_id = cli.create_kek()  # e.g. `rempart keys rotate` while the server runs
    wrapped = cli.wrap(new_data_key(), AAD)
    assert server.unwrap(wrapped, AAD) == cli.unwrap(wrapped, AAD)
    # New keys must go under the newest KEK at once, or a re-wrap job could miss them.
    assert server.wrap(new_data_key(), AAD).kek_id == new_id
    newest = FileKeyProvider(key_file.path).create_kek()
    assert server.current_kek_id() == newest
    assert server.wrap(new_data_key(), AAD).kek_id == newest


def test_write_is_atomic_tmp_then_rename(
    key_file: FileKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = key_file.path.read_bytes()
    inode_before = key_file.path.stat().st_ino
    current_before = key_file.current_kek_id()
    renames: list[tuple[str, str]] = []

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        renames.append((str(src), str(dst)))
        # At the moment of the rename the new content is complete, fsynced and 0600.
        assert mode_of(Path(src)) == 0o600
        assert json.loads(Path(src).read_text())["current"] != current_before
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyProviderUnavailable, match="cannot write key file"):
        key_file.create_kek()

    ((src, dst),) = renames
    assert Path(src).parent == key_file.path.parent
    assert Path(src).name.startswith(".keys.json.")
    assert dst == str(key_file.path)
    # The failed rotation left the old file intact, no temporary file, and no state change.
    assert key_file.path.read_bytes() == before
    assert sorted(p.name for p in key_file.path.parent.iterdir()) == ["keys.json"]
    assert key_file.current_kek_id() == current_before

    monkeypatch.undo()
    key_file.create_kek()
    assert key_file.path.stat().st_ino != inode_before  # replaced by rename, not rewritten


def test_audit_signing_key_is_separate_and_stable(key_file: FileKeyProvider) -> None:
    signing = key_file.audit_signing_key()
    assert isinstance(signing, Ed25519PrivateKey)
    signature = signing.sign(b"tree head")
    key_file.create_kek()
    reloaded = FileKeyProvider(key_file.path).audit_signing_key()
    reloaded.public_key().verify(signature, b"tree head")  # raises if it changed
    doc = json.loads(key_file.path.read_text())
    assert doc["audit_signing_key"] not in doc["keks"].values()


def test_load_key_provider_file(tmp_path: Path) -> None:
    created = FileKeyProvider.create(tmp_path / "keys.json")
    provider = load_key_provider("file", tmp_path)
    assert isinstance(provider, FileKeyProvider)
    assert provider.current_kek_id() == created.current_kek_id()


def test_load_key_provider_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderUnavailable, match="unknown key provider"):
        load_key_provider("vault", tmp_path)
    with pytest.raises(KeyProviderUnavailable, match="missing: token_label, pin_env or pin_file"):
        load_key_provider("pkcs11", tmp_path, library_path="/x.so")
    with pytest.raises(KeyProviderUnavailable, match="must not be written in the configuration"):
        load_key_provider("pkcs11", tmp_path, library_path="/x.so", token_label="t", pin="1")
    with pytest.raises(KeyProviderUnavailable, match="no settings"):
        load_key_provider("file", tmp_path, pin="1234")
