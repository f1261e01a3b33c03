"""A rule compiled for matching: topic pattern AND match_fields AND pattern.

Compiling is where a rule is judged: its cost (`router.limits`), every
condition, the EventBridge pattern and every template in the action are
checked here, and the first bad part raises `InvalidParams` naming it
(`match_fields.size.numeric: …`). So what `register_rule` accepts can always
be evaluated, cheaply, and evaluating never raises (the engine still treats
a rule that does as not matching).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventbus_core.errors import InvalidParams
from eventbus_core.event import Event
from eventbus_core.rules import EmitEvent, Rule
from eventbus_core.topics import compile_topic_pattern
from eventbus_server.rules.lang.conditions import Condition, compile_conditions
from eventbus_server.rules.lang.limits import check_rule_cost
from eventbus_server.rules.lang.operators import MISSING, PatternError
from eventbus_server.rules.lang.paths import reads_whole_event
from eventbus_server.rules.lang.pattern import EventPattern, Failure, compile_pattern
from eventbus_server.rules.lang.templates import RenderBudget, compile_template

__all__ = ["CompiledRule", "compile_rule", "envelope_from_wire", "envelope_of", "failure_wire"]


class CompiledRule:
    __slots__ = (
        "action_template",
        "conditions",
        "matches_topic",
        "pattern",
        "reads_whole_event",
        "renders_whole_event",
        "rule",
    )

    def __init__(
        self,
        rule: Rule,
        conditions: list[Condition],
        pattern: EventPattern | None,
        action_template: Callable[[dict[str, Any], RenderBudget | None], dict[str, Any]],
        *,
        renders_whole_event: bool = False,
    ) -> None:
        self.rule = rule
        # Compiled on first use: a wildcard pattern is a regex (~40 us to compile), and
        # most rules of a big book are compiled only to be checked, then dropped.
        self.matches_topic: Callable[[str], bool] = self._compile_topic_then_match
        self.conditions = conditions
        self.pattern = pattern
        self.action_template = action_template
        #: A JSONPath condition may walk the whole event: matched off the event loop.
        self.reads_whole_event = any(reads_whole_event(c.select) for c in conditions)
        #: So may a template path of its action: rendered off the event loop.
        self.renders_whole_event = renders_whole_event

    def _compile_topic_then_match(self, topic: str) -> bool:
        self.matches_topic = compile_topic_pattern(self.rule.topic)
        return self.matches_topic(topic)

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def topic(self) -> str:
        return self.rule.topic

    def compiled(self) -> CompiledRule:
        """Itself (what the index asks of every rule it holds: see `IndexedRule`)."""
        return self

    @property
    def needs_envelope(self) -> bool:
        """Whether matching looks past the topic (most rules do)."""
        return bool(self.conditions) or self.pattern is not None

    def matches(self, event: Event, envelope: dict[str, Any] | None = None) -> bool:
        if not self.matches_topic(event.topic):
            return False
        if not self.needs_envelope:
            return True
        envelope = envelope if envelope is not None else envelope_of(event)
        if not all(condition.holds(envelope) for condition in self.conditions):
            return False
        return self.pattern is None or self.pattern.matches(envelope)

    def explain(self, envelope: dict[str, Any]) -> list[Failure]:
        """Every condition that fails for this event; empty when the rule matches."""
        failures = []
        topic = envelope.get("topic")
        if not (isinstance(topic, str) and self.matches_topic(topic)):
            failures.append(
                Failure("topic", self.rule.topic, topic if topic is not None else MISSING)
            )
        for condition in self.conditions:
            failure = condition.explain(envelope)
            if failure is not None:
                failures.append(failure)
        if self.pattern is not None:
            failures.extend(
                Failure(f"pattern.{f.path}", f.expected, f.saw)
                for f in self.pattern.explain(envelope)
            )
        return failures

    def render_action(
        self, envelope: dict[str, Any], *, max_bytes: int | None = None
    ) -> dict[str, Any]:
        """The action with its templates applied to this event; `TemplateTooLarge` once
        its templated part passes `max_bytes` (as JSON, about), before it is built."""
        budget = RenderBudget(max_bytes) if max_bytes is not None else None
        rendered: dict[str, Any] = self.action_template(envelope, budget)
        return rendered


def compile_rule(rule: Rule) -> CompiledRule:
    """Compile a validated rule, or raise InvalidParams naming the bad part."""
    action = rule.action.model_dump(mode="json")
    templated = "payload" if isinstance(rule.action, EmitEvent) else "input"
    try:
        check_rule_cost(rule.pattern, rule.match_fields, action[templated], f"action.{templated}")
        conditions = compile_conditions(rule.match_fields)
        pattern = compile_pattern(rule.pattern) if rule.pattern is not None else None
        template = compile_template(action[templated], f"action.{templated}")
    except PatternError as exc:
        raise InvalidParams(
            f"invalid rule {rule.id!r}: {exc}", [{"loc": exc.path, "msg": exc.reason}]
        ) from None

    def render(envelope: dict[str, Any], budget: RenderBudget | None = None) -> dict[str, Any]:
        return {**action, templated: template(envelope, budget)}

    return CompiledRule(
        rule, conditions, pattern, render, renders_whole_event=template.reads_whole_event
    )


def envelope_of(event: Event) -> dict[str, Any]:
    """The event as the JSON object conditions, patterns and templates look at."""
    return event.rule_view()


def envelope_from_wire(event: dict[str, Any]) -> dict[str, Any]:
    """An event a client gave to `test_rule`, as `envelope_of` would show it stored."""
    return {key: value for key, value in event.items() if value is not None or key == "payload"}


def failure_wire(failure: Failure) -> dict[str, Any]:
    """A failure as `test_rule` reports it; a missing field is `"saw": null, "missing": true`."""
    missing = failure.saw is MISSING
    return {
        "path": failure.path,
        "expected": failure.expected,
        "saw": None if missing else failure.saw,
        "missing": missing,
    }
