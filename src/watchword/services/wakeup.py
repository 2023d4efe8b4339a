"""The wait at the top of every background loop (mail, back-channel logout, the revocation
feed): until something wakes it or the poll interval passes."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Return when ``wake`` is set or after ``seconds``, with ``wake`` cleared.

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11, ``wait_for`` can
    swallow a cancellation that arrives just as the event is set, and a loop that lost its
    cancellation never stops, so shutting the server down would hang. For the same reason a
    task asked to stop goes no further, even when the round before lost the ``CancelledError``
    (a library's cleanup that caught it): the task still counts the request (``cancelling``).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
    wake.clear()
