"""`test_rule`: would this rule match this event, why not, and what would it do.

The rule is compiled as `register_rule` would compile it (or taken from
storage by id), matched field by field against the event with the reason
for every condition that fails, and its action rendered as a firing would
render it, without running anything.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from eventbus_core.codec import MAX_NESTING, deeper_than
from eventbus_core.errors import InvalidParams
from eventbus_core.locations import relocated
from eventbus_server.rules.lang.limits import TooManyValues
from eventbus_server.rules.lang.matcher import CompiledRule, envelope_from_wire, failure_wire
from eventbus_server.rules.lang.templates import TemplateTooLarge
from eventbus_server.rules.rulebook import RuleBook

__all__ = ["test_rule"]


async def test_rule(
    book: RuleBook,
    event: dict[str, Any],
    *,
    rule: dict[str, Any] | None,
    rule_id: str | None,
    max_action_bytes: int | None = None,
) -> dict[str, Any]:
    """`{matched, failures, action}` for `rule` (a rule object) or the stored rule `rule_id`;
    an action that renders to more than `max_action_bytes` is refused, as its firing would fail."""
    compiled = await _compiled(book, rule, rule_id)
    envelope = envelope_from_wire(event)
    try:
        if compiled.reads_whole_event:  # as the engine does: such a walk is not for the event loop
            failures = await asyncio.to_thread(compiled.explain, envelope)
        else:
            failures = compiled.explain(envelope)
    except TooManyValues as exc:
        raise InvalidParams(
            f"invalid params for test_rule: event: {exc}", [{"loc": "event", "msg": str(exc)}]
        ) from None
    try:
        if compiled.renders_whole_event:  # rendered off the event loop, as the engine does
            action = await asyncio.to_thread(
                compiled.render_action, envelope, max_bytes=max_action_bytes
            )
        else:
            action = compiled.render_action(envelope, max_bytes=max_action_bytes)
    except TemplateTooLarge as exc:
        # The rule would fail its firings for this event the same way (max_message_bytes).
        msg = f"the action rendered for this event is too large: {exc} (max_message_bytes)"
        raise InvalidParams(
            f"invalid params for test_rule: event: {msg}", [{"loc": "event", "msg": msg}]
        ) from None
    if deeper_than(action, MAX_NESTING):
        # Templates copy the event's values into the action: nested inside each other
        # they can pass what a reply can hold. The rule would fail its firings the same way.
        msg = f"the action rendered for this event nests deeper than {MAX_NESTING} levels"
        raise InvalidParams(
            f"invalid params for test_rule: event: {msg}", [{"loc": "event", "msg": msg}]
        )
    return {
        "matched": not failures,
        "failures": [failure_wire(f) for f in failures],
        "action": action,
    }


# Not a test for pytest to collect, though its name starts like one.
test_rule.__test__ = False  # type: ignore[attr-defined]


async def _compiled(
    book: RuleBook, rule: dict[str, Any] | None, rule_id: str | None
) -> CompiledRule:
    if rule is not None:
        try:
            return book.compile(rule)
        except (ValidationError, InvalidParams) as exc:
            raise relocated("rule", "test_rule", exc) from None
    # From storage, like get_rule: on a shared bus it may be newer than this node's rule book.
    stored = await book.get(rule_id or "")
    return book.compile(stored.body)
