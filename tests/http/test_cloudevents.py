"""POST /events: CloudEvents from the SDK's own bindings in, events out (DESIGN §14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from eventbus_client import connect
from eventbus_core.cloudevents import BATCH_CONTENT_TYPE, to_cloudevent
from tests.http.conftest import http_app, http_bus, http_client
from tests.rules.tools.tool_servers import HttpTool, reply

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _event(**attributes: Any) -> CloudEvent:
    data = attributes.pop("data", {"repo": "acme/api", "branch": "main"})
    base = {
        "type": "repo.pushed",
        "source": "trn:user:alice:tool:github",
        "id": "delivery-1",
        "time": datetime(2026, 11, 28, 9, 0, 0, 123000, tzinfo=UTC),
        "subject": "trn:org:acme:repo:api",
        "correlationid": "c-7f3a",
        "traceparent": TRACEPARENT,
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/push.json",
        "deliveryattempt": 2,
    }
    return CloudEvent(attributes={**base, **attributes}, data=data)


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_a_cloudevent_is_stored_with_every_field_mapped(tmp_path: Path, mode: str) -> None:
    message = (to_binary_event if mode == "binary" else to_structured_event)(_event())
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        answer = await http.post("/events", content=message.body, headers=message.headers)
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["event_id"]
        async with await connect(app.url("web")) as bus:
            [event] = (await bus.poll(">")).events
    assert event.event_id == event_id
    assert event.topic == "repo.pushed"
    assert event.source_trn == "trn:user:alice:tool:github"
    assert event.target_trn == "trn:org:acme:repo:api"
    assert event.correlation_id == "c-7f3a"
    assert event.timestamp == int(
        datetime(2026, 11, 28, 9, 0, 0, 123000, tzinfo=UTC).timestamp() * 1000
    )
    assert event.payload == {"repo": "acme/api", "branch": "main"}
    assert event.metadata is not None
    assert event.metadata["traceparent"] == TRACEPARENT
    extra = event.metadata["cloudevents"]
    assert extra["id"] == "delivery-1"
    assert extra["dataschema"] == "https://example.com/push.json"
    assert extra["datacontenttype"] == "application/json"
    # A binary header is a string; structured JSON keeps the number.
    assert extra["deliveryattempt"] in (2, "2")


async def test_the_reverse_mapping_gives_the_same_cloudevent_back(tmp_path: Path) -> None:
    original = _event(deliveryattempt="2")
    message = to_structured_event(original)
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        assert (
            await http.post("/events", content=message.body, headers=message.headers)
        ).status_code == 202
        async with await connect(app.url("web")) as bus:
            [event] = (await bus.poll(">")).events
    back = to_cloudevent(event.model_dump(), default_source="trn:eventbus:web")
    sent = orjson.loads(message.body)
    assert back.pop("eventid") == event.event_id
    assert sent.pop("time").startswith("2026-11-28T09:00:00.123")
    assert back.pop("time") == "2026-11-28T09:00:00.123Z"
    assert back == sent


async def test_a_non_trn_subject_and_binary_data_are_kept(tmp_path: Path) -> None:
    event = CloudEvent(
        attributes={
            "type": "files.put",
            "source": "trn:user:bob:s3",
            "id": "f1",
            "subject": "photos/cat.png",
            "datacontenttype": "image/png",
        },
        data=b"\x89PNG\r\n",
    )
    message = to_binary_event(event)
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        assert (
            await http.post("/events", content=message.body, headers=message.headers)
        ).status_code == 202
        async with await connect(app.url("web")) as bus:
            [stored] = (await bus.poll(">")).events
    assert stored.target_trn is None
    assert stored.payload == "iVBORw0K"  # base64 of the body, kept as a string
    assert stored.metadata is not None
    assert stored.metadata["cloudevents"] == {
        "id": "f1",
        "subject": "photos/cat.png",
        "datacontenttype": "image/png",
        "data_base64": True,
    }
    back = to_cloudevent(stored.model_dump(), default_source="trn:eventbus:web")
    assert (
        back["data_base64"] == "iVBORw0K"
        and back["subject"] == "photos/cat.png"
        and "data" not in back
    )


async def test_a_repeated_id_from_the_same_source_is_stored_once(tmp_path: Path) -> None:
    # A redelivery of last week's CloudEvent: the dedup window (10 min) counts from when
    # the bus received the first one, not from its `time`.
    message = to_binary_event(_event(time=datetime.now(UTC) - timedelta(days=7)))
    async with (
        http_app(tmp_path, http_bus(persist=True, storage_path=str(tmp_path / "web.db"))) as app,
        http_client(app) as http,
    ):
        first = (await http.post("/events", content=message.body, headers=message.headers)).json()
        again = (await http.post("/events", content=message.body, headers=message.headers)).json()
        other_source = to_binary_event(
            _event(source="trn:user:carol:tool:github", time=datetime.now(UTC))
        )
        third = (
            await http.post("/events", content=other_source.body, headers=other_source.headers)
        ).json()
        async with await connect(app.url("web")) as bus:
            events = (await bus.poll(">")).events
    assert again == {"event_id": first["event_id"], "duplicate": True}
    assert third["duplicate"] is False
    assert [e.event_id for e in events] == [first["event_id"], third["event_id"]]


async def test_a_batch_is_stored_in_one_transaction(tmp_path: Path) -> None:
    events = [_event(id=f"b{i}", data={"n": i}) for i in range(3)]
    body = b"[" + b",".join(JSONFormat().write(e) for e in events) + b"]"
    bad = [*events[:2], _event(id="b9", source="https://example.com/hooks")]
    bad_body = b"[" + b",".join(JSONFormat().write(e) for e in bad) + b"]"
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        answer = await http.post(
            "/events", content=body, headers={"content-type": BATCH_CONTENT_TYPE}
        )
        refused = await http.post(
            "/events", content=bad_body, headers={"content-type": BATCH_CONTENT_TYPE}
        )
        async with await connect(app.url("web")) as bus:
            stored = (await bus.poll(">")).events
    assert answer.status_code == 202 and answer.json() == {"event_ids": [1, 2, 3]}
    assert refused.status_code == 400
    assert refused.json()["error"]["data"][0]["loc"] == "[2].source"
    assert [e.payload for e in stored] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]  # nothing of the refused batch


async def test_answers_name_the_problem(tmp_path: Path) -> None:
    bus = http_bus(allowed_sources=["trn:user:"], max_message_bytes=4096)
    async with http_app(tmp_path, bus) as app, http_client(app) as http:
        no_ce = await http.post("/events", json={"x": 1})
        missing = await http.post(
            "/events",
            content=b'{"specversion":"1.0","id":"1","source":"trn:user:a:b"}',
            headers={"content-type": "application/cloudevents+json"},
        )
        not_allowed = to_binary_event(_event(source="trn:org:acme:bot"))
        forbidden = await http.post(
            "/events", content=not_allowed.body, headers=not_allowed.headers
        )
        reserved = to_binary_event(_event(type="_sys.boot"))
        reserved_answer = await http.post(
            "/events", content=reserved.body, headers=reserved.headers
        )
        large = to_binary_event(_event(data={"blob": "x" * 5000}))
        too_large = await http.post("/events", content=large.body, headers=large.headers)
        time_headers = {**to_binary_event(_event()).headers, "ce-time": "yesterday"}
        bad_time_answer = await http.post("/events", content=b"{}", headers=time_headers)
        metrics = (await http.get("/metrics")).text
    assert no_ce.status_code == 400 and "not a CloudEvent" in no_ce.json()["error"]["message"]
    assert missing.status_code == 400 and missing.json()["error"]["data"] == [
        {"loc": "type", "msg": "required attribute is missing"}
    ]
    assert forbidden.status_code == 403 and "not allowed" in forbidden.json()["error"]["message"]
    assert reserved_answer.status_code == 400 and reserved_answer.json()["error"]["code"] == -32009
    assert too_large.status_code == 413
    assert (
        bad_time_answer.status_code == 400
        and bad_time_answer.json()["error"]["data"][0]["loc"] == "time"
    )
    assert 'eventbus_events_rejected_total{bus="web",reason="source_not_allowed"} 1.0' in metrics
    assert 'eventbus_events_rejected_total{bus="web",reason="too_large"} 1.0' in metrics


async def test_a_token_bus_refuses_without_the_bearer_token(tmp_path: Path) -> None:
    env = {"WEB_TOKEN": "s3cret"}
    message = to_binary_event(_event())
    async with (
        http_app(tmp_path, http_bus(auth_token_env="WEB_TOKEN"), env=env) as app,
        http_client(app) as http,
    ):
        without = await http.post("/events", content=message.body, headers=message.headers)
        wrong = await http.post(
            "/events",
            content=message.body,
            headers={**message.headers, "authorization": "Bearer nope"},
        )
        metrics = await http.get("/metrics")
        stream = await http.get("/events")
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
        right = await http.post(
            "/events",
            content=message.body,
            headers={**message.headers, "authorization": "Bearer s3cret"},
        )
    assert without.status_code == 401 and without.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401 and without.json()["error"]["code"] == -32006
    assert metrics.status_code == 401 and stream.status_code == 401
    assert health.status_code == 200 and ready.status_code == 200
    assert right.status_code == 202


async def test_metrics_public_opens_only_metrics(tmp_path: Path) -> None:
    env = {"WEB_TOKEN": "s3cret"}
    bus = http_bus(auth_token_env="WEB_TOKEN", http={"metrics_public": True})
    async with http_app(tmp_path, bus, env=env) as app, http_client(app) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/events")).status_code == 401


async def test_an_http_tool_with_format_cloudevents_gets_the_event_structured(
    tmp_path: Path,
) -> None:
    async with HttpTool(reply({"ok": True})) as tool:
        bus = http_bus(
            enable_rules=True,
            tools=[
                {
                    "match": "trn:org:acme:tool:*",
                    "kind": "http",
                    "url": tool.url,
                    "format": "cloudevents",
                }
            ],
        )
        async with http_app(tmp_path, bus) as app:
            async with await connect(app.url("web")) as client:
                rule = {
                    "id": "forward",
                    "topic": "repo.*",
                    "action": {
                        "type": "InvokeTool",
                        "tool_id": "trn:org:acme:tool:sink:v1",
                        "input": {},
                    },
                }
                await client.register_rule(rule)
                emitted = await client.emit(
                    "repo.pushed",
                    {"n": 1},
                    source_trn="trn:user:alice:cli",
                    correlation_id="c-1",
                    metadata={"traceparent": TRACEPARENT},
                )
                [body] = await tool.wait_for_calls(1)
                [firing] = await client.list_firings()
    assert tool.headers[0]["content-type"] == "application/cloudevents+json"
    traceparent = tool.headers[0]["traceparent"]
    assert traceparent.split("-")[1] == TRACEPARENT.split("-")[1] and traceparent != TRACEPARENT
    assert body.pop("time").endswith("Z")
    assert body == {
        "specversion": "1.0",
        "id": str(emitted.event_id),
        "source": "trn:user:alice:cli",
        "type": "repo.pushed",
        "correlationid": "c-1",
        "traceparent": TRACEPARENT,
        "eventid": emitted.event_id,
        "firingid": firing["firing_id"],
        "ruleid": "forward",
        "datacontenttype": "application/json",
        "data": {"n": 1},
    }


async def test_poll_and_history_print_cloudevents(tmp_path: Path) -> None:
    from tests.cli.test_cli_basic import run_cli

    message = to_structured_event(_event(deliveryattempt="2"))
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        assert (
            await http.post("/events", content=message.body, headers=message.headers)
        ).status_code == 202
        async with await connect(app.url("web")) as bus:
            await bus.emit("plain.event", [1, 2])
        polled = await run_cli("poll", "--url", app.url("web"), "--format", "cloudevents")
        history = await run_cli(
            "history", "--url", app.url("web"), "--format", "cloudevents", "--since", "2020-01-01"
        )
    assert polled[0] == 0 and history[0] == 0, (polled, history)
    assert polled[1] == history[1]
    first, second = (orjson.loads(line) for line in polled[1].splitlines())
    sent = orjson.loads(message.body)
    assert first.pop("eventid") == 1 and first.pop("time") == "2026-11-28T09:00:00.123Z"
    sent.pop("time")
    assert first == sent
    assert second.pop("time").endswith("Z")
    assert second == {
        "specversion": "1.0",
        "id": "2",
        "source": "trn:eventbus:web",
        "type": "plain.event",
        "eventid": 2,
        "datacontenttype": "application/json",
        "data": [1, 2],
    }


async def test_a_traceparent_header_is_the_trace_context_of_events_without_one(
    tmp_path: Path,
) -> None:
    untraced = CloudEvent(attributes={"type": "a.b", "source": "trn:user:a:b", "id": "t1"}, data={})
    message = to_structured_event(untraced)
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with http_app(tmp_path, http_bus()) as app, http_client(app) as http:
        await http.post(
            "/events", content=message.body, headers={**message.headers, "traceparent": header}
        )
        own = to_structured_event(_event(id="t2"))
        await http.post("/events", content=own.body, headers={**own.headers, "traceparent": header})
        async with await connect(app.url("web")) as bus:
            first, second = (await bus.poll(">")).events
    assert first.metadata is not None and first.metadata["traceparent"] == header
    assert (
        second.metadata is not None and second.metadata["traceparent"] == TRACEPARENT
    )  # its own wins
