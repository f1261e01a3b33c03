"""Exit codes, and the words a bus's error is said in on the command line (DESIGN.md §9).

0 ok · 1 the bus answered with an error · 2 usage or config error · 3 cannot connect.

A bus's messages are written for every client, so they name wire fields
(`replace: true`, `authenticate`, `source_trn`); the CLI says the flag instead.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_BUS_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
#: `rules test`: the event does not match (as grep exits 1 when nothing matches).
EXIT_NO_MATCH = 1

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 the bus answered with an error, 2 usage/config error, 3 cannot connect."
)

#: Wire words in a bus's messages → what a CLI user types instead.
WIRE_TO_FLAG = {
    "pass replace: true": "pass --replace",
    "call authenticate first": "pass --token TOKEN or set $EVENTBUS_TOKEN",
}
#: Params a bus names in `field: problem`, said as the flag that sets them.
FIELD_TO_FLAG = {
    "source_trn": "--source-trn",
    "target_trn": "--target-trn",
    "correlation_id": "--correlation-id",
    "idempotency_key": "--idempotency-key",
    "metadata": "--metadata",
}


class UsageError(Exception):
    """Bad arguments or config: exit 2."""


def in_flags(message: str, *, token_env: str | None = None) -> str:
    """`message` with each wire word said as the flag (and `token_env`, the config's
    `auth_token_env` of the bus, offered next to $EVENTBUS_TOKEN)."""
    for wire, flag in WIRE_TO_FLAG.items():
        message = message.replace(wire, flag)
    for field, flag in FIELD_TO_FLAG.items():
        # The field as a word that says something of itself: `source_trn: …`,
        # `source_trn is required`, `source_trn 'x' is not allowed`; not inside `$.source_trn`.
        message = re.sub(rf"(?<![\w.$-]){field}(?=: | is | ')", flag, message)
    if token_env:
        message = message.replace(
            "$EVENTBUS_TOKEN", f"$EVENTBUS_TOKEN (or ${token_env}, the bus's auth_token_env)"
        )
    return message
