"""A software WebAuthn authenticator (ECDSA P-256, "none" attestation), as a browser and a
security key would answer navigator.credentials.create() and .get(): the simulated clinicians'
keys, and the tests'. `clone()` copies the key, counter included, as an attacker who extracted
it would."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "http://localhost:8000"
RP_ID = "localhost"
UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftKey:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def clone(self) -> SoftKey:
        return copy.deepcopy(self)

    def _cose(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def register(self, options: dict[str, Any], *, origin: str = ORIGIN) -> dict[str, Any]:
        client_data = json.dumps(
            {"type": "webauthn.create", "challenge": options["challenge"], "origin": origin}
        ).encode()
        auth_data = (
            hashlib.sha256(options["rp"]["id"].encode()).digest()
            + bytes([UP | UV | AT])
            + self.sign_count.to_bytes(4, "big")
            + bytes(16)  # AAGUID
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self._cose()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return self._credential(
            {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation)}
        )

    def assertion(
        self,
        options: dict[str, Any] | None,
        *,
        origin: str = ORIGIN,
        rp_id: str = RP_ID,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """Signs with the counter moved forward by one."""
        self.sign_count += 1
        wanted = challenge if challenge is not None else (options or {})["challenge"]
        client_data = json.dumps(
            {"type": "webauthn.get", "challenge": wanted, "origin": origin}
        ).encode()
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([UP | UV])
            + self.sign_count.to_bytes(4, "big")
        )
        signature = self.private.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return self._credential(
            {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
            }
        )

    def _credential(self, response: dict[str, str]) -> dict[str, Any]:
        """The PublicKeyCredential as a browser serialises it to JSON."""
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }
