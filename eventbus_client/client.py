"""The async client: `async with await connect("tcp://127.0.0.1:4010") as bus: ...`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from eventbus_client.calls import wire_event, without_none
from eventbus_client.connection import RpcConnection, open_connection
from eventbus_client.consumer_calls import ConsumerCalls
from eventbus_client.schedule_calls import ScheduleCalls, scheduled_result
from eventbus_client.subscription import FiringSubscription, Subscription
from eventbus_core.envelope import EmitParams, EventEnvelope
from eventbus_core.errors import ConnectionLost, EventBusError
from eventbus_core.results import (
    BusInfo,
    EmitResult,
    FiringInfo,
    RegisterResult,
    RuleInfo,
    RuleTestResult,
    ScheduledResult,
    TopicInfo,
)

_AnySubscription = Subscription | FiringSubscription

__all__ = ["EventBusClient", "PollResult", "ReplayResult", "connect"]

log = logging.getLogger("eventbus.client")

#: Reconnect back-off for subscriptions: first try after 50 ms, at most every 2 s.
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class PollResult:
    events: list[EventEnvelope]
    next_since: int


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """One `replay_events` call: how many it replayed (or would, in a dry run) and where
    to go on from: `after_id=last_replayed_id`, the same `until_id`, until `done`."""

    replayed: int
    last_replayed_id: int
    until_id: int
    done: bool


class EventBusClient(ConsumerCalls, ScheduleCalls):
    """A connection to one bus. Methods raise the same errors the bus raised."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._conn: RpcConnection | None = None
        self._subscriptions: dict[str, _AnySubscription] = {}
        self._lock = asyncio.Lock()
        self._reconnector: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the connection is up now (subscriptions reconnect by themselves when it is not)."""
        return self._conn is not None and not self._conn.is_closed

    async def __aenter__(self) -> EventBusClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection ----------------------------------------------------------

    async def _connect(self) -> RpcConnection:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed:
                return self._conn
            if self._closing:
                raise ConnectionLost("the client is closed")
            conn = await open_connection(
                self.url,
                on_notification=self._on_notification,
                timeout_s=self._timeout_s,
                ssl_context=self._ssl_context,
            )
            conn.on_close = self._on_connection_closed
            if self._token is not None:
                await conn.call("authenticate", {"token": self._token})
            self._conn = conn
            for sub in list(self._subscriptions.values()):
                await self._resubscribe(conn, sub)
            return conn

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call any bus method by name (connecting again first if the connection dropped)."""
        conn = (
            self._conn
            if self._conn is not None and not self._conn.is_closed
            else await self._connect()
        )
        return await conn.call(method, dict(params) if params else None)

    def _on_connection_closed(self) -> None:
        if self._closing or not self._subscriptions:
            return
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_forever())

    async def _reconnect_forever(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._closing and self._subscriptions:
            try:
                await self._connect()
                return
            except ConnectionLost as exc:
                log.info(
                    "reconnect to %s failed (%s); retrying in %.2fs", self.url, exc.message, delay
                )
            except EventBusError as exc:
                for sub in list(self._subscriptions.values()):
                    sub.fail(exc)
                self._subscriptions.clear()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def close(self) -> None:
        """Close the connection; subscriptions end."""
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
        for sub in list(self._subscriptions.values()):
            sub.end()
        self._subscriptions.clear()
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()

    # -- events --------------------------------------------------------------

    @overload
    async def emit(
        self,
        topic: str,
        payload: Any = None,
        *,
        source_trn: str | None = None,
        target_trn: str | None = None,
        correlation_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        idempotency_key: str | None = None,
        deliver_at: None = None,
        delay_ms: None = None,
    ) -> EmitResult: ...

    @overload
    async def emit(
        self,
        topic: str,
        payload: Any = None,
        *,
        source_trn: str | None = None,
        target_trn: str | None = None,
        correlation_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        idempotency_key: str | None = None,
        deliver_at: int,
        delay_ms: None = None,
    ) -> ScheduledResult: ...

    @overload
    async def emit(
        self,
        topic: str,
        payload: Any = None,
        *,
        source_trn: str | None = None,
        target_trn: str | None = None,
        correlation_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        idempotency_key: str | None = None,
        deliver_at: None = None,
        delay_ms: int,
    ) -> ScheduledResult: ...

    async def emit(
        self,
        topic: str,
        payload: Any = None,
        *,
        source_trn: str | None = None,
        target_trn: str | None = None,
        correlation_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        idempotency_key: str | None = None,
        deliver_at: int | None = None,
        delay_ms: int | None = None,
    ) -> EmitResult | ScheduledResult:
        """Emit one event; returns once the bus has committed it (or, delayed, stored it).

        Args:
            topic: dot-separated topic, e.g. `repo.pushed`.
            payload: any JSON value.
            source_trn: who emits (required on buses with `allowed_sources`).
            target_trn: who the event is for.
            correlation_id: ties related events together.
            metadata: free-form JSON object.
            timestamp: epoch milliseconds; the bus fills it when omitted.
            idempotency_key: a repeat within the bus's dedup window stores nothing
                and returns the first event's id with `duplicate=True` (delayed: a
                repeat while the first is pending answers with the first).
            deliver_at: append the event at this epoch-ms time instead of now; the
                result is then a `ScheduledResult` (schedule_id, deliver_at) and the
                event gets its id when it is appended.
            delay_ms: the same, this many milliseconds from now.
        """
        if (
            source_trn is None
            and target_trn is None
            and correlation_id is None
            and metadata is None
            and timestamp is None
            and idempotency_key is None
            and deliver_at is None
            and delay_ms is None
        ):
            # The usual emit: no options to sift, no copy of the params on the way down.
            conn = self._conn
            if conn is None or conn.is_closed:
                conn = await self._connect()
            result = await conn.call("emit_event", {"topic": topic, "payload": payload})
            return EmitResult(
                result["event_id"], result["timestamp"], result.get("duplicate", False)
            )
        params = without_none(
            topic=topic,
            source_trn=source_trn,
            target_trn=target_trn,
            correlation_id=correlation_id,
            metadata=dict(metadata) if metadata is not None else None,
            timestamp=timestamp,
            idempotency_key=idempotency_key,
            deliver_at=deliver_at,
            delay_ms=delay_ms,
        )
        params["payload"] = payload
        result = await self.call("emit_event", params)
        if "schedule_id" in result:
            return scheduled_result(result)
        return EmitResult(result["event_id"], result["timestamp"], result.get("duplicate", False))

    async def emit_many(self, events: Iterable[Mapping[str, Any] | EmitParams]) -> list[int]:
        """Emit several events in one transaction (all or nothing); their ids in order."""
        conn = self._conn
        if conn is not None and not conn.is_closed:
            # The line is encoded before the call first awaits: plain dicts need no copy.
            wire = [e if type(e) is dict else wire_event(e) for e in events]
            result = await conn.call("emit_events", {"events": wire})
        else:
            result = await self.call("emit_events", {"events": list(map(wire_event, events))})
        return list(result["event_ids"])

    async def poll(
        self,
        topic: str = ">",
        *,
        since: int = 0,
        limit: int = 100,
        source_trn: str | None = None,
        target_trn: str | None = None,
        correlation_id: str | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
        order: Literal["asc", "desc"] = "asc",
    ) -> PollResult:
        """Stored events after the exclusive cursor `since` (before it, with `order="desc"`).

        Args:
            topic: a topic pattern (`*` one token, `>` the rest).
            since: the `next_since` of the previous page (0 = from the start).
            limit: at most this many events (≤ 10 000).
            source_trn, target_trn: TRN patterns or prefixes (`trn:user:`).
            correlation_id: exact match.
            from_ts, to_ts: inclusive epoch-millisecond bounds.
            order: "asc" (oldest first) or "desc" (newest first).
        """
        params = without_none(
            topic=topic,
            since=since,
            limit=limit,
            source_trn=source_trn,
            target_trn=target_trn,
            correlation_id=correlation_id,
            from_ts=from_ts,
            to_ts=to_ts,
            order=order,
        )
        result = await self.call("poll_events", params)
        events = [EventEnvelope.model_validate(e) for e in result["events"]]
        return PollResult(events, result["next_since"])

    async def get_event(self, event_id: int) -> EventEnvelope | None:
        """The stored event with this id; None when there is none (or it was pruned)."""
        page = await self.poll(since=event_id - 1, limit=1)
        return page.events[0] if page.events and page.events[0].event_id == event_id else None

    async def subscribe(
        self,
        topic: str = ">",
        *,
        since: int | None = None,
        source_trn: str | None = None,
        target_trn: str | None = None,
    ) -> Subscription:
        """Live events matching `topic`; with `since`, stored events after it first.

        The returned subscription is an async iterator; it reconnects and resumes
        by itself, without gaps or duplicates, until `unsubscribe()` or `close()`.
        """
        sub = Subscription(
            topic=topic,
            since=since,
            source_trn=source_trn,
            target_trn=target_trn,
            unsubscribe=self._unsubscribe,
            set_reading=self._set_reading,
        )
        conn = (
            self._conn
            if self._conn is not None and not self._conn.is_closed
            else await self._connect()
        )
        await self._resubscribe(conn, sub)
        return sub

    async def _resubscribe(self, conn: RpcConnection, sub: _AnySubscription) -> None:
        if sub.id is not None:
            self._subscriptions.pop(sub.id, None)

        def register(result: dict[str, Any]) -> None:
            sub.subscribed(result)
            self._subscriptions[result["subscription"]] = sub

        await conn.call(sub.method, sub.subscribe_params(), on_result=register)

    async def _unsubscribe(self, sub: _AnySubscription) -> None:
        if sub.id is not None and self._subscriptions.pop(sub.id, None) is not None:
            with contextlib.suppress(EventBusError):
                await self.call("unsubscribe", {"subscription": sub.id})

    def _set_reading(self, reading: bool) -> None:
        if self._conn is not None:
            self._conn.set_reading(reading)

    def _on_notification(self, method: str, params: Any) -> None:
        if not isinstance(params, dict):
            return
        sub = self._subscriptions.get(params.get("subscription"))  # type: ignore[arg-type]
        if sub is None:
            return
        if method == "event":
            sub.deliver(params.get("event") or {})
        elif method == "rule_fired":
            sub.deliver(params)
        elif method == "lagged":
            # The bus dropped us for falling behind: subscribe again from where we are.
            self._subscriptions.pop(sub.id, None)  # type: ignore[arg-type]
            asyncio.get_running_loop().create_task(self._resume_after_lag(sub))

    async def _resume_after_lag(self, sub: _AnySubscription) -> None:
        try:
            conn = (
                self._conn
                if self._conn is not None and not self._conn.is_closed
                else await self._connect()
            )
            await self._resubscribe(conn, sub)
        except ConnectionLost:
            self._subscriptions[sub.id] = sub  # type: ignore[index]  # the reconnect loop picks it up
        except EventBusError as exc:
            sub.fail(exc)

    # -- rules ---------------------------------------------------------------

    async def register_rule(
        self, rule: Mapping[str, Any], *, replace: bool = False
    ) -> RegisterResult:
        """Register a rule (DESIGN.md §4); `{id, created}`.

        Args:
            rule: the rule's fields: id, topic, match_fields, pattern, action, enabled, description, retry.
            replace: replace a rule with the same id instead of failing with AlreadyExists.
        """
        params = {**rule, "replace": True} if replace else dict(rule)
        result: RegisterResult = await self.call("register_rule", params)
        return result

    async def list_rules(self) -> list[RuleInfo]:
        rules: list[RuleInfo] = (await self.call("list_rules"))["rules"]
        return rules

    async def get_rule(self, rule_id: str) -> RuleInfo:
        rule: RuleInfo = await self.call("get_rule", {"id": rule_id})
        return rule

    async def delete_rule(self, rule_id: str) -> None:
        await self.call("delete_rule", {"id": rule_id})

    async def set_rule_enabled(self, rule_id: str, enabled: bool) -> RuleInfo:
        rule: RuleInfo = await self.call("set_rule_enabled", {"id": rule_id, "enabled": enabled})
        return rule

    async def test_rule(
        self,
        event: Mapping[str, Any],
        *,
        rule: Mapping[str, Any] | None = None,
        rule_id: str | None = None,
    ) -> RuleTestResult:
        """Dry-run a rule (given, or stored under `rule_id`) against `event`: `{matched, failures, action}`."""
        params = without_none(rule=dict(rule) if rule is not None else None, rule_id=rule_id)
        result: RuleTestResult = await self.call("test_rule", {**params, "event": dict(event)})
        return result

    async def list_firings(
        self,
        *,
        rule_id: str | None = None,
        status: str | None = None,
        since: int = 0,
        limit: int = 100,
        order: str = "asc",
    ) -> list[FiringInfo]:
        """Recorded firings; `status="failed"` lists the dead letters."""
        params = without_none(rule_id=rule_id, status=status, since=since, limit=limit, order=order)
        firings: list[FiringInfo] = (await self.call("list_firings", params))["firings"]
        return firings

    async def retry_firings(
        self,
        firing_ids: Sequence[int] | None = None,
        *,
        rule_id: str | None = None,
        status: str = "failed",
    ) -> int:
        """Run dead letters again (same firing_id, attempts continue); how many run.

        Args:
            firing_ids: these firings (of `status`); None: every firing in `status`
                of `rule_id`, or of the bus.
            rule_id: only this rule's firings.
            status: which final firings: "failed" (dead letters), "skipped" or "ok".

        At most 10,000 a call: call again while it returns 10,000.
        """
        params = without_none(
            firing_ids=list(firing_ids) if firing_ids is not None else None,
            rule_id=rule_id,
            status=status,
        )
        return int((await self.call("retry_firings", params))["retried"])

    async def subscribe_firings(self, *, rule_id: str | None = None) -> FiringSubscription:
        """Finished firings as they happen (all rules, or one)."""
        sub = FiringSubscription(rule_id=rule_id, unsubscribe=self._unsubscribe)
        conn = (
            self._conn
            if self._conn is not None and not self._conn.is_closed
            else await self._connect()
        )
        await self._resubscribe(conn, sub)
        return sub

    # -- replay --------------------------------------------------------------

    async def replay_events(
        self,
        *,
        since_ts: int,
        until_ts: int,
        topic: str = ">",
        source_trn: str | None = None,
        target_trn: str | None = None,
        to_topic: str | None = None,
        to_bus: str | None = None,
        dry_run: bool = False,
        after_id: int = 0,
        until_id: int | None = None,
        limit: int = 1000,
    ) -> ReplayResult:
        """Have the bus emit stored events again, oldest first (one call of a replay).

        Each copy keeps payload, source, target and correlation id, gets
        `metadata.replay_of` and a new timestamp, and fires rules like any event.
        Call again with `after_id=result.last_replayed_id` and
        `until_id=result.until_id` until `result.done`.

        Args:
            since_ts, until_ts: the inclusive window of event timestamps (epoch ms).
            topic: a topic pattern; source_trn, target_trn: TRN patterns or prefixes.
            to_topic: emit the copies on this topic instead.
            to_bus: emit them on this bus of the same server (it must list this bus
                in its accept_from_buses).
            dry_run: count what would be replayed; emit nothing.
            after_id: replay events after this id (the cursor).
            until_id: and up to this id; None: the newest event now (the first call).
            limit: at most this many events this call (≤ 10 000); a call may stop
                sooner (after about two seconds of work).
        """
        params = without_none(
            since_ts=since_ts,
            until_ts=until_ts,
            topic=topic,
            source_trn=source_trn,
            target_trn=target_trn,
            to_topic=to_topic,
            to_bus=to_bus,
            dry_run=dry_run,
            after_id=after_id,
            until_id=until_id,
            limit=limit,
        )
        result = await self.call("replay_events", params)
        return ReplayResult(
            result["replayed"], result["last_replayed_id"], result["until_id"], result["done"]
        )

    # -- bus -----------------------------------------------------------------

    async def list_topics(self) -> list[TopicInfo]:
        topics: list[TopicInfo] = (await self.call("list_topics"))["topics"]
        return topics

    async def bus_info(self) -> BusInfo:
        info: BusInfo = await self.call("bus_info")
        return info

    async def ping(self) -> str:
        return str(await self.call("ping"))


async def connect(
    url: str,
    *,
    token: str | None = None,
    timeout_s: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> EventBusClient:
    """Connect to a bus at `tcp://host:port`.

    Args:
        url: `tcp://host:port` (or `tls://host:port`).
        token: sent with `authenticate` on every (re)connect, for buses with a token.
        timeout_s: how long to wait for the TCP connection.
        ssl_context: for `tls://` URLs with a private CA.

    Raises:
        ConnectionLost: the bus cannot be reached.
        Unauthorized: the token was refused.
    """
    client = EventBusClient(url, token=token, timeout_s=timeout_s, ssl_context=ssl_context)
    await client._connect()
    return client
