"""Runs a command's coroutine and maps every failure to one line and an exit code."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from .errors import EXIT_BUS_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, UsageError
from .output import err_console
from .targets import Target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

T = TypeVar("T")

#: Set by the root callback from `--debug`.
debug = False


def fail(message: str, code: int, hint: str | None = None) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]{hint}[/]")
    if debug:
        err_console.print(traceback.format_exc())
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
        where = f" bus {target.name}" if target is not None else ""
        raise fail(
            f"cannot reach{where}: {exc.message}",
            EXIT_UNREACHABLE,
            "is `eventbus serve` running? check --url / --bus / --config",
        ) from None
    except EventBusError as exc:
        detail = ""
        if isinstance(exc.data, list):
            lines = [f"{d.get('loc')}: {d.get('msg')}" for d in exc.data if isinstance(d, dict)]
            # The bus usually says each problem in the message already; add only what it left out.
            detail = "".join(f"\n  {line}" for line in lines if line not in exc.message)
        raise fail(f"{exc.message} (code {exc.code}){detail}", EXIT_BUS_ERROR) from None


async def _call(main: Callable[[], Awaitable[Any]]) -> Any:
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
