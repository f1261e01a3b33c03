"""Topic and TRN patterns as SQL: a glob for SQLite, a regular expression for PostgreSQL.

SQLite's GLOB `*` matches any text, dots and colons included, so a glob is a
superset of the pattern's matches; the exact match then runs in Python on
the rows it lets through. PostgreSQL's LIKE is the same superset, and its
regular expressions say exactly what
`eventbus_core.topics` and `eventbus_core.trn` say, so there the SQL alone
decides and a page can carry its `LIMIT` (which also lets the planner walk by
id and stop early instead of sorting every match). Stored topics and TRNs
were validated, so their characters are the ones these expressions assume;
none of them is a glob or regex character, except those escaped below.
"""

from __future__ import annotations

import re

__all__ = ["glob", "like", "topic_regex", "trn_regex"]

_TRN_SEGMENT = "[A-Za-z0-9._-]+"


def glob(pattern: str) -> str:
    """A GLOB every match of the topic or TRN `pattern` passes (each wildcard: any text)."""
    return pattern.replace(">", "*")


def like(pattern: str) -> str:
    """A LIKE every match of the topic or TRN `pattern` passes (`_` is LIKE's one-character
    wildcard, and may be in a topic or TRN: escaped)."""
    return pattern.replace("_", "\\_").replace("*", "%").replace(">", "%")


def topic_regex(pattern: str) -> str:
    """The topic pattern's exact match as an anchored regex (`_sys.` not excluded)."""
    parts = []
    for token in pattern.split("."):
        if token == "*":
            parts.append("[^.]+")
        elif token == ">":
            parts.append("[^.]+(\\.[^.]+)*")
        else:
            parts.append(re.escape(token))
    return "^" + "\\.".join(parts) + "$"


def trn_regex(pattern: str) -> str:
    """The exact match of a TRN pattern with a `*` segment, as an anchored regex."""
    body, at, digest = pattern[4:].partition("@")
    segments = body.split(":")
    regex = ":".join(_TRN_SEGMENT if s == "*" else re.escape(s) for s in segments)
    if at:
        regex += re.escape("@" + digest)
    elif segments[-1] == "*":
        # A final '*' reaches into everything below: more segments and a hash.
        regex += f"(:{_TRN_SEGMENT})*(@[A-Za-z0-9]+:[0-9A-Fa-f]+)?"
    return "^trn:" + regex + "$"
