"""The event bus: revocations, cache control and realtime fan-out travel on it."""

from watchword.bus.base import CONTROL, REALTIME, EventBus, Handler
from watchword.bus.local import LocalBus

__all__ = ["CONTROL", "REALTIME", "EventBus", "Handler", "LocalBus"]
