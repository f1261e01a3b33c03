"""The hot emit path's callback contract (bus.submit_rows → writer → `done`), in process.

Each request's callback is called exactly once, from the write loop (or, for a
lone request on an idle writer, before `submit_rows` returns), with its
`Committed` or the error; a callback that raises is logged and does not stop
the writer or the other emitters of its group commit; `event_ids()` is a
range only where the ids really are consecutive.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from eventbus_core.errors import ReservedTopic
from eventbus_core.event import NewEvent
from eventbus_server.writer import Committed, Outcome
from tests.in_process import running_bus

T0 = 1_764_300_000_000


def rows(count: int, key: str | None = None) -> list[NewEvent]:
    return [NewEvent("t", i, T0, idempotency_key=key) for i in range(count)]


class Outcomes:
    def __init__(self) -> None:
        self.got: list[list[Outcome]] = []

    def callback(self) -> Any:
        mine: list[Outcome] = []
        self.got.append(mine)
        return mine.append


async def test_each_request_is_answered_once_with_its_ids(
    tmp_path: Path, storage_fields: dict[str, Any]
) -> None:
    async with running_bus(tmp_path, **storage_fields) as bus:
        outcomes = Outcomes()
        bus.submit_rows(rows(3), batch=True, done=outcomes.callback())
        bus.submit_rows(rows(1), done=outcomes.callback())
        # Repeats of one key in a batch: ids are not consecutive, the repeats answer the first.
        bus.submit_rows(rows(3, key="k") + rows(1), batch=True, done=outcomes.callback())
        await bus.wait_idle()
        assert [len(o) for o in outcomes.got] == [1, 1, 1]
        first, single, keyed = (o[0] for o in outcomes.got)
        assert isinstance(first, Committed) and isinstance(single, Committed)
        assert isinstance(keyed, Committed)
        a = first.event_ids()
        assert a == list(range(a[0], a[0] + 3)) and a == [r.event_id for r in first.results()]
        assert single.event_ids() == [a[-1] + 1]
        assert single.first().event_id == a[-1] + 1 and not single.first().duplicate
        k = keyed.event_ids()
        assert k == [a[-1] + 2] * 3 + [a[-1] + 3]
        assert [r.duplicate for r in keyed.results()] == [False, True, True, False]


async def test_a_raising_callback_is_logged_and_the_others_are_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")

    def explode(outcome: Outcome) -> None:
        raise RuntimeError("boom")

    async with running_bus(tmp_path) as bus:
        outcomes = Outcomes()
        bus.submit_rows(rows(1), done=explode)
        bus.submit_rows(rows(1), done=outcomes.callback())
        await bus.wait_idle()
        later = asyncio.get_running_loop().create_future()
        bus.submit_rows(rows(1), done=later.set_result)
        assert isinstance(await later, Committed)  # the writer still runs
        assert len(outcomes.got[0]) == 1
    assert any("callback failed" in r.getMessage() for r in caplog.records)


async def test_a_refused_request_raises_and_queues_nothing(tmp_path: Path) -> None:
    async with running_bus(tmp_path) as bus:
        outcomes = Outcomes()
        with pytest.raises(ReservedTopic, match=r"^events\[1\]: topic '_sys.x'"):
            bus.submit_rows(
                [NewEvent("t", 1, T0), NewEvent("_sys.x", 2, T0)],
                batch=True,
                done=outcomes.callback(),
            )
        await bus.wait_idle()
        assert outcomes.got == [[]]
        assert bus.info()["stats"]["emitted"] == 0


async def test_a_request_with_idempotency_keys_always_goes_through_the_queue(
    tmp_path: Path,
) -> None:
    async with running_bus(tmp_path) as bus:
        outcomes = Outcomes()
        bus.submit_rows(rows(1, key="k"), done=outcomes.callback(), at_once=True)
        assert outcomes.got == [[]]  # its key is looked up first, by the write loop
        await bus.wait_idle()
        assert isinstance(outcomes.got[0][0], Committed)
