"""The in-memory passkey store (``stores/passkeys.py``), for tests and a single process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from watchword.domain.audit import AuditEvent
from watchword.domain.passkeys import Passkey, PasskeyChallenge

if TYPE_CHECKING:
    from watchword.stores.memory import MemoryDatabase


class MemoryPasskeyStore:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self.passkeys: dict[str, Passkey] = {}
        self.challenges: dict[str, PasskeyChallenge] = {}

    async def _audit(self, audit: Sequence[AuditEvent]) -> None:
        for event in audit:
            await self._db.audit.append(event)

    async def create_challenge(self, challenge: PasskeyChallenge) -> None:
        for key, old in list(self.challenges.items()):
            if old.expires_at <= challenge.created_at:
                del self.challenges[key]
        self.challenges[challenge.challenge_hash] = challenge

    async def use_challenge(
        self, challenge_hash: str, purpose: str, now: datetime
    ) -> PasskeyChallenge | None:
        current = self.challenges.get(challenge_hash)
        if current is None or current.purpose != purpose or not current.usable(now):
            return None
        self.challenges[challenge_hash] = used = replace(current, used_at=now)
        return used

    async def add(self, passkey: Passkey, *, audit: Sequence[AuditEvent] = ()) -> bool:
        if any(p.credential_id == passkey.credential_id for p in self.passkeys.values()):
            return False
        self.passkeys[passkey.id] = passkey
        await self._audit(audit)
        return True

    async def list_for(self, user_id: str) -> list[Passkey]:
        mine = [p for p in self.passkeys.values() if p.user_id == user_id]
        return sorted(mine, key=lambda p: (p.created_at, p.id))

    async def count_for(self, user_id: str) -> int:
        return sum(1 for p in self.passkeys.values() if p.user_id == user_id)

    async def get_by_credential(self, credential_id: str) -> Passkey | None:
        for passkey in self.passkeys.values():
            if passkey.credential_id == credential_id:
                return passkey
        return None

    async def use(
        self,
        passkey_id: str,
        sign_count: int,
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        current = self.passkeys.get(passkey_id)
        if current is None:
            return False
        moved = current.sign_count < sign_count if sign_count > 0 else current.sign_count == 0
        if not moved:
            return False
        self.passkeys[passkey_id] = replace(current, sign_count=sign_count, last_used_at=now)
        await self._audit(audit)
        return True

    async def rename(self, user_id: str, passkey_id: str, name: str) -> Passkey | None:
        current = self.passkeys.get(passkey_id)
        if current is None or current.user_id != user_id:
            return None
        self.passkeys[passkey_id] = renamed = replace(current, name=name)
        return renamed

    async def remove(
        self, user_id: str, passkey_id: str, *, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        current = self.passkeys.get(passkey_id)
        if current is None or current.user_id != user_id:
            return False
        del self.passkeys[passkey_id]
        await self._audit(audit)
        return True

    async def remove_all(self, user_id: str, *, audit: Sequence[AuditEvent] = ()) -> int:
        mine = [k for k, p in self.passkeys.items() if p.user_id == user_id]
        for key in mine:
            del self.passkeys[key]
        await self._audit(audit)
        return len(mine)


if TYPE_CHECKING:
    from watchword.stores.passkeys import PasskeyStore

    _p: PasskeyStore = MemoryPasskeyStore(None)  # type: ignore[arg-type]
