"""A bus's rules: stored in its storage, compiled and indexed in memory.

Storage is the truth (it holds the counters and survives restarts); the
book holds every rule (as stored, compiled when a busy topic needs it: see
`HeldRule`) and an index of the enabled ones for the engine's hot path.
Every change writes storage first, then updates the in-memory state, under
one lock, so the two never disagree; a write whose outcome is unknown
(cancelled, or cut off after its COMMIT went out) makes the book reload.
The index is updated in place, one rule's entries at a time (index.py):
registering the 10,000th rule costs what the first did. Other nodes' changes
(PostgreSQL) arrive as notices, and the book reloads (`reload_soon`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

from pydantic import ValidationError

from eventbus_core.codec import dumps, loads
from eventbus_core.errors import (
    AlreadyExists,
    EventBusError,
    InvalidParams,
    NotFound,
    Overloaded,
    ReservedTopic,
    SourceNotAllowed,
)
from eventbus_core.event import now_ms
from eventbus_core.rules import EmitEvent, InvokeTool, Rule
from eventbus_core.topics import is_reserved_topic
from eventbus_server import gc_tuning
from eventbus_server.rules.lang.index import RuleIndex
from eventbus_server.rules.lang.matcher import CompiledRule, compile_rule
from eventbus_server.storage.base import Storage, StoredRule

__all__ = ["RuleBook"]

log = logging.getLogger("eventbus.rules")

#: The longest a reload waits for more notices (see `reload_soon`).
MAX_RELOAD_PAUSE_S = 1.0


class HeldRule:
    """A rule as the book holds it: its body as stored (JSON bytes), compiled
    when a topic's plan first needs it.

    Most rules of a big book watch topics other than the busy ones. Held as
    bytes, such a rule is one object the garbage collector walks instead of
    about sixty (the model, conditions, closures of a compiled rule): 1,000
    such rules no longer double the heap every full collection walks.
    """

    __slots__ = ("_compiled", "enabled", "id", "position", "stored", "topic")

    def __init__(
        self,
        compiled: CompiledRule,
        stored: bytes,
        *,
        enabled: bool,
        position: int,
    ) -> None:
        self.id = compiled.id
        self.topic = compiled.rule.topic
        self.stored = stored
        self.enabled = enabled
        self.position = position
        self._compiled: CompiledRule | None = compiled

    def compiled(self) -> CompiledRule:
        if self._compiled is None:
            # It compiled from these very bytes when it was stored or loaded.
            self._compiled = compile_rule(Rule.model_validate(loads(self.stored)))
        return self._compiled

    def release(self) -> None:
        """Drop the compiled form until it is needed again."""
        self._compiled = None


class RuleBook:
    def __init__(
        self,
        storage: Storage,
        *,
        bus_id: str,
        accepted_by: Callable[[], Mapping[str, Collection[str]]],
        max_rules: int = 10_000,
        check_tool: Callable[[str, InvokeTool], Awaitable[None]] | None = None,
    ) -> None:
        """`accepted_by()`: every bus of the process → the buses whose rules it accepts events from.
        `check_tool(rule_id, action)`: asks the tool's side at registration (the router's `check`)."""
        self.storage = storage
        self.check_tool = check_tool
        self.bus_id = bus_id
        self.accepted_by = accepted_by
        self.max_rules = max_rules
        self.index = RuleIndex()
        # Every loadable rule, enabled or not; the enabled ones are in the index.
        self._held: dict[str, HeldRule] = {}
        # A rule's position (its place in the index's order) is kept on replace,
        # disable and enable, so candidates come in the order a build from scratch gives.
        self._next_position = 0
        self._lock = asyncio.Lock()
        self._reload: asyncio.Task[None] | None = None
        self._reload_wanted = False
        self._reload_pause_s = 0.0
        #: Reloads for changes made elsewhere (`reload_soon`), since start.
        self.reloads = 0

    async def load(self) -> None:
        """Compile every stored rule; one that no longer compiles is logged and left out.

        Only what changed is compiled and indexed again: on PostgreSQL every
        other node's change makes this node load the rules."""
        async with self._lock:
            seen: set[str] = set()
            for stored in await self.storage.load_rules():
                text = dumps(stored.body)
                held = self._held.get(stored.id)
                if held is not None and held.stored == text:
                    held.enabled = stored.enabled  # unchanged: keep its compiled form, if any
                else:
                    try:
                        compiled = compile_rule(Rule.model_validate(stored.body))
                    except (ValidationError, InvalidParams) as exc:
                        log.error(
                            "bus=%s rule=%s cannot be loaded and stays inactive: %s",
                            self.bus_id,
                            stored.id,
                            exc,
                        )
                        continue
                    held = self._keep(compiled, text, enabled=stored.enabled)
                seen.add(stored.id)
                self._index(held)
            for rule_id in self._held.keys() - seen:
                self._forget(rule_id)

    def reload_soon(self) -> None:
        """The rules changed in storage: load them again.

        A notice that comes while a reload waits or runs makes one more after
        it (the running one may have read storage before that change). Notices
        come in bursts, 10,000 for 10,000 register_rule calls on another
        node (this node's own it does not hear: it applied them already): a
        reload first waits as long as the last one took, so one reload
        answers many notices and reloading takes at most about half of the
        loop's time.
        """
        self._reload_wanted = True
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._reload_while_wanted())

    async def _reload_while_wanted(self) -> None:
        while self._reload_wanted:
            await asyncio.sleep(self._reload_pause_s)
            self._reload_wanted = False
            started = time.monotonic()
            self.reloads += 1
            try:
                await self.load()
            except EventBusError as exc:
                # The watcher reports a change again after it reconnects, which retries this.
                log.warning("bus=%s could not reload rules: %s", self.bus_id, exc)
            else:
                log.debug(
                    "bus=%s rules_reloaded=%d rules=%d took_ms=%.1f",
                    self.bus_id,
                    self.reloads,
                    len(self._held),
                    (time.monotonic() - started) * 1000,
                )
                # A reload replaces long-lived objects (the rules, the index's plans): freeze
                # the new ones too, once per burst, so full collections stop walking them.
                gc_tuning.refreeze_soon()
            self._reload_pause_s = min(time.monotonic() - started, MAX_RELOAD_PAUSE_S)

    async def close(self) -> None:
        """Stop a reload that waits or runs (storage is about to close)."""
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)

    def compiled(self, rule_id: str) -> CompiledRule | None:
        held = self._held.get(rule_id)
        return None if held is None else held.compiled()

    def holds(self, rule_id: str) -> bool:
        """Whether the book holds this rule (enabled or not), without compiling it."""
        return rule_id in self._held

    def compile(self, body: dict[str, Any]) -> CompiledRule:
        """Validate and compile a rule (not stored): -32602 naming the bad part."""
        compiled = compile_rule(Rule.model_validate(body))
        action = compiled.rule.action
        topic = action.topic if isinstance(action, EmitEvent) else action.result_topic
        if topic is not None and is_reserved_topic(topic):
            where = "action.topic" if isinstance(action, EmitEvent) else "action.result_topic"
            raise ReservedTopic(
                f"invalid rule {compiled.id!r}: {where} {topic!r} is reserved: the _sys. prefix belongs to the bus"
            )
        if isinstance(action, EmitEvent) and action.bus is not None and action.bus != self.bus_id:
            self._check_target(compiled.id, action.bus)
        return compiled

    def _check_target(self, rule_id: str, target: str) -> None:
        """A rule may emit on another bus only if that bus lists this one in `accept_from_buses`."""
        buses = self.accepted_by()
        if target not in buses:
            known = ", ".join(sorted(buses))
            raise InvalidParams(
                f"invalid rule {rule_id!r}: action.bus {target!r} is not a bus of this process (buses: {known})",
                [{"loc": "action.bus", "msg": f"no bus {target!r} in this process"}],
            )
        if self.bus_id not in buses[target]:
            raise SourceNotAllowed(
                f"invalid rule {rule_id!r}: bus {target!r} does not accept events from rules of bus {self.bus_id!r}"
                f" (add {self.bus_id!r} to accept_from_buses of {target!r} in its config)"
            )

    async def register(self, body: dict[str, Any], *, replace: bool) -> bool:
        """Store a rule; True if it is new. -32004 if it exists and `replace` is false."""
        compiled = self.compile(body)
        rule = compiled.rule
        if self.check_tool is not None and isinstance(rule.action, InvokeTool):
            await self.check_tool(rule.id, rule.action)  # before the lock: it may ask a tool server
        async with self._lock:
            if rule.id in self._held and not replace:
                raise AlreadyExists(
                    f"rule {rule.id!r} already exists on bus {self.bus_id!r}; pass replace: true to replace it"
                )
            if rule.id not in self._held and len(self._held) >= self.max_rules:
                # Every rule is held in memory and listed whole by list_rules: bounded.
                raise Overloaded(
                    f"bus {self.bus_id!r} holds {len(self._held)} rules, the limit (max_rules); delete one first"
                )
            stored = _body(compiled)
            async with self._reload_if_unsure():
                created = await self.storage.put_rule(rule.id, stored, rule.enabled, now_ms())
            self._index(self._keep(compiled, dumps(stored), enabled=rule.enabled))
        return created

    async def delete(self, rule_id: str) -> None:
        async with self._lock:
            async with self._reload_if_unsure():
                deleted = await self.storage.delete_rule(rule_id)
            if not deleted:
                raise self._not_found(rule_id)
            self._forget(rule_id)

    async def set_enabled(self, rule_id: str, enabled: bool) -> None:
        async with self._lock:
            async with self._reload_if_unsure():
                changed = await self.storage.set_rule_enabled(rule_id, enabled, now_ms())
            if not changed:
                raise self._not_found(rule_id)
            held = self._held.get(rule_id)
            if held is not None:  # else stored but not loadable: stays inactive
                held.enabled = enabled
                self._index(held)

    async def get(self, rule_id: str) -> StoredRule:
        for stored in await self.storage.load_rules():
            if stored.id == rule_id:
                return stored
        raise self._not_found(rule_id)

    async def list(self) -> list[StoredRule]:
        return await self.storage.load_rules()

    @contextlib.asynccontextmanager
    async def _reload_if_unsure(self) -> AsyncIterator[None]:
        """Around a write to storage: if it fails or is cancelled, reload.

        The commit may have happened all the same (a cancel, or a connection
        lost, after COMMIT went out), and then nothing else tells this node:
        on PostgreSQL it skips notices of its own changes.
        """
        try:
            yield
        except BaseException:
            self.reload_soon()
            raise

    def _keep(self, compiled: CompiledRule, stored: bytes, *, enabled: bool) -> HeldRule:
        """Hold a new or changed rule (`stored`: its body as JSON), in its old place if it had one."""
        previous = self._held.get(compiled.id)
        if previous is not None:
            position = previous.position
        else:
            position, self._next_position = self._next_position, self._next_position + 1
        held = self._held[compiled.id] = HeldRule(
            compiled, stored, enabled=enabled, position=position
        )
        return held

    def _index(self, held: HeldRule) -> None:
        """Bring the index in line with `held`; keep its compiled form only if a
        topic that has seen events needs it now."""
        if not held.enabled:
            self.index.remove(held.id)
            held.release()
            return
        if self.index.get(held.id) is not held and not self.index.put(held.position, held):
            held.release()

    def _forget(self, rule_id: str) -> None:
        self._held.pop(rule_id, None)
        self.index.remove(rule_id)

    def _not_found(self, rule_id: str) -> NotFound:
        return NotFound(f"no rule {rule_id!r} on bus {self.bus_id!r}")


def _body(compiled: CompiledRule) -> dict[str, Any]:
    """What storage keeps of a rule: its wire form without `enabled` (a column of its own)."""
    wire = compiled.rule.wire()
    del wire["enabled"]
    return wire
