"""KEKs inside a PKCS#11 token (an HSM; SoftHSM2 in tests).

Each KEK is an AES-256 secret key generated inside the token with ``SENSITIVE`` set and
``EXTRACTABLE`` cleared, and with only the ENCRYPT and DECRYPT capabilities: it never leaves
the token, so neither a database copy nor a copy of the server's disk yields it. Wrapping a
data key is an AES-GCM encryption inside the token (``CKM_AES_GCM`` with the caller's AAD);
``CKM_AES_KEY_WRAP`` is not used because SoftHSM refuses it through ``C_Encrypt`` and it would
not bind the wrapped key to its row.

KEKs are labelled ``<prefix>-<6-digit number>``; the highest number is the current KEK, so the
token itself records which KEK is current and several rempart processes agree without a
shared file. The label doubles as the ``kek_id`` stored next to each wrapped key. A process
rescans the token at most every ``RESCAN_SECONDS`` (and at once on an unknown ``kek_id``).

Threads: python-pkcs11 calls ``C_Initialize(NULL)``, which per the PKCS#11 spec promises the
module that no two threads will call it at once (SoftHSM then switches its own mutexes off),
yet it releases the GIL during every call. So every call into one module goes through one
process-wide lock. Serialised SoftHSM still does ~50,000 unwraps/s, and hot data keys are
served from ``KeyCache`` anyway.

Login: PKCS#11 login state belongs to the process, not to a session, and closing a logged-in
session logs the whole process out. Providers on the same token therefore share one
logged-in session, counted by reference, closed by the last :meth:`close`.

Fork: PKCS#11 state does not survive ``fork()``. Build and ``check()`` the provider in each
worker process, never in a parent that forks afterwards.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from rempart.crypto.aead import NONCE_SIZE, TAG_SIZE, check_key
from rempart.crypto.errors import CryptoError, IntegrityError, KekNotFound, KeyProviderUnavailable
from rempart.crypto.interfaces import WrappedKey

TAG_BITS = TAG_SIZE * 8
# How stale this process's view of the token's KEK list may get before wrap() rescans. A scan
# costs ~0.5 ms on SoftHSM, too much per wrap; a rotation by another process (the CLI) is seen
# within this delay, so the re-wrap job must start later than that (see retire_kek).
RESCAN_SECONDS = 1.0

# Return codes with which tokens report a GCM tag mismatch. SoftHSM 2.6 answers
# CKR_GENERAL_ERROR; the spec suggests CKR_ENCRYPTED_DATA_INVALID.
_TAG_FAILURES: tuple[type[p11.PKCS11Error], ...] = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.GeneralError,
    p11.FunctionFailed,
)
_PIN_REJECTED: tuple[type[p11.PKCS11Error], ...] = (
    p11.PinIncorrect,
    p11.PinInvalid,
    p11.PinLenRange,
)


@dataclass
class _Login:
    """One logged-in read/write session on one token, shared by this process's providers."""

    lock: threading.RLock  # the module's lock: guards the session and every call through it
    session: Any  # pkcs11 Session; Any because its stubs type encrypt() as bytes | Iterator
    pin: str | None  # None when something else in the process had logged in already
    users: int = 1
    keys: dict[str, Any] = field(default_factory=dict)  # label -> SecretKey on this session


_REGISTRY_LOCK = threading.Lock()
_MODULE_LOCKS: dict[str, threading.RLock] = {}
_LOGINS: dict[tuple[str, str], _Login] = {}


class Pkcs11KeyProvider:
    """KEKs held in the PKCS#11 token labelled ``token_label`` of module ``library_path``."""

    def __init__(
        self,
        library_path: str,
        token_label: str,
        pin: str,
        key_label_prefix: str = "rempart-kek",
    ) -> None:
        if not key_label_prefix or not key_label_prefix.isprintable():
            raise ValueError("key_label_prefix must be a non-empty printable string")
        # One module loaded under two spellings (a symlink) would be initialised twice.
        self._library_path = os.path.realpath(library_path)
        self._token_label = token_label
        self._pin = pin
        self._prefix = key_label_prefix
        self._label_re = re.compile(re.escape(key_label_prefix) + r"-(\d{6,})")
        self._lock = threading.Lock()  # guards _login (connect/close); taken before the module lock
        self._login: _Login | None = None
        self._scanned_at = -RESCAN_SECONDS  # monotonic time of the last scan; none yet

    # -- KeyProvider -------------------------------------------------------------------------

    def check(self) -> None:
        login = self._connect()
        with login.lock:
            keks = self._scan(login)
            if not keks:
                raise KeyProviderUnavailable(self._no_kek_message())
            for label, key in keks.items():
                # A key someone created by hand under our label may be exportable; refuse it
                # rather than protect records with a key that can leave the token.
                if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
                    raise KeyProviderUnavailable(
                        f"KEK {label!r} on token {self._token_label!r} is extractable or not "
                        f"sensitive; only KEKs made by create_kek inside the token are accepted"
                    )

    def current_kek_id(self) -> str:
        login = self._connect()
        with login.lock:
            return self._current(login)

    def wrap(self, key: bytes, aad: bytes) -> WrappedKey:
        check_key(key)
        nonce = os.urandom(NONCE_SIZE)
        login = self._connect()
        with login.lock:
            kek_id = self._current(login)
            try:
                ciphertext = login.keys[kek_id].encrypt(
                    key, mechanism=Mechanism.AES_GCM, mechanism_param=_gcm(nonce, aad)
                )
            except p11.PKCS11Error as exc:
                raise self._failure("encrypt", exc) from None
        return WrappedKey(kek_id, nonce + bytes(ciphertext))

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        blob = wrapped.blob
        if len(blob) < NONCE_SIZE + TAG_SIZE:
            raise IntegrityError(f"wrapped key is {len(blob)} bytes, too short to be genuine")
        login = self._connect()
        with login.lock:
            key = self._find(login, wrapped.kek_id)
            try:
                plaintext = key.decrypt(
                    blob[NONCE_SIZE:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=_gcm(blob[:NONCE_SIZE], aad),
                )
            except (p11.KeyHandleInvalid, p11.ObjectHandleInvalid):
                # Destroyed by another process after we cached its handle.
                login.keys.pop(wrapped.kek_id, None)
                raise KekNotFound(f"KEK {wrapped.kek_id!r} was retired from the token") from None
            except _TAG_FAILURES:
                raise IntegrityError(
                    f"wrapped key under {wrapped.kek_id!r} failed authentication: altered, "
                    f"bound to another row, or not wrapped by this KEK"
                ) from None
            except p11.PKCS11Error as exc:
                raise self._failure("decrypt", exc) from None
        return bytes(plaintext)

    def create_kek(self) -> str:
        login = self._connect()
        with login.lock:
            numbers = [self._number(label) for label in self._scan(login)]
            label = f"{self._prefix}-{max(numbers, default=0) + 1:06d}"
            try:
                key = login.session.generate_key(
                    KeyType.AES,
                    256,
                    label=label,
                    id=label.encode("utf-8"),
                    store=True,
                    capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                    template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                    },
                )
            except p11.PKCS11Error as exc:
                raise self._failure("generate a KEK in", exc) from None
            login.keys[label] = key
        return label

    def retire_kek(self, kek_id: str) -> None:
        login = self._connect()
        with login.lock:
            if kek_id == self._current(login):
                raise CryptoError(
                    f"refusing to retire KEK {kek_id!r}: it is the current KEK; create a new "
                    f"one and re-wrap every data key first"
                )
            key = self._find(login, kek_id)
            try:
                key.destroy()
            except p11.PKCS11Error as exc:
                raise self._failure("destroy a KEK in", exc) from None
            login.keys.pop(kek_id, None)

    # -- beyond the protocol -----------------------------------------------------------------

    def kek_ids(self) -> list[str]:
        """Every KEK under this provider's prefix, oldest first."""
        login = self._connect()
        with login.lock:
            return sorted(self._scan(login), key=self._number)

    def close(self) -> None:
        """Release this provider's share of the login; the last one logs the process out."""
        with self._lock:
            login, self._login = self._login, None
        if login is not None:
            _release(self._library_path, self._token_label, login)

    def __enter__(self) -> Pkcs11KeyProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals (callers hold login.lock) -------------------------------------------------

    def _connect(self) -> _Login:
        with self._lock:
            if self._login is None:
                self._login = _acquire(self._library_path, self._token_label, self._pin)
            return self._login

    def _scan(self, login: _Login) -> dict[str, Any]:
        """Find this prefix's KEKs on the token (another process may have rotated)."""
        found: dict[str, Any] = {}
        try:
            template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
            for obj in login.session.get_objects(template):
                try:
                    label = obj[Attribute.LABEL]
                except (p11.ObjectHandleInvalid, p11.KeyHandleInvalid):
                    continue  # destroyed by another process while we listed: a retired KEK
                if isinstance(label, str) and self._label_re.fullmatch(label):
                    found[label] = obj
        except p11.PKCS11Error as exc:
            raise self._failure("list keys in", exc) from None
        self._scanned_at = time.monotonic()
        # Keep other prefixes' cached keys (providers share the login), replace ours.
        for label in [k for k in login.keys if self._label_re.fullmatch(k)]:
            del login.keys[label]
        login.keys.update(found)
        return found

    def _current(self, login: _Login) -> str:
        mine = [k for k in login.keys if self._label_re.fullmatch(k)]
        if not mine or time.monotonic() - self._scanned_at > RESCAN_SECONDS:
            mine = list(self._scan(login))
        if not mine:
            raise KeyProviderUnavailable(self._no_kek_message())
        return max(mine, key=self._number)

    def _find(self, login: _Login, kek_id: str) -> Any:
        # login.keys is shared with providers of other prefixes on this token: only our
        # labels count, so each prefix stays a separate key set.
        key = None
        if self._label_re.fullmatch(kek_id):
            key = login.keys.get(kek_id) or self._scan(login).get(kek_id)
        if key is None:
            raise KekNotFound(
                f"KEK {kek_id!r} is not on token {self._token_label!r}: it was retired, or the "
                f"record comes from another installation or token"
            )
        return key

    def _number(self, label: str) -> int:
        match = self._label_re.fullmatch(label)
        return int(match.group(1)) if match else -1

    def _no_kek_message(self) -> str:
        return (
            f"token {self._token_label!r} holds no KEK labelled {self._prefix}-NNNNNN; "
            f"create one with `rempart init` (Pkcs11KeyProvider.create_kek)"
        )

    def _failure(self, action: str, exc: p11.PKCS11Error) -> KeyProviderUnavailable:
        return KeyProviderUnavailable(
            f"cannot {action} token {self._token_label!r} ({type(exc).__name__} {exc}); "
            f"check that the HSM is reachable and the token present, then restart rempart"
        )


def _gcm(nonce: bytes, aad: bytes) -> pkcs11.GCMParams:
    return pkcs11.GCMParams(nonce, aad, TAG_BITS)


def _acquire(library_path: str, token_label: str, pin: str) -> _Login:
    with _REGISTRY_LOCK:
        lock = _MODULE_LOCKS.setdefault(library_path, threading.RLock())
    with lock:
        login = _LOGINS.get((library_path, token_label))
        if login is not None:
            # C_Login cannot re-check a PIN once the process is logged in; compare with the
            # PIN that did log in, so a wrong PIN in configuration is still reported.
            if login.pin is not None and not hmac.compare_digest(
                login.pin.encode("utf-8"), pin.encode("utf-8")
            ):
                raise KeyProviderUnavailable(_pin_message(token_label))
            login.users += 1
            return login
        token = _open_token(library_path, token_label)
        # On a failed C_Login python-pkcs11 leaves the just-opened (not logged-in) session open;
        # it holds nothing, and a failed login at start stops the server anyway.
        session: Any
        logged_pin: str | None = pin
        try:
            session = token.open(rw=True, user_pin=pin)
        except p11.UserAlreadyLoggedIn:
            # Logged in by code outside rempart in this process: share it, cannot verify.
            session, logged_pin = token.open(rw=True), None
        except _PIN_REJECTED:
            raise KeyProviderUnavailable(_pin_message(token_label)) from None
        except p11.PinLocked:
            raise KeyProviderUnavailable(
                f"the user PIN of token {token_label!r} is locked after too many failures; the "
                f"security officer must reset it (SoftHSM: softhsm2-util --init-pin)"
            ) from None
        except p11.PKCS11Error as exc:
            raise KeyProviderUnavailable(
                f"cannot log in to token {token_label!r} ({type(exc).__name__} {exc}); check "
                f"that the token is initialised and its user PIN set"
            ) from None
        login = _Login(lock=lock, session=session, pin=logged_pin)
        _LOGINS[(library_path, token_label)] = login
        return login


def _release(library_path: str, token_label: str, login: _Login) -> None:
    with login.lock:
        login.users -= 1
        if login.users > 0:
            return
        if _LOGINS.get((library_path, token_label)) is login:
            del _LOGINS[(library_path, token_label)]
        login.keys.clear()
        # close() also calls C_Logout when this session did the login. A token that went away
        # has nothing left to release.
        with contextlib.suppress(p11.PKCS11Error):
            login.session.close()


def _open_token(library_path: str, token_label: str) -> Any:
    if not os.path.isfile(library_path):
        raise KeyProviderUnavailable(
            f"PKCS#11 module {library_path} not found; install your HSM's PKCS#11 library "
            f"(SoftHSM: apt-get install softhsm2, module /usr/lib/softhsm/libsofthsm2.so) or "
            f"fix the library path setting"
        )
    try:
        lib = pkcs11.lib(library_path)
    except p11.PKCS11Error as exc:
        raise KeyProviderUnavailable(
            f"cannot load or initialise PKCS#11 module {library_path} "
            f"({type(exc).__name__} {exc}); for SoftHSM check SOFTHSM2_CONF and that its "
            f"directories.tokendir exists and is readable"
        ) from None
    try:
        return lib.get_token(token_label=token_label)
    except p11.NoSuchToken:
        present = sorted(str(t.label) for t in lib.get_tokens())
        raise KeyProviderUnavailable(
            f"no token labelled {token_label!r} in {library_path} (tokens present: "
            f"{', '.join(present) or 'none'}); fix the token label or initialise one "
            f"(SoftHSM: softhsm2-util --init-token --free --label {token_label})"
        ) from None
    except p11.MultipleTokensReturned:
        raise KeyProviderUnavailable(
            f"several tokens are labelled {token_label!r} in {library_path}; relabel one"
        ) from None
    except p11.PKCS11Error as exc:
        raise KeyProviderUnavailable(
            f"cannot list tokens of {library_path} ({type(exc).__name__} {exc})"
        ) from None


def _pin_message(token_label: str) -> str:
    return (
        f"token {token_label!r} rejected the PIN; fix the configured PIN (repeated failures can "
        f"lock the token)"
    )
