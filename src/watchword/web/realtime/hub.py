"""This node's sockets, indexed by id, user, session and channel.

Only the event loop touches it, so no locks. Every index keeps insertion order, so a fan-out
walks connections in the order they joined (deterministic, and what the tests see).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Member(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def session_id(self) -> str | None: ...

    @property
    def channels(self) -> set[str]: ...


M = TypeVar("M", bound=Member)


class Hub(Generic[M]):
    def __init__(self) -> None:
        self._by_id: dict[str, M] = {}
        self._by_user: dict[str, dict[str, M]] = {}
        self._by_session: dict[str, dict[str, M]] = {}
        self._by_channel: dict[str, dict[str, M]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._by_id.values()))

    def get(self, connection_id: str) -> M | None:
        return self._by_id.get(connection_id)

    def add(self, member: M) -> None:
        if member.id in self._by_id:
            raise ValueError(f"connection {member.id} is already in the hub")
        self._by_id[member.id] = member
        self._by_user.setdefault(member.user_id, {})[member.id] = member
        if member.session_id is not None:
            self._by_session.setdefault(member.session_id, {})[member.id] = member
        for channel in member.channels:
            self._by_channel.setdefault(channel, {})[member.id] = member

    def remove(self, member: M) -> bool:
        """Forget ``member`` everywhere; ``False`` if it was not here."""
        if self._by_id.pop(member.id, None) is None:
            return False
        _discard(self._by_user, member.user_id, member.id)
        if member.session_id is not None:
            _discard(self._by_session, member.session_id, member.id)
        for channel in member.channels:
            _discard(self._by_channel, channel, member.id)
        return True

    def subscribe(self, member: M, channel: str) -> bool:
        """``False`` when it already was subscribed."""
        if channel in member.channels:
            return False
        member.channels.add(channel)
        if member.id in self._by_id:
            self._by_channel.setdefault(channel, {})[member.id] = member
        return True

    def unsubscribe(self, member: M, channel: str) -> bool:
        if channel not in member.channels:
            return False
        member.channels.discard(channel)
        _discard(self._by_channel, channel, member.id)
        return True

    def of_user(self, user_id: str) -> list[M]:
        return list(self._by_user.get(user_id, {}).values())

    def of_session(self, session_id: str) -> list[M]:
        return list(self._by_session.get(session_id, {}).values())

    def of_channel(self, channel: str) -> list[M]:
        return list(self._by_channel.get(channel, {}).values())

    def count_user(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self._by_id),
            "users": len(self._by_user),
            "sessions": len(self._by_session),
            "channels": len(self._by_channel),
        }


def _discard(index: dict[str, dict[str, M]], key: str, member_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(member_id, None)
        if not members:
            del index[key]


__all__ = ["Hub", "Member"]
