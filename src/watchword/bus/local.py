"""The in-process bus: one node, nothing lost, handlers run in publish order."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from watchword.bus.base import GapHandler, Handler

log = logging.getLogger("watchword.bus")


class LocalBus:
    def __init__(self) -> None:
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)
        self._gap_handlers: list[GapHandler] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                await handler(message)
            except Exception:
                log.exception("bus handler failed on %s", channel)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    def on_gap(self, handler: GapHandler) -> None:
        self._gap_handlers.append(handler)

    @property
    def healthy(self) -> bool:
        return True
