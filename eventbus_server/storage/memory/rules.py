"""Rules, firings and the engine's cursor for the `persist: false` backend.

A mixin of `MemoryStorage`. Finished firings are history, so only the newest
`max_firings` of them are kept; pending ones are never dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from eventbus_server.storage.base import Firing, FiringQuery, FiringSelection, StoredRule

__all__ = ["MemoryRuleStore"]


class MemoryRuleStore:
    def __init__(self, *, max_firings: int = 10_000) -> None:
        self.max_firings = max_firings
        self._rules: dict[str, StoredRule] = {}
        self._firings: dict[int, Firing] = {}
        self._claimed: dict[tuple[str, int], int] = {}
        self._next_firing_id = 1
        self._cursor: int | None = None

    async def load_rules(self) -> list[StoredRule]:
        return [copy.deepcopy(self._rules[rule_id]) for rule_id in sorted(self._rules)]

    async def put_rule(
        self, rule_id: str, body: dict[str, Any], enabled: bool, now_ms: int
    ) -> bool:
        old = self._rules.get(rule_id)
        if old is None:
            self._rules[rule_id] = StoredRule(rule_id, copy.deepcopy(body), enabled, now_ms, now_ms)
            return True
        old.body, old.enabled, old.updated_at = copy.deepcopy(body), enabled, now_ms
        return False

    async def delete_rule(self, rule_id: str) -> bool:
        return self._rules.pop(rule_id, None) is not None

    async def set_rule_enabled(self, rule_id: str, enabled: bool, now_ms: int) -> bool:
        rule = self._rules.get(rule_id)
        if rule is None:
            return False
        rule.enabled, rule.updated_at = enabled, now_ms
        return True

    async def claim_firings(self, pairs: Sequence[tuple[str, int]], cursor: int) -> list[Firing]:
        created = []
        for pair in pairs:
            if pair in self._claimed:
                continue
            firing = Firing(self._next_firing_id, *pair)
            self._next_firing_id += 1
            self._claimed[pair] = firing.firing_id
            self._firings[firing.firing_id] = firing
            created.append(copy.copy(firing))
        await self.save_cursor(cursor)
        return created

    async def finish_firing(self, firing: Firing) -> None:
        self._firings[firing.firing_id] = copy.copy(firing)
        rule = self._rules.get(firing.rule_id)
        if rule is not None and firing.status in ("ok", "failed"):
            if firing.status == "ok":
                rule.fired += 1
            else:
                rule.failed += 1
            rule.last_fired_at = firing.started_at
        self._trim()

    async def rearm_firings(self, selection: FiringSelection) -> list[Firing]:
        chosen = [f for f in self._firings.values() if selection.matches(f)][: selection.limit]
        for firing in chosen:
            rule = self._rules.get(firing.rule_id)
            if rule is not None and firing.status == "failed":
                rule.failed -= 1
        for firing in chosen:
            firing.status = "pending"
        return [copy.copy(f) for f in chosen]

    async def pending_firings(self) -> list[Firing]:
        return [copy.copy(f) for f in self._firings.values() if f.status == "pending"]

    async def list_firings(self, query: FiringQuery) -> list[Firing]:
        ordered = (
            self._firings.values() if query.order == "asc" else reversed(self._firings.values())
        )
        hits = []
        for firing in ordered:
            if query.matches(firing):
                hits.append(copy.copy(firing))
                if len(hits) == query.limit:
                    break
        return hits

    async def load_cursor(self) -> int | None:
        return self._cursor

    async def save_cursor(self, event_id: int) -> None:
        self._cursor = event_id if self._cursor is None else max(self._cursor, event_id)

    def _trim(self) -> None:
        excess = len(self._firings) - self.max_firings
        if excess <= 0:
            return
        for firing_id in [i for i, f in self._firings.items() if f.status != "pending"][:excess]:
            firing = self._firings.pop(firing_id)
            self._claimed.pop((firing.rule_id, firing.event_id), None)
