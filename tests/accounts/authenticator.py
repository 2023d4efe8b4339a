"""A software WebAuthn authenticator for the tests, on ``cryptography`` and ``cbor2``: ES256
keys, "none" attestation, discoverable credentials, a signature counter, and the client's
part (clientDataJSON with the origin). Every field is built here from the W3C structures, so
the server's checks are exercised for real, not bypassed."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    counter: int = 0


class SoftwareAuthenticator:
    def __init__(
        self,
        origin: str,
        rp_id: str,
        *,
        counter_step: int = 1,
        backed_up: bool = False,
    ) -> None:
        self.origin = origin
        self.rp_id = rp_id
        self.counter_step = counter_step  # 0: an authenticator without a counter
        self.backed_up = backed_up
        self.credentials: list[Credential] = []

    def clone(self) -> SoftwareAuthenticator:
        """A second authenticator holding the same keys and counters (a cloned device)."""
        twin = SoftwareAuthenticator(
            self.origin, self.rp_id, counter_step=self.counter_step, backed_up=self.backed_up
        )
        twin.credentials = [copy.copy(c) for c in self.credentials]
        return twin

    def _flags(self, *extra: int) -> int:
        flags = UP | UV
        if self.backed_up:
            flags |= BE | BS
        for bit in extra:
            flags |= bit
        return flags

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def create(
        self, options: dict[str, Any], *, origin: str | None = None, rp_id: str | None = None
    ) -> dict[str, Any]:
        """``navigator.credentials.create`` with these options, as PublicKeyCredential JSON."""
        assert options["rp"]["id"] == self.rp_id, options["rp"]
        assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = {
            1: 2,
            3: -7,
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
        cred = Credential(
            id=os.urandom(32),
            key=key,
            rp_id=self.rp_id,
            user_handle=unb64url(options["user"]["id"]),
        )
        cred.counter += self.counter_step
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([self._flags(AT)])
            + struct.pack(">I", cred.counter)
            + bytes(16)  # AAGUID: none
            + struct.pack(">H", len(cred.id))
            + cred.id
            + cbor2.dumps(cose)
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        self.credentials.append(cred)
        return {
            "id": b64url(cred.id),
            "rawId": b64url(cred.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        credential: Credential | None = None,
        user_verified: bool = True,
    ) -> dict[str, Any]:
        """``navigator.credentials.get``: signs with the allowed (or the given) credential."""
        allowed = {unb64url(c["id"]) for c in options.get("allowCredentials", [])}
        if credential is None:
            usable = [c for c in self.credentials if not allowed or c.id in allowed]
            assert usable, "no credential of this authenticator is allowed"
            credential = usable[-1]
        credential.counter += self.counter_step
        flags = self._flags() if user_verified else self._flags() & ~UV
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([flags])
            + struct.pack(">I", credential.counter)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
        }
