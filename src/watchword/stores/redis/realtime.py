"""Cluster-wide realtime state: presence and connection tickets, shared by every node.

Presence: per user a sorted set (connection id -> expiry) and a hash (connection id -> entry),
both tagged with the user id (one slot on a cluster).
An entry lives ``ttl`` seconds unless its node touches it, so the connections of a node that
died disappear by themselves; ``presence_list.lua`` prunes and reads in one step.

Tickets: ``SET`` with the ticket's TTL, redeemed with ``GETDEL`` so a ticket works once across
every node. Redis down: ``StoreUnavailable`` (no ticket is accepted that could be a replay).

The entry and grant types belong to the realtime gateway; they are passed in (``entry_type``,
``grant_type``) so this adapter does not import the web layer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields, is_dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from watchword.domain.errors import StoreUnavailable
from watchword.stores.redis.client import REDIS_FAILURES, RedisClient, RedisOptions
from watchword.stores.redis.scripts import LuaScript, load_script

E = TypeVar("E")
G = TypeVar("G")


class RedisPresence(Generic[E]):
    """The realtime ``Presence`` contract on Redis (see web/realtime/presence.py)."""

    def __init__(
        self,
        client: RedisClient,
        options: RedisOptions,
        *,
        entry_type: Callable[..., E],
        ttl: float,
        user_of: Callable[[E], str] = lambda e: str(getattr(e, "user_id")),  # noqa: B009
        id_of: Callable[[E], str] = lambda e: str(getattr(e, "connection_id")),  # noqa: B009
    ) -> None:
        self._client = client
        self._options = options
        self._entry_type = entry_type
        self._ttl = ttl
        self._user_of = user_of
        self._id_of = id_of
        self._list = LuaScript(client, load_script("presence_list.lua"))

    def _keys(self, user_id: str) -> tuple[str, str]:
        # One user's two keys share the user id as hash tag: one slot, so add/remove stay
        # one transaction and presence_list.lua one script on a cluster.
        return self._options.key("presence", user_id), self._options.key("presence", user_id, "e")

    def _expiry_ms(self) -> int:
        return math.ceil((time.time() + self._ttl) * 1000)

    async def add(self, entry: E) -> None:
        zset, table = self._keys(self._user_of(entry))
        data = json.dumps(asdict(entry) if is_dataclass(entry) else dict(vars(entry)))  # type: ignore[arg-type]
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(table, self._id_of(entry), data)
                pipe.zadd(zset, {self._id_of(entry): self._expiry_ms()})
                pipe.expire(table, math.ceil(self._ttl))
                pipe.expire(zset, math.ceil(self._ttl))
                await pipe.execute()
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The presence store (Redis) is unavailable.") from exc

    async def remove(self, entry: E) -> None:
        zset, table = self._keys(self._user_of(entry))
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(zset, self._id_of(entry))
                pipe.hdel(table, self._id_of(entry))
                await pipe.execute()
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The presence store (Redis) is unavailable.") from exc

    async def touch(self, entries: list[E]) -> None:
        if not entries:
            return
        expiry = self._expiry_ms()
        ttl = math.ceil(self._ttl)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for entry in entries:
                    zset, table = self._keys(self._user_of(entry))
                    pipe.zadd(zset, {self._id_of(entry): expiry}, xx=True)
                    pipe.expire(zset, ttl)
                    pipe.expire(table, ttl)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The presence store (Redis) is unavailable.") from exc

    async def list(self, user_id: str) -> list[E]:
        zset, table = self._keys(user_id)
        try:
            raw = await self._list(keys=[zset, table], args=[math.floor(time.time() * 1000)])
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The presence store (Redis) is unavailable.") from exc
        return [self._entry_type(**json.loads(item)) for item in _present(raw)]

    async def count(self, user_id: str) -> int:
        zset, _ = self._keys(user_id)
        try:
            return int(
                await self._client.zcount(zset, f"({math.floor(time.time() * 1000)}", "+inf")
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The presence store (Redis) is unavailable.") from exc


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value


def _present(raw: Iterable[Any] | None) -> list[Any]:
    return [item for item in (raw or ()) if item is not None]


class RedisTicketStore(Generic[G]):
    """The realtime ``TicketStore`` contract on Redis (see web/realtime/tickets.py)."""

    def __init__(self, client: RedisClient, options: RedisOptions, *, grant_type: type[G]) -> None:
        if not is_dataclass(grant_type):
            raise TypeError("grant_type must be a dataclass")
        self._client = client
        self._options = options
        self._grant_type = grant_type
        self._dates = {f.name for f in fields(grant_type) if "datetime" in str(f.type)}

    async def put(self, ticket_hash: str, grant: G) -> None:
        data = asdict(grant)  # type: ignore[call-overload]
        expires_at: datetime = data["expires_at"]
        ttl_ms = max(1, math.ceil((expires_at.timestamp() - time.time()) * 1000))
        encoded = {k: _encode(v) for k, v in data.items()}
        try:
            await self._client.set(
                self._options.key("ticket", ticket_hash), json.dumps(encoded), px=ttl_ms
            )
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The ticket store (Redis) is unavailable.") from exc

    async def take(self, ticket_hash: str) -> G | None:
        try:
            raw = await self._client.getdel(self._options.key("ticket", ticket_hash))
        except REDIS_FAILURES as exc:
            raise StoreUnavailable("The ticket store (Redis) is unavailable.") from exc
        if raw is None:
            return None
        data = json.loads(raw)
        for name in self._dates:
            if data.get(name) is not None:
                data[name] = datetime.fromisoformat(data[name])
        if "scopes" in data:
            data["scopes"] = frozenset(data["scopes"])
        return self._grant_type(**data)
