"""Carrying out a rule's action for one event (DESIGN.md §6).

Events a rule emits (and tool results) are the bus's own: they skip the
allow-list, carry `metadata.caused_by = {event_id, rule_id, hops}` and the
cause's correlation id (or `"evt-<id>"`), and a child of its `traceparent`
(DESIGN §13: same trace, a new span id; with spans on, the span of the
firing or the tool call). Their idempotency key is the
firing's, so a firing re-run after a crash does not emit twice within the
dedup window. An emit on this bus that meets a storage outage waits it out
(outages.py) instead of failing the firing or calling its tool again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from eventbus_core.codec import MAX_NESTING, deeper_than
from eventbus_core.envelope import EmitParams
from eventbus_core.errors import InvalidParams
from eventbus_core.event import Event
from eventbus_server import tracing
from eventbus_server.rules.outages import through_outages
from eventbus_server.rules.tools.invoke import ToolCall, ToolRouter

__all__ = ["ActionRunner", "Emit", "hops_of"]

#: Emits one event on this bus (bus id None) or a sibling bus; returns its event_id.
Emit = Callable[[str | None, EmitParams], Awaitable[int]]


def hops_of(event: Event) -> int:
    """How many rule firings led to this event (0 for an event a client emitted)."""
    caused_by = (event.metadata or {}).get("caused_by")
    hops = caused_by.get("hops") if isinstance(caused_by, dict) else None
    return hops if isinstance(hops, int) and not isinstance(hops, bool) and hops >= 0 else 0


@dataclass(frozen=True, slots=True)
class ActionRunner:
    bus_id: str
    tools: ToolRouter
    emit: Emit

    async def run(
        self, action: dict[str, Any], *, rule_id: str, event: Event, firing_id: int
    ) -> Any:
        """Carry out a rendered action; the firing's result. Tool and emit errors propagate."""
        if deeper_than(action, MAX_NESTING):
            # Templates nest the event's values inside the rule's: an event or tool input
            # that deep could not be stored or sent (and failed the commit it shared).
            raise InvalidParams(
                f"the action rendered for event {event.event_id} nests deeper than {MAX_NESTING} levels"
            )
        if action["type"] == "InvokeTool":
            return await self._invoke(action, rule_id=rule_id, event=event, firing_id=firing_id)
        params = self._derived(
            event,
            rule_id=rule_id,
            firing_id=firing_id,
            topic=action["topic"],
            payload=action.get("payload"),
            source_trn=f"trn:eventbus:{self.bus_id}:rule:{rule_id}",
            target_trn=action.get("target_trn"),
        )
        bus = action.get("bus")
        event_id = await self._emit(bus, params, firing_id)
        return {"event_id": event_id, "bus": bus or self.bus_id, "topic": params.topic}

    async def _invoke(
        self, action: dict[str, Any], *, rule_id: str, event: Event, firing_id: int
    ) -> Any:
        call = ToolCall(action["tool_id"], action.get("input"), event.as_dict(), firing_id, rule_id)
        result = await self.tools.invoke(call, timeout_ms=action.get("timeout_ms"))
        if action.get("result_topic"):
            params = self._derived(
                event,
                rule_id=rule_id,
                firing_id=firing_id,
                topic=action["result_topic"],
                payload=result,
                source_trn=action["tool_id"],
                target_trn=None,
            )
            await self._emit(None, params, firing_id)
        return result

    async def _emit(self, bus: str | None, params: EmitParams, firing_id: int) -> int:
        """Emit. On this bus, wait out a storage outage: the firing cannot be recorded
        meanwhile either, the tool is not called again for it, and the idempotency key makes
        a retry of an emit that did commit return the same event. On a sibling bus, its
        outage is an error like a tool's, retried within the rule's attempts: one bus whose
        database is down must not hold every firing of this one (at most 1,000 wait)."""
        if bus is not None and bus != self.bus_id:
            return await self.emit(bus, params)
        return await through_outages(
            lambda: self.emit(bus, params),
            doing=lambda: f"bus={self.bus_id} firing={firing_id} emits to {params.topic!r}",
        )

    def _derived(
        self,
        cause: Event,
        *,
        rule_id: str,
        firing_id: int,
        topic: str,
        payload: Any,
        source_trn: str,
        target_trn: str | None,
    ) -> EmitParams:
        return EmitParams(
            topic=topic,
            payload=payload,
            source_trn=source_trn,
            target_trn=target_trn,
            correlation_id=cause.correlation_id or f"evt-{cause.event_id}",
            metadata=self._metadata(cause, rule_id),
            idempotency_key=f"firing:{self.bus_id}:{firing_id}",
        )

    @staticmethod
    def _metadata(cause: Event, rule_id: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "caused_by": {
                "event_id": cause.event_id,
                "rule_id": rule_id,
                "hops": hops_of(cause) + 1,
            }
        }
        traceparent = tracing.outgoing_traceparent(cause.metadata)
        if traceparent is not None:
            metadata["traceparent"] = traceparent
        return metadata
