"""WebAuthn (security keys, passkeys) as a relying party, with the `webauthn` package.

Phishing-resistant because the browser signs the origin and the authenticator signs the
relying-party id: an assertion made for a look-alike site does not verify here. Each stored
credential keeps the authenticator's signature counter; an assertion whose counter does not move
forward, yet carries a valid signature, comes from a copy of the key: the credential is disabled
and the security officer alerted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from rempart.identity.settings import WebAuthnSettings
from rempart.identity.tables import webauthn_credential

CHALLENGE_BYTES = 32


class InvalidAssertion(Exception):
    """Anything wrong with a WebAuthn response; the client only ever learns "failed"."""


class ClonedKey(InvalidAssertion):
    """A valid signature with a counter that did not move forward: two copies of one key."""


@dataclass(frozen=True)
class StoredCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int


@dataclass(frozen=True)
class NewCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str


def _json(options: Any) -> dict[str, Any]:
    import orjson

    parsed: dict[str, Any] = orjson.loads(options_to_json(options))
    return parsed


class Passkeys:
    def __init__(self, settings: WebAuthnSettings) -> None:
        self._rp = settings

    def registration_options(
        self, *, account_id: str, username: str, display_name: str, exclude: list[bytes]
    ) -> tuple[bytes, dict[str, Any]]:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        options = generate_registration_options(
            rp_id=self._rp.rp_id,
            rp_name=self._rp.rp_name,
            user_id=account_id.encode(),
            user_name=username,
            user_display_name=display_name or username,
            challenge=challenge,
            timeout=5 * 60 * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude],
        )
        return challenge, _json(options)

    def verify_registration(self, credential: dict[str, Any], challenge: bytes) -> NewCredential:
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self._rp.rp_id,
                expected_origin=list(self._rp.origins),
            )
        except Exception as exc:  # the library raises many types for malformed input
            raise InvalidAssertion(str(exc)) from None
        return NewCredential(
            verified.credential_id,
            verified.credential_public_key,
            verified.sign_count,
            str(verified.aaguid),
        )

    def authentication_options(self, credential_ids: list[bytes]) -> tuple[bytes, dict[str, Any]]:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        options = generate_authentication_options(
            rp_id=self._rp.rp_id,
            challenge=challenge,
            timeout=5 * 60 * 1000,
            allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in credential_ids],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        return challenge, _json(options)

    def verify_assertion(
        self, credential: dict[str, Any], challenge: bytes, stored: StoredCredential
    ) -> int:
        """The new signature counter; raises InvalidAssertion or ClonedKey."""
        common: dict[str, Any] = {
            "credential": credential,
            "expected_challenge": challenge,
            "expected_rp_id": self._rp.rp_id,
            "expected_origin": list(self._rp.origins),
            "credential_public_key": stored.public_key,
        }
        try:
            verified = verify_authentication_response(
                **common, credential_current_sign_count=stored.sign_count
            )
        except Exception as exc:
            if stored.sign_count and self._signature_is_genuine(common):
                raise ClonedKey(str(exc)) from None
            raise InvalidAssertion(str(exc)) from None
        return int(verified.new_sign_count)

    @staticmethod
    def _signature_is_genuine(common: dict[str, Any]) -> bool:
        # Checked again without the counter: only a valid signature proves a copy of the key
        # exists (a forged low counter with a bad signature is merely an invalid assertion).
        try:
            verify_authentication_response(**common, credential_current_sign_count=0)
        except Exception:
            return False
        return True


def credential_id_of(credential: dict[str, Any]) -> bytes:
    try:
        return bytes(parse_authentication_credential_json(credential).raw_id)
    except Exception as exc:
        raise InvalidAssertion(str(exc)) from None


def active_credentials(conn: Connection, account_id: str) -> list[StoredCredential]:
    rows = conn.execute(
        select(
            webauthn_credential.c.credential_id,
            webauthn_credential.c.public_key,
            webauthn_credential.c.sign_count,
        ).where(
            webauthn_credential.c.account_id == account_id,
            webauthn_credential.c.disabled_at.is_(None),
        )
    ).all()
    return [StoredCredential(r[0], r[1], r[2]) for r in rows]


def advance_counter(conn: Connection, stored: StoredCredential, new_count: int, now: int) -> bool:
    """Compare-and-set on the counter: two concurrent uses of one assertion, one wins."""
    return (
        conn.execute(
            update(webauthn_credential)
            .where(
                webauthn_credential.c.credential_id == stored.credential_id,
                webauthn_credential.c.sign_count == stored.sign_count,
                webauthn_credential.c.disabled_at.is_(None),
            )
            .values(sign_count=new_count, last_used=now)
        ).rowcount
        == 1
    )


def disable(conn: Connection, credential_id: bytes, now: int) -> None:
    conn.execute(
        update(webauthn_credential)
        .where(webauthn_credential.c.credential_id == credential_id)
        .values(disabled_at=now)
    )
