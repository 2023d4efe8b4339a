"""The app under contract test: in process, on a fresh SQLite file, with an admin and a plain
user, and bearer credentials for both (fresh ones on demand)."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import PASSWORD, TEST_SECRET_KEY, fast_hasher
from watchword.config import Settings
from watchword.services.container import Container
from watchword.services.context import CLI
from watchword.web.app import create_app

ADMIN = "root@example.com"
USER = "alice@example.com"
GENEROUS = "100000/minute"


def settings(directory: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{directory}/contract.db",
        secret_key=TEST_SECRET_KEY,
        secret_key_file=str(directory / "watchword.secret"),
        # The fuzzer signs in once per case on the routes that end a session; the
        # per-address limits would turn the rest of the run into 429s.
        login_rate_limit_account=GENEROUS,
        login_rate_limit_ip=GENEROUS,
        credential_fail_limit_ip=GENEROUS,
        credential_fail_limit_credential=GENEROUS,
    )


async def _prepare(config: Settings) -> None:
    container = Container(config, hasher=fast_hasher())
    try:
        await container.db.upgrade()  # type: ignore[attr-defined]
        await container.accounts.register(
            email=ADMIN, password=PASSWORD, roles=["user", "admin"], ctx=CLI, self_service=False
        )
        await container.accounts.register(
            email=USER, password=PASSWORD, roles=["user"], ctx=CLI, self_service=False
        )
    finally:
        await container.db.close()


@dataclass
class ContractApp:
    app: Any
    directory: Path
    counts: dict[str, int] = field(default_factory=dict)


def build() -> ContractApp:
    directory = Path(tempfile.mkdtemp(prefix="watchword-contract-"))
    config = settings(directory)
    asyncio.run(_prepare(config))
    app = create_app(config, container=Container(config, hasher=fast_hasher()))
    return ContractApp(app=app, directory=directory)
