"""Alembic environment: runs on the async engine the caller hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from watchword.stores.sql.tables import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `watchword db upgrade`")
run(connection)
