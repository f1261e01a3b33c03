"""The SQLite file of a running server is deleted or replaced: emits answer -32008, nothing
more is acknowledged, and the server's log says so once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from eventbus_client import StorageUnavailable, connect
from tests.processes import ServerProcess
from tests.sqlite_files import delete, replace

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("lose", "what"),
    [
        (delete, "was deleted or moved away while the bus ran"),
        (replace, "was replaced by another file while the bus ran"),
    ],
    ids=["deleted", "replaced"],
)
async def test_emits_after_the_file_is_lost_answer_32008_and_the_log_says_it_once(
    tmp_path: Path, lose: Callable[[Path], None], what: str
) -> None:
    db = tmp_path / "data" / "global.db"
    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps(
            [
                {
                    "id": "global",
                    "listen": "127.0.0.1:0",
                    "persist": True,
                    "storage_path": "data/global.db",
                }
            ]
        )
    )
    server = await ServerProcess.start(config)
    try:
        async with await connect(server.url("global")) as bus:
            before = [(await bus.emit("before", i)).event_id for i in range(10)]
            assert before == list(range(1, 11))

            lose(db)
            message = f"SQLite file {db} {what}; nothing more is written to it; restart the bus"
            with pytest.raises(StorageUnavailable) as refused:
                await bus.emit("after", 0)
            assert refused.value.code == -32008
            assert str(refused.value).startswith(message)

            # Pipelined, batched, sequential: not one more emit is acknowledged.
            outcomes = await asyncio.gather(
                *(bus.emit("after", i) for i in range(200)),
                bus.emit_many([{"topic": "after", "payload": i} for i in range(100)]),
                return_exceptions=True,
            )
            assert all(
                isinstance(o, StorageUnavailable) and str(o).startswith(message) for o in outcomes
            )
            with pytest.raises(StorageUnavailable, match="nothing more is written to it"):
                await bus.poll(">")
            # The bus itself still answers.
            assert (await bus.bus_info())["id"] == "global"
    finally:
        server.proc.send_signal(signal.SIGTERM)
        assert await server.proc.wait() == 0
    log = await server.stderr_rest()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert f"ERROR eventbus.storage bus=global {message}" in errors[0]
