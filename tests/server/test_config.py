"""Config loading and validation (DESIGN.md §7): every problem at once, each located."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from eventbus_client import connect
from eventbus_core.config import BusConfig, Config, ConfigError, load_config, parse_config
from tests.conftest import start_buses

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "event_buses.json"
NO_ENV: dict[str, str] = {}


def bus(**fields: Any) -> dict[str, Any]:
    """A minimal valid bus with `fields` on top."""
    return {"id": "b", "listen": "127.0.0.1:4100", **fields}


def problems_of(data: Any, **kwargs: Any) -> list[tuple[str, str]]:
    kwargs.setdefault("env", NO_ENV)
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value.problems


def one_problem(data: Any, **kwargs: Any) -> tuple[str, str]:
    problems = problems_of(data, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def write_config(folder: Path, data: Any, name: str = "event_buses.json") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


# --- the bundled config ------------------------------------------------------


def test_bundled_config_loads() -> None:
    config = load_config(BUNDLED, env=NO_ENV)
    assert isinstance(config, Config)
    assert config.path == BUNDLED
    assert [b.id for b in config.buses] == ["global", "workflow"]

    global_bus = config.bus("global")
    assert (global_bus.host, global_bus.port) == ("127.0.0.1", 4010)
    assert global_bus.persist and global_bus.enable_rules
    assert global_bus.storage_kind == "sqlite"
    assert global_bus.storage_path == REPO / "data" / "global.db"
    assert global_bus.storage_path is not None and global_bus.storage_path.is_absolute()
    assert global_bus.allowed_sources == ("trn:user:", "trn:org:")
    assert global_bus.max_concurrency == 8

    workflow = config.bus("workflow")
    assert (workflow.host, workflow.port) == ("127.0.0.1", 4011)
    assert not workflow.persist and not workflow.enable_rules
    assert workflow.storage_kind == "memory" and workflow.storage_description() == "memory"
    assert workflow.allowed_sources is None


def test_bundled_config_resolves_next_to_the_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        load_config(BUNDLED, env=NO_ENV).bus("global").storage_path == REPO / "data" / "global.db"
    )


def test_defaults_match_the_design() -> None:
    [b] = parse_config([{"id": "x", "listen": "127.0.0.1:1"}], env=NO_ENV).buses
    assert b.persist is False and b.enable_rules is False and b.allowed_sources is None
    assert b.max_concurrency == 8
    assert b.queue_size == 10_000
    assert b.max_message_bytes == 1_048_576
    assert b.max_connections == 1024
    assert b.subscriber_buffer == 10_000
    assert b.memory_buffer == 10_000
    assert b.dedup_window == 600.0
    assert b.durability == "normal"
    assert (b.retry.attempts, b.retry.backoff_ms) == (3, 200)
    assert b.max_hops == 8
    assert b.retention is None
    assert b.auth_token is None and b.tls is None and b.tools == ()


def test_config_is_frozen() -> None:
    [b] = parse_config([bus()], env=NO_ENV).buses
    with pytest.raises(ValueError):
        b.persist = True  # type: ignore[misc]


def test_unknown_bus_lookup_names_the_known_ones() -> None:
    config = load_config(BUNDLED, env=NO_ENV)
    with pytest.raises(KeyError, match="known: global, workflow"):
        config.bus("nope")


# --- one problem each, with its location -------------------------------------

SINGLE_PROBLEMS = [
    pytest.param([{"listen": "127.0.0.1:1"}], "[0].id", "Field required", id="missing-id"),
    pytest.param([{"id": "a"}], "[0].listen", "Field required", id="missing-listen"),
    pytest.param([bus(id="")], "[0].id", "1-64 characters", id="empty-id"),
    pytest.param([bus(id="a b")], "[0].id", "1-64 characters", id="space-in-id"),
    pytest.param([bus(id="x" * 65)], "[0].id", "1-64 characters", id="id-too-long"),
    pytest.param([bus(id=7)], "[0].id", "must be a string", id="id-not-a-string"),
    pytest.param([bus(listen="4010")], "[0].listen", "host:port", id="listen-without-host"),
    pytest.param([bus(listen=":4010")], "[0].listen", "host:port", id="listen-empty-host"),
    pytest.param([bus(listen="localhost:")], "[0].listen", "host:port", id="listen-empty-port"),
    pytest.param([bus(listen="localhost:http")], "[0].listen", "host:port", id="listen-named-port"),
    pytest.param(
        [bus(listen="localhost:70000")], "[0].listen", "outside 0-65535", id="listen-port-too-big"
    ),
    pytest.param([bus(listen=4010)], "[0].listen", "must be a string", id="listen-number"),
    pytest.param([bus(colour="blue")], "[0].colour", "unknown key 'colour'", id="unknown-key"),
    pytest.param(
        [bus(Persist=True)],
        "[0].Persist",
        "unknown key 'Persist' (did you mean 'persist'?)",
        id="unknown-key-case",
    ),
    pytest.param(
        [bus(persist=True)],
        "[0]",
        "persist is true but neither storage_path nor storage_url",
        id="persist-without-storage",
    ),
    pytest.param(
        [bus(storage_path="x.db")],
        "[0]",
        "storage is set but persist is false",
        id="storage-path-without-persist",
    ),
    pytest.param(
        [bus(storage_url="postgresql://db/x")],
        "[0]",
        "storage is set but persist is false",
        id="storage-url-without-persist",
    ),
    pytest.param(
        [bus(persist=True, storage_path="x.db", storage_url="postgresql://db/x")],
        "[0]",
        "either storage_path (SQLite) or storage_url (PostgreSQL), not both",
        id="both-storages",
    ),
    pytest.param(
        [bus(persist=True, storage_url="mysql://db/x")],
        "[0]",
        "postgresql://",
        id="storage-url-not-postgres",
    ),
    pytest.param(
        [bus(persist=True, storage_path="")],
        "[0].storage_path",
        "must not be empty",
        id="empty-storage-path",
    ),
    pytest.param(
        [bus(persist="maybe")], "[0].persist", "must be true or false", id="persist-not-bool"
    ),
    pytest.param(
        [bus(max_concurrency=0)],
        "[0].max_concurrency",
        "greater than or equal to 1",
        id="max-concurrency-zero",
    ),
    pytest.param(
        [bus(queue_size=0)], "[0].queue_size", "greater than or equal to 1", id="queue-size-zero"
    ),
    pytest.param(
        [bus(max_message_bytes=10)],
        "[0].max_message_bytes",
        "greater than or equal to 1024",
        id="tiny-max-message",
    ),
    pytest.param(
        [bus(durability="fast")], "[0].durability", "'normal' or 'full'", id="bad-durability"
    ),
    pytest.param(
        [bus(allowed_sources=["user:"])],
        "[0].allowed_sources[0]",
        "must start with 'trn:'",
        id="allowed-source-no-scheme",
    ),
    pytest.param(
        [bus(allowed_sources=["trn:us*"])],
        "[0].allowed_sources[0]",
        "('us*')",
        id="allowed-source-partial-wildcard",
    ),
    pytest.param(
        [bus(allowed_sources=["trn:*:"])],
        "[0].allowed_sources[0]",
        "no '*' in a prefix",
        id="allowed-source-star-prefix",
    ),
    pytest.param(
        [bus(allowed_sources="trn:user:")],
        "[0].allowed_sources",
        "must be an array",
        id="allowed-sources-not-a-list",
    ),
    pytest.param(
        [bus(dedup_window="10 parsecs")],
        "[0].dedup_window",
        "invalid duration",
        id="bad-dedup-window",
    ),
    pytest.param(
        [bus(dedup_window=-1)],
        "[0].dedup_window",
        "must not be negative",
        id="negative-dedup-window",
    ),
    pytest.param(
        [bus(dedup_window=True)], "[0].dedup_window", "number of seconds", id="bool-dedup-window"
    ),
    pytest.param(
        [bus(retention={"max_age": "forever"})],
        "[0].retention.max_age",
        "invalid duration",
        id="bad-retention-age",
    ),
    pytest.param(
        [bus(retention={"max_events": 0})],
        "[0].retention.max_events",
        "greater than or equal to 1",
        id="retention-zero",
    ),
    pytest.param(
        [bus(retention={"max_size": 1})],
        "[0].retention.max_size",
        "unknown key 'max_size'",
        id="retention-unknown-key",
    ),
    pytest.param(
        [bus(retry={"attempts": 0})],
        "[0].retry.attempts",
        "greater than or equal to 1",
        id="retry-zero-attempts",
    ),
    pytest.param(
        [bus(tls={"cert": "c.pem"})], "[0].tls.key", "Field required", id="tls-without-key"
    ),
    pytest.param(
        [bus(max_hops=0)], "[0].max_hops", "greater than or equal to 1", id="max-hops-zero"
    ),
    pytest.param(
        [bus(auth_token="s3cret")], "[0].auth_token", "auth_token_env", id="token-in-the-file"
    ),
    pytest.param(
        [bus(config_dir="/elsewhere")],
        "[0].config_dir",
        "folder of the config file",
        id="config-dir-in-the-file",
    ),
    pytest.param(
        [bus(auth_token_env="EVENTBUS_TOKEN")],
        "[0].auth_token_env",
        "EVENTBUS_TOKEN is not set",
        id="token-env-missing",
    ),
    pytest.param([bus(), "bus"], "[1]", "must be an object", id="bus-not-an-object"),
    pytest.param({"id": "a"}, "", "must be a JSON array of buses", id="not-an-array"),
    pytest.param([], "", "lists no buses", id="empty-array"),
]


@pytest.mark.parametrize(("data", "loc", "message"), SINGLE_PROBLEMS)
def test_problem_is_located(data: Any, loc: str, message: str) -> None:
    found_loc, found_message = one_problem(data)
    assert found_loc == loc
    assert message in found_message


def test_empty_auth_token_env_is_reported() -> None:
    problem = one_problem([bus(auth_token_env="T")], env={"T": ""})
    assert problem == ("[0].auth_token_env", "environment variable T is not set or empty")


# --- tool routes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "needed"),
    [("http", "url"), ("jsonrpc", "url"), ("command", "argv"), ("python", "function")],
)
def test_tool_route_needs_its_target(kind: str, needed: str) -> None:
    loc, message = one_problem([bus(tools=[{"match": "trn:user:*", "kind": kind}])])
    assert loc == "[0].tools[0]"
    assert message == f"a '{kind}' tool route needs '{needed}'"


def test_command_route_with_empty_argv_is_rejected() -> None:
    loc, message = one_problem(
        [bus(tools=[{"match": "trn:user:*", "kind": "command", "argv": []}])]
    )
    assert loc == "[0].tools[0]" and "needs 'argv'" in message


@pytest.mark.parametrize(
    "route",
    [
        {"match": "trn:user:*", "kind": "http", "url": "http://127.0.0.1:9000/tools"},
        {"match": "trn:org:", "kind": "jsonrpc", "url": "tcp://127.0.0.1:9001", "method": "invoke"},
        {"match": "trn:user:alice:tool:x", "kind": "command", "argv": ["python", "tool.py"]},
        {"match": "trn:*", "kind": "python", "function": "mytools:run"},
    ],
    ids=["http", "jsonrpc", "command", "python"],
)
def test_tool_routes_with_their_target_load(route: dict[str, Any]) -> None:
    [b] = parse_config([bus(tools=[route])], env=NO_ENV).buses
    assert b.tools[0].kind == route["kind"] and b.tools[0].match == route["match"]


@pytest.mark.parametrize(
    ("route", "loc", "message"),
    [
        pytest.param(
            {"match": "trn:us*", "kind": "http", "url": "u"},
            "[0].tools[0].match",
            "('us*')",
            id="bad-match",
        ),
        pytest.param(
            {"match": "trn:user:*", "kind": "grpc", "url": "u"},
            "[0].tools[0].kind",
            "'http'",
            id="bad-kind",
        ),
        pytest.param(
            {"kind": "http", "url": "u"}, "[0].tools[0].match", "Field required", id="missing-match"
        ),
        pytest.param(
            {"match": "trn:*", "kind": "http", "url": "u", "retries": 2},
            "[0].tools[0].retries",
            "unknown key 'retries'",
            id="unknown-key",
        ),
    ],
)
def test_tool_route_problems_are_located(route: dict[str, Any], loc: str, message: str) -> None:
    found_loc, found_message = one_problem(
        [bus(tools=[{"match": "trn:*", "kind": "python", "function": "m:f"}, route])]
    )
    assert found_loc == loc.replace("tools[0]", "tools[1]")
    assert message in found_message


# --- duplicates ------------------------------------------------------------------


def test_duplicate_ids() -> None:
    problems = problems_of(
        [
            bus(id="a", listen="127.0.0.1:1"),
            bus(id="b", listen="127.0.0.1:2"),
            bus(id="a", listen="127.0.0.1:3"),
        ]
    )
    assert problems == [("[2].id", "duplicate bus id 'a' (also [0])")]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:4010", "127.0.0.1:4010"),
        ("[::1]:4010", "::1:4010"),
        ("localhost:4010", "localhost:4010"),
    ],
    ids=["same", "ipv6-brackets", "hostname"],
)
def test_duplicate_listen(first: str, second: str) -> None:
    problems = problems_of([bus(id="a", listen=first), bus(id="b", listen=second)])
    assert problems == [("[1].listen", f"duplicate listen address {second!r} (also [0])")]


def test_port_zero_may_repeat() -> None:
    config = parse_config(
        [bus(id="a", listen="127.0.0.1:0"), bus(id="b", listen="127.0.0.1:0")], env=NO_ENV
    )
    assert [b.port for b in config.buses] == [0, 0]


def test_same_port_on_different_hosts_is_not_a_duplicate() -> None:
    parse_config(
        [bus(id="a", listen="127.0.0.1:4010"), bus(id="b", listen="127.0.0.2:4010")], env=NO_ENV
    )


def test_duplicates_are_found_even_among_buses_with_other_problems() -> None:
    problems = problems_of(
        [
            {"id": "a", "listen": "127.0.0.1:4010", "persist": True},
            {"id": "a", "listen": "127.0.0.1:4010", "colour": "blue"},
        ]
    )
    assert problems == [
        ("[0]", "persist is true but neither storage_path nor storage_url is set"),
        ("[1].colour", "unknown key 'colour'"),
        ("[1].id", "duplicate bus id 'a' (also [0])"),
        ("[1].listen", "duplicate listen address '127.0.0.1:4010' (also [0])"),
    ]


# --- every problem at once ---------------------------------------------------------


def test_every_problem_in_every_bus_is_reported_at_once(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        [
            {"id": "ok", "listen": "127.0.0.1:4010"},
            {"id": "bad id", "listen": "nowhere"},
            {"id": "ok", "listen": "127.0.0.1:4010", "colour": "blue", "max_concurrency": 0},
            {
                "id": "pg",
                "listen": "127.0.0.1:4012",
                "persist": True,
                "storage_url": "postgresql://${PGHOST}/db",
                "auth_token_env": "PG_TOKEN",
                "dedup_window": "soon",
            },
            {
                "id": "tools",
                "listen": "127.0.0.1:4013",
                "tools": [{"match": "trn:user:*", "kind": "http"}],
            },
            {"id": "mem", "listen": "127.0.0.1:4014", "persist": True},
        ],
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    problems = dict(info.value.problems)
    assert set(problems) == {
        "[1].id",
        "[1].listen",
        "[2].colour",
        "[2].max_concurrency",
        "[2].id",
        "[2].listen",
        "[3].storage_url",
        "[3].auth_token_env",
        "[3].dedup_window",
        "[4].tools[0]",
        "[5]",
    }
    assert len(info.value.problems) == len(problems)
    text = str(info.value)
    assert text.startswith(f"{path}: {len(problems)} problems\n")
    for loc, message in info.value.problems:
        assert f"  {loc}: {message}" in text


def test_error_message_for_one_problem_is_singular() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config([bus(colour=1)], source="cfg.json", env=NO_ENV)
    assert str(info.value) == "cfg.json: 1 problem\n  [0].colour: unknown key 'colour'"


# --- environment ---------------------------------------------------------------------


def test_storage_url_expands_env_variables() -> None:
    env = {"PGUSER": "eb", "PGPASSWORD": "s3cret", "PGHOST": "db.internal"}
    [b] = parse_config(
        [
            bus(
                persist=True,
                storage_url="postgresql://${PGUSER}:${PGPASSWORD}@${PGHOST}:5432/events",
            )
        ],
        env=env,
    ).buses
    assert b.storage_url is not None
    assert b.storage_url.get_secret_value() == "postgresql://eb:s3cret@db.internal:5432/events"
    assert "s3cret" not in repr(b) and "s3cret" not in str(b.storage_url)
    assert b.storage_kind == "postgres"
    assert b.storage_description() == "postgres:postgresql://***@db.internal:5432/events"


def test_storage_url_leaves_non_references_alone() -> None:
    [b] = parse_config(
        [bus(persist=True, storage_url="postgresql://h/db?x=$HOME&y=${}")], env={"HOME": "/root"}
    ).buses
    assert (
        b.storage_url is not None
        and b.storage_url.get_secret_value() == "postgresql://h/db?x=$HOME&y=${}"
    )


def test_missing_env_variable_in_storage_url_is_reported() -> None:
    problems = problems_of(
        [bus(persist=True, storage_url="postgresql://u:${PGPASSWORD}@h/db")], env={}
    )
    assert problems == [("[0].storage_url", "environment variable PGPASSWORD is not set")]


def test_every_missing_env_variable_is_reported() -> None:
    problems = problems_of(
        [bus(persist=True, storage_url="postgresql://${A}:${B}@h/db")], env={"B": "x"}
    )
    assert problems == [("[0].storage_url", "environment variable A is not set")]


def test_auth_token_env_is_read_into_a_secret() -> None:
    [b] = parse_config(
        [bus(auth_token_env="EVENTBUS_TOKEN")], env={"EVENTBUS_TOKEN": "t0k3n"}
    ).buses
    assert b.auth_token is not None and b.auth_token.get_secret_value() == "t0k3n"
    assert b.auth_token_env == "EVENTBUS_TOKEN"
    assert "t0k3n" not in repr(b)
    assert "auth_token" not in b.model_dump()


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTBUS_TEST_TOKEN", "from-os")
    [b] = parse_config([bus(auth_token_env="EVENTBUS_TEST_TOKEN")]).buses
    assert b.auth_token is not None and b.auth_token.get_secret_value() == "from-os"


def test_the_given_env_replaces_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTBUS_TEST_TOKEN", "from-os")
    assert (
        one_problem([bus(auth_token_env="EVENTBUS_TEST_TOKEN")], env={})[0] == "[0].auth_token_env"
    )
    assert os.environ["EVENTBUS_TEST_TOKEN"] == "from-os"


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10m", 600.0),
        (600, 600.0),
        ("1h", 3600.0),
        ("30s", 30.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        (" 2h ", 7200.0),
        (0, 0.0),
        (1.5, 1.5),
    ],
    ids=lambda v: repr(v),
)
def test_dedup_window_accepts_durations(value: Any, seconds: float) -> None:
    [b] = parse_config([bus(dedup_window=value)], env=NO_ENV).buses
    assert b.dedup_window == seconds


def test_retention_max_age_accepts_durations() -> None:
    [b] = parse_config([bus(retention={"max_age": "7d", "max_events": 1000})], env=NO_ENV).buses
    assert b.retention is not None
    assert (b.retention.max_age, b.retention.max_events) == (604800.0, 1000)


# --- files ---------------------------------------------------------------------------


def test_relative_storage_path_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path / "etc" / "eventbus", [bus(persist=True, storage_path="data/bus.db")]
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    [b] = load_config(Path("../etc/eventbus/event_buses.json"), env=NO_ENV).buses
    assert b.storage_path == (tmp_path / "etc" / "eventbus" / "data" / "bus.db").resolve()
    assert b.storage_path.is_absolute()
    assert b.storage_description() == f"sqlite:{b.storage_path}"
    assert load_config(path, env=NO_ENV).path == path.resolve()


@pytest.mark.parametrize("relative", ["../shared/bus.db", "./bus.db", "a/../b/bus.db"])
def test_relative_storage_path_forms(tmp_path: Path, relative: str) -> None:
    folder = tmp_path / "cfg"
    path = write_config(folder, [bus(persist=True, storage_path=relative)])
    [b] = load_config(path, env=NO_ENV).buses
    assert b.storage_path == (folder / relative).resolve()


def test_absolute_storage_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "bus.db"
    path = write_config(tmp_path / "cfg", [bus(persist=True, storage_path=str(target))])
    assert load_config(path, env=NO_ENV).buses[0].storage_path == target


def test_parse_config_resolves_against_base_dir(tmp_path: Path) -> None:
    [b] = parse_config(
        [bus(persist=True, storage_path="x.db")], base_dir=tmp_path, env=NO_ENV
    ).buses
    assert b.storage_path == tmp_path.resolve() / "x.db"


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env=NO_ENV)
    assert info.value.source == str(missing)
    [(loc, message)] = info.value.problems
    assert loc == "" and message.startswith("cannot read the config file")
    assert "No such file" in message
    assert str(missing) in str(info.value)


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path, env=NO_ENV)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        pytest.param('[\n  {"id": "a",\n   "listen": 1,,\n  }\n]', 3, 16, id="double-comma"),
        pytest.param('[{"id": "a", "listen": "127.0.0.1:1"}', 1, 38, id="unterminated"),
        pytest.param("", 1, 1, id="empty-file"),
        pytest.param("[\n// comment\n]", 2, 1, id="comment"),
    ],
)
def test_invalid_json_reports_line_and_column(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    [(loc, message)] = info.value.problems
    assert loc == ""
    assert message.startswith("not valid JSON")
    assert f"line {line} column {column}" in message


def test_loaded_config_matches_parsed_config(tmp_path: Path) -> None:
    raw = [bus(id="a", listen="127.0.0.1:4100", enable_rules=True, max_concurrency=3)]
    path = write_config(tmp_path, raw)
    loaded = load_config(path, env=NO_ENV)
    parsed = parse_config(raw, env=NO_ENV, base_dir=tmp_path)
    assert loaded.buses == parsed.buses
    assert isinstance(loaded.buses[0], BusConfig)


def test_tool_route_headers_expand_env_variables() -> None:
    route = {
        "match": "trn:user:*",
        "kind": "http",
        "url": "http://127.0.0.1:9/x",
        "headers": {"Authorization": "Bearer ${TOOL_TOKEN}", "X-Plain": "as is"},
    }
    [b] = parse_config([bus(tools=[route])], env={"TOOL_TOKEN": "t0k"}).buses
    assert b.tools[0].headers == {"Authorization": "Bearer t0k", "X-Plain": "as is"}
    problems = problems_of([bus(tools=[route])], env={})
    assert problems == [
        ("[0].tools[0].headers.Authorization", "environment variable TOOL_TOKEN is not set")
    ]


@pytest.mark.parametrize(
    ("fields", "loc", "message"),
    [
        ({"enable_rules": "yes"}, "[0].enable_rules", 'must be true or false, not "yes"'),
        ({"persist": 1}, "[0].persist", "must be true or false, not 1"),
        ({"max_concurrency": "8"}, "[0].max_concurrency", 'must be an integer, not "8"'),
        ({"queue_size": 8.0}, "[0].queue_size", "must be an integer, not 8.0"),
        ({"retry": {"attempts": "3"}}, "[0].retry.attempts", 'must be an integer, not "3"'),
        (
            {"tools": [{"match": "trn:a:b", "kind": "command", "argv": ["x", 1]}]},
            "[0].tools[0].argv[1]",
            "must be a string, not 1",
        ),
        (
            {"max_conections": 3},
            "[0].max_conections",
            "unknown key 'max_conections' (did you mean 'max_connections'?)",
        ),
        (
            {"retry": {"atempts": 3}},
            "[0].retry.atempts",
            "unknown key 'atempts' (did you mean 'attempts'?)",
        ),
        ({"read_timeout_s": 0}, "[0].read_timeout_s", "greater than 0"),
        ({"max_output_bytes": 100}, "[0].max_output_bytes", "greater than or equal to 65536"),
        ({"max_inflight": 2**63}, "[0].max_inflight", "less than or equal to 1000000"),
    ],
    ids=[
        "bool-string",
        "bool-int",
        "int-string",
        "int-float",
        "nested-int",
        "array-item",
        "did-you-mean",
        "nested-did-you-mean",
        "zero-timeout",
        "tiny-output",
        "huge-inflight",
    ],
)
def test_config_types_are_strict(fields: dict[str, Any], loc: str, message: str) -> None:
    found_loc, found_message = one_problem([bus(**fields)])
    assert found_loc == loc
    assert message in found_message


@pytest.mark.parametrize(
    ("fields", "loc", "message"),
    [
        ({"memory_buffer": 10**30}, "[0].memory_buffer", "must be at most 2^63-1 (int64)"),
        ({"queue_size": 2**63}, "[0].queue_size", "must be at most 2^63-1 (int64)"),
        ({"subscriber_buffer": 2**63}, "[0].subscriber_buffer", "must be at most 2^63-1 (int64)"),
        ({"max_connections": 2**63}, "[0].max_connections", "must be at most 2^63-1 (int64)"),
        ({"max_message_bytes": 2**63}, "[0].max_message_bytes", "must be at most 2^63-1 (int64)"),
        (
            {"retention": {"max_events": 2**63}},
            "[0].retention.max_events",
            "must be at most 2^63-1 (int64)",
        ),
        ({"dedup_window": 1e300}, "[0].dedup_window", "a duration must be at most 100 years"),
        (
            {"retention": {"max_age": "99999999999d"}},
            "[0].retention.max_age",
            "a duration must be at most 100 years",
        ),
        ({"write_timeout_s": 4e9}, "[0].write_timeout_s", "a duration must be at most 100 years"),
        (
            {"retry": {"backoff_ms": 3_600_001}},
            "[0].retry.backoff_ms",
            "less than or equal to 3600000",
        ),
        (
            {
                "tools": [
                    {"match": "trn:a:b", "kind": "command", "argv": ["x"], "timeout_ms": 10**10}
                ]
            },
            "[0].tools[0].timeout_ms",
            "less than or equal to 3600000",
        ),
    ],
    ids=[
        "memory-buffer",
        "queue",
        "subscriber-buffer",
        "connections",
        "message-bytes",
        "max-events",
        "dedup-window",
        "max-age",
        "write-timeout",
        "config-backoff",
        "tool-timeout",
    ],
)
def test_config_numbers_are_bounded(fields: dict[str, Any], loc: str, message: str) -> None:
    """Every number is refused at validation if the bus could not run with it: a
    memory_buffer of 10**30 crashed the start, a backoff_ms beyond a rule's own limit
    crashed the rule engine's start, and a dedup_window of 1e300 s failed every emit
    with an idempotency_key (as -32602, the client's fault)."""
    found_loc, found_message = one_problem([bus(**fields)])
    assert found_loc == loc
    assert message in found_message


async def test_a_bus_at_the_largest_values_its_config_takes_runs(tmp_path: Path) -> None:
    largest = {
        "dedup_window": "36500d",
        "retention": {"max_age": "36500d", "max_events": 2**63 - 1},
        "queue_size": 2**63 - 1,
        "subscriber_buffer": 2**63 - 1,
        "max_connections": 2**63 - 1,
        "write_timeout_s": "36500d",
        "read_timeout_s": "36500d",
        "auth_timeout_s": "36500d",
        "enable_rules": True,
        "retry": {"attempts": 100, "backoff_ms": 3_600_000},
    }
    buses = [
        {"id": "lite", "persist": True, "storage_path": str(tmp_path / "lite.db"), **largest},
        {"id": "mem", "memory_buffer": 2**63 - 1, "max_message_bytes": 2**63 - 1, **largest},
    ]
    async with start_buses(tmp_path, *buses) as app:
        for bus_id in ("lite", "mem"):
            async with await connect(app.url(bus_id)) as client:
                first = await client.emit("t", 1, idempotency_key="k")
                again = await client.emit("t", 2, idempotency_key="k")
                assert (again.event_id, again.duplicate) == (first.event_id, True)
                assert [e.payload for e in (await client.poll("t")).events] == [1]


def test_limits_have_design_defaults() -> None:
    [b] = parse_config([bus()], env=NO_ENV).buses
    assert (b.max_inflight, b.max_output_bytes, b.write_timeout_s, b.max_batch) == (
        256,
        16 * 1024 * 1024,
        30.0,
        1000,
    )
    assert (b.max_subscriptions, b.read_timeout_s, b.auth_timeout_s) == (1000, 30.0, 10.0)
    assert (b.accept_from_buses, b.max_tool_reply_bytes) == ((), 1024 * 1024)
    assert (b.queue_size, b.max_queue_bytes) == (10_000, 64 * 1024 * 1024)
    assert (b.memory_buffer, b.memory_buffer_bytes) == (10_000, 256 * 1024 * 1024)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("0.0.0.0:4010", "127.0.0.1:4010"),
        ("127.0.0.1:4010", "0.0.0.0:4010"),
        ("[::]:4010", "[::1]:4010"),
        ("localhost:4010", "[::1]:4010"),
        ("localhost:4010", "0.0.0.0:4010"),
    ],
)
def test_wildcard_listen_collides_with_a_specific_address(first: str, second: str) -> None:
    problems = problems_of([bus(id="a", listen=first), bus(id="b", listen=second)])
    assert problems == [
        ("[1].listen", f"{second!r} collides with {first!r} of [0]: both take port 4010")
    ]


@pytest.mark.parametrize(
    ("first", "second"), [("0.0.0.0:4010", "[::1]:4010"), ("0.0.0.0:4010", "127.0.0.1:4011")]
)
def test_listen_addresses_that_do_not_collide(first: str, second: str) -> None:
    config = parse_config([bus(id="a", listen=first), bus(id="b", listen=second)], env=NO_ENV)
    assert [b.listen for b in config.buses] == [first, second]


def test_accept_from_buses_names_buses_of_the_file() -> None:
    problems = problems_of(
        [
            bus(id="global", listen="127.0.0.1:4100"),
            bus(
                id="audit", listen="127.0.0.1:4101", accept_from_buses=["globl", "audit", "global"]
            ),
        ]
    )
    assert problems == [
        ("[1].accept_from_buses[0]", "no bus 'globl' in this config (did you mean 'global'?)"),
        (
            "[1].accept_from_buses[1]",
            "a bus's own rules may always emit on it; list other buses only",
        ),
    ]
