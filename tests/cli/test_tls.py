"""A bus with `tls`: the client over `tls://`, and the CLI reaching it by `--bus`
(which must pick `tls://` from the config). The certificate is a throwaway
self-signed one for 127.0.0.1, trusted through SSL_CERT_FILE as a user with a
private CA would."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from eventbus_cli.targets import bus_urls
from eventbus_client import connect
from eventbus_core.errors import ConnectionLost
from tests.cli.test_cli_basic import run_cli
from tests.conftest import start_buses


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_a_tls_bus_serves_tls_clients_and_the_cli_finds_it_by_bus_id(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    tls = {"cert": str(cert), "key": str(key)}
    async with start_buses(tmp_path, {"id": "secure", "tls": tls}) as server:
        port = server.url("secure").rsplit(":", 1)[1]
        trusted = ssl.create_default_context(cafile=str(cert))
        async with await connect(f"tls://127.0.0.1:{port}", ssl_context=trusted) as bus:
            await bus.emit("secure.hello", {"over": "tls"})
        with pytest.raises(ConnectionLost):  # an untrusted certificate is refused
            await connect(f"tls://127.0.0.1:{port}")

        config = tmp_path / "event_buses.json"
        config.write_text(json.dumps([{"id": "secure", "listen": f"0.0.0.0:{port}", "tls": tls}]))
        assert [t.url for t in bus_urls(config)] == [f"tls://127.0.0.1:{port}"]
        code, out, err = await run_cli(
            "poll",
            "secure.>",
            "--bus",
            "secure",
            "--config",
            str(config),
            env={"SSL_CERT_FILE": str(cert)},
        )
        assert code == 0, err
        assert json.loads(out)["payload"] == {"over": "tls"}


async def test_plain_tcp_to_a_tls_bus_says_to_use_tls(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    async with start_buses(
        tmp_path, {"id": "secure", "tls": {"cert": str(cert), "key": str(key)}}
    ) as server:
        port = server.url("secure").rsplit(":", 1)[1]
        code, _, err = await run_cli("topics", "--url", f"tcp://127.0.0.1:{port}")
        assert code == 3
        (line,) = err.splitlines()
        assert f"use tls://127.0.0.1:{port}" in line and "eventbus serve" not in line
        code, _, err = await run_cli(
            "topics", "--url", f"tls://127.0.0.1:{port}"
        )  # its certificate is not trusted
        assert code == 3 and "certificate is not trusted" in err and "SSL_CERT_FILE" in err
