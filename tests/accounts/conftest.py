"""A real SMTP server in the test process (aiosmtpd) that keeps every message it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.helpers import free_port

LINK = re.compile(r"http://127\.0\.0\.1:\d+/[a-z-]+\?token=[A-Za-z0-9_%-]+")


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def link(self) -> str:
        found = LINK.search(self.text)
        assert found, self.text
        return found.group(0)

    def token(self) -> str:
        return self.link().split("token=", 1)[1]


@dataclass
class Inbox:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.received if address in m.envelope_to]

    async def wait_for(self, address: str, count: int = 1, within: float = 10.0) -> Received:
        """The ``count``-th message to ``address`` (a bound on waiting, never a measure)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            mine = self.to(address)
            if len(mine) >= count:
                return mine[count - 1]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no message #{count} to {address}: {self.received}")


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def fast_mail(smtp: SmtpServer, **extra: Any) -> dict[str, Any]:
    """Settings for an app delivering to ``smtp`` quickly."""
    return {"smtp_url": smtp.url, "mail_poll_interval": 0.05, **extra}
