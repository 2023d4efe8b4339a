"""Where a request came from, for the audit trail and session rows."""

from __future__ import annotations

from dataclasses import dataclass

from watchword.domain.device import MAX_USER_AGENT


@dataclass(frozen=True, slots=True)
class RequestContext:
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, ip: str | None, user_agent: str | None) -> RequestContext:
        return cls(
            ip=ip[:64] if ip else None,
            user_agent=user_agent[:MAX_USER_AGENT] if user_agent else None,
        )


CLI = RequestContext(ip=None, user_agent="watchword-cli")
