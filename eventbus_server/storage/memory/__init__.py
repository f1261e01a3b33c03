"""A bus kept in memory: a bounded ring of events, and its rules and firings (no file)."""

from eventbus_server.storage.memory.store import MemoryStorage

__all__ = ["MemoryStorage"]
