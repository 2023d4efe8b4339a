"""Alembic, driven from code: ``watchword db upgrade`` and start-up on the embedded default."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(engine: AsyncEngine, target: str = "heads") -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, target)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def pending(engine: AsyncEngine) -> set[str]:
    """Head revisions not yet applied (empty when the schema is current)."""
    script = ScriptDirectory.from_config(alembic_config())

    def current(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async with engine.connect() as conn:
        applied = await conn.run_sync(current)
    return set(script.get_heads()) - applied
