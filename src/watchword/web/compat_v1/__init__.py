"""The /api/v1 surface of seed 004, the Basic and Session authentication exercise.

A thin adapter: the exercise's routes, status codes, error bodies and strategy classes
(``Auth``, ``BasicAuth``, ``SessionAuth``, ``SessionExpAuth``, ``SessionDBAuth``) over
Watchword's users (argon2id, unique emails) and sessions (visible and revocable everywhere).
``AUTH_TYPE`` picks the strategy; see docs/compat-v1.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from watchword.domain.errors import StoreUnavailable
from watchword.web.compat_v1.app import PREFIX, CompatApp, MountAt
from watchword.web.compat_v1.auth import Auth
from watchword.web.compat_v1.basic_auth import BasicAuth
from watchword.web.compat_v1.session_auth import MEMORY_KIND, SessionAuth
from watchword.web.compat_v1.session_db_auth import SessionDBAuth
from watchword.web.compat_v1.session_exp_auth import SessionExpAuth
from watchword.web.compat_v1.settings import CompatSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from watchword.services.container import Container

log = logging.getLogger("watchword.compat_v1")

RESTART_REASON = "server_restart"
RETRY_INTERVAL = 5.0

STRATEGIES: dict[str, type[Auth]] = {
    "basic_auth": BasicAuth,
    "session_auth": SessionAuth,
    "session_exp_auth": SessionExpAuth,
    "session_db_auth": SessionDBAuth,
}


def strategy_for(container: Container, settings: CompatSettings) -> Auth | None:
    """The exercise's switch: unset is no authentication, ``auth`` the base ``Auth``."""
    if settings.auth_type is None:
        return None
    return STRATEGIES.get(settings.auth_type, Auth)(container, settings)


async def forget_memory_sessions(container: Container) -> int:
    """A new process knows none of the previous one's in-memory session ids: end their
    Watchword sessions so they are not listed as live."""
    revoked = await container.db.sessions.revoke_kind(
        MEMORY_KIND, RESTART_REASON, container.clock.now(), origin=container.sessions.node_id
    )
    if revoked:
        await container.sessions.after_revoke(revoked)
        log.info("revoked %d in-memory /api/v1 sessions of a previous process", len(revoked))
    return len(revoked)


async def _forget_when_possible(container: Container) -> None:
    while True:
        await asyncio.sleep(RETRY_INTERVAL)
        try:
            await forget_memory_sessions(container)
        except StoreUnavailable:
            continue
        return


def install(app: FastAPI, container: Container, settings: CompatSettings | None = None) -> bool:
    """Mount /api/v1 when configured; return whether it is mounted. Always arranges for the
    start-up step that ends the previous process's in-memory sessions."""
    settings = settings or CompatSettings()
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with previous(application) as state:
            retry: asyncio.Task[None] | None = None
            try:
                await forget_memory_sessions(container)
            except StoreUnavailable:
                # Those rows cannot sign anyone in (no process knows their ids), they only
                # look live: finish the job when the store is back rather than not start.
                log.warning(
                    "store unavailable at start; in-memory /api/v1 sessions of a "
                    "previous process will be revoked when it returns"
                )
                retry = asyncio.create_task(_forget_when_possible(container))
            try:
                yield state
            finally:
                if retry is not None:
                    retry.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await retry

    app.router.lifespan_context = lifespan
    if settings.auth_type is None and not settings.open_mode_allowed:
        return False
    if settings.auth_type is None:
        log.warning(
            "AUTH_TYPE is unset and WATCHWORD_COMPAT_V1=open: /api/v1 is served WITHOUT "
            "AUTHENTICATION; anyone can list, change and delete every user"
        )
    if settings.exercise_mode:
        log.warning(
            "WATCHWORD_COMPAT_V1=exercise: a TEACHING MODE; any signed-in /api/v1 user may "
            "change or delete any other user, admins included. Never use it in production"
        )
    auth = strategy_for(container, settings)
    surface = CompatApp(container, auth, exercise=settings.exercise_mode)
    app.add_middleware(MountAt, prefix=PREFIX, surface=surface)
    log.info("/api/v1 compat surface mounted (AUTH_TYPE=%s)", settings.auth_type or "unset")
    return True


__all__ = [
    "PREFIX",
    "Auth",
    "BasicAuth",
    "CompatApp",
    "CompatSettings",
    "SessionAuth",
    "SessionDBAuth",
    "SessionExpAuth",
    "forget_memory_sessions",
    "install",
    "strategy_for",
]
