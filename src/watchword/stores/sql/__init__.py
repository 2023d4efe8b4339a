"""SQLAlchemy 2 Core adapter: one implementation for SQLite and PostgreSQL."""

from watchword.stores.sql.database import SqlDatabase

__all__ = ["SqlDatabase"]
