"""Signed tree heads: the Ed25519 key that signs them, and the copies kept outside the database.

A head says "the log had `tree_size` records whose RFC 9162 root was `root` at time `at`". The
signed message is `rempart-audit-head/1` || size (8 bytes, big-endian) || at (8 bytes) || root.
The key is not a data key: `FileKeyProvider.audit_signing_key()` when the key file holds one,
else a separate 0600 `audit-signing.key` in the home directory (PKCS#11 deployments).

Every head goes to the database, to an append-only JSON-lines file in the home directory and to
an optional witness (syslog, HTTP). A DBA who rewrites the audit tables consistently cannot
rewrite the file or the witness, nor sign a new head without the key.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import queue
import struct
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from rempart.audit.settings import AuditSettings

log = logging.getLogger("rempart.audit")
_DOMAIN = b"rempart-audit-head/1"
_PRUNE_DOMAIN = b"rempart-audit-prune/1"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def head_message(tree_size: int, at: int, root: bytes) -> bytes:
    return _DOMAIN + struct.pack(">QQ", tree_size, at) + root


def prune_message(size: int, cutoff: int, at: int, approval_id: str, root: bytes) -> bytes:
    return (
        _PRUNE_DOMAIN + struct.pack(">QQQ", size, cutoff, at) + root + approval_id.encode("utf-8")
    )


@dataclass(frozen=True)
class SignedHead:
    tree_size: int
    at: int
    root: bytes
    key_id: str
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "at": self.at,
            "root": self.root.hex(),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, doc: object) -> SignedHead:
        if not isinstance(doc, dict):
            raise ValueError("a head is a JSON object")
        try:
            return cls(
                tree_size=int(doc["tree_size"]),
                at=int(doc["at"]),
                root=bytes.fromhex(str(doc["root"])),
                key_id=str(doc["key_id"]),
                signature=base64.b64decode(str(doc["signature"]), validate=True),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"malformed head: {exc}") from None


class HeadSigner:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._key = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def sign_head(self, tree_size: int, at: int, root: bytes) -> SignedHead:
        signature = self._key.sign(head_message(tree_size, at, root))
        return SignedHead(tree_size, at, root, self.key_id, signature)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")


class HeadVerifier:
    """Checks signatures with the public keys it trusts (by key id)."""

    def __init__(self, *keys: Ed25519PublicKey) -> None:
        self._keys = {key_id(k): k for k in keys}

    def valid(self, key: str, message: bytes, signature: bytes) -> bool:
        public = self._keys.get(key)
        if public is None:
            return False
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def head_valid(self, head: SignedHead) -> bool:
        return self.valid(
            head.key_id, head_message(head.tree_size, head.at, head.root), head.signature
        )


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (as `rempart audit public-key` prints it)."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return key


def load_signing_key(provider: object, settings: AuditSettings) -> Ed25519PrivateKey:
    """The provider's audit key if it has one (file provider), else the home's key file."""
    getter = getattr(provider, "audit_signing_key", None)
    if callable(getter):
        key = getter()
        if isinstance(key, Ed25519PrivateKey):
            return key
    path = settings.signing_key_file
    if not path.exists():
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(raw) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
    info = path.stat()
    if info.st_mode & 0o077:
        raise PermissionError(f"{path} has mode {info.st_mode & 0o777:04o}; run chmod 600 {path}")
    raw = base64.b64decode(path.read_bytes().strip(), validate=True)
    return Ed25519PrivateKey.from_private_bytes(raw)


# ---- the copy outside the database --------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path, flags: int) -> Iterator[int]:
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if flags & os.O_WRONLY else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


class HeadsFile:
    """`audit-heads.jsonl`: one signed head per line, appended and fsynced, never rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, head: SignedHead) -> None:
        line = (json.dumps(head.to_json(), sort_keys=True) + "\n").encode("ascii")
        with _locked(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT) as fd:
            os.write(fd, line)
            os.fsync(fd)

    def read(self) -> tuple[list[SignedHead], list[int]]:
        """The heads, and the numbers of lines that do not parse (a damaged copy)."""
        if not self.path.exists():
            return [], []
        heads: list[SignedHead] = []
        bad: list[int] = []
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    heads.append(SignedHead.from_json(json.loads(line)))
                except ValueError:
                    bad.append(number)
        return heads, bad


# ---- witnesses ------------------------------------------------------------------------------


class Witness(Protocol):
    def publish(self, head: SignedHead) -> None: ...

    def close(self) -> None: ...


class SyslogWitness:
    """Each head as one syslog line (LOG_AUTH): a log host keeps a copy no DBA can reach."""

    def __init__(self, target: str) -> None:
        address: str | tuple[str, int] = target
        if ":" in target and not target.startswith("/"):
            host, _, port = target.rpartition(":")
            address = (host, int(port))
        self._handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH
        )

    def publish(self, head: SignedHead) -> None:
        text = "rempart-audit-head " + json.dumps(head.to_json(), sort_keys=True)
        self._handler.emit(logging.makeLogRecord({"msg": text, "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


class HttpWitness:
    """POSTs each head as JSON, from its own thread so a slow witness never delays a commit."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._queue: queue.Queue[SignedHead | None] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="audit-witness", daemon=True)
        self._thread.start()

    def publish(self, head: SignedHead) -> None:
        try:
            self._queue.put_nowait(head)
        except queue.Full:
            log.error(
                "audit witness %s is not keeping up; head %d not sent", self._url, head.tree_size
            )

    def _run(self) -> None:
        while (head := self._queue.get()) is not None:
            body = json.dumps(head.to_json()).encode("ascii")
            request = urllib.request.Request(  # noqa: S310  (the URL is operator configuration)
                self._url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout):  # noqa: S310
                    pass
            except OSError as exc:
                log.error("audit witness %s refused head %d: %s", self._url, head.tree_size, exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self._timeout)


def witnesses(settings: AuditSettings) -> list[Witness]:
    out: list[Witness] = []
    if settings.witness_syslog:
        out.append(SyslogWitness(settings.witness_syslog))
    if settings.witness_url:
        out.append(HttpWitness(settings.witness_url))
    return out
