"""The server's log: `key=value` text for people, or one JSON object per line (DESIGN §13).

`eventbus serve --log-format json` writes each record as

    {"time": "2026-12-06T15:55:06.123Z", "level": "WARNING", "logger": "eventbus.rules",
     "message": "bus=global rule=r1 event=7 firing=3 failed after 3 attempts: …",
     "bus": "global", "rule_id": "r1", "event_id": 7, "firing_id": 3}

The fields `bus`, `rule_id`, `event_id`, `firing_id`, `consumer` come from
the record's `extra` when the call gives them, else from the `bus=`, `rule=`,
`event=`, `firing=`, `consumer=` words every log line of the bus already
carries for scanning, so no call needs to say them twice. A traceback goes
in `exc_info` as text.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: Words of a message that become fields: `bus=global` → "bus": "global".
_WORDS = {
    "bus": "bus",
    "rule": "rule_id",
    "event": "event_id",
    "firing": "firing_id",
    "consumer": "consumer",
}
_WORD_RE = re.compile(r"(?<![\w.])(bus|rule|event|firing|consumer)=([^\s,;]+)")
_INTEGER_FIELDS = frozenset({"event_id", "firing_id"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for word, value in _WORD_RE.findall(message):
            entry.setdefault(_WORDS[word], _typed(_WORDS[word], value))
        for field in _WORDS.values():
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _typed(field: str, value: str) -> Any:
    return int(value) if field in _INTEGER_FIELDS and value.isdigit() else value


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """The root logger on stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
