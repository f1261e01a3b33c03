"""`eventbus rules …`: register, inspect, switch and dry-run rules (docs/rules.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from eventbus_cli.commands.emit import parse_json_arg
from eventbus_cli.completion import complete_rule_id
from eventbus_cli.errors import EXIT_CODES_HELP, EXIT_NO_MATCH, UsageError
from eventbus_cli.help_format import PlainCommand, PlainGroup
from eventbus_cli.options import (
    BusOption,
    ConfigOption,
    JsonOption,
    RuleIdArgument,
    TokenOption,
    UrlOption,
)
from eventbus_cli.output import Output, format_ts
from eventbus_cli.runner import run_client, usage
from eventbus_cli.targets import resolve_target

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

rules_app = typer.Typer(
    cls=PlainGroup,
    help="Manage the rules of a bus: add, list, show, rm, enable, disable, test.",
    no_args_is_help=True,
    epilog=EXIT_CODES_HELP,
)
command = partial(rules_app.command, cls=PlainCommand, epilog=EXIT_CODES_HELP)

RULE_COLUMNS = [
    ("id", "id"),
    ("enabled", "on"),
    ("topic", "topic"),
    ("action_text", "action"),
    ("fired", "fired"),
    ("failed", "failed"),
    ("last_fired", "last fired (UTC)"),
]


def _action_text(action: dict[str, Any]) -> str:
    if action.get("type") == "InvokeTool":
        return f"invoke {action.get('tool_id')}" + (
            f" → {action['result_topic']}" if action.get("result_topic") else ""
        )
    return f"emit {action.get('topic')}" + (f" on {action['bus']}" if action.get("bus") else "")


def _row(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **rule,
        "action_text": _action_text(rule["action"]),
        "last_fired": format_ts(rule.get("last_fired_at")),
    }


def _match_value(text: str) -> Any:
    """`--match PATH=VALUE`: VALUE is JSON when it parses (42, true, ["a","b"], {"prefix": "x"}), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _rule_from_flags(
    rule_id: str,
    topic: str | None,
    match: list[str],
    pattern: str | None,
    action: dict[str, Any],
    description: str | None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"id": rule_id, "action": action}
    if topic:
        rule["topic"] = topic
    if match:
        rule["match_fields"] = _match_fields(match)
    if pattern is not None:
        rule["pattern"] = parse_json_arg(pattern, "--pattern")
    if description:
        rule["description"] = description
    return rule


def _match_fields(match: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in match:
        path, sep, value = item.partition("=")
        if not sep or not path:
            raise UsageError(f"--match {item!r}: write PATH=VALUE, e.g. --match branch=main")
        fields[path] = _match_value(value)
    return fields


def _action_from_flags(
    invoke: str | None, tool_input: str | None, emit_topic: str | None, payload: str | None
) -> dict[str, Any]:
    if bool(invoke) == bool(emit_topic):
        raise UsageError("give exactly one action: --invoke TRN or --emit TOPIC")
    if invoke:
        if payload is not None:
            raise UsageError("--payload goes with --emit; the tool's input is --input")
        action: dict[str, Any] = {"type": "InvokeTool", "tool_id": invoke}
        if tool_input is not None:
            action["input"] = parse_json_arg(tool_input, "--input")
        return action
    if tool_input is not None:
        raise UsageError("--input goes with --invoke; the event's payload is --payload")
    action = {"type": "EmitEvent", "topic": emit_topic}
    if payload is not None:
        action["payload"] = parse_json_arg(payload, "--payload")
    return action


def _rule_from_file(source: str) -> dict[str, Any]:
    rule = parse_json_arg(source if source == "-" else f"@{source}", "rule file")
    if not isinstance(rule, dict):
        raise UsageError(f"rule file {source}: must hold one JSON object (a rule)")
    return rule


@command("add")
def add(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE", help="A rule as JSON: a file, or - for stdin.", show_default=False
        ),
    ] = None,
    rule_id: Annotated[
        str | None, typer.Option("--id", metavar="RULE_ID", help="Rule id (flag form).")
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", metavar="PATTERN", help="Topic pattern (default >).")
    ] = None,
    match: Annotated[
        list[str] | None,
        typer.Option(
            "--match",
            metavar="PATH=VALUE",
            help="A condition (repeatable; VALUE is JSON if it parses, else a string).",
        ),
    ] = None,
    pattern: Annotated[
        str | None,
        typer.Option("--pattern", metavar="JSON", help="EventBridge pattern: JSON or @file."),
    ] = None,
    invoke: Annotated[
        str | None, typer.Option("--invoke", metavar="TRN", help="Action: invoke this tool TRN.")
    ] = None,
    tool_input: Annotated[
        str | None, typer.Option("--input", metavar="JSON", help="Tool input template (JSON).")
    ] = None,
    emit_topic: Annotated[
        str | None,
        typer.Option("--emit", metavar="TOPIC", help="Action: emit an event on this topic."),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option("--payload", metavar="JSON", help="Payload template of --emit (JSON)."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", metavar="TEXT", help="Free text.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a rule with the same id.")
    ] = False,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Register a rule, from a JSON file or from flags.

    Examples:

      eventbus rules add rule.json

      cat rule.json | eventbus rules add - --replace

      eventbus rules add --id fetch-on-push --topic 'repo.*' --match branch=main \\
          --invoke trn:user:alice:openapi:github-api:get-repo:v1 --input '{"repo": "{{ $.payload.repo }}"}'

      eventbus rules add --id big-orders --topic orders.created \\
          --pattern '{"payload": {"total": [{"numeric": [">=", 100]}]}}' --emit orders.big --payload '"{{ $.payload }}"'
    """

    def build() -> dict[str, Any]:
        flags = (
            rule_id,
            topic,
            match,
            pattern,
            invoke,
            tool_input,
            emit_topic,
            payload,
            description,
        )
        if file is not None:
            if any(flag for flag in flags):
                raise UsageError(
                    "give either a rule FILE or the flags (--id, --topic, …), not both"
                )
            return _rule_from_file(file)
        if not rule_id:
            raise UsageError(
                "give a rule FILE (or - for stdin), or --id with --invoke TRN or --emit TOPIC"
            )
        action = _action_from_flags(invoke, tool_input, emit_topic, payload)
        return _rule_from_flags(rule_id, topic, match or [], pattern, action, description)

    rule = usage(build)
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def register(client: EventBusClient) -> None:
        result = await client.register_rule(rule, replace=replace)
        if out.json_mode:
            out.json_line(result)
        else:
            verb = "registered" if result.get("created") else "replaced"
            out.console.print(f"{verb} rule [bold]{result['id']}[/] on {target.name}")

    run_client(target, register)


@command("list")
def list_(
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the rules with their counters.

    Examples:

      eventbus rules list

      eventbus rules list --json | jq -r 'select(.failed > 0) | .id'
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def show(client: EventBusClient) -> None:
        rules = await client.list_rules()
        out.table(
            [_row(r) for r in rules] if not out.json_mode else rules,
            RULE_COLUMNS,
            title=f"{target.name}: rules",
        )

    run_client(target, show)


@command("show")
def show(
    rule_id: RuleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print one rule, with its counters, as JSON.

    Examples:

      eventbus rules show fetch-on-push
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def get(client: EventBusClient) -> None:
        out.document(await client.get_rule(rule_id))

    run_client(target, get)


@command("rm")
def rm(
    rule_id: RuleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete a rule (its firings stay, as history).

    Examples:

      eventbus rules rm fetch-on-push
    """
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def delete(client: EventBusClient) -> None:
        await client.delete_rule(rule_id)
        if out.json_mode:
            out.json_line({"id": rule_id, "deleted": True})
        else:
            out.console.print(f"deleted rule [bold]{escape(rule_id)}[/] on {escape(target.name)}")

    run_client(target, delete)


def _set_enabled(rule_id: str, enabled: bool, target_args: tuple[Any, ...], json_out: bool) -> None:
    target = usage(lambda: resolve_target(*target_args))
    out = Output(json_mode=json_out or None)

    async def switch(client: EventBusClient) -> None:
        await client.set_rule_enabled(rule_id, enabled)
        if out.json_mode:
            out.json_line({"id": rule_id, "enabled": enabled})
        else:
            verb = "enabled" if enabled else "disabled"
            out.console.print(f"{verb} rule [bold]{escape(rule_id)}[/] on {escape(target.name)}")

    run_client(target, switch)


@command("enable")
def enable(
    rule_id: RuleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Turn a rule on.

    Examples:

      eventbus rules enable fetch-on-push
    """
    _set_enabled(rule_id, True, (url, bus, config, token), json_out)


@command("disable")
def disable(
    rule_id: RuleIdArgument,
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Turn a rule off (it stays registered, with its counters).

    Examples:

      eventbus rules disable fetch-on-push

      eventbus rules disable fetch-on-push --json
    """
    _set_enabled(rule_id, False, (url, bus, config, token), json_out)


@command("test")
def test(
    rule: Annotated[
        str,
        typer.Argument(
            metavar="RULE",
            help="A stored rule's id, or a rule file (- for stdin).",
            autocompletion=complete_rule_id,
        ),
    ],
    event: Annotated[
        str,
        typer.Option("--event", "-e", metavar="JSON", help="The event to try: JSON, @file or -."),
    ],
    url: UrlOption = None,
    bus: BusOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Dry-run a rule against an event: matched or not, the rendered action,
    and every failed condition with the value it saw. Stores and invokes nothing.

    Exits 0 when the event matches and 1 when it does not (like grep), so a
    script can test `if eventbus rules test …; then …`; 2 and 3 as usual.

    Examples:

      eventbus rules test fetch-on-push --event '{"topic": "repo.pushed", "payload": {"branch": "dev"}}'

      eventbus rules test rule.json --event @event.json
    """

    def build() -> tuple[dict[str, Any], dict[str, Any]]:
        body = parse_json_arg(event, "--event")
        if not isinstance(body, dict):
            raise UsageError("--event must be a JSON object (an event: topic, payload, …)")
        given = _rule_from_file(rule) if rule == "-" or Path(rule).is_file() else None
        return body, ({"rule": given} if given is not None else {"rule_id": rule})

    body, which = usage(build)
    target = usage(lambda: resolve_target(url, bus, config, token))
    out = Output(json_mode=json_out or None)

    async def dry_run(client: EventBusClient) -> bool:
        result = await client.test_rule(body, **which)
        if out.json_mode:
            out.json_line(result)
            return bool(result["matched"])
        if result["matched"]:
            out.console.print("[bold green]matched[/]")
        else:
            out.console.print("[bold red]not matched[/]")
            for failure in result["failures"]:
                saw = "missing" if failure["missing"] else json.dumps(failure["saw"])
                where, expected = escape(failure["path"]), escape(json.dumps(failure["expected"]))
                out.console.print(f"  [bold]{where}[/]: expected {expected}, saw {escape(saw)}")
        out.console.print("action (rendered):")
        out.console.print_json(data=result["action"])
        return bool(result["matched"])

    if not run_client(target, dry_run):
        raise typer.Exit(EXIT_NO_MATCH)
