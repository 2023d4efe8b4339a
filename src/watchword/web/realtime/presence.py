"""Who is connected: the live connections of each user, with device and session.

The contract: ``add`` records a connection, ``remove`` forgets it, ``list``/``count`` read a
user's entries. An implementation shared between nodes (Redis) must let entries of a node
that died expire by themselves, so ``touch`` is called for live connections at least every
``ttl / 3`` seconds; the memory implementation is one node's view and never goes stale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    connection_id: str
    user_id: str
    session_id: str | None
    device: str
    node: str
    connected_at: str  # ISO 8601

    def public(self) -> dict[str, Any]:
        return asdict(self)


class Presence(Protocol):
    async def add(self, entry: PresenceEntry) -> None: ...

    async def remove(self, entry: PresenceEntry) -> None: ...

    async def touch(self, entries: list[PresenceEntry]) -> None:
        """Keep live entries from expiring (a no-op where they cannot)."""
        ...

    async def list(self, user_id: str) -> list[PresenceEntry]: ...

    async def count(self, user_id: str) -> int: ...


class MemoryPresence:
    """See ``Presence``. One node's connections; exact, since nothing here can go stale."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, PresenceEntry]] = {}

    async def add(self, entry: PresenceEntry) -> None:
        self._by_user.setdefault(entry.user_id, {})[entry.connection_id] = entry

    async def remove(self, entry: PresenceEntry) -> None:
        entries = self._by_user.get(entry.user_id)
        if entries is not None:
            entries.pop(entry.connection_id, None)
            if not entries:
                del self._by_user[entry.user_id]

    async def touch(self, entries: list[PresenceEntry]) -> None:
        return None

    async def list(self, user_id: str) -> list[PresenceEntry]:
        return list(self._by_user.get(user_id, {}).values())

    async def count(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))


_: type[Presence] = MemoryPresence

__all__ = ["MemoryPresence", "Presence", "PresenceEntry"]
