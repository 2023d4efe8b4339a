"""The exercise's own environment: ``AUTH_TYPE``, ``SESSION_NAME``, ``SESSION_DURATION``.

They carry no ``WATCHWORD_`` prefix because the exercise's users and graders set them by these
names. ``WATCHWORD_COMPAT_V1`` is Watchword's own switch: a comma-separated set of ``open``
(serve ``/api/v1`` with ``AUTH_TYPE`` unset, without authentication) and ``exercise`` (the
exercise's original rule: any signed-in user may change or delete any user; a teaching mode).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# "No expiry" in the exercise; a Watchword session row still needs an end. Ten years is
# longer than any process lives, and SESSION_DURATION is capped at it.
NO_EXPIRY = timedelta(days=3650)
DEFAULT_SESSION_NAME = "_my_session_id"
AUTH_TYPES = ("auth", "basic_auth", "session_auth", "session_exp_auth", "session_db_auth")
COMPAT_MODES = frozenset({"open", "exercise"})
# RFC 6265 cookie-name characters (an RFC 7230 token).
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class CompatSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    auth_type: str | None = None
    session_name: str = DEFAULT_SESSION_NAME
    session_duration: int = 0
    watchword_compat_v1: Annotated[frozenset[str], NoDecode] = frozenset()

    @field_validator("auth_type", mode="before")
    @classmethod
    def _auth_type(cls, value: object) -> object:
        # The exercise tests ``if auth_type``: empty is unset. A typo is an error, not a
        # silently weaker ``Auth``.
        if not value:
            return None
        if value not in AUTH_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(AUTH_TYPES)}")
        return value

    @field_validator("session_name", mode="before")
    @classmethod
    def _session_name(cls, value: object) -> object:
        if value is None or value == "":
            return DEFAULT_SESSION_NAME
        if not isinstance(value, str) or not set(value) <= _TOKEN_CHARS:
            raise ValueError(
                "SESSION_NAME must be a cookie name (letters, digits, -_.!#$%&'*+^`|~)"
            )
        return value

    @field_validator("session_duration", mode="before")
    @classmethod
    def _session_duration(cls, value: object) -> int:
        """``int(SESSION_DURATION)``; missing or not an integer is 0 (no expiry), as in the
        exercise. Capped at ten years so a huge value cannot overflow a date."""
        try:
            seconds = int(str(value))
        except (TypeError, ValueError):
            return 0
        return min(seconds, int(NO_EXPIRY.total_seconds()))

    @field_validator("watchword_compat_v1", mode="before")
    @classmethod
    def _modes(cls, value: object) -> object:
        if value is None:
            return frozenset()
        if not isinstance(value, str):
            return value
        modes = {item.strip().lower() for item in value.split(",") if item.strip()}
        unknown = modes - COMPAT_MODES
        if unknown:
            raise ValueError(
                'WATCHWORD_COMPAT_V1 is a comma-separated set of "open" and "exercise"; '
                f"unknown: {', '.join(sorted(unknown))}"
            )
        return frozenset(modes)

    @property
    def open_mode_allowed(self) -> bool:
        return "open" in self.watchword_compat_v1

    @property
    def exercise_mode(self) -> bool:
        """Any signed-in user may change or delete any user (the exercise's own rule)."""
        return "exercise" in self.watchword_compat_v1
