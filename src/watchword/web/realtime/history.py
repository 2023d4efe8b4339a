"""The last events this node delivered, so a reconnecting client can resume.

Every node sees every bus message in the bus's order, so positions agree between nodes. A
client that reconnects says the id of the last event it saw; the events after it that its
connection may see are replayed. An id that fell out of the window means a gap: the client is
told, and should reload its state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    event_id: str
    channel: str  # "user:<id>" or a channel name
    text: str  # the encoded event message, ready to send


class History:
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: deque[Entry] = deque()
        self._seq_of: dict[str, int] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, event_id: str, channel: str, text: str) -> None:
        if self._size <= 0:
            return
        entry = Entry(self._next, event_id, channel, text)
        self._next += 1
        self._entries.append(entry)
        self._seq_of[event_id] = entry.seq
        while len(self._entries) > self._size:
            old = self._entries.popleft()
            if self._seq_of.get(old.event_id) == old.seq:
                del self._seq_of[old.event_id]

    def after(self, event_id: str, channels: set[str]) -> tuple[bool, list[str]]:
        """``(complete, texts)``: events after ``event_id`` on ``channels``, oldest first.

        ``complete`` is ``False`` when ``event_id`` is no longer (or never was) in the window.
        """
        seq = self._seq_of.get(event_id)
        if seq is None:
            return False, []
        return True, [e.text for e in self._since(seq) if e.channel in channels]

    def _since(self, seq: int) -> Iterator[Entry]:
        if not self._entries:
            return iter(())
        first = self._entries[0].seq
        start = seq - first + 1
        return (self._entries[i] for i in range(max(start, 0), len(self._entries)))


__all__ = ["Entry", "History"]
