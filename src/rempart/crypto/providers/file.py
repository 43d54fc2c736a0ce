"""KEKs in a JSON key file with mode 0600: the default key provider.

The file lives in the data directory but never in the database, so a database dump or backup
alone (threat A4) is useless. Losing the file loses every record: operators back it up apart
from the database.

File layout (version 1)::

    {"version": 1,
     "current": "<kek id>",
     "keks": {"<kek id>": "<base64 of 32 bytes>", ...},
     "audit_signing_key": "<base64 of the 32-byte Ed25519 private key>"}

The audit signing key is separate from the KEKs: it signs Merkle tree heads, and never
encrypts anything, so rotating KEKs does not invalidate old signatures and vice versa.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rempart.crypto.aead import KEY_SIZE, check_key, new_data_key, open_with, seal_with
from rempart.crypto.errors import (
    CryptoError,
    KekNotFound,
    KeyFileExists,
    KeyProviderUnavailable,
)
from rempart.crypto.interfaces import WrappedKey

FORMAT_VERSION = 1
FILE_MODE = 0o600


@dataclass(frozen=True)
class _KeyFile:
    """One parsed, validated version of the key file. Replaced whole, never mutated, so
    readers need no lock: they see either the old or the new snapshot."""

    current: str
    keks: Mapping[str, bytes]
    audit_key: bytes
    # (inode, mtime, size) of the file this was read from: a cheap stat() tells whether
    # another process has rewritten the file since.
    stamp: tuple[int, int, int] = (0, 0, 0)
    aeads: Mapping[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One AESGCM per KEK: building the OpenSSL context once, not per unwrap.
        object.__setattr__(self, "aeads", {k: AESGCM(v) for k, v in self.keks.items()})

    def to_json(self) -> bytes:
        doc = {
            "version": FORMAT_VERSION,
            "current": self.current,
            "keks": {k: _b64(v) for k, v in sorted(self.keks.items())},
            "audit_signing_key": _b64(self.audit_key),
        }
        return (json.dumps(doc, indent=2) + "\n").encode("ascii")


class FileKeyProvider:
    """KEKs read from ``path``; see the module docstring for the format."""

    def __init__(self, path: Path) -> None:
        # No I/O here: check() (at server start) or first use reads and validates the file.
        self._path = Path(path)
        self._lock = threading.Lock()
        self._state: _KeyFile | None = None

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def create(cls, path: Path) -> FileKeyProvider:
        """Write a new key file (mode 0600) with one KEK and an audit signing key.

        Refuses to overwrite: replacing a key file makes every record it protects unreadable.
        """
        path = Path(path)
        if path.exists() or path.is_symlink():
            raise KeyFileExists(
                f"key file {path} already exists; refusing to overwrite it (that would destroy "
                f"every key in it). Move it away yourself if you really mean to start over."
            )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        audit_key = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        kek_id = _new_kek_id()
        state = _KeyFile(current=kek_id, keks={kek_id: new_data_key()}, audit_key=audit_key)
        with _directory_lock(path.parent) as dir_fd:
            _write_atomic(path, state.to_json(), dir_fd, replace=False)
        provider = cls(path)
        provider._state = dataclasses.replace(state, stamp=_stamp(os.stat(path)))
        return provider

    # -- KeyProvider -------------------------------------------------------------------------

    def check(self) -> None:
        self._reload()

    def current_kek_id(self) -> str:
        return self._fresh().current

    def wrap(self, key: bytes, aad: bytes) -> WrappedKey:
        check_key(key)
        state = self._fresh()
        return WrappedKey(state.current, seal_with(state.aeads[state.current], key, aad))

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        aead = self._loaded().aeads.get(wrapped.kek_id)
        if aead is None:
            # Another process (the CLI running a rotation) may have rewritten the file.
            aead = self._reload().aeads.get(wrapped.kek_id)
        if aead is None:
            raise KekNotFound(
                f"KEK {wrapped.kek_id!r} is not in key file {self._path}: it was retired, or "
                f"the record comes from another installation; restore the key file that held "
                f"it to read this record"
            )
        return open_with(aead, wrapped.blob, aad)

    def create_kek(self) -> str:
        kek_id = _new_kek_id()

        def add(state: _KeyFile) -> _KeyFile:
            return _KeyFile(
                current=kek_id,
                keks={**state.keks, kek_id: new_data_key()},
                audit_key=state.audit_key,
            )

        self._update(add)
        return kek_id

    def retire_kek(self, kek_id: str) -> None:
        def remove(state: _KeyFile) -> _KeyFile:
            if kek_id == state.current:
                raise CryptoError(
                    f"refusing to retire KEK {kek_id!r}: it is the current KEK; create a new "
                    f"one and re-wrap every data key first"
                )
            if kek_id not in state.keks:
                raise KekNotFound(f"KEK {kek_id!r} is not in key file {self._path}")
            keks = {k: v for k, v in state.keks.items() if k != kek_id}
            return _KeyFile(current=state.current, keks=keks, audit_key=state.audit_key)

        self._update(remove)

    # -- beyond the protocol -----------------------------------------------------------------

    def kek_ids(self) -> list[str]:
        """Every KEK held, current one included (for a re-wrap job's progress report)."""
        return sorted(self._loaded().keks)

    def audit_signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 key that signs audit tree heads (not a KEK, never rotated with them)."""
        return Ed25519PrivateKey.from_private_bytes(self._loaded().audit_key)

    # -- internals ---------------------------------------------------------------------------

    def _loaded(self) -> _KeyFile:
        state = self._state
        return state if state is not None else self._reload()

    def _fresh(self) -> _KeyFile:
        """The loaded state, re-read first if the file changed on disk.

        Wrapping must use the newest current KEK: if a rotation made by another process (the
        CLI) went unnoticed here, new keys would land under the old KEK after the re-wrap job
        had passed, and retiring that KEK would then lose them.
        """
        state = self._loaded()
        try:
            stamp = _stamp(os.stat(self._path))
        except OSError:
            return self._reload()  # gone or unreadable: let the full check explain why
        return state if stamp == state.stamp else self._reload()

    def _reload(self) -> _KeyFile:
        state = _read_key_file(self._path)
        with self._lock:
            self._state = state
        return state

    def _update(self, change: Callable[[_KeyFile], _KeyFile]) -> None:
        # Read-modify-write under a thread lock and an flock on the directory, so two
        # rotations (two threads, or the server and the CLI) cannot lose each other's KEK.
        with self._lock, _directory_lock(self._path.parent) as dir_fd:
            new_state = change(_read_key_file(self._path))
            _write_atomic(self._path, new_state.to_json(), dir_fd, replace=True)
            self._state = dataclasses.replace(new_state, stamp=_stamp(os.stat(self._path)))


def _stamp(info: os.stat_result) -> tuple[int, int, int]:
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _new_kek_id() -> str:
    return f"kek-{secrets.token_hex(8)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, size: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != size:
        raise ValueError(f"{what} is {len(raw)} bytes, expected {size}")
    return raw


def _read_key_file(path: Path) -> _KeyFile:
    """Open, vet and parse the key file. The checks run on the open descriptor (fstat), so the
    file that was checked is the file that is read."""
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must fail the check, not hang.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyProviderUnavailable(
            f"key file {path} does not exist; create it with `rempart init`, or restore it "
            f"from your key backup (without it, encrypted records cannot be read)"
        ) from None
    except OSError as exc:
        raise KeyProviderUnavailable(
            f"cannot open key file {path}: {exc.strerror}; it must be a regular file readable "
            f"by the user running rempart (uid {os.geteuid()})"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyProviderUnavailable(
                f"key file {path} is not a regular file; replace it with the key file itself"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyProviderUnavailable(
                f"key file {path} has mode {mode:04o}, which lets other users read the keys; "
                f"run chmod 600 {path}"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read()
    finally:
        os.close(fd)
    try:
        return dataclasses.replace(_parse(raw), stamp=_stamp(info))
    except ValueError as exc:
        raise KeyProviderUnavailable(
            f"key file {path} is malformed ({exc}); restore it from your key backup"
        ) from None


def _parse(raw: bytes) -> _KeyFile:
    doc = json.loads(raw)  # json.JSONDecodeError is a ValueError
    if not isinstance(doc, dict):
        raise ValueError("top level is not an object")
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"version is {doc.get('version')!r}, this rempart reads {FORMAT_VERSION}")
    keks_doc = doc.get("keks")
    if not isinstance(keks_doc, dict) or not keks_doc:
        raise ValueError("'keks' must be a non-empty object")
    keks = {str(k): _unb64(v, KEY_SIZE, f"KEK {k!r}") for k, v in keks_doc.items()}
    current = doc.get("current")
    if current not in keks:
        raise ValueError(f"current KEK {current!r} is not among the keks")
    audit_key = _unb64(doc.get("audit_signing_key"), 32, "audit_signing_key")
    return _KeyFile(current=str(current), keks=keks, audit_key=audit_key)


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[int]:
    """Exclusive flock on the key file's directory; yields the directory descriptor."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyProviderUnavailable(f"cannot open key directory {directory}: {exc}") from None
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        yield dir_fd
    finally:
        os.close(dir_fd)  # closing releases the flock


def _write_atomic(path: Path, data: bytes, dir_fd: int, *, replace: bool) -> None:
    """Write ``data`` to a temporary file in the same directory, fsync it, then move it into
    place in one step: a crash leaves the old file or the new one, never half of each.

    ``replace=False`` uses link(), which fails if ``path`` exists, so creation can never
    clobber a key file that appeared after the caller's existence check.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # the umask can only narrow the mode; state it anyway
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileExists(
                    f"key file {path} appeared meanwhile; not overwriting"
                ) from None
        os.fsync(dir_fd)  # make the rename itself durable
    except OSError as exc:
        raise KeyProviderUnavailable(f"cannot write key file {path}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
