"""Mail: composing messages (plain text and HTML) and delivering the outbox over SMTP.

Changes write their mail to the outbox in their own transaction; the ``MailSender`` here takes
due rows, sends them with aiosmtplib and marks them sent, or schedules a retry with exponential
backoff. Without ``WATCHWORD_SMTP_URL`` nothing is sent: the mail waits in the outbox, where
``watchword mail list`` and ``watchword mail show ID`` print it for local development.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from jinja2 import Environment, StrictUndefined

from watchword.domain.clock import Clock, Randomness
from watchword.domain.errors import StoreUnavailable
from watchword.domain.mail import MailKind, OutgoingMail
from watchword.services.outbox import Delivery
from watchword.services.wakeup import wait_for_wake
from watchword.stores.accounts import MailOutbox

log = logging.getLogger("watchword.mail")

BATCH = 20


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # smtps://: TLS from the first byte
    start_tls: bool = False  # smtp+starttls://: upgrade after EHLO, or fail

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtp+starttls", "smtps"):
            raise ValueError("an SMTP URL starts with smtp://, smtp+starttls:// or smtps://")
        if not parts.hostname:
            raise ValueError("the SMTP URL needs a host")
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[scheme]
        return cls(
            host=parts.hostname,
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=scheme == "smtps",
            start_tls=scheme == "smtp+starttls",
        )


# -- messages ------------------------------------------------------------------------------

_SUBJECTS = {
    MailKind.VERIFY_EMAIL: "Verify your email address for {title}",
    MailKind.CONFIRM_NEW_EMAIL: "Confirm your new email address for {title}",
    MailKind.EMAIL_CHANGE_REQUESTED: "A change of your {title} email address was requested",
    MailKind.EMAIL_CHANGED: "Your {title} email address was changed",
    MailKind.PASSWORD_RESET: "Reset your {title} password",
    MailKind.PASSWORD_CHANGED: "Your {title} password was changed",
    MailKind.MFA_RESET: "The second factors of your {title} account were removed",
}

_LINES = {
    MailKind.VERIFY_EMAIL: (
        "Please confirm that {{ email }} is your address by opening this link "
        "(valid for {{ valid_for }}):"
    ),
    MailKind.CONFIRM_NEW_EMAIL: (
        "Someone (hopefully you) asked to use {{ email }} for your account. It takes effect "
        "once you open this link (valid for {{ valid_for }}):"
    ),
    MailKind.EMAIL_CHANGE_REQUESTED: (
        "Someone signed in to your account asked to change its email address to "
        "{{ new_email }}. If it was not you, change your password now:"
    ),
    MailKind.EMAIL_CHANGED: (
        "The email address of your account is now {{ new_email }}. If you did not do this, "
        "reset your password at once:"
    ),
    MailKind.PASSWORD_RESET: (
        "Someone (hopefully you) asked to reset the password of the account {{ email }}. "
        "To choose a new password, open this link (valid for {{ valid_for }}); if it was not "
        "you, ignore this message:"
    ),
    MailKind.PASSWORD_CHANGED: (
        "The password of your account {{ email }} was changed and every device was signed "
        "out. If you did not do this, reset your password at once:"
    ),
    MailKind.MFA_RESET: (
        "An administrator removed every second factor (authenticator app, recovery codes "
        "and passkeys) of your account {{ email }} and signed out every device. Sign in with "
        "your password and add a new one. If you did not ask for this, reset your password:"
    ),
}

TEXT_TEMPLATE = """{{ title }}

{{ line }}

{{ link }}

{{ title }} - {{ public_url }}
"""

HTML_TEMPLATE = """<!doctype html>
<html><body style="font-family: sans-serif; max-width: 36em">
<h1 style="font-size: 1.2em">{{ title }}</h1>
<p>{{ line }}</p>
<p><a href="{{ link }}">{{ link }}</a></p>
<hr><p style="color: #666; font-size: 0.9em">{{ title }} &middot;
<a href="{{ public_url }}">{{ public_url }}</a></p>
</body></html>
"""


class MailComposer:
    """Renders the messages: the product name and links to the public URL in every one."""

    def __init__(
        self, *, title: str, public_url: str, clock: Clock, randomness: Randomness
    ) -> None:
        self.title = title
        self.public_url = public_url.rstrip("/")
        self._clock = clock
        self._random = randomness
        # Plain text is not HTML: nothing to escape there.
        self._text = Environment(autoescape=False, undefined=StrictUndefined)  # noqa: S701
        self._html = Environment(autoescape=True, undefined=StrictUndefined)
        self._text_page = self._text.from_string(TEXT_TEMPLATE)
        self._html_page = self._html.from_string(HTML_TEMPLATE)

    def link(self, path: str) -> str:
        return self.public_url + path

    def compose(
        self, kind: str, to: str, *, link: str, user_id: str | None, **values: Any
    ) -> OutgoingMail:
        values = {"email": to, **values}
        context = {"title": self.title, "public_url": self.public_url, "link": link}
        line_text = self._text.from_string(_LINES[kind]).render(**values)
        line_html = self._html.from_string(_LINES[kind]).render(**values)
        now = self._clock.now()
        return OutgoingMail(
            id=self._random.new_id(),
            kind=kind,
            to=to,
            subject=_SUBJECTS[kind].format(title=self.title),
            text=self._text_page.render(line=line_text, **context),
            html=self._html_page.render(line=line_html, **context),
            created_at=now,
            next_attempt_at=now,
            user_id=user_id,
        )


def human_duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def to_message(mail: OutgoingMail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(mail.created_at.timestamp(), localtime=False)
    message["Message-ID"] = make_msgid(idstring=mail.id.replace("-", ""))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


# -- delivery ------------------------------------------------------------------------------


class MailSender:
    """Delivers due outbox rows; a failed row is retried with exponential backoff, forever
    (mail is never dropped), and the last error is kept on the row for the operator."""

    def __init__(
        self,
        *,
        outbox: MailOutbox,
        clock: Clock,
        target: SmtpTarget | None,
        sender: str,
        timeout: float,
        poll_interval: float,
        retry_base: float,
        retry_max: float,
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self.target = target
        self._sender = sender
        self._timeout = timeout
        self._poll = poll_interval
        self._delivery = Delivery(
            ledger=outbox,
            clock=clock,
            retry_base=retry_base,
            retry_max=retry_max,
            failures=(aiosmtplib.SMTPException, OSError, TimeoutError),
            log=log,
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Sent and failed deliveries are reported here (audit lines, security events).
        self.on_sent: list[Any] = []

    def notify(self) -> None:
        """New mail is queued: deliver now rather than at the next poll."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """Send every due row once; return how many were sent."""
        if self.target is None:
            return 0
        now = self._clock.now()
        lease = now + timedelta(seconds=max(60.0, self._timeout * 3))
        return await self._delivery.each(
            await self._outbox.claim_due(now, lease, limit=BATCH),
            self._send,
            describe=lambda mail: f"mail {mail.id} to {mail.to}",
            delivered=self._after_sent,
        )

    async def _after_sent(self, mail: OutgoingMail) -> None:
        for hook in self.on_sent:
            try:
                await hook(mail)
            except Exception:
                log.exception("mail-sent hook failed")

    async def _send(self, mail: OutgoingMail) -> None:
        assert self.target is not None
        target = self.target
        await aiosmtplib.send(
            to_message(mail, self._sender),
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            timeout=self._timeout,
        )

    async def _run(self) -> None:
        while True:
            await wait_for_wake(self._wake, self._poll)
            try:
                while await self.deliver_due() >= BATCH:
                    pass
            except StoreUnavailable:
                log.warning("mail: the database is unavailable; will retry")
            except Exception:
                log.exception("mail delivery round failed")

    def start(self) -> None:
        if self.target is not None and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
