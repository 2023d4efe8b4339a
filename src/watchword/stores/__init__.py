"""Persistence behind small protocols: SQL (SQLite, PostgreSQL), Redis, memory."""
