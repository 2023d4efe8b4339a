"""Lua scripts run by their SHA-1, routed by their keys like any other command.

redis-py's ``Script`` reloads a script the server does not know with ``SCRIPT LOAD``, which a
cluster client sends to *every* master: with one master down, a script whose keys live on a
healthy master would then fail too. Here a missing script is sent once with ``EVAL`` instead,
to the one master that owns its keys (which caches it for the next ``EVALSHA``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from watchword.stores.redis.client import RedisClient


def load_script(name: str) -> str:
    return resources.files("watchword.stores.redis").joinpath("lua", name).read_text("utf-8")


class LuaScript:
    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self._source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, *, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        client: Any = self._client  # evalsha/eval are typed per client; both answer alike
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self._source, len(keys), *keys, *args)
