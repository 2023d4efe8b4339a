"""Mail that leaves the server: one outbox row per message, retried with backoff until sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


class MailKind:
    VERIFY_EMAIL = "verify_email"
    CONFIRM_NEW_EMAIL = "confirm_new_email"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGED = "email_changed"
    PASSWORD_RESET = "password_reset"
    PASSWORD_CHANGED = "password_changed"
    MFA_RESET = "mfa_reset"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One message in the outbox. ``sent_at`` is None until an SMTP server accepted it."""

    id: str
    kind: str
    to: str
    subject: str
    text: str = field(repr=False)  # carries links with secrets: never in a log line
    html: str = field(repr=False)
    created_at: datetime
    next_attempt_at: datetime
    user_id: str | None = None
    attempts: int = 0
    sent_at: datetime | None = None
    last_error: str | None = None

    def summary(self) -> dict[str, object]:
        """The row without its body, for listings and audit details."""
        return {
            "id": self.id,
            "kind": self.kind,
            "to": self.to,
            "subject": self.subject,
            "user_id": self.user_id,
            "created_at": self.created_at.isoformat(),
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "last_error": self.last_error,
        }


def retry_delay(attempts: int, *, base: float, maximum: float) -> timedelta:
    """Exponential backoff after ``attempts`` failed tries (1 -> base, 2 -> 2*base, ...)."""
    exponent = max(0, min(attempts - 1, 30))
    return timedelta(seconds=min(maximum, base * (2**exponent)))
