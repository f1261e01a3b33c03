"""A bus in one SQLite file: its schema and migrations, the log, its rules and firings."""

from eventbus_server.storage.sqlite.store import SqliteStorage

__all__ = ["SqliteStorage"]
