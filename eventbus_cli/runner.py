"""Runs a command's coroutine and maps every failure to one line and an exit code.

Each problem is one line on stderr, never wrapped when stderr is not a
terminal (output.err_console), and says what to do in CLI terms: the flag,
not the wire field (errors.in_flags).
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.markup import escape

from eventbus_cli.errors import EXIT_BUS_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, UsageError, in_flags
from eventbus_cli.output import err_console
from eventbus_cli.targets import Target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient
    from eventbus_core.errors import ConnectionLost, EventBusError

T = TypeVar("T")

#: Set by the root callback from `--debug`.
debug = False

#: Appended to a refused or timed-out connection: what to check.
UNREACHABLE_HINT = "is `eventbus serve` running? check --url / --bus / --config"


def fail(message: str, code: int, hint: str | None = None) -> typer.Exit:
    """Print `error: message` (and the hint, on the same line); the exit to raise."""
    line = f"[bold red]error:[/] {escape(message)}"
    if hint:
        line += f" [dim]({escape(hint)})[/]"
    err_console.print(line)
    if debug:
        err_console.print(traceback.format_exc(), markup=False)
    return typer.Exit(code)


def run(target: Target | None, main: Callable[[], Awaitable[T]]) -> T:
    """Run `main()` on an event loop; errors become a red line and an exit code."""
    # Imported here, not at the top: `eventbus --help` must start fast.
    import asyncio

    from eventbus_core.errors import ConnectionLost, EventBusError

    try:
        return asyncio.run(_call(main))
    except UsageError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except ConnectionLost as exc:
        message, hint = unreachable(exc, target)
        raise fail(message, EXIT_UNREACHABLE, hint) from None
    except EventBusError as exc:
        raise fail(bus_error(exc, target), EXIT_BUS_ERROR) from None


def unreachable(exc: ConnectionLost, target: Target | None) -> tuple[str, str | None]:
    """What went wrong reaching `target`, and what to check (None when the reason says it)."""
    url = target.url if target is not None else ""
    reason = exc.message.removeprefix(f"cannot connect to {url}: ")
    where = (
        f"bus {target.bus_id} at {url}"
        if target is not None and target.bus_id
        else url or "the bus"
    )
    if "TLS" in reason:
        return f"cannot reach {where}: {reason}", None
    if reason == "connection closed" and url.startswith("tcp://"):
        # A TLS bus hangs up on a client that does not start with a TLS handshake.
        plain = url.removeprefix("tcp://")
        return (
            f"{where} closed the connection without answering; if it is a TLS bus, use tls://{plain}",
            None,
        )
    return f"cannot reach {where}: {reason}", UNREACHABLE_HINT


def bus_error(exc: EventBusError, target: Target | None) -> str:
    """The bus's error in CLI words, with its code; a line more for each problem it left out."""
    from eventbus_core.errors import Unauthorized

    message = exc.message
    if isinstance(exc, Unauthorized) and message.startswith("wrong token"):
        message += "; check --token or $EVENTBUS_TOKEN"
    token_env = target.token_env if target is not None else None
    line = f"{in_flags(message, token_env=token_env)} (code {exc.code})"
    if isinstance(exc.data, list):
        found = [f"{d.get('loc')}: {d.get('msg')}" for d in exc.data if isinstance(d, dict)]
        # The bus usually says each problem in the message already; add only what it
        # left out, one line each.
        line += "".join(f"\n  {in_flags(problem)}" for problem in found if problem not in message)
    return line


async def _call(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


def run_client(target: Target, main: Callable[[EventBusClient], Awaitable[T]]) -> T:
    """`run`, with a client connected to `target` for the duration of `main`."""

    async def connected() -> T:
        from eventbus_client import connect

        async with await connect(target.url, token=target.token) as client:
            return await main(client)

    return run(target, connected)


def usage(fn: Callable[[], T]) -> T:
    """Argument checks before anything runs: a UsageError is exit 2."""
    try:
        return fn()
    except UsageError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
