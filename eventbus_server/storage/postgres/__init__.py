"""A bus in one PostgreSQL schema, which several nodes may serve: its schema and
migrations, the log, its rules and firings."""

from eventbus_server.storage.postgres.store import PostgresStorage

__all__ = ["PostgresStorage"]
