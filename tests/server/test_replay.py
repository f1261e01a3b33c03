"""`replay_events`: the bus emits stored events again (DESIGN §5, §9), on every storage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import EventBusClient, InvalidParams, ReservedTopic, SourceNotAllowed, connect
from eventbus_core.envelope import EmitParams
from eventbus_core.event import now_ms
from eventbus_server import replay as replay_module
from eventbus_server.app import EventBusApp
from eventbus_server.replay import ReplayRequest, replay
from eventbus_server.storage import reader as reader_module
from eventbus_server.storage.base import READ_PAGE_BYTES, EventQuery, NewEvent
from eventbus_server.storage.sqlite.store import SqliteStorage
from tests import postgres
from tests.conftest import start_buses

EVER = {"since_ts": 0, "until_ts": 2**63 - 1}


def storage_of(kind: str, tmp_path: Path) -> dict[str, Any]:
    if kind == "sqlite":
        return {"persist": True, "storage_path": str(tmp_path / "replay.db")}
    if kind == "postgres":
        return {"persist": True, "storage_url": postgres.storage_url(tmp_path)}
    return {}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def replay_all(bus: EventBusClient, **params: Any) -> list[tuple[int, bool]]:
    """Every call of a whole replay, as (replayed, done)."""
    calls: list[tuple[int, bool]] = []
    after_id, until_id = params.pop("after_id", 0), params.pop("until_id", None)
    while True:
        result = await bus.replay_events(after_id=after_id, until_id=until_id, **params)
        calls.append((result.replayed, result.done))
        after_id, until_id = result.last_replayed_id, result.until_id
        if result.done:
            return calls


async def all_events(bus: EventBusClient, topic: str = ">") -> list[Any]:
    events, since = [], 0
    while page := (await bus.poll(topic, since=since, limit=10_000)).events:
        events += page
        since = page[-1].event_id
    return events


async def test_rule_made_events_replay_on_an_allow_listed_bus_and_rules_fire_again(
    tmp_path: Path, kind: str
) -> None:
    """Issue 12, item 2: the copy of an EmitEvent rule's event keeps the rule's source_trn,
    which the allow-list would refuse from a client; the bus replays it as its own."""
    config = {
        "id": "global",
        "enable_rules": True,
        "allowed_sources": ["trn:user:", "trn:org:"],
        **storage_of(kind, tmp_path),
    }
    async with start_buses(tmp_path, config) as app, await connect(app.url("global")) as bus:
        await bus.register_rule(
            {
                "id": "relay",
                "topic": "orders.created",
                "action": {
                    "type": "EmitEvent",
                    "topic": "orders.seen",
                    "payload": "{{ $.payload }}",
                },
            }
        )
        for n in range(3):
            await bus.emit(
                "orders.created",
                {"n": n},
                source_trn="trn:user:alice:cli:v1",
                correlation_id=f"c{n}",
            )
        await app.buses["global"].wait_idle()
        originals = await all_events(bus)
        assert [e.source_trn for e in originals].count("trn:eventbus:global:rule:relay") == 3

        result = await bus.replay_events(**EVER)
        assert (result.replayed, result.last_replayed_id, result.until_id, result.done) == (
            6,
            originals[-1].event_id,
            originals[-1].event_id,
            True,
        )
        await app.buses["global"].wait_idle()
        after = await all_events(bus)
        copies = [e for e in after if (e.metadata or {}).get("replay_of") is not None]
        assert [c.metadata["replay_of"] for c in copies] == [e.event_id for e in originals]  # type: ignore[index]
        for copy, original in zip(copies, originals, strict=True):
            assert (
                copy.topic,
                copy.payload,
                copy.source_trn,
                copy.target_trn,
                copy.correlation_id,
            ) == (
                original.topic,
                original.payload,
                original.source_trn,
                original.target_trn,
                original.correlation_id,
            )
            assert copy.timestamp >= original.timestamp
            assert {k: v for k, v in (copy.metadata or {}).items() if k != "replay_of"} == (
                original.metadata or {}
            )
        # The three orders.created copies fired the rule again: three more orders.seen events.
        seen = [e for e in after if e.topic == "orders.seen"]
        assert len(seen) == 3 + 3 + 3  # originals, their copies, and what the copies caused
        assert (await bus.get_rule("relay"))["fired"] == 6


async def test_a_window_replays_each_event_once_in_pages_and_never_its_own_copies(
    tmp_path: Path, kind: str
) -> None:
    async with (
        start_buses(tmp_path, {"id": "b", **storage_of(kind, tmp_path)}) as app,
        await connect(app.url("b")) as bus,
    ):
        start = now_ms()
        await bus.emit_many([{"topic": "jobs.a", "payload": i} for i in range(25)])
        await bus.emit("other.x", "not in the topic")
        # A window that reaches into the future: copies made now fall inside it by time,
        # so only the id bound keeps them out.
        params = {"since_ts": start - 1000, "until_ts": now_ms() + 3_600_000, "topic": "jobs.>"}
        calls = await replay_all(bus, limit=10, **params)
        assert calls == [(10, False), (10, False), (5, True)]
        jobs = await all_events(bus, "jobs.>")
        assert len(jobs) == 50
        assert [e.metadata["replay_of"] for e in jobs[25:]] == [e.event_id for e in jobs[:25]]  # type: ignore[index]
        # Resumed later from the middle with the same bounds: exactly the rest, once.
        middle = jobs[14].event_id
        calls = await replay_all(
            bus, to_topic="jobs.again", after_id=middle, until_id=jobs[24].event_id, **params
        )
        again = await all_events(bus, "jobs.again")
        assert [e.metadata["replay_of"] for e in again] == [e.event_id for e in jobs[15:25]]  # type: ignore[index]


async def test_dry_run_counts_and_emits_nothing(tmp_path: Path, kind: str) -> None:
    async with (
        start_buses(tmp_path, {"id": "b", **storage_of(kind, tmp_path)}) as app,
        await connect(app.url("b")) as bus,
    ):
        await bus.emit_many(
            [
                {"topic": "d.x", "payload": i, "source_trn": "trn:user:a:b" if i % 2 else None}
                for i in range(7)
            ]
        )
        result = await bus.replay_events(dry_run=True, source_trn="trn:user:", **EVER)
        assert (result.replayed, result.done) == (3, True)
        assert len(await all_events(bus)) == 7
        assert await app.buses["b"].storage.count() == 7


async def test_copies_go_to_another_bus_only_with_its_consent(tmp_path: Path) -> None:
    buses = [
        {"id": "src"},
        {"id": "audit", "accept_from_buses": ["src"], "allowed_sources": ["trn:org:"]},
        {"id": "vault"},
    ]
    async with start_buses(tmp_path, *buses) as app, await connect(app.url("src")) as bus:
        await bus.emit_many(
            [{"topic": "a.b", "payload": i, "source_trn": "trn:user:x:y"} for i in range(3)]
        )
        result = await bus.replay_events(to_bus="audit", to_topic="a.copied", **EVER)
        assert (result.replayed, result.done) == (3, True)
        async with await connect(app.url("audit")) as audit:
            copies = (await audit.poll("a.copied")).events
        # Like rule-made events, replayed ones are the source bus's: the audit allow-list does not apply.
        assert [c.payload for c in copies] == [0, 1, 2] and {c.source_trn for c in copies} == {
            "trn:user:x:y"
        }

        with pytest.raises(
            SourceNotAllowed, match="bus 'vault' does not accept events replayed from bus 'src'"
        ):
            await bus.replay_events(to_bus="vault", **EVER)
        with pytest.raises(
            InvalidParams, match="to_bus: no bus 'nope' runs in this process"
        ) as unknown:
            await bus.replay_events(to_bus="nope", **EVER)
        assert unknown.value.data == [
            {
                "loc": "to_bus",
                "msg": "no bus 'nope' runs in this process (buses: audit, src, vault)",
            }
        ]
        assert await app.buses["vault"].storage.count() == 0


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"until_ts": 5}, "since_ts"),
        ({"since_ts": -1, "until_ts": 5}, "since_ts"),
        ({"since_ts": 0, "until_ts": 2**63}, "until_ts"),
        ({"since_ts": 10, "until_ts": 5}, "until_ts"),
        ({**EVER, "limit": 10_001}, "limit"),
        ({**EVER, "limit": 0}, "limit"),
        ({**EVER, "after_id": "5"}, "after_id"),
        ({**EVER, "until_id": -1}, "until_id"),
        ({**EVER, "to_topic": "a.*"}, "to_topic"),
        ({**EVER, "topic": "a..b"}, "topic"),
        ({**EVER, "source_trn": "user:*"}, "source_trn"),
        ({**EVER, "dry_run": 1}, "dry_run"),
        ({**EVER, "colour": "red"}, "colour"),
    ],
)
async def test_bad_params_are_refused_naming_the_field(
    client: EventBusClient, params: dict[str, Any], loc: str
) -> None:
    with pytest.raises(InvalidParams) as refused:
        await client.call("replay_events", params)
    assert refused.value.code == -32602
    assert loc in [d["loc"] for d in refused.value.data or []], refused.value.data
    assert (
        refused.value.message.startswith("invalid params for replay_events: ")
        and loc in refused.value.message
    )


async def test_a_reserved_to_topic_is_refused_before_anything_is_read(
    client: EventBusClient,
) -> None:
    await client.emit("a.b", 1)
    with pytest.raises(ReservedTopic, match=r"to_topic '_sys\.x' is reserved"):
        await client.replay_events(to_topic="_sys.x", **EVER)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])  # memory holds its events already
async def test_a_call_holds_one_page_of_the_log_reader_at_a_time(tmp_path: Path, kind: str) -> None:
    """Events of 900 KB: a replay reads them through the log reader, in pages of at
    most READ_PAGE_BYTES (8 MiB), so never all ten at once."""
    async with (
        start_buses(tmp_path, {"id": "b", **storage_of(kind, tmp_path)}) as app,
        await connect(app.url("b")) as bus,
    ):
        for _ in range(10):  # a request line holds at most max_message_bytes (1 MiB)
            await bus.emit("big", "x" * 900_000)
        storage = app.buses["b"].storage
        reads: list[tuple[int | None, int]] = []
        query = storage.query

        async def spy(q: EventQuery) -> list[Any]:
            page = await query(q)
            if (
                q.from_ts is not None
            ):  # the replay's reads (on PostgreSQL the commit feed reads too)
                reads.append((q.max_bytes, len(page)))
            return page

        storage.query = spy  # type: ignore[method-assign]
        result = await bus.replay_events(topic="big", to_topic="big.copy", **EVER)
        assert (result.replayed, result.done) == (10, True)
        assert all(max_bytes == READ_PAGE_BYTES for max_bytes, _ in reads)
        assert max(n for _, n in reads) < 10 and len(reads) >= 2


async def test_a_call_stops_after_its_time_budget_and_the_next_goes_on(
    monkeypatch: pytest.MonkeyPatch, client: EventBusClient
) -> None:
    monkeypatch.setattr(
        replay_module, "CALL_BUDGET_S", 0.0
    )  # every call stops after its first page
    await client.emit_many([{"topic": "many", "payload": i} for i in range(2500)])
    calls = await replay_all(client, topic="many", to_topic="many.copy", **EVER)
    assert [n for n, _ in calls] == [1000, 1000, 500] and calls[-1][1]
    assert [e.metadata["replay_of"] for e in await all_events(client, "many.copy")] == list(
        range(1, 2501)
    )  # type: ignore[index]


async def test_a_page_that_fails_after_others_were_stored_answers_with_what_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resume point stays exact: the failed page is not counted, the next call meets the error."""
    monkeypatch.setattr(reader_module, "READ_PAGE", 3)  # pages of three events
    storage = SqliteStorage(tmp_path / "pages.db")
    await storage.open()
    await storage.append([NewEvent("p.x", i, 1000 + i) for i in range(6)])
    emitted: list[list[EmitParams]] = []

    async def emit(copies: Any) -> None:
        if len(emitted) == 1:
            raise RuntimeError("the bus refused the second page")
        emitted.append(list(copies))

    request = ReplayRequest(since_ts=0, until_ts=2**63 - 1, limit=6)
    result = await replay(storage, emit, request, until_id=6)
    assert (result.replayed, result.last_replayed_id, result.done) == (3, 3, False)
    with pytest.raises(RuntimeError):
        await replay(
            storage, emit, ReplayRequest(since_ts=0, until_ts=2**63 - 1, after_id=3), until_id=6
        )
    assert [c.metadata for c in emitted[0]] == [
        {"replay_of": 1},
        {"replay_of": 2},
        {"replay_of": 3},
    ]
    await storage.close()


async def test_a_client_that_sends_many_replays_at_once_gets_them_one_at_a_time(
    app: EventBusApp, client: EventBusClient
) -> None:
    await client.emit_many([{"topic": "m.x", "payload": i} for i in range(50)])
    results = await asyncio.gather(*(client.replay_events(dry_run=True, **EVER) for _ in range(20)))
    assert {r.replayed for r in results} == {50}
