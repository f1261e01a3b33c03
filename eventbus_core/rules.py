"""Rules as clients send them and as the bus stores them (DESIGN.md §4).

This module checks a rule's *shape*: ids, topic pattern, the action and its
TRN. What the conditions and the EventBridge `pattern` mean is checked when
the server compiles the rule (`eventbus_server.rules`), which names the
exact bad part of a condition in its -32602 error.

An action is internally tagged (`{"type": "InvokeTool", …}`); the externally
tagged form (`{"InvokeTool": {…}}`) is accepted on input too and normalised.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from eventbus_core.envelope import Topic, TrnStr
from eventbus_core.topics import validate_topic_pattern

__all__ = [
    "ACTION_TYPES",
    "MAX_BACKOFF_MS",
    "MAX_TIMEOUT_MS",
    "EmitEvent",
    "InvokeTool",
    "RetryPolicy",
    "Rule",
    "RuleAction",
    "validate_rule_id",
]

#: The longest wait before a retry, and the longest a tool call may take (one hour each);
#: a rule and a bus's config (`retry`, a tool route's `timeout_ms`) share them.
MAX_BACKOFF_MS = 3_600_000
MAX_TIMEOUT_MS = 3_600_000

_RULE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_BUS_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def validate_rule_id(value: str) -> str:
    if not _RULE_ID_RE.fullmatch(value):
        raise ValueError(f"rule id {value!r} must be 1-128 characters of A-Z a-z 0-9 . _ -")
    return value


def _validate_bus_id(value: str) -> str:
    if not _BUS_ID_RE.fullmatch(value):
        raise ValueError(f"bus id {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


RuleId = Annotated[str, AfterValidator(validate_rule_id)]
TopicPattern = Annotated[str, AfterValidator(validate_topic_pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """`attempts` counts every try, the first included; backoff doubles each retry."""

    attempts: int = Field(default=3, ge=1, le=100)
    backoff_ms: int = Field(default=200, ge=0, le=MAX_BACKOFF_MS)


class InvokeTool(_Strict):
    type: Literal["InvokeTool"] = "InvokeTool"
    tool_id: TrnStr
    input: Any = None
    result_topic: Topic | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)


class EmitEvent(_Strict):
    type: Literal["EmitEvent"] = "EmitEvent"
    topic: Topic
    payload: Any = None
    bus: Annotated[str, AfterValidator(_validate_bus_id)] | None = None
    target_trn: TrnStr | None = None


RuleAction = Annotated[InvokeTool | EmitEvent, Field(discriminator="type")]
ACTION_TYPES = ("InvokeTool", "EmitEvent")


class Rule(_Strict):
    """A rule as registered; `match_fields` and `pattern` are compiled by the server."""

    id: RuleId
    topic: TopicPattern = ">"
    match_fields: dict[str, Any] = Field(default_factory=dict)
    pattern: dict[str, Any] | None = None
    action: RuleAction
    enabled: bool = True
    description: str | None = Field(default=None, max_length=4096)
    retry: RetryPolicy | None = None

    @model_validator(mode="before")
    @classmethod
    def _untag_action(cls, data: Any) -> Any:
        """Accept `{"InvokeTool": {…}}` as well as `{"type": "InvokeTool", …}`."""
        if not isinstance(data, dict):
            return data
        action = data.get("action")
        if isinstance(action, dict) and "type" not in action and len(action) == 1:
            ((tag, body),) = action.items()
            if tag in ACTION_TYPES and isinstance(body, dict):
                return {**data, "action": {"type": tag, **body}}
        if isinstance(action, dict) and "type" not in action:
            raise ValueError(
                "action needs a 'type' (InvokeTool or EmitEvent), or the tagged form {\"InvokeTool\": {...}}"
            )
        return data

    def wire(self) -> dict[str, Any]:
        """The rule as stored and returned: defaults filled, nothing unset left out."""
        return self.model_dump(mode="json")
