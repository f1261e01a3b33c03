"""CloudEvents 1.0 ⇄ events, sans-IO (DESIGN.md §14).

Inbound, a CloudEvent (structured JSON; the HTTP side turns binary mode into
the same attributes first) becomes the fields of an emit:

    type            → topic
    source          → source_trn (must be a TRN: `trn` is a URI scheme)
    subject         → target_trn when it is a TRN, else metadata.cloudevents.subject
    id              → idempotency key `ce:<source>:<id>` (a repeat is a duplicate),
                      and metadata.cloudevents.id, so the event maps back to the same id
    time            → timestamp (ms)
    correlationid   → correlation_id
    traceparent     → metadata.traceparent
    data            → payload
    data_base64     → payload (the base64 string as it came), metadata.cloudevents.data_base64 = true
    anything else   → metadata.cloudevents (datacontenttype, dataschema, extensions)

Outbound (`to_cloudevent`) is the reverse, so a CloudEvent posted and read
back is the same CloudEvent, plus the extension `eventid` (the bus's id).
An event that never was a CloudEvent gets `id` = its event_id and, without
a source_trn, the bus's own source.

Problems are `InvalidParams` naming the attribute (`source: must be a TRN …`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from eventbus_core.errors import InvalidParams
from eventbus_core.topics import validate_topic
from eventbus_core.trn import is_valid_trn

__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "from_cloudevent",
    "idempotency_key",
    "is_json_content_type",
    "to_cloudevent",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

#: Attributes with a place of their own in an event; the rest go to metadata.cloudevents.
_MAPPED = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "correlationid",
        "traceparent",
        "data",
        "data_base64",
    }
)
_REQUIRED = ("specversion", "id", "source", "type")
#: CloudEvents 1.0: attribute names are lower-case ASCII letters and digits.
_NAME_RE = re.compile(r"[a-z0-9]{1,64}")
#: The longest idempotency key an event may carry (EmitParams).
_MAX_KEY = 255
#: The longest `id` accepted (the spec sets none; a key must stay bounded).
MAX_ID_CHARS = 1024


def _invalid(where: str, attribute: str, message: str) -> InvalidParams:
    loc = f"{where}{attribute}".rstrip(".")
    text = f"{loc}: {message}" if loc else message
    return InvalidParams(f"invalid CloudEvent: {text}", [{"loc": loc, "msg": message}])


def idempotency_key(source: str, ce_id: str) -> str:
    """`ce:<source>:<id>`; past 255 characters, its SHA-256 (`ce:sha256:<hex>`) instead."""
    key = f"ce:{source}:{ce_id}"
    if len(key) <= _MAX_KEY:
        return key
    return "ce:sha256:" + hashlib.sha256(key.encode()).hexdigest()


def is_json_content_type(content_type: str | None) -> bool:
    """`application/json`, `text/json`, `…+json` (parameters ignored); absent counts as JSON."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _string(attrs: dict[str, Any], name: str, where: str) -> str:
    value = attrs[name]
    if not isinstance(value, str) or not value:
        raise _invalid(where, name, "must be a non-empty string")
    return value


def _time_ms(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise _invalid(where, "time", "must be an RFC 3339 timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(where, "time", f"not an RFC 3339 timestamp: {value[:64]!r}") from None
    if moment.tzinfo is None:
        raise _invalid(where, "time", f"needs a UTC offset or Z (RFC 3339): {value[:64]!r}")
    ms = int(moment.timestamp() * 1000)
    if ms < 0:
        raise _invalid(where, "time", "must not be before 1970")
    return ms


def from_cloudevent(event: Any, *, where: str = "") -> dict[str, Any]:
    """A structured-mode CloudEvent (a JSON object) as `emit_event` params; `where`
    prefixes attribute names in errors (`[3].` in a batch)."""
    source, ce_id, topic = _required(event, where)
    extra: dict[str, Any] = {"id": ce_id}
    params: dict[str, Any] = {
        "topic": topic,
        "source_trn": source,
        "idempotency_key": idempotency_key(source, ce_id),
    }
    metadata: dict[str, Any] = {}
    if event.get("subject") is not None:
        subject = _string(event, "subject", where)
        if is_valid_trn(subject):
            params["target_trn"] = subject
        else:
            extra["subject"] = subject
    if event.get("time") is not None:
        params["timestamp"] = _time_ms(event["time"], where)
    if event.get("correlationid") is not None:
        params["correlation_id"] = _string(event, "correlationid", where)
    if event.get("traceparent") is not None:
        metadata["traceparent"] = _string(event, "traceparent", where)
    if "data_base64" in event:
        if not isinstance(event["data_base64"], str):
            raise _invalid(where, "data_base64", "must be a base64 string")
        params["payload"] = event["data_base64"]
        extra["data_base64"] = True
    else:
        params["payload"] = event.get("data")
    extra.update(_other_attributes(event, where))
    metadata["cloudevents"] = extra
    params["metadata"] = metadata
    return params


def _required(event: Any, where: str) -> tuple[str, str, str]:
    """`source`, `id` and the topic from `type`, checked; and `specversion` 1.0."""
    if not isinstance(event, dict):
        raise _invalid(where, "", "a CloudEvent must be a JSON object")
    for name in _REQUIRED:
        if name not in event:
            raise _invalid(where, name, "required attribute is missing")
    if event["specversion"] != "1.0":
        raise _invalid(
            where, "specversion", f'must be "1.0", not {str(event["specversion"])[:16]!r}'
        )
    ce_id = _string(event, "id", where)
    if len(ce_id) > MAX_ID_CHARS:
        raise _invalid(where, "id", f"longer than {MAX_ID_CHARS} characters")
    source = _string(event, "source", where)
    if not is_valid_trn(source):
        raise _invalid(
            where, "source", f"must be a TRN (trn:<platform>:<scope>:…), not {source[:80]!r}"
        )
    try:
        topic = validate_topic(event["type"])
    except ValueError as exc:
        raise _invalid(where, "type", str(exc)) from None
    if "data" in event and "data_base64" in event:
        raise _invalid(where, "data_base64", "give data or data_base64, not both")
    return source, ce_id, topic


def _other_attributes(event: dict[str, Any], where: str) -> dict[str, Any]:
    """Attributes without a field of their own (datacontenttype, dataschema, extensions)."""
    other: dict[str, Any] = {}
    for name, value in event.items():
        if name in _MAPPED or value is None:
            continue
        if not _NAME_RE.fullmatch(name):
            raise _invalid(
                where, name, "attribute names are lower-case letters and digits (CloudEvents 1.0)"
            )
        if isinstance(value, dict | list):
            raise _invalid(
                where, name, "an attribute is a string, number or boolean, not an object or array"
            )
        other[name] = value
    return other


def _rfc3339(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_cloudevent(
    event: dict[str, Any], *, default_source: str, extensions: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A stored event (its wire form) as a structured-mode CloudEvent (the reverse mapping).

    `extensions` are added as they are (a tool call's `firingid`, `ruleid`).
    """
    metadata = event.get("metadata") or {}
    extra = metadata.get("cloudevents")
    extra = dict(extra) if isinstance(extra, dict) else {}
    ce_id = extra.pop("id", None)
    base64 = extra.pop("data_base64", False) is True
    subject = event.get("target_trn") or extra.pop("subject", None)
    extra.pop("subject", None)
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": ce_id if isinstance(ce_id, str) and ce_id else str(event["event_id"]),
        "source": event.get("source_trn") or default_source,
        "type": event["topic"],
        "time": _rfc3339(event["timestamp"]),
    }
    if subject is not None:
        out["subject"] = subject
    if event.get("correlation_id") is not None:
        out["correlationid"] = event["correlation_id"]
    if isinstance(metadata.get("traceparent"), str):
        out["traceparent"] = metadata["traceparent"]
    for name, value in extra.items():
        if (
            isinstance(name, str)
            and _NAME_RE.fullmatch(name)
            and isinstance(value, str | int | float | bool)
        ):
            out[name] = value
    out["eventid"] = event["event_id"]
    if extensions:
        out.update(extensions)
    payload = event.get("payload")
    if base64 and isinstance(payload, str):
        out["data_base64"] = payload
    elif payload is not None:
        out.setdefault("datacontenttype", "application/json")
        out["data"] = payload
    return out
