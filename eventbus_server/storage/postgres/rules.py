"""The rules, firings and rule-engine cursor of a bus in PostgreSQL.

Each function runs on a connection the store hands it (inside a
transaction where it writes), like sqlite/rules.py on SQLite's thread. A
rule change also sends `NOTIFY <channel>, 'rules:<node id>'`, so other nodes
reload their rule books (the writing node skips its own notice: it has
applied the change already); firings are claimed in the name of a node (`claimed_by`),
so a node that died leaves firings another node can adopt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from eventbus_core.codec import dumps
from eventbus_server.storage.base import Firing, FiringQuery, FiringSelection, StoredRule
from eventbus_server.storage.postgres.schema import rowcount
from eventbus_server.storage.sql import (
    FIRING_COLUMNS,
    RULE_COLUMNS,
    firing_from_row,
    rule_counts,
    rule_from_row,
    select_firings,
    select_rearmable,
)

__all__ = [
    "CURSOR_NAME",
    "RULES_CHANGED",
    "adopt_firings",
    "claim_firings",
    "delete_rule",
    "finish_firing",
    "list_firings",
    "load_cursor",
    "load_rules",
    "put_rule",
    "rearm_firings",
    "rules_changed",
    "save_cursor",
    "set_rule_enabled",
]

CURSOR_NAME = "rule_engine"
#: The NOTIFY payload that says "rules changed" starts so (`rules_changed`); event
#: commits send their last id.
RULES_CHANGED = "rules"

_SAVE_CURSOR = (
    "INSERT INTO cursors (name, event_id) VALUES ($1, $2)"
    " ON CONFLICT (name) DO UPDATE SET event_id = GREATEST(cursors.event_id, excluded.event_id)"
)
_CLAIM = """
    INSERT INTO rule_firings (rule_id, event_id, status, claimed_by)
    SELECT rule_id, event_id, 'pending', $3 FROM unnest($1::text[], $2::bigint[]) AS p(rule_id, event_id)
    ON CONFLICT (rule_id, event_id) DO NOTHING
    RETURNING firing_id, rule_id, event_id
"""
_CLAIMERS = (
    "SELECT DISTINCT claimed_by FROM rule_firings"
    " WHERE status = 'pending' AND claimed_by IS DISTINCT FROM $1"
)
_ADOPT = (
    f"UPDATE rule_firings SET claimed_by = $1"
    f" WHERE status = 'pending' AND claimed_by IS NOT DISTINCT FROM $2 RETURNING {FIRING_COLUMNS}"
)


# -- rules -----------------------------------------------------------------------------


async def load_rules(conn: asyncpg.Connection) -> list[StoredRule]:
    return [
        rule_from_row(row)
        for row in await conn.fetch(f"SELECT {RULE_COLUMNS} FROM rules ORDER BY id")
    ]


def rules_changed(node_id: str) -> str:
    """The NOTIFY payload of a rule change made by `node_id`: the node that made it
    knows its own notice, and skips it."""
    return f"{RULES_CHANGED}:{node_id}"


async def put_rule(
    conn: asyncpg.Connection,
    channel: str,
    node_id: str,
    rule_id: str,
    body: dict[str, Any],
    enabled: bool,
    now_ms: int,
) -> bool:
    # One round trip: the upsert and its notice (sent at commit) in one statement, which
    # needs no explicit transaction (store.py sends it alone).
    created: bool = await conn.fetchval(
        "WITH put AS ("
        " INSERT INTO rules (id, body, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)"
        " ON CONFLICT (id) DO UPDATE SET body = excluded.body, enabled = excluded.enabled,"
        " updated_at = excluded.updated_at RETURNING (xmax = 0) AS created"
        ") SELECT created, pg_notify($5, $6) FROM put",
        rule_id,
        dumps(body).decode(),
        enabled,
        now_ms,
        channel,
        rules_changed(node_id),
    )
    return created


async def delete_rule(conn: asyncpg.Connection, channel: str, node_id: str, rule_id: str) -> bool:
    deleted = rowcount(await conn.execute("DELETE FROM rules WHERE id = $1", rule_id)) > 0
    await _notify_rules_changed(conn, channel, node_id)
    return deleted


async def set_rule_enabled(
    conn: asyncpg.Connection, channel: str, node_id: str, rule_id: str, enabled: bool, now_ms: int
) -> bool:
    status = await conn.execute(
        "UPDATE rules SET enabled = $1, updated_at = $2 WHERE id = $3", enabled, now_ms, rule_id
    )
    await _notify_rules_changed(conn, channel, node_id)
    return rowcount(status) > 0


async def _notify_rules_changed(conn: asyncpg.Connection, channel: str, node_id: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", channel, rules_changed(node_id))


# -- firings and the engine's cursor ---------------------------------------------------


async def claim_firings(
    conn: asyncpg.Connection, node_id: str, pairs: Sequence[tuple[str, int]], cursor: int
) -> list[Firing]:
    rows = await conn.fetch(
        _CLAIM, [rule_id for rule_id, _ in pairs], [event_id for _, event_id in pairs], node_id
    )
    await conn.execute(_SAVE_CURSOR, CURSOR_NAME, cursor)
    # Another node may have claimed some pairs first; those are not ours to run.
    created = {(rule_id, event_id): firing_id for firing_id, rule_id, event_id in rows}
    return [Firing(created[pair], *pair) for pair in pairs if pair in created]


async def finish_firing(conn: asyncpg.Connection, firing: Firing) -> None:
    counter = {"ok": "fired", "failed": "failed"}.get(firing.status)
    await conn.execute(
        "UPDATE rule_firings SET status = $1, attempts = $2, started_at = $3, duration_ms = $4,"
        " result = $5, error = $6 WHERE firing_id = $7",
        firing.status,
        firing.attempts,
        firing.started_at,
        firing.duration_ms,
        None if firing.result is None else dumps(firing.result).decode(),
        firing.error,
        firing.firing_id,
    )
    if counter is not None:
        await conn.execute(
            f"UPDATE rules SET {counter} = {counter} + 1, last_fired_at = $1 WHERE id = $2",
            firing.started_at,
            firing.rule_id,
        )


async def rearm_firings(
    conn: asyncpg.Connection, node_id: str, selection: FiringSelection
) -> list[Firing]:
    select = select_rearmable(selection, "numeric")
    chosen = [
        firing_from_row(row) for row in await conn.fetch(select.sql + " FOR UPDATE", *select.params)
    ]
    # This node runs them: the claim is its own, as for a firing it matched.
    await conn.execute(
        "UPDATE rule_firings SET status = 'pending', claimed_by = $1 WHERE firing_id = ANY($2)",
        node_id,
        [f.firing_id for f in chosen],
    )
    for rule_id, count in rule_counts(chosen, "failed").items():
        await conn.execute(
            "UPDATE rules SET failed = GREATEST(failed - $1, 0) WHERE id = $2", count, rule_id
        )
    for firing in chosen:
        firing.status = "pending"
    return chosen


async def adopt_firings(conn: asyncpg.Connection, node_id: str) -> list[Firing]:
    """The unfinished firings of nodes that are gone, now claimed by `node_id`."""
    adopted: list[Firing] = []
    for (node,) in await conn.fetch(_CLAIMERS, node_id):
        if node is None:  # claimed before nodes had names
            adopted += map(firing_from_row, await conn.fetch(_ADOPT, node_id, None))
            continue
        # Taking a node's lease proves it gone, and keeps a second adopter out meanwhile.
        # Held to COMMIT, so no lock outlives this on the pooled connection.
        async with conn.transaction():
            if await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext($1))", node_key(node)
            ):
                adopted += map(firing_from_row, await conn.fetch(_ADOPT, node_id, node))
    return sorted(adopted, key=lambda firing: firing.firing_id)


async def list_firings(conn: asyncpg.Connection, query: FiringQuery) -> list[Firing]:
    select = select_firings(query, "numeric")
    return [firing_from_row(row) for row in await conn.fetch(select.sql, *select.params)]


async def load_cursor(conn: asyncpg.Connection) -> int | None:
    rows = await conn.fetch("SELECT event_id FROM cursors WHERE name = $1", CURSOR_NAME)
    return int(rows[0][0]) if rows else None


async def save_cursor(conn: asyncpg.Connection, event_id: int) -> None:
    await conn.execute(_SAVE_CURSOR, CURSOR_NAME, event_id)


def node_key(node_id: str) -> str:
    """The advisory-lock name a live node holds (its lease)."""
    return f"eventbus-node:{node_id}"
