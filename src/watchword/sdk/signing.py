"""Sign outgoing requests per RFC 9421 (HTTP Message Signatures) for a Watchword server.

::

    import httpx
    from watchword.sdk import HttpSignatureAuth

    auth = HttpSignatureAuth("wsk_...", secret="...")          # hmac-sha256 key from the server
    auth = HttpSignatureAuth("wsk_...", private_key=ed25519_key)  # a registered ed25519 key
    httpx.post("https://auth.example.com/v1/me", json=..., auth=auth)

Every request gets ``Content-Digest`` (RFC 9530, sha-256 of the body) and a signature over
``@method``, ``@target-uri`` and ``content-digest`` with ``created``, ``keyid`` and a fresh
random ``nonce``: the server refuses a replayed nonce and a ``created`` outside its window.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import ED25519, HMAC_SHA256

DEFAULT_COMPONENTS: tuple[str, ...] = ("@method", "@target-uri", "content-digest")


class _Key(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: bytes | Ed25519PrivateKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_private_key(self, key_id: str) -> bytes | Ed25519PrivateKey:
        if key_id != self._key_id:
            raise KeyError(key_id)
        return self._key


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the HMAC secret is the base64url text the server showed") from exc


class HttpSignatureAuth(httpx.Auth):
    """An ``httpx.Auth`` that signs each request with one key: an HMAC secret (``secret``, as
    Watchword showed it) or an Ed25519 private key (``private_key``, a key object or PEM)."""

    requires_request_body = True

    def __init__(
        self,
        key_id: str,
        secret: str | bytes | None = None,
        *,
        private_key: Ed25519PrivateKey | bytes | None = None,
        components: Sequence[str] = DEFAULT_COMPONENTS,
        label: str = "sig1",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if (secret is None) == (private_key is None):
            raise ValueError("give exactly one of secret (hmac-sha256) or private_key (ed25519)")
        if secret is not None:
            key: bytes | Ed25519PrivateKey = _secret_bytes(secret)
            self._signer = HTTPMessageSigner(
                signature_algorithm=HMAC_SHA256, key_resolver=_Key(key_id, key)
            )
        else:
            loaded = (
                load_pem_private_key(private_key, password=None)
                if isinstance(private_key, bytes)
                else private_key
            )
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError("private_key must be an Ed25519 private key")
            self._signer = HTTPMessageSigner(
                signature_algorithm=ED25519, key_resolver=_Key(key_id, loaded)
            )
        self.key_id = key_id
        self._components = tuple(components)
        self._label = label
        self._now = now or (lambda: datetime.now(UTC))

    def sign(self, request: httpx.Request) -> httpx.Request:
        """Add ``Content-Digest``, ``Signature-Input`` and ``Signature`` to ``request``."""
        self._signer.sign(
            request,
            key_id=self.key_id,
            created=self._now(),
            nonce=secrets.token_urlsafe(18),
            label=self._label,
            covered_component_ids=self._components,
            body=request.content,
            use_existing_digest=True,
        )
        return request

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self.sign(request)


__all__ = ["HttpSignatureAuth"]
