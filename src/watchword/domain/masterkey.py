"""The server's master key: derives purpose-bound subkeys and seals recoverable secrets."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from watchword.domain.errors import InvalidInput

MIN_SECRET_LENGTH = 32


class MasterKey:
    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise InvalidInput(
                f"WATCHWORD_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters."
            )
        self._secret = secret.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(self.derive("seal")))

    def __repr__(self) -> str:
        return "MasterKey(**********)"

    def derive(self, purpose: str, length: int = 32) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(),
            length=length,
            salt=None,
            info=b"watchword:" + purpose.encode(),
        ).derive(self._secret)

    def seal(self, plaintext: bytes) -> str:
        """Encrypt a secret that must be recoverable (signing keys, HMAC keys)."""
        return self._fernet.encrypt(plaintext).decode()

    def unseal(self, sealed: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode())
        except InvalidToken as exc:
            raise InvalidInput("Sealed secret cannot be opened with this master key.") from exc
