"""One connection against a recording transport: what it writes, and when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eventbus_core.config import parse_config
from eventbus_server.bus import Bus
from eventbus_server.connection import Connection


class RecordingTransport(asyncio.Transport):
    """Keeps what was written; after close() it refuses writes, as uvloop does."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0  # every write goes out at once

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_nothing_is_written_once_the_connection_has_closed_its_transport(
    tmp_path: Path,
) -> None:
    """Found by tests/hostile/test_fuzz.py (once, in the long mode): a replay kept pushing
    after the bus closed a half-closed connection; one such line reached the client cut short."""
    bus = Bus(parse_config([{"id": "c", "listen": "127.0.0.1:0"}], base_dir=tmp_path).buses[0])
    connection = Connection(bus)
    transport = RecordingTransport()
    connection.connection_made(transport)
    connection.data_received(b'{"jsonrpc":"2.0","method":"ping","id":1}\n')
    connection.eof_received()  # every reply is out: the connection closes its transport
    await asyncio.sleep(0)
    assert transport.closing and transport.written == [
        b'{"jsonrpc":"2.0","id":1,"result":"pong"}\n'
    ]
    assert not connection.can_write  # subscriptions hold (and lag) instead of writing
    connection.write(b'{"jsonrpc":"2.0","method":"event","params":{}}\n')  # a replay's next push
    await asyncio.sleep(0)
    assert transport.written == [b'{"jsonrpc":"2.0","id":1,"result":"pong"}\n']


async def test_a_call_cancelled_before_it_ran_leaves_no_unawaited_coroutine(tmp_path: Path) -> None:
    """Found by tests/hostile/test_fuzz.py (the long mode's server log): a client that sends
    and resets at once left "coroutine 'list_topics' was never awaited" warnings behind."""
    import gc
    import warnings

    bus = Bus(parse_config([{"id": "c", "listen": "127.0.0.1:0"}], base_dir=tmp_path).buses[0])
    connection = Connection(bus)
    connection.connection_made(RecordingTransport())
    connection.data_received(b'{"jsonrpc":"2.0","method":"list_topics","id":1}\n')
    connection.connection_lost(ConnectionResetError())  # before the call's task ever ran
    await asyncio.sleep(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
