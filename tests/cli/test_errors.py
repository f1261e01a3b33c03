"""DESIGN §9: a failure is one line per problem on stderr, never wrapped when stderr
is not a terminal, and says the flag to use, not the wire field. Real subprocesses
against real buses; stderr is a pipe, as in a script or a log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventbus_server.app import EventBusApp
from tests.conftest import start_buses

from .test_cli_basic import run_cli

LONG_OPERATOR = 'size={"numerc": 1}'


@pytest.fixture
async def buses(tmp_path: Path) -> AsyncIterator[EventBusApp]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ERRORS_TEST_TOKEN", "s3cret")
        async with start_buses(
            tmp_path,
            {"id": "rules", "enable_rules": True},
            {"id": "locked", "auth_token_env": "ERRORS_TEST_TOKEN"},
        ) as running:
            yield running


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4010", "https://bus.example:443", "ws://127.0.0.1:1"]
)
async def test_a_url_with_another_scheme_is_one_usage_line(url: str) -> None:
    code, out, err = await run_cli("poll", "--url", url)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert "--url" in err and "tcp://" in err and "Traceback" not in err


async def test_a_url_without_a_port_is_a_usage_error() -> None:
    code, _, err = await run_cli("topics", "--url", "tcp://127.0.0.1")
    assert code == 2 and len(err.splitlines()) == 1 and "host:port" in err


async def test_a_long_error_stays_on_one_line_when_stderr_is_not_a_terminal(
    buses: EventBusApp,
) -> None:
    code, _, err = await run_cli(
        "rules",
        "add",
        "--id",
        "r",
        "--match",
        LONG_OPERATOR,
        "--emit",
        "x",
        "--url",
        buses.url("rules"),
        env={"COLUMNS": "40"},
    )
    assert code == 1
    (line,) = err.splitlines()
    assert (
        len(line) > 200 and "unknown operator 'numerc'" in line and line.endswith("(code -32602)")
    )


async def test_unreachable_is_one_line_with_what_to_check() -> None:
    code, _, err = await run_cli("topics", "--url", "tcp://127.0.0.1:1", env={"COLUMNS": "40"})
    assert code == 3
    (line,) = err.splitlines()
    assert "connection refused" in line and "eventbus serve" in line


async def test_an_existing_rule_says_replace_as_the_flag(buses: EventBusApp) -> None:
    args = ("rules", "add", "--id", "twice", "--emit", "x", "--url", buses.url("rules"))
    assert (await run_cli(*args))[0] == 0
    code, _, err = await run_cli(*args)
    assert code == 1
    assert "--replace" in err and "replace: true" not in err


async def test_a_missing_token_names_the_flag_and_the_variables(
    buses: EventBusApp, tmp_path: Path
) -> None:
    code, _, err = await run_cli("topics", "--url", buses.url("locked"))
    assert code == 1
    assert "--token" in err and "$EVENTBUS_TOKEN" in err and "authenticate" not in err
    host, port = buses.address("locked")
    config = tmp_path / "buses.json"
    config.write_text(
        json.dumps(
            [{"id": "locked", "listen": f"{host}:{port}", "auth_token_env": "UNSET_TOKEN_VAR"}]
        )
    )
    code, _, err = await run_cli("topics", "--bus", "locked", "--config", str(config))
    assert code == 1 and "$UNSET_TOKEN_VAR" in err


async def test_a_wrong_token_says_to_check_the_flag(buses: EventBusApp) -> None:
    code, _, err = await run_cli("topics", "--url", buses.url("locked"), "--token", "nope")
    assert code == 1 and "wrong token" in err and "--token" in err


async def test_a_bad_trn_is_said_as_the_flag(buses: EventBusApp) -> None:
    code, _, err = await run_cli("emit", "x", "--source-trn", "bad", "--url", buses.url("rules"))
    assert code == 1 and "--source-trn: invalid TRN 'bad'" in err


async def test_tls_to_a_plain_bus_says_so(buses: EventBusApp) -> None:
    url = buses.url("rules")
    code, _, err = await run_cli("topics", "--url", url.replace("tcp://", "tls://"))
    assert code == 3
    (line,) = err.splitlines()
    assert "does not speak TLS" in line and url in line and "eventbus serve" not in line


async def test_a_required_source_is_said_as_the_flag(tmp_path: Path) -> None:
    async with start_buses(tmp_path, {"id": "guarded", "allowed_sources": ["trn:user:"]}) as app:
        code, _, err = await run_cli("emit", "x", "--url", app.url("guarded"))
        assert code == 1 and "--source-trn is required on bus 'guarded'" in err
        code, _, err = await run_cli(
            "emit", "x", "--source-trn", "trn:org:a:b", "--url", app.url("guarded")
        )
        assert code == 1 and "--source-trn 'trn:org:a:b' is not allowed" in err
