"""GET /metrics: the series of DESIGN §14, read with prometheus-client's own parser."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from eventbus_client import connect
from eventbus_server.app import EventBusApp
from tests.http.conftest import http_app, http_bus, http_client, stuck_reader, subscribed
from tests.rules.tools.tool_servers import HttpTool, fail

#: Every family DESIGN §14 names (the parser drops counters' `_total`).
FAMILIES = {
    "eventbus_events_emitted": "counter",
    "eventbus_events_rejected": "counter",
    "eventbus_emit_duration_seconds": "histogram",
    "eventbus_commit_batch_size": "histogram",
    "eventbus_queue_depth": "gauge",
    "eventbus_connections": "gauge",
    "eventbus_subscriptions": "gauge",
    "eventbus_subscriber_lagged": "counter",
    "eventbus_last_event_id": "gauge",
    "eventbus_rule_firings": "counter",
    "eventbus_rule_firing_duration_seconds": "histogram",
    "eventbus_tool_calls": "counter",
    "eventbus_consumer_pending": "gauge",
    "eventbus_consumer_ack_pending": "gauge",
    "eventbus_consumer_redelivered": "counter",
    "eventbus_consumer_dead": "gauge",
    "eventbus_storage_errors": "counter",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(app: EventBusApp) -> tuple[dict[str, str], Samples]:
    async with http_client(app) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        types[family.name] = family.type
        for sample in family.samples:
            assert sample.labels["bus"] == "web", sample  # every series labelled bus
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "bus"))
            samples[(sample.name, labels)] = sample.value
    return types, samples


async def test_every_series_is_there_and_moves(tmp_path: Path) -> None:
    async with HttpTool(fail("down")) as tool:
        bus_config = http_bus(
            enable_rules=True,
            retry={"attempts": 2, "backoff_ms": 0},
            tools=[{"match": "trn:org:acme:tool:*", "kind": "http", "url": tool.url}],
            allowed_sources=["trn:user:"],
        )
        async with http_app(tmp_path, bus_config) as app:
            types, before = await scrape(app)
            assert types == FAMILIES
            assert before[("eventbus_events_emitted_total", ())] == 0
            async with await connect(app.url("web")) as bus:
                rule = {
                    "id": "hook",
                    "topic": "deploy.*",
                    "action": {
                        "type": "InvokeTool",
                        "tool_id": "trn:org:acme:tool:ci:v1",
                        "input": {},
                    },
                }
                await bus.register_rule(rule)
                await bus.emit_many(
                    [
                        {"topic": "logs.line", "payload": n, "source_trn": "trn:user:a:cli"}
                        for n in range(10)
                    ]
                )
                await bus.emit("deploy.started", {}, source_trn="trn:user:a:cli")
                try:
                    await bus.emit("logs.line", 1, source_trn="trn:org:acme:bot")
                except Exception:  # SourceNotAllowed: counted as rejected
                    pass
                await bus.subscribe("logs.>")
                await app.buses["web"].wait_idle()
                _, after = await scrape(app)
    assert after[("eventbus_events_emitted_total", ())] == 11
    assert after[("eventbus_events_rejected_total", (("reason", "source_not_allowed"),))] == 1
    assert after[("eventbus_emit_duration_seconds_count", ())] == 2
    assert after[("eventbus_emit_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert after[("eventbus_commit_batch_size_sum", ())] == 11
    assert after[("eventbus_last_event_id", ())] == 11
    assert after[("eventbus_connections", ())] == 1
    assert after[("eventbus_subscriptions", ())] == 1
    assert after[("eventbus_queue_depth", ())] == 0
    assert after[("eventbus_rule_firings_total", (("rule", "hook"), ("status", "failed")))] == 1
    assert after[("eventbus_rule_firing_duration_seconds_count", (("rule", "hook"),))] == 1
    assert (
        after[("eventbus_tool_calls_total", (("kind", "http"), ("outcome", "error")))] == 2
    )  # two attempts
    assert after[("eventbus_storage_errors_total", ())] == 0


async def test_a_subscriber_that_lags_is_counted(tmp_path: Path) -> None:
    bus_config = http_bus(subscriber_buffer=20, max_output_bytes=65_536)
    async with http_app(tmp_path, bus_config) as app:
        stuck = stuck_reader(
            app.address("web"),
            b'{"jsonrpc":"2.0","id":1,"method":"subscribe_topic","params":{"topic":">"}}\n',
        )
        web = app.buses["web"]
        await subscribed(app)
        async with await connect(app.url("web")) as bus:
            for _ in range(40):
                await bus.emit_many([{"topic": "flood", "payload": "x" * 2000} for _ in range(100)])
                if web.info()["stats"]["lagged"]:
                    break
            _, samples = await scrape(app)
        stuck.close()
    assert samples[("eventbus_subscriber_lagged_total", ())] == 1
    assert samples[("eventbus_subscriptions", ())] == 0


async def test_consumers_lag_is_scraped(tmp_path: Path) -> None:
    async with http_app(
        tmp_path, http_bus(persist=True, storage_path=str(tmp_path / "c.db"))
    ) as app:
        async with await connect(app.url("web")) as bus:
            await bus.create_consumer("workers", topic="job.>", start="all")
            await bus.emit_many([{"topic": "job.queued", "payload": n} for n in range(5)])
            await app.buses["web"].wait_idle()
            _, lagging = await scrape(app)
            first, second = await bus.fetch("workers", max=2)
            await bus.nack("workers", [first.event.event_id])
            await bus.term("workers", [second.event.event_id], reason="poison")
            [again] = await bus.fetch("workers", max=1)
            _, working = await scrape(app)
    label = (("consumer", "workers"),)
    assert lagging[("eventbus_consumer_pending", label)] == 5
    assert lagging[("eventbus_consumer_ack_pending", label)] == 0
    assert again.deliveries == 2
    assert working[("eventbus_consumer_pending", label)] == 3
    assert working[("eventbus_consumer_ack_pending", label)] == 1
    assert working[("eventbus_consumer_redelivered_total", label)] == 1
    assert working[("eventbus_consumer_dead", label)] == 1
