"""The master key of the embedded default: generated once, kept in a file beside the data."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from watchword.config import Settings

log = logging.getLogger("watchword")


class MasterKeyMissing(RuntimeError):
    pass


def resolve_secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    if not settings.is_sqlite:
        raise MasterKeyMissing(
            "WATCHWORD_SECRET_KEY must be set when the database is not the embedded SQLite "
            "default (every node of a cluster needs the same key)."
        )
    path = Path(settings.secret_key_file)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log.warning(
        "WATCHWORD_SECRET_KEY is not set: generated a master key and saved it to %s. "
        "Back it up; set WATCHWORD_SECRET_KEY in production.",
        path.resolve(),
    )
    return key
