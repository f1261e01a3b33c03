"""How `--help` reads: plain metavars, and examples that copy-paste.

Typer shows each value's Python type (`--match <list[str]>`, `TOPIC <str>`).
These command classes show a plain metavar instead: the option's own when it
sets one (`--match PATH=VALUE`), the choices of a choice (`[asc|desc]`), else
the parameter's name in capitals (`--to-topic TO_TOPIC`).

The indented paragraphs after `Examples:` are never rewrapped (Click's `\\b`
marker), so a long example stays one line and a `\\` continuation stays at the
end of its line: each example pastes into a shell as it is printed.

Every command and group of the CLI is made with these classes (`cls=`).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

__all__ = ["PlainCommand", "PlainGroup"]

EXAMPLES = "Examples:"


def _metavar(param: Any) -> str:
    descriptor = param.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in descriptor.choices) + "]"
    return str(param.name).upper()


def _plain_metavars(params: list[Any]) -> None:
    for param in params:
        if param.metavar is None and not getattr(param, "is_flag", False):
            param.metavar = _metavar(param)


def _raw_examples(text: str | None) -> str | None:
    """Mark every indented paragraph after `Examples:` as not to be rewrapped."""
    if not text or EXAMPLES not in text:
        return text
    head, _, examples = text.partition(EXAMPLES)
    paragraphs = [
        f"\b\n{paragraph}" if paragraph[:1].isspace() and paragraph.strip() else paragraph
        for paragraph in examples.split("\n\n")
    ]
    return head + EXAMPLES + "\n\n".join(paragraphs)


def _format_arguments_and_options(command: Any, ctx: Any, formatter: Any) -> None:
    """Typer's two sections, with an argument shown by its metavar alone (not `NAME <type>`)."""
    arguments, options = [], []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        if param.param_type_name == "argument":
            arguments.append((param.metavar + ("..." if param.nargs != 1 else ""), record[1]))
        elif param.param_type_name == "option":
            options.append(record)
    if arguments:
        with formatter.section("Arguments"):
            formatter.write_dl(arguments)
    if options:
        with formatter.section("Options"):
            formatter.write_dl(options)


class PlainCommand(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _raw_examples(self.help)
        _plain_metavars(self.params)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_arguments_and_options(self, ctx, formatter)


class PlainGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _raw_examples(self.help)
        _plain_metavars(self.params)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_arguments_and_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)
