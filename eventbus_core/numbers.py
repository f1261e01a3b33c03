"""The integer range every integer on the wire and in storage fits (DESIGN.md §3 "Integers").

Ids, cursors, timestamps and limits are stored as 64-bit integers (SQLite
INTEGER, PostgreSQL BIGINT), so a value outside int64 must be refused where
it enters, naming its field, not overflow later inside a commit that other
clients' events share.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt

__all__ = ["INT64_MAX", "INT64_MIN", "UInt63"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: A count, id, cursor or timestamp: 0 ≤ n ≤ 2^63-1, and never `true` or `"5"`.
UInt63 = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
