"""Store contract for passkeys: the credentials and the server-side WebAuthn challenges.

Adapters: ``stores/sql/passkeys.py`` and ``stores/memory_passkeys.py``. Using a challenge and
moving a sign count are each one conditional update, so two concurrent uses of one challenge,
or two replays of one signed response, cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from watchword.domain.audit import AuditEvent
from watchword.domain.passkeys import Passkey, PasskeyChallenge


class PasskeyStore(Protocol):
    async def create_challenge(self, challenge: PasskeyChallenge) -> None:
        """Insert it, and drop every challenge that expired (anonymous ones too)."""
        ...

    async def use_challenge(
        self, challenge_hash: str, purpose: str, now: datetime
    ) -> PasskeyChallenge | None:
        """Mark the challenge used if it has this purpose and is unused and unexpired at
        ``now``; the challenge (now used), or None (nothing changed)."""
        ...

    async def add(self, passkey: Passkey, *, audit: Sequence[AuditEvent] = ()) -> bool:
        """Insert with its audit rows; False (nothing written) when the credential id is
        already registered."""
        ...

    async def list_for(self, user_id: str) -> list[Passkey]:
        """Oldest first."""
        ...

    async def count_for(self, user_id: str) -> int: ...

    async def get_by_credential(self, credential_id: str) -> Passkey | None: ...

    async def use(
        self,
        passkey_id: str,
        sign_count: int,
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        """Record a sign-in: the new count (only if it is above the stored one, or both are
        0 for authenticators without a counter) and ``last_used_at``; False otherwise."""
        ...

    async def rename(self, user_id: str, passkey_id: str, name: str) -> Passkey | None: ...

    async def remove(
        self, user_id: str, passkey_id: str, *, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        """Delete the user's passkey with its audit rows; False when there is none."""
        ...

    async def remove_all(self, user_id: str, *, audit: Sequence[AuditEvent] = ()) -> int:
        """Delete every passkey of the user (an admin's reset); how many there were."""
        ...
