"""Topics as MCP resources (DESIGN §12), read and watched through the bus client.

    eventbus://<bus>/topics            every topic with its count and last event (list_topics)
    eventbus://<bus>/topics/<topic>    its latest events, newest last (poll_events, desc, bounded)

Watching a resource (`resources/subscribe`, or a `subscriptions/listen` stream
on 2026-era connections) is one bus subscription (`subscribe_topic`; the list
resource watches `>`); each event it brings is a level trigger, so events that
arrive while a notification is being sent are folded into the next one: a
busy topic costs the agent one `notifications/resources/updated` per round
trip, never one per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

import mcp_types
from mcp.shared.exceptions import MCPError

from eventbus_cli.mcp_server.tools import fit
from eventbus_client import EventBusClient
from eventbus_client.subscription import Subscription
from eventbus_core.codec import dumps
from eventbus_core.errors import EventBusError
from eventbus_core.topics import validate_topic_pattern

__all__ = ["TopicResources"]

#: resources/list names at most this many topics (the rest are read through the list resource).
MAX_LISTED_TOPICS = 1000


class TopicResources:
    """The resources of one bus.

    Args:
        client: the bus client every read and watch goes through.
        bus_id: the `<bus>` of the URIs.
        latest_events: how many events a topic resource holds.
        max_reply_bytes: a read's contents are cut to this.
    """

    def __init__(
        self, client: EventBusClient, bus_id: str, *, latest_events: int, max_reply_bytes: int
    ) -> None:
        self.client = client
        self.bus_id = bus_id
        self.latest_events = latest_events
        self.max_reply_bytes = max_reply_bytes
        self.topics_uri = f"eventbus://{bus_id}/topics"

    def topic_uri(self, topic: str) -> str:
        return f"{self.topics_uri}/{quote(topic, safe=':/')}"

    def topic_of(self, uri: str) -> str | None:
        """The topic (pattern) a URI names; None for the list of topics. -32602 for anything else."""
        if uri == self.topics_uri:
            return None
        prefix = self.topics_uri + "/"
        topic = unquote(uri[len(prefix) :]) if uri.startswith(prefix) else ""
        try:
            validate_topic_pattern(topic)
        except ValueError:
            raise MCPError(
                mcp_types.INVALID_PARAMS,
                f"unknown resource {uri!r}: expected {self.topics_uri} or {prefix}<topic>",
            ) from None
        return topic

    async def list(self) -> mcp_types.ListResourcesResult:
        topics = (await self.client.list_topics())[:MAX_LISTED_TOPICS]
        resources = [
            mcp_types.Resource(
                uri=self.topics_uri,
                name="topics",
                description=f"Every topic of bus {self.bus_id} with its event count and last event",
                mime_type="application/json",
            )
        ]
        resources += [
            mcp_types.Resource(
                uri=self.topic_uri(t["topic"]),
                name=t["topic"],
                description=f"The latest {self.latest_events} events on {t['topic']} ({t['count']} stored)",
                mime_type="application/json",
            )
            for t in topics
        ]
        return mcp_types.ListResourcesResult(resources=resources)

    def templates(self) -> mcp_types.ListResourceTemplatesResult:
        template = mcp_types.ResourceTemplate(
            uri_template=self.topics_uri + "/{topic}",
            name="topic",
            description=f"The latest {self.latest_events} events on a topic (or topic pattern) of bus {self.bus_id}",
            mime_type="application/json",
        )
        return mcp_types.ListResourceTemplatesResult(resource_templates=[template])

    async def read(self, uri: str) -> mcp_types.ReadResourceResult:
        topic = self.topic_of(uri)
        content: dict[str, Any]
        if topic is None:
            content = fit(
                {"topics": await self.client.list_topics()},
                "topics",
                "cursor",
                "topic",
                self.max_reply_bytes,
            )
            content.pop("cursor", None)
        else:
            page = await self.client.call(
                "poll_events", {"topic": topic, "order": "desc", "limit": self.latest_events}
            )
            newest_first = fit(
                {"events": page["events"]}, "events", "cursor", "event_id", self.max_reply_bytes
            )
            content = {"topic": topic, "events": newest_first["events"][::-1]}
        text = dumps(content).decode()
        return mcp_types.ReadResourceResult(
            contents=[
                mcp_types.TextResourceContents(uri=uri, mime_type="application/json", text=text)
            ]
        )

    async def subscribe(self, uri: str) -> Subscription:
        """The bus subscription behind a watch of `uri` (live events only)."""
        topic = self.topic_of(uri)
        return await self.client.subscribe(">" if topic is None else topic)


async def pump(subscription: Subscription, notify: Callable[[], Awaitable[None]]) -> None:
    """Call `notify` after events arrive, once per burst, until cancelled or the subscription ends."""
    try:
        async for _ in subscription:
            while True:  # fold what else has arrived into this notification
                try:
                    await subscription.next(timeout_s=0)
                except TimeoutError:
                    break
            await notify()
    except (StopAsyncIteration, EventBusError):
        pass  # the client closed, or the bus refused the resubscription: nothing more will come
    finally:
        await asyncio.shield(subscription.unsubscribe())
