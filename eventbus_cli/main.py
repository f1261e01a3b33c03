"""The `eventbus` command. Sub-commands import what they need lazily, so
`eventbus --help` starts fast and never loads the server or the dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from eventbus_cli import runner
from eventbus_cli.commands.config import config_app
from eventbus_cli.commands.consumers import consume, consumers_app, dead_letters
from eventbus_cli.commands.emit import emit
from eventbus_cli.commands.firings import firings_app
from eventbus_cli.commands.history import history
from eventbus_cli.commands.info import info, topics
from eventbus_cli.commands.mcp import mcp
from eventbus_cli.commands.poll import poll
from eventbus_cli.commands.replay import replay
from eventbus_cli.commands.rules import rules_app
from eventbus_cli.commands.schedules import schedules_app
from eventbus_cli.commands.serve import serve
from eventbus_cli.commands.tail import tail
from eventbus_cli.commands.ui import ui
from eventbus_cli.errors import EXIT_CODES_HELP
from eventbus_cli.help_format import PlainCommand, PlainGroup

app = typer.Typer(
    cls=PlainGroup,
    name="eventbus",
    help=(
        "eventbus: a multi-bus JSON-RPC event bus with TRN integration.\n\n"
        "Target a bus with --bus ID (from ./event_buses.json or $EVENTBUS_CONFIG) or --url tcp://host:port "
        "($EVENTBUS_URL).\n\n"
        "Examples:\n\n"
        "  eventbus serve\n\n"
        '  eventbus emit repo.pushed --payload \'{"repo": "acme/api"}\' --source-trn trn:user:alice:cli:v1\n\n'
        "  eventbus tail 'repo.>' --source-trn trn:user:\n\n"
        "  eventbus history --source-trn trn:user:alice: --since 2h\n\n"
        "  eventbus rules add rule.json\n\n"
        "  eventbus firings --failed\n\n"
        "  eventbus firings retry --rule fetch-on-push\n\n"
        "  eventbus emit reminders.due --delay 10m\n\n"
        "  eventbus schedules add heartbeat --every 30s --topic health.ping\n\n" + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    runner.debug = debug


for command in (serve, emit, poll, tail, history, replay, topics, info):
    app.command(cls=PlainCommand, epilog=EXIT_CODES_HELP)(command)
app.add_typer(rules_app, name="rules")
app.add_typer(firings_app, name="firings")
app.add_typer(schedules_app, name="schedules")
app.add_typer(config_app, name="config")
app.add_typer(consumers_app, name="consumers")
app.command(cls=PlainCommand, epilog=EXIT_CODES_HELP)(consume)
app.command("dead-letters", cls=PlainCommand, epilog=EXIT_CODES_HELP)(dead_letters)
app.command(cls=PlainCommand, epilog=EXIT_CODES_HELP)(ui)
app.command(cls=PlainCommand, epilog=EXIT_CODES_HELP)(mcp)


def main() -> None:
    app()
