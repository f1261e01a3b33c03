"""`eventbus config validate / show` as a user runs them: real subprocesses on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventbus_cli.errors import UsageError
from eventbus_cli.main import app as cli_app
from tests.cli.test_cli_basic import run_cli

BUNDLED = Path(__file__).resolve().parents[2] / "event_buses.json"

# Six problems in three buses; none needs the environment.
BROKEN = [
    {"id": "global", "listen": "127.0.0.1:4010", "colour": "blue"},
    {"id": "global", "listen": "localhost", "queue_size": 0, "dedup_window": "soon"},
    {"id": "ok", "listen": "127.0.0.1:4012", "tools": [{"match": "trn:user:*", "kind": "http"}]},
]
BROKEN_LOCATIONS = [
    "[0].colour",
    "[1].listen",
    "[1].queue_size",
    "[1].dedup_window",
    "[2].tools[0]",
    "[1].id",
]


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


async def test_bundled_config_is_valid() -> None:
    code, out, err = await run_cli("config", "validate", str(BUNDLED))
    assert code == 0, err
    assert "2 buses (global :4010 sqlite rules on, workflow :4011 memory)" in out
    assert out.count("\n") == 1 and err == ""


async def test_every_problem_at_once_with_its_location(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", BROKEN)
    code, out, err = await run_cli("config", "validate", str(path))
    assert code == 2 and out == ""
    assert f"invalid config {path}: {len(BROKEN_LOCATIONS)} problems" in err
    for location in BROKEN_LOCATIONS:
        assert f"\n  {location}: " in err
    assert "Traceback" not in err


async def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '[\n  {"id": "a",}\n]')
    code, _, err = await run_cli("config", "validate", str(path))
    assert code == 2
    assert "not valid JSON" in err and "line 2 column" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


async def test_missing_file(tmp_path: Path) -> None:
    code, _, err = await run_cli("config", "validate", str(tmp_path / "nope.json"))
    assert code == 2
    assert "nope.json: cannot read the config file" in err and "Traceback" not in err


async def test_validate_json_report(tmp_path: Path) -> None:
    code, out, _ = await run_cli("config", "validate", str(BUNDLED), "--json")
    report = json.loads(out)
    assert code == 0 and report["valid"] is True and report["problems"] == []
    assert [bus["id"] for bus in report["buses"]] == ["global", "workflow"]

    code, out, _ = await run_cli(
        "config", "validate", str(write(tmp_path, "bad.json", BROKEN)), "--json"
    )
    report = json.loads(out)
    assert code == 2 and report["valid"] is False and report["buses"] == []
    assert [p["loc"] for p in report["problems"]] == BROKEN_LOCATIONS
    assert all(p["msg"] for p in report["problems"])


async def test_show_fills_defaults_and_never_prints_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "buses.json",
        [
            {
                "id": "pg",
                "listen": "0.0.0.0:4020",
                "persist": True,
                "auth_token_env": "PG_BUS_TOKEN",
                "storage_url": "postgresql://eventbus:inline-pw-1@db:5432/events",
                "dedup_window": "1h30m",
            },
            {
                "id": "env",
                "listen": "127.0.0.1:4021",
                "persist": True,
                "storage_url": "postgresql://eventbus:${PGPASSWORD}@db:5432/events",
            },
            {
                "id": "lite",
                "listen": "127.0.0.1:4022",
                "persist": True,
                "storage_path": "data/lite.db",
                "retention": {"max_age": "7d"},
                "enable_rules": True,
                "tools": [
                    {
                        "match": "trn:user:alice:",
                        "kind": "http",
                        "url": "https://bot:route-pw-4@tools.example/run",
                    }
                ],
            },
        ],
    )
    env = {"PG_BUS_TOKEN": "token-value-2", "PGPASSWORD": "env-pw-3"}
    code, out, err = await run_cli("config", "show", str(path), env=env)
    assert code == 0, err
    for secret in env.values():
        assert secret not in out and secret not in err
    assert "inline-pw-1" not in out and "route-pw-4" not in out
    pg, from_env, lite = json.loads(out)  # piped: plain JSON
    assert pg["storage_url"] == from_env["storage_url"] == "postgresql://***@db:5432/events"
    assert pg["auth_token_env"] == "PG_BUS_TOKEN" and "auth_token" not in pg
    assert (
        pg["dedup_window"] == 5400.0
        and pg["queue_size"] == 10_000
        and pg["retry"] == {"attempts": 3, "backoff_ms": 200}
    )
    assert lite["storage_path"] == str((tmp_path / "data" / "lite.db").resolve())
    assert lite["retention"] == {"max_age": 604800.0, "max_events": None}
    assert lite["tools"][0]["url"] == "https://***@tools.example/run"

    code, out, _ = await run_cli("config", "show", str(path), "--json", env=env)
    assert code == 0 and "inline-pw-1" not in out and len(json.loads(out)) == 3


async def test_show_invalid_config_reports_like_validate(tmp_path: Path) -> None:
    code, out, err = await run_cli("config", "show", str(write(tmp_path, "bad.json", BROKEN)))
    assert code == 2 and out == ""
    assert all(f"  {location}: " in err for location in BROKEN_LOCATIONS)


def test_which_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH wins; else --config; else $EVENTBUS_CONFIG; else ./event_buses.json."""
    one = write(tmp_path, "one.json", [{"id": "one", "listen": "127.0.0.1:1"}])
    two = write(tmp_path, "two.json", [{"id": "two", "listen": "127.0.0.1:2"}])
    runner = CliRunner()

    def validate(*args: str, env: str | None = None) -> str:
        result = runner.invoke(
            cli_app, ["config", "validate", *args], env={"EVENTBUS_CONFIG": env, "COLUMNS": "200"}
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "1 bus (one :1 memory)" in validate(str(one), "--config", str(two))
    assert "(two :2 memory)" in validate("--config", str(two), env=str(one))
    assert "(one :1 memory)" in validate(env=str(one))
    assert "(two :2 memory)" in validate("-c", str(two))
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "event_buses.json", [{"id": "here", "listen": "127.0.0.1:3"}])
    assert "event_buses.json: 1 bus (here :3 memory)" in validate()

    result = runner.invoke(cli_app, ["config", "validate", str(one), str(two)])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output.lower()
    result = runner.invoke(cli_app, ["config", "validate", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())  # help text wraps at the terminal width
    assert "Examples" in text and "3 cannot connect" in text


def test_a_client_reads_the_config_without_the_servers_secrets(tmp_path: Path) -> None:
    """The CLI reads the file with the server's parser, as a client: a variable only the
    server's environment has (a database URL, a bus token) is no problem for it."""
    from eventbus_cli.targets import bus_urls, resolve_target

    config = tmp_path / "event_buses.json"
    config.write_text(
        json.dumps(
            [
                {
                    "id": "a",
                    "listen": "0.0.0.0:4010",
                    "persist": True,
                    "storage_url": "${EVENTBUS_TEST_UNSET_URL}",
                },
                {
                    "id": "b",
                    "listen": "[::1]:4011",
                    "auth_token_env": "EVENTBUS_TEST_UNSET_TOKEN",
                    "tls": {"cert": "c.pem", "key": "k.pem"},
                },
            ]
        )
    )
    assert [(t.url, t.bus_id, t.token, t.token_env) for t in bus_urls(config)] == [
        ("tcp://127.0.0.1:4010", "a", None, None),
        ("tls://[::1]:4011", "b", None, "EVENTBUS_TEST_UNSET_TOKEN"),
    ]
    assert resolve_target(None, "b", config, "t0k").token == "t0k"
    config.write_text(json.dumps([{"id": "a", "listen": "127.0.0.1:4010", "enable_rulez": True}]))
    with pytest.raises(UsageError, match=r"\[0\]\.enable_rulez: .*did you mean 'enable_rules'"):
        bus_urls(config)
