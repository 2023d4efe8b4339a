"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from watchword.domain.errors import WeakPassword


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    min_length: int = 8
    max_length: int = 1024

    def check(self, password: str, *, email: str | None = None) -> None:
        length = len(password)
        if length < self.min_length:
            raise WeakPassword(f"The password must be at least {self.min_length} characters long.")
        if length > self.max_length:
            raise WeakPassword(f"The password must be at most {self.max_length} characters long.")
        if not password.strip():
            raise WeakPassword("The password must not be only whitespace.")
        if email and password.strip().lower() == email.lower():
            raise WeakPassword("The password must not be the email address.")


class PasswordHasher:
    """argon2id at OWASP's minimum or above (m=19 MiB, t=2, p=1).

    Hashing is CPU-bound and releases the GIL: callers run it in a worker thread.
    """

    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1):
        self._hasher = Argon2Hasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verified against for unknown accounts, so both paths cost the same.
        self._dummy_hash = self._hasher.hash("watchword-timing-equaliser")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; an absent hash still costs one verification."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
