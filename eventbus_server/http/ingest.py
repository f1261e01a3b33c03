"""`POST /events`: CloudEvents 1.0 over HTTP into the bus (DESIGN §14).

    binary      ce-* headers, the data as the body (its Content-Type: datacontenttype)
    structured  Content-Type: application/cloudevents+json, one event
    batched     Content-Type: application/cloudevents-batch+json, a JSON array (≤ MAX_BATCH),
                stored in one transaction like emit_events: all of them or none

Each CloudEvent becomes emit params (eventbus_core.cloudevents), then goes
through `Bus.submit` like any client's emit: topic rules, the allow-list, the
queue bound, dedup (the CloudEvent's source + id is the idempotency key).
A W3C `traceparent` request header (an instrumented sender's) is the trace
context of events that carry no `traceparent` attribute of their own.

Bounded: the body is read to at most `http.max_body_bytes` (else the bus's
`max_message_bytes`), refused with 413 as soon as it passes, and must arrive
within the bus's `read_timeout_s`.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import unquote

from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request

from eventbus_core.cloudevents import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    from_cloudevent,
    is_json_content_type,
)
from eventbus_core.codec import DecodeError, loads
from eventbus_core.envelope import EmitParams
from eventbus_core.errors import EventBusError, InvalidParams, InvalidRequest, MessageTooLarge
from eventbus_core.locations import invalid_params
from eventbus_core.tracecontext import parse_traceparent
from eventbus_server.bus import Bus

__all__ = ["MAX_BATCH", "post_events"]

#: CloudEvents in one batched request: emit_events' bound.
MAX_BATCH = 10_000
_CE_PREFIX = "ce-"


async def post_events(bus: Bus, request: Request) -> dict[str, Any]:
    """Store the CloudEvent(s) of the request; what a 202 answers. Raises bus errors."""
    try:
        events, batch, size = await _cloudevents(bus, request)
        params = [EmitParams.model_validate(event) for event in events]
    except ValidationError as exc:
        bus.note_rejected("invalid")
        raise invalid_params("POST /events", exc) from None
    except MessageTooLarge:
        bus.note_rejected("too_large")
        raise
    except EventBusError:
        bus.note_rejected("invalid")
        raise
    if not params:
        return {"event_ids": []}
    # Weighed by its body in the queue's max_queue_bytes, like a TCP request by its line.
    results = await bus.submit(params, batch=batch, size=size)
    if batch:
        return {"event_ids": [result.event_id for result in results]}
    return {"event_id": results[0].event_id, "duplicate": results[0].duplicate}


async def _cloudevents(bus: Bus, request: Request) -> tuple[list[dict[str, Any]], bool, int]:
    """The emit params of each CloudEvent in the request, whether it is a batch, and its body's size."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    body = await _body(bus, request)
    if media == BATCH_CONTENT_TYPE:
        items = _json(body, "the body")
        if not isinstance(items, list):
            raise InvalidParams(
                "invalid CloudEvents batch: the body must be a JSON array of CloudEvents"
            )
        if len(items) > MAX_BATCH:
            raise MessageTooLarge(
                f"a batch holds at most {MAX_BATCH} CloudEvents, not {len(items)}"
            )
        events, batch = (
            [from_cloudevent(item, where=f"[{index}].") for index, item in enumerate(items)],
            True,
        )
    elif media == STRUCTURED_CONTENT_TYPE:
        events, batch = [from_cloudevent(_json(body, "the body"))], False
    elif _CE_PREFIX + "specversion" in request.headers:
        events, batch = [from_cloudevent(_binary_event(request, content_type, body))], False
    else:
        raise InvalidRequest(
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
            f"{STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}"
        )
    header = request.headers.get("traceparent")
    if header is not None and parse_traceparent(header) is not None:
        for event in events:
            event["metadata"].setdefault("traceparent", header)
    return events, batch, len(body)


def _binary_event(request: Request, content_type: str, body: bytes) -> dict[str, Any]:
    """Binary mode: attributes from `ce-*` headers (percent-decoded), data from the body."""
    event: dict[str, Any] = {
        name[len(_CE_PREFIX) :].lower(): unquote(value)
        for name, value in request.headers.items()
        if name.lower().startswith(_CE_PREFIX)
    }
    if content_type:
        event["datacontenttype"] = content_type
    if not body:
        return event
    if is_json_content_type(content_type):
        event["data"] = _json(body, "data")
    elif content_type.lower().startswith("text/"):
        try:
            event["data"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["data_base64"] = base64.b64encode(body).decode()
    else:
        event["data_base64"] = base64.b64encode(body).decode()
    return event


def _json(body: bytes, what: str) -> Any:
    try:
        return loads(body)
    except DecodeError as exc:
        raise InvalidParams(
            f"invalid CloudEvent: {what} is not JSON ({exc})", [{"loc": what, "msg": "not JSON"}]
        ) from None


async def _body(bus: Bus, request: Request) -> bytes:
    """The request body, refused (413) once it passes the limit, or (400) when it does
    not arrive within read_timeout_s."""
    limit = bus.config.http_body_limit
    length = request.headers.get("content-length", "")
    if length.strip().isdigit() and int(length) > limit:
        raise MessageTooLarge(
            f"request body of {int(length)} bytes is larger than the limit ({limit} bytes)"
        )
    data = bytearray()
    try:
        async with asyncio.timeout(bus.config.read_timeout_s):
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    raise MessageTooLarge(f"request body larger than the limit ({limit} bytes)")
    except TimeoutError:
        raise InvalidRequest(
            f"the request body did not arrive within {bus.config.read_timeout_s:g} s (read_timeout_s)"
        ) from None
    except ClientDisconnect:
        raise InvalidRequest("the client went away before its body arrived") from None
    return bytes(data)
