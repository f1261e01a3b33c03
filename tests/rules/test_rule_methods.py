"""register/list/get/delete/enable/test rules over the wire, and what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventbus_client import (
    AlreadyExists,
    EventBusClient,
    InvalidParams,
    NotFound,
    Overloaded,
    RulesDisabled,
    connect,
)
from eventbus_server.app import EventBusApp
from tests.conftest import start_buses

from .conftest import rules_bus

TOOL = "trn:user:test:python:echo:v1"


def rule(rule_id: str = "r1", **fields: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "topic": "repo.*",
        "match_fields": {"branch": "main"},
        "action": {
            "type": "InvokeTool",
            "tool_id": TOOL,
            "input": {"repo": "{{ $.payload.repo }}"},
        },
        **fields,
    }


async def test_register_list_get_replace_disable_delete(bus: EventBusClient) -> None:
    assert await bus.register_rule(rule(description="fetch on push")) == {
        "id": "r1",
        "created": True,
    }
    (listed,) = await bus.list_rules()
    assert (
        listed["id"] == "r1"
        and listed["enabled"] is True
        and listed["description"] == "fetch on push"
    )
    assert (listed["fired"], listed["failed"], listed["last_fired_at"]) == (0, 0, None)
    assert listed["action"]["input"] == {"repo": "{{ $.payload.repo }}"}
    assert await bus.get_rule("r1") == listed

    with pytest.raises(AlreadyExists, match="replace"):
        await bus.register_rule(rule())
    assert await bus.register_rule(rule(topic="repo.>"), replace=True) == {
        "id": "r1",
        "created": False,
    }
    assert (await bus.get_rule("r1"))["topic"] == "repo.>"

    disabled = await bus.set_rule_enabled("r1", False)
    assert disabled["enabled"] is False
    await bus.delete_rule("r1")
    assert await bus.list_rules() == []
    for call in (bus.get_rule("r1"), bus.delete_rule("r1"), bus.set_rule_enabled("r1", True)):
        with pytest.raises(NotFound, match="no rule 'r1'"):
            await call


async def test_the_externally_tagged_action_is_accepted(bus: EventBusClient) -> None:
    await bus.register_rule(
        {"id": "tagged", "action": {"EmitEvent": {"topic": "out.x", "payload": 1}}}
    )
    assert (await bus.get_rule("tagged"))["action"] == {
        "type": "EmitEvent",
        "topic": "out.x",
        "payload": 1,
        "bus": None,
        "target_trn": None,
    }


BAD_RULES: list[tuple[dict[str, Any], str, str]] = [
    (
        rule(match_fields={"size": {"numerc": [">", 1]}}),
        "match_fields.size",
        "unknown operator 'numerc'",
    ),
    (rule(match_fields={"$.payload[": 1}), "match_fields.$.payload[", "invalid JSONPath"),
    (rule(pattern={"payload": {"size": [{"numeric": [">", "x"]}]}}), "pattern.payload.size", ""),
    (rule(pattern={"payload": {"size": 5}}), "pattern.payload.size", ""),
    (
        rule(action={"type": "InvokeTool", "tool_id": "not-a-trn"}),
        "action.InvokeTool.tool_id",
        "TRN",
    ),
    (rule(action={"type": "Explode"}), "action", ""),
    (
        rule(action={"type": "EmitEvent", "topic": "x", "payload": "{{ $.a[ }}"}),
        "action.payload",
        "invalid JSONPath",
    ),
    (rule(action={"type": "EmitEvent", "topic": "x", "bus": "nowhere"}), "action.bus", "nowhere"),
    (rule("bad id!"), "id", "rule id"),
    (rule(topic="repo.>.x"), "topic", ""),
    (rule(retry={"attempts": 0}), "retry.attempts", ""),
    ({**rule(), "color": "red"}, "color", "Extra inputs"),
]


@pytest.mark.parametrize(("body", "loc", "msg"), BAD_RULES, ids=[loc for _, loc, _ in BAD_RULES])
async def test_invalid_rules_are_rejected_naming_the_bad_part(
    bus: EventBusClient, body: dict[str, Any], loc: str, msg: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        await bus.register_rule(body)
    data = caught.value.data
    assert any(item["loc"].startswith(loc) and msg in item["msg"] for item in data), data
    assert await bus.list_rules() == []
    # test_rule judges a rule the same way, its locations inside `rule`.
    with pytest.raises(InvalidParams) as caught:
        await bus.test_rule({"topic": "repo.pushed"}, rule=body)
    data = caught.value.data
    assert any(item["loc"].startswith(f"rule.{loc}") and msg in item["msg"] for item in data), data


async def test_test_rule_explains_a_non_match_and_renders_the_action(bus: EventBusClient) -> None:
    body = rule(
        match_fields={
            "branch": "main",
            "size": {"numeric": ["<", 100]},
            "source_trn": {"trn": "trn:user:*"},
        }
    )
    event = {"topic": "repo.pushed", "payload": {"repo": "acme/api", "branch": "dev", "size": 500}}
    result = await bus.test_rule(event, rule=body)
    assert result["matched"] is False
    assert result["failures"] == [
        {"path": "branch", "expected": "main", "saw": "dev", "missing": False},
        {"path": "size", "expected": {"numeric": ["<", 100]}, "saw": 500, "missing": False},
        {"path": "source_trn", "expected": {"trn": "trn:user:*"}, "saw": None, "missing": True},
    ]
    assert result["action"]["input"] == {"repo": "acme/api"}

    matching = {
        **event,
        "payload": {"repo": "acme/api", "branch": "main", "size": 5},
        "source_trn": "trn:user:bob:cli:v1",
    }
    assert (await bus.test_rule(matching, rule=body))["matched"] is True
    # Nothing was stored or invoked.
    assert await bus.list_rules() == []
    assert await bus.list_firings() == []


async def test_test_rule_by_id_and_with_an_eventbridge_pattern(bus: EventBusClient) -> None:
    await bus.register_rule(
        rule(
            "eb",
            match_fields={},
            pattern={"source_trn": [{"prefix": "trn:user:"}], "payload": {"branch": ["main"]}},
        )
    )
    hit = await bus.test_rule(
        {"topic": "repo.pushed", "source_trn": "trn:user:a:b", "payload": {"branch": "main"}},
        rule_id="eb",
    )
    assert hit["matched"] is True and hit["failures"] == []
    miss = await bus.test_rule(
        {"topic": "repo.pushed", "source_trn": "trn:org:a:b", "payload": {"branch": "main"}},
        rule_id="eb",
    )
    assert miss["matched"] is False
    assert [f["path"] for f in miss["failures"]] == ["pattern.source_trn"]
    with pytest.raises(NotFound):
        await bus.test_rule({"topic": "x"}, rule_id="nope")
    with pytest.raises(InvalidParams, match=r"either rule .* or rule_id"):
        await bus.call("test_rule", {"event": {"topic": "x"}})


async def test_every_rule_method_answers_rules_disabled_on_a_bus_without_rules(
    tmp_path: Path,
) -> None:
    async with (
        start_buses(tmp_path, {"id": "plain"}) as app,
        await connect(app.url("plain")) as bus,
    ):
        calls: list[tuple[str, dict[str, Any]]] = [
            ("register_rule", rule()),
            ("list_rules", {}),
            ("get_rule", {"id": "r1"}),
            ("delete_rule", {"id": "r1"}),
            ("set_rule_enabled", {"id": "r1", "enabled": True}),
            ("test_rule", {"rule": rule(), "event": {"topic": "x"}}),
            ("list_firings", {}),
            ("subscribe_firings", {}),
        ]
        for method, params in calls:
            with pytest.raises(RulesDisabled, match="enable_rules"):
                await bus.call(method, params)


async def test_rules_survive_a_restart(tmp_path: Path) -> None:
    config = rules_bus("sqlite", tmp_path)
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        await bus.register_rule(rule("keep"))
        await bus.register_rule(rule("off"))
        await bus.set_rule_enabled("off", False)
    async with start_buses(tmp_path, config) as app, await connect(app.url("rules")) as bus:
        rules = {r["id"]: r for r in await bus.list_rules()}
        assert set(rules) == {"keep", "off"}
        assert rules["keep"]["enabled"] is True and rules["off"]["enabled"] is False
        await bus.emit("repo.pushed", {"repo": "a/b", "branch": "main"})
        await app.buses["rules"].wait_idle()
        firings = await bus.list_firings()
        assert [(f["rule_id"], f["status"]) for f in firings] == [("keep", "ok")]


async def test_bus_info_counts_rules_and_firings(
    bus: EventBusClient, rules_app: EventBusApp
) -> None:
    await bus.register_rule(rule())
    await bus.emit("repo.pushed", {"repo": "a/b", "branch": "main"})
    await rules_app.buses["rules"].wait_idle()
    stats = (await bus.bus_info())["stats"]
    assert stats["rules_enabled"] == 1
    assert stats["firings"]["ok"] == 1


async def test_a_bus_holds_at_most_max_rules(tmp_path: Path) -> None:
    async with (
        start_buses(tmp_path, rules_bus("memory", tmp_path, max_rules=3)) as app,
        await connect(app.url("rules")) as bus,
    ):
        for i in range(3):
            await bus.register_rule({**rule(), "id": f"r{i}"})
        with pytest.raises(Overloaded) as refused:
            await bus.register_rule({**rule(), "id": "r3"})
        assert "holds 3 rules, the limit (max_rules)" in str(refused.value)
        await bus.register_rule(
            {**rule(), "id": "r0", "description": "replaced"}, replace=True
        )  # a replace is not a new rule
        await bus.delete_rule("r1")
        await bus.register_rule({**rule(), "id": "r3"})
        assert sorted(r["id"] for r in await bus.list_rules()) == ["r0", "r2", "r3"]


async def test_test_rule_on_an_event_with_a_field_too_large_to_test(bus: EventBusClient) -> None:
    rule_body = {
        **rule(),
        "match_fields": {},
        "pattern": {"payload": {"a": [{"numeric": [">", 0]}]}},
    }
    with pytest.raises(InvalidParams) as refused:
        await bus.test_rule(
            {"topic": "repo.pushed", "payload": {"a": list(range(1, 1002))}}, rule=rule_body
        )
    assert "more than 1000 values to test" in str(refused.value)
    ok = await bus.test_rule({"topic": "repo.pushed", "payload": {"a": [1]}}, rule=rule_body)
    assert ok["matched"] is True


async def test_test_rule_with_a_whole_event_jsonpath(bus: EventBusClient) -> None:
    rule_body = {**rule(), "match_fields": {"$..needle": 1}}
    found = await bus.test_rule(
        {"topic": "repo.pushed", "payload": {"x": [{"needle": 1}]}}, rule=rule_body
    )
    assert found["matched"] is True


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


async def test_test_rule_refuses_an_action_its_templates_nest_too_deep(bus: EventBusClient) -> None:
    """Found by tests/hostile/test_fuzz.py: a template nested around a deeply nested event
    value made a reply orjson cannot encode: no reply at all, a traceback."""
    body = rule(
        match_fields={},
        action={"type": "EmitEvent", "topic": "out", "payload": nested(30, "{{ $.payload }}")},
    )
    with pytest.raises(InvalidParams) as caught:
        await bus.test_rule({"topic": "repo.pushed", "payload": nested(180, 1)}, rule=body)
    assert caught.value.data == [
        {"loc": "event", "msg": "the action rendered for this event nests deeper than 200 levels"}
    ]
    shallow = await bus.test_rule({"topic": "repo.pushed", "payload": nested(20, 1)}, rule=body)
    assert shallow["action"]["payload"] == nested(50, 1)
