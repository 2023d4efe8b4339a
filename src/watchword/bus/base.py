"""The bus contract.

Delivery is **at most once** and ordered per publisher. A subscriber that may have missed
messages (a lost connection) is told through ``on_gap`` and must drop what it caches, then
re-read the durable control feed: a missed revocation must never keep a session alive.

Channels: ``CONTROL`` carries cluster control (session revoked, user changed, keys changed,
cache flush); ``REALTIME`` carries user events for the WebSocket gateway. They are separate,
as Centrifuge keeps ``Broker`` and ``Controller`` apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

CONTROL = "control"
REALTIME = "realtime"

Handler = Callable[[dict[str, Any]], Awaitable[None]]
GapHandler = Callable[[], Awaitable[None]]


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Send to every subscriber of ``channel`` on every node (this one included)."""
        ...

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` for each message on ``channel``, in publish order."""
        ...

    def on_gap(self, handler: GapHandler) -> None:
        """Call ``handler`` whenever messages may have been lost (after a reconnect)."""
        ...

    @property
    def healthy(self) -> bool: ...
