"""One emitter's bad event never fails another's in a group commit (DESIGN.md §3).

The writer commits many clients' requests in one transaction. When that
commit fails for anything but a storage outage, the requests are committed
again without the one at fault, which alone gets the error (-32602 for data
the database refuses). Real SQLite files and the real PostgreSQL; memory
storage holds any value, so it has no poison to test.

Validation in front of the bus refuses most poison before it is queued, so
most tests here queue it with `Bus.submit` and `model_construct`, as if
validation had let it through: the writer must be safe on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventbus_client import InvalidParams, StorageUnavailable, connect
from eventbus_core.envelope import EmitParams
from eventbus_server.app import EventBusApp
from eventbus_server.bus import Bus, EmitResult
from eventbus_server.storage import EventQuery, PostgresStorage, SqliteStorage
from tests import postgres
from tests.conftest import start_buses

T0 = 1_764_300_000_000


def _deep_payload() -> Any:
    payload: Any = "bottom"
    for _ in range(300):  # deeper than the JSON encoder nests
        payload = [payload]
    return payload


#: Per backend: (params of a poisoned emit, the start of the error it must get).
POISONS: dict[str, list[tuple[dict[str, Any], str]]] = {
    "sqlite": [
        (
            {"timestamp": 2**64},
            "SQLite cannot store this event: timestamp 18446744073709551616 does not fit in a 64-bit integer",
        ),
        (
            {"payload": _deep_payload()},
            "cannot store this event: its payload or metadata cannot be encoded as JSON",
        ),
    ],
    "postgres": [
        (
            {"timestamp": 2**64},
            "PostgreSQL cannot store this event: timestamp 18446744073709551616 does not fit",
        ),
        (
            {"correlation_id": "c-\x00"},
            r"PostgreSQL cannot store this event: correlation_id contains \u0000",
        ),
        (
            {"payload": {"note": "a\x00b"}},
            r"PostgreSQL cannot store this event: payload.note contains \u0000",
        ),
        (
            {"metadata": {"trace": "\x00"}},
            r"PostgreSQL cannot store this event: metadata.trace contains \u0000",
        ),
        (
            {"payload": _deep_payload()},
            "cannot store this event: its payload or metadata cannot be encoded as JSON",
        ),
    ],
}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def app(backend: str, tmp_path: Path) -> AsyncIterator[EventBusApp]:
    storage: dict[str, Any] = (
        {"storage_path": str(tmp_path / "iso.db")}
        if backend == "sqlite"
        else {"storage_url": postgres.storage_url(tmp_path)}
    )
    async with start_buses(tmp_path, {"id": "iso", "persist": True, **storage}) as running:
        yield running


@pytest.fixture
def bus(app: EventBusApp) -> Bus:
    return app.buses["iso"]


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What the server logged at ERROR or above (an internal error would be there)."""
    caplog.set_level(logging.WARNING, logger="eventbus")
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def unchecked(topic: str, **fields: Any) -> EmitParams:
    """An emit as validation would have let it through (it no longer does for some)."""
    return EmitParams.model_construct(topic=topic, **{"timestamp": T0, **fields})


async def stored(bus: Bus, topic: str = ">") -> list[Any]:
    return [
        (e.event_id, e.topic, e.payload)
        for e in await bus.poll(EventQuery(topic=topic, limit=10_000))
    ]


def submit_all(bus: Bus, requests: list[EmitParams]) -> asyncio.Future[list[Any]]:
    """Queue every request before the writer runs, so they share one group commit."""
    futures = [bus.submit([params]) for params in requests]
    return asyncio.gather(*futures, return_exceptions=True)


async def test_poisoned_requests_fail_alone_and_every_good_one_commits(
    backend: str, bus: Bus, errors_logged: Callable[[], list[str]]
) -> None:
    poisons = POISONS[backend]
    requests: list[EmitParams] = []
    expected: list[str | None] = []
    for i in range(600):
        if i % 9 == 4:
            fields, message = poisons[(i // 9) % len(poisons)]
            requests.append(unchecked("bad", **{"payload": i, **fields}))
            expected.append(message)
        else:
            requests.append(unchecked("good", payload=i))
            expected.append(None)

    outcomes = await submit_all(bus, requests)

    good_ids = []
    for outcome, message, params in zip(outcomes, expected, requests, strict=True):
        if message is None:
            assert isinstance(outcome, list), outcome
            [result] = outcome
            assert isinstance(result, EmitResult) and not result.duplicate
            good_ids.append((result.event_id, "good", params.payload))
        else:
            assert isinstance(outcome, InvalidParams), outcome
            assert outcome.code == -32602
            assert outcome.message.startswith(message), outcome.message
    assert [event_id for event_id, _, _ in good_ids] == sorted(
        {event_id for event_id, _, _ in good_ids}
    )
    assert await stored(bus) == good_ids  # exactly the good events, in the order sent
    assert bus.info()["stats"]["batches_split"] >= 1  # they did share a commit that failed
    assert errors_logged() == []


async def test_one_poisoned_request_costs_a_few_commits_not_one_per_request(
    backend: str, bus: Bus
) -> None:
    """Halving finds it in log2(n) steps: a poisoned emit cannot make the writer
    commit thousands of requests one by one while everyone else waits."""
    poison, _ = POISONS[backend][0]
    requests = [unchecked("good", payload=i) for i in range(1024)]
    requests[700] = unchecked("bad", **poison)
    outcomes = await submit_all(bus, requests)
    assert sum(isinstance(o, InvalidParams) for o in outcomes) == 1
    stats = bus.info()["stats"]
    assert stats["emitted"] == 1023
    assert stats["batches_split"] == 10  # 1024, 512, …, 2: one failing part per level
    assert stats["batches"] == 10  # the other half at each level commits whole


async def test_idempotency_keys_stay_right_when_a_commit_is_split(
    backend: str, bus: Bus, errors_logged: Callable[[], list[str]]
) -> None:
    poison, _ = POISONS[backend][0]
    requests = [
        unchecked("good", payload="a", idempotency_key="k1"),  # stored
        unchecked("bad", payload="p", **poison),  # fails alone
        unchecked(
            "good", payload="b", idempotency_key="k1"
        ),  # a duplicate of "a", as without the poison
        unchecked("bad", payload="q", idempotency_key="k2", **poison),  # fails: k2 is not stored
        unchecked("good", payload="c", idempotency_key="k2"),  # so this one is the first with k2
        unchecked("good", payload="d", idempotency_key="k2"),  # and this one its duplicate
    ]
    a, p, b, q, c, d = await submit_all(bus, requests)

    assert isinstance(p, InvalidParams) and isinstance(q, InvalidParams)
    assert [r.duplicate for r in (a[0], b[0], c[0], d[0])] == [False, True, False, True]
    assert b[0].event_id == a[0].event_id and d[0].event_id == c[0].event_id
    assert await stored(bus) == [(a[0].event_id, "good", "a"), (c[0].event_id, "good", "c")]
    assert errors_logged() == []


async def test_an_emit_events_call_with_a_poisoned_event_fails_whole_and_alone(
    backend: str, bus: Bus, errors_logged: Callable[[], list[str]]
) -> None:
    poison, _ = POISONS[backend][0]
    before = bus.submit([unchecked("good", payload="before")])
    batch = bus.submit(
        [unchecked("batch", payload=0), unchecked("batch", payload=1, **poison)], batch=True
    )
    after = bus.submit([unchecked("good", payload="after")])
    outcomes = await asyncio.gather(before, batch, after, return_exceptions=True)

    assert isinstance(outcomes[1], InvalidParams)  # all or nothing: neither event is stored
    assert "cannot store an event on topic 'batch'" in outcomes[1].message
    assert await stored(bus) == [
        (outcomes[0][0].event_id, "good", "before"),
        (outcomes[2][0].event_id, "good", "after"),
    ]
    assert errors_logged() == []


async def test_pipelined_poison_from_one_client_leaves_its_other_emits_alone(
    backend: str, app: EventBusApp, errors_logged: Callable[[], list[str]]
) -> None:
    """Over the wire, as the attack came. Its poison no longer reaches the writer: a
    timestamp beyond int64 and U+0000 in a string are refused at the door (-32602) on
    every bus, before the queue. No value known to pass that door fails a commit, so the
    tests above put the poison into a shared group commit with `Bus.submit`."""
    poison: dict[str, Any] = (
        {"timestamp": 2**63} if backend == "sqlite" else {"correlation_id": "c-\x00"}
    )
    async with await connect(app.url("iso")) as client:
        sends = [
            client.emit("bad", i, **poison) if i % 10 == 3 else client.emit("good", i)
            for i in range(1000)
        ]
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        good = [(o.event_id, "good", i) for i, o in enumerate(outcomes) if i % 10 != 3]
        assert all(isinstance(o, InvalidParams) for i, o in enumerate(outcomes) if i % 10 == 3)
        assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i % 10 != 3)
        assert len({event_id for event_id, _, _ in good}) == 900
        page = await client.poll(">", limit=10_000)
        assert [(e.event_id, e.topic, e.payload) for e in page.events] == good
    assert errors_logged() == []


async def _lose_storage(bus: Bus) -> None:
    storage = bus.storage
    if isinstance(storage, SqliteStorage):
        storage.path.unlink()
        return
    assert isinstance(storage, PostgresStorage)
    conn = await asyncpg.connect(postgres.ADMIN_URL)
    try:
        await conn.execute(f'DROP SCHEMA "{storage.schema}" CASCADE')
    finally:
        await conn.close()


async def test_a_storage_outage_still_fails_every_good_request_with_32008(
    backend: str, bus: Bus, errors_logged: Callable[[], list[str]]
) -> None:
    poison, _ = POISONS[backend][0]
    assert not isinstance(
        (await submit_all(bus, [unchecked("good", payload="first")]))[0], BaseException
    )
    await _lose_storage(bus)
    requests = [
        unchecked("good", payload=i) if i % 5 else unchecked("bad", **poison) for i in range(50)
    ]
    outcomes = await submit_all(bus, requests)
    for params, outcome in zip(requests, outcomes, strict=True):
        if params.topic == "good":
            assert isinstance(outcome, StorageUnavailable) and outcome.code == -32008, outcome
        else:
            # Bad either way; asyncpg may refuse the value before the server says the table is gone.
            assert isinstance(outcome, StorageUnavailable | InvalidParams), outcome
    if backend == "sqlite":
        # The file check comes first: an outage is not retried part by part.
        assert bus.info()["stats"]["batches_split"] == 0
    # SQLite says once, at ERROR, that its file is gone; nothing else is logged as an error.
    assert len(errors_logged()) == (1 if backend == "sqlite" else 0)
