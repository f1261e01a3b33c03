"""Table-driven tests of the rule pieces that need no server: paths,
`match_fields` conditions, templates, the topic index and rule compiling."""

from __future__ import annotations

from typing import Any

import pytest

from eventbus_core.errors import InvalidParams
from eventbus_core.event import Event
from eventbus_core.rules import Rule
from eventbus_server.rules.lang.conditions import compile_conditions
from eventbus_server.rules.lang.index import RuleIndex
from eventbus_server.rules.lang.matcher import compile_rule, envelope_of, failure_wire
from eventbus_server.rules.lang.operators import PatternError
from eventbus_server.rules.lang.templates import compile_template

EVENT = Event(
    42,
    "repo.pushed",
    {
        "repo": "acme/api",
        "branch": "main",
        "size": 120,
        "tags": ["a", "b"],
        "files": [{"n": "x.py"}, {"n": "y.md"}],
        "ip": "10.0.0.7",
        "draft": False,
        "owner": {"login": "alice"},
    },
    1_764_300_000_123,
    {"trace": "t1"},
    "trn:user:alice:tool:openapi:github-api:v1.0",
    None,
    "c-7f3a",
)
ENVELOPE = envelope_of(EVENT)

HOLDS: list[tuple[str, Any]] = [
    ("$.payload.branch", "main"),
    ("branch", "main"),
    ("branch", ["dev", "main"]),
    ("size", 120),
    ("size", 120.0),
    ("size", {"numeric": [">", 0, "<=", 1000]}),
    ("size", {"numeric": ["=", 120]}),
    ("tags", "b"),
    ("files.n", "y.md"),
    ("$.payload.files[*].n", {"suffix": ".md"}),
    ("$.payload.files[?(@.n == 'x.py')].n", "x.py"),
    ("source_trn", {"trn": "trn:user:*"}),
    ("source_trn", {"trn": "trn:user:alice:tool:*"}),
    ("source_trn", {"prefix": "trn:user:"}),
    ("topic", {"wildcard": "repo.*"}),
    ("correlation_id", "c-7f3a"),
    ("repo", {"equals-ignore-case": "ACME/API"}),
    ("repo", {"anything-but": ["acme/web"]}),
    ("ip", {"cidr": "10.0.0.0/24"}),
    ("draft", False),
    ("owner", {"equals": {"login": "alice"}}),
    ("owner.login", "alice"),
    ("target_trn", {"exists": False}),
    ("missing.deep", {"exists": False}),
    ("branch", {"exists": True}),
    ("$.metadata.trace", "t1"),
    ("$.event_id", {"numeric": [">=", 42]}),
]

FAILS: list[tuple[str, Any, Any]] = [
    ("branch", "dev", "main"),
    ("branch", ["dev", "release"], "main"),
    ("size", {"numeric": [">", 1000]}, 120),
    ("size", "120", 120),  # a string is not a number
    ("draft", 0, False),  # false is not 0
    ("tags", "c", ["a", "b"]),
    ("source_trn", {"trn": "trn:org:*"}, "trn:user:alice:tool:openapi:github-api:v1.0"),
    ("target_trn", "trn:org:acme:repo:api:v1", None),
    ("nope", {"anything-but": "x"}, None),  # a missing field fails everything but exists: false
    ("branch", {"exists": False}, "main"),
    ("ip", {"cidr": "10.0.1.0/24"}, "10.0.0.7"),
]


@pytest.mark.parametrize(("key", "condition"), HOLDS, ids=[f"{k}={c!r}" for k, c in HOLDS])
def test_condition_holds(key: str, condition: Any) -> None:
    (compiled,) = compile_conditions({key: condition})
    assert compiled.holds(ENVELOPE)
    assert compiled.explain(ENVELOPE) is None


@pytest.mark.parametrize(
    ("key", "condition", "saw"), FAILS, ids=[f"{k}={c!r}" for k, c, _ in FAILS]
)
def test_condition_fails_and_says_what_it_saw(key: str, condition: Any, saw: Any) -> None:
    (compiled,) = compile_conditions({key: condition})
    assert not compiled.holds(ENVELOPE)
    failure = compiled.explain(ENVELOPE)
    assert failure is not None
    wire = failure_wire(failure)
    assert wire["path"] == key and wire["expected"] == condition
    assert wire["saw"] == saw
    assert wire["missing"] is (saw is None)


def test_only_the_five_envelope_fields_are_bare_keys() -> None:
    """DESIGN §4: `event_id`, `metadata` and `payload` bare are payload keys like any other."""
    event = Event(
        7,
        "t",
        {"event_id": 99, "metadata": "m", "payload": "p"},
        0,
        {"trace": "t1"},
        None,
        None,
        None,
    )
    envelope = envelope_of(event)
    for key, value in {
        "event_id": 99,
        "metadata": "m",
        "payload": "p",
        "$.event_id": 7,
        "$.metadata.trace": "t1",
    }.items():
        (condition,) = compile_conditions({key: value})
        assert condition.holds(envelope), key


BAD_CONDITIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"size": {"numerc": [">", 1]}}, "match_fields.size", "unknown operator 'numerc'"),
    ({"size": {"numeric": [">", "x"]}}, "match_fields.size.numeric", ""),
    ({"source_trn": {"trn": "user:*"}}, "match_fields.source_trn.trn", "trn"),
    ({"source_trn": {"trn": 5}}, "match_fields.source_trn.trn", "TRN pattern"),
    ({"$.payload[": "x"}, "match_fields.$.payload[", "invalid JSONPath"),
    ({"bad key!": "x"}, "match_fields.bad key!", "is not a field"),
    ({"branch": []}, "match_fields.branch", "empty list"),
    ({"branch": [["a"]]}, "match_fields.branch[0]", "list inside a list"),
    ({"ip": {"cidr": "300.1.1.1/8"}}, "match_fields.ip.cidr", ""),
    # Found by tests/hostile/test_fuzz.py: jsonpath-ng lets more than JSONPathError out (-32603).
    ({"$.payload.`sub(/(/, x)`": "x"}, "match_fields.$.payload", "invalid JSONPath"),
    ({"$.payload.`split(, 99, 1)`": "x"}, "match_fields.$.payload", "invalid JSONPath"),
    # Super-linear paths: one event could stall the bus for minutes.
    ({"$.payload[?(@.a =~ '(a+)+$')]": "x"}, "match_fields.$.payload", "regex match (=~)"),
    ({"$..*..*..*": "x"}, "match_fields.$..*", "only one `..` per path"),
]


@pytest.mark.parametrize(
    ("fields", "path", "reason"), BAD_CONDITIONS, ids=[p for _, p, _ in BAD_CONDITIONS]
)
def test_bad_conditions_are_rejected_with_their_path(
    fields: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(PatternError) as caught:
        compile_conditions(fields)
    assert caught.value.path.startswith(path)
    assert reason in caught.value.reason


@pytest.mark.parametrize("key", ["$.payload[/size]", "$.payload.mixed.`sorted`"])
def test_sorting_paths_that_fail_on_mixed_values_are_refused(key: str) -> None:
    # Found by tests/hostile/test_fuzz.py: the TypeError of sorting mixed values failed
    # test_rule (-32603) and stopped the engine's matching for every rule of the bus.
    with pytest.raises(PatternError) as caught:
        compile_conditions({key: {"exists": False}})
    assert "sorting" in caught.value.reason


TEMPLATES: list[tuple[Any, Any]] = [
    ("{{ $.payload.repo }}", "acme/api"),
    ("{{$.payload.size}}", 120),
    ("{{ $.payload.owner }}", {"login": "alice"}),
    ("{{ $.payload.files[*].n }}", ["x.py", "y.md"]),
    ("{{ $.payload.nope }}", None),
    ("pushed by {{ $.source_trn }}", "pushed by trn:user:alice:tool:openapi:github-api:v1.0"),
    ("{{ $.payload.repo }}@{{ $.payload.size }} {{ $.payload.tags }}", 'acme/api@120 ["a","b"]'),
    ("missing: [{{ $.target_trn }}]", "missing: []"),
    (
        {"repo": "{{ $.payload.repo }}", "n": [1, "{{ $.event_id }}"], "k": True},
        {"repo": "acme/api", "n": [1, 42], "k": True},
    ),
    ("plain text", "plain text"),
    (7, 7),
    ("{{ branch }}", "main"),
]


@pytest.mark.parametrize(("template", "rendered"), TEMPLATES, ids=[repr(t) for t, _ in TEMPLATES])
def test_templates_render(template: Any, rendered: Any) -> None:
    assert compile_template(template, "action.input")(ENVELOPE) == rendered


def test_a_bad_template_path_is_named() -> None:
    with pytest.raises(PatternError) as caught:
        compile_template({"a": ["x", "{{ $.payload[ }}"]}, "action.input")
    assert caught.value.path == "action.input.a[1]"


def _compiled(rule_id: str, topic: str, **fields: Any) -> Any:
    return compile_rule(
        Rule.model_validate(
            {"id": rule_id, "topic": topic, "action": {"type": "EmitEvent", "topic": "x"}, **fields}
        )
    )


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("repo.pushed", ["exact", "star", "rest", "all", "star-first"]),
        ("repo.pushed.late", ["rest", "all", "deep"]),
        ("repo", ["all"]),
        ("other.pushed", ["all", "star-first"]),
        ("_sys.health", []),
    ],
)
def test_the_index_finds_exactly_the_rules_whose_topic_matches(
    topic: str, expected: list[str]
) -> None:
    rules = [
        _compiled("exact", "repo.pushed"),
        _compiled("star", "repo.*"),
        _compiled("rest", "repo.>"),
        _compiled("all", ">"),
        _compiled("deep", "repo.*.late"),
        _compiled("star-first", "*.pushed"),
        _compiled("elsewhere", "orders.>"),
    ]
    index = RuleIndex(rules)
    event = Event(1, topic, None, 0, None, None, None, None)
    assert [r.id for r in index.candidates(topic) if r.matches(event)] == expected


def test_the_index_skips_unrelated_rules() -> None:
    index = RuleIndex(
        [_compiled(f"r{i}", f"other{i}.>") for i in range(1000)] + [_compiled("mine", "repo.*")]
    )
    assert [r.id for r in index.candidates("repo.pushed")] == ["mine"]


PLAN_RULES = [
    _compiled("api", "repo.*", match_fields={"repo": "acme/api"}),
    _compiled(
        "web-or-docs", "repo.*", match_fields={"repo": ["acme/web", "acme/docs"], "branch": "main"}
    ),
    _compiled("one", "repo.pushed", match_fields={"n": 1}),
    _compiled("true", "repo.pushed", match_fields={"n": True}),
    _compiled("null", "repo.pushed", match_fields={"n": None}),
    _compiled("tagged", "repo.pushed", match_fields={"tags": {"equals": "urgent"}}),
    _compiled("operator", "repo.pushed", match_fields={"repo": {"prefix": "acme/"}}),
    _compiled("object", "repo.pushed", match_fields={"owner": {"equals": {"login": "alice"}}}),
    _compiled("no-fields", "repo.>"),
    _compiled(
        "by-source",
        "repo.pushed",
        match_fields={"source_trn": "trn:user:alice:cli:v1", "repo": "acme/api"},
    ),
    _compiled("system", ">", match_fields={"repo": "acme/api"}),
]
PLAN_EVENTS = [
    {"repo": "acme/api", "n": 1.0},
    {"repo": "acme/web", "branch": "main", "n": True},
    {"repo": "acme/docs", "branch": "dev", "n": None},
    {"repo": ["acme/api", "acme/web"], "branch": "main", "tags": ["x", "urgent"]},
    {"repo": "other/x", "n": 1, "owner": {"login": "alice"}},
    {"n": [[1]], "tags": "urgent"},
    {},
    "not an object",
]


@pytest.mark.parametrize("topic", ["repo.pushed", "repo.created", "_sys.repo"])
@pytest.mark.parametrize("payload", PLAN_EVENTS, ids=[str(i) for i in range(len(PLAN_EVENTS))])
@pytest.mark.parametrize("source", [None, "trn:user:alice:cli:v1"])
def test_the_topic_plan_skips_only_rules_that_cannot_match(
    topic: str, payload: Any, source: str | None
) -> None:
    """Looking literals up gives exactly what checking every candidate gives, in the same order."""
    index = RuleIndex(PLAN_RULES)
    event = Event(1, topic, payload, 0, None, source, None, None)
    envelope = envelope_of(event)
    every = [r.id for r in index.candidates(topic) if r.matches(event, envelope)]
    planned = index.plan(topic).candidates(envelope)
    assert [r.id for r in planned if r.matches(event, envelope)] == every
    assert index.plan(topic) is index.plan(topic)  # built once per topic


def test_the_topic_plan_checks_only_the_rules_listing_the_value() -> None:
    rules = [
        _compiled(f"repo-{i}", "repo.pushed", match_fields={"repo": f"acme/r{i}"})
        for i in range(100)
    ]
    index = RuleIndex([*rules, _compiled("any", "repo.pushed")])
    event = Event(1, "repo.pushed", {"repo": "acme/r42"}, 0, None, None, None, None)
    assert [r.id for r in index.plan("repo.pushed").candidates(envelope_of(event))] == [
        "repo-42",
        "any",
    ]


def test_a_compiled_rule_explains_topic_conditions_and_pattern() -> None:
    rule = _compiled(
        "r",
        "orders.*",
        match_fields={"branch": "dev"},
        pattern={"payload": {"size": [{"numeric": ["<", 10]}]}},
    )
    failures = [failure_wire(f) for f in rule.explain(ENVELOPE)]
    assert [f["path"] for f in failures] == ["topic", "branch", "pattern.payload.size"]
    assert (
        failures[0]["saw"] == "repo.pushed"
        and failures[1]["saw"] == "main"
        and failures[2]["saw"] == 120
    )


def test_compile_rule_turns_pattern_errors_into_invalid_params() -> None:
    with pytest.raises(InvalidParams) as caught:
        _compiled("r", ">", pattern={"payload": {"size": [{"numeric": [">", "x"]}]}})
    assert caught.value.data[0]["loc"].startswith("pattern.payload.size")
    assert "invalid rule 'r'" in str(caught.value)


def test_render_action_fills_the_templated_part_only() -> None:
    rule = compile_rule(
        Rule.model_validate(
            {
                "id": "r",
                "action": {
                    "InvokeTool": {
                        "tool_id": "trn:user:alice:openapi:github-api:get-repo:v1",
                        "input": {"repo": "{{ $.payload.repo }}"},
                        "timeout_ms": 500,
                    }
                },
            }
        )
    )
    assert rule.render_action(ENVELOPE) == {
        "type": "InvokeTool",
        "tool_id": "trn:user:alice:openapi:github-api:get-repo:v1",
        "input": {"repo": "acme/api"},
        "result_topic": None,
        "timeout_ms": 500,
    }
