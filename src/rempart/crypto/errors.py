"""Exceptions raised by :mod:`rempart.crypto`.

Every failure is a :class:`CryptoError`, so a caller that only needs "did the crypto layer
refuse?" catches one class. The subclasses separate what an operator must fix (a key provider
that cannot be used) from what must be treated as an attack or corruption (a failed
authentication tag), because the two lead to different alerts.
"""

from __future__ import annotations

# Names are nouns for the failure (the project style guide), not
# "...Error", hence the N818 waivers below; CryptoError and IntegrityError happen to end so.


class CryptoError(Exception):
    """Base class for every error raised by the crypto layer."""


class KeyProviderUnavailable(CryptoError):
    """The key provider cannot be used: missing or unsafe key file, unreachable HSM, wrong PIN.

    The message always says what is wrong and how to fix it, because it is shown to the
    operator at server start.
    """


class IntegrityError(CryptoError):
    """An authentication tag did not verify.

    The ciphertext was altered, moved to another row (its associated data no longer matches),
    or opened with the wrong key. No plaintext, not even a partial one, is ever returned.
    """


class KekNotFound(CryptoError):
    """A wrapped key names a key-encryption key that the provider no longer (or never) held.

    Raised after a KEK was retired, or for records copied from another installation. Kept
    apart from :class:`IntegrityError` because it means "re-wrap was skipped" rather than
    "someone tampered with the row".
    """


class KeyFileExists(CryptoError):
    """``FileKeyProvider.create`` refused to replace an existing key file.

    Overwriting a key file destroys every KEK in it and with them every record they protect.
    """
