"""Which bus a command talks to: `--url`, or `--bus ID` looked up in the config.

The CLI may not import the server for this (DESIGN.md §2), so it reads only
what it needs from `event_buses.json`: each bus's `id`, `listen`, `tls` (a
bus with TLS is reached at `tls://`) and `auth_token_env`. `eventbus config
validate` checks the whole file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import UsageError

__all__ = ["Target", "bus_ids", "bus_urls", "check_url", "default_config_path", "resolve_target"]

DEFAULT_CONFIG = "event_buses.json"


@dataclass(frozen=True)
class Target:
    url: str
    bus_id: str | None = None
    token: str | None = None
    #: The config's `auth_token_env` of the bus, to name it when a token is missing.
    token_env: str | None = None

    @property
    def name(self) -> str:
        return self.bus_id or self.url


def default_config_path() -> Path:
    return Path(os.environ.get("EVENTBUS_CONFIG") or DEFAULT_CONFIG)


def _read_buses(path: Path) -> list[dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {path} not found: pass --config PATH or --url tcp://host:port") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read config {path}: {exc} (run `eventbus config validate {path}`)") from None
    if not isinstance(data, list) or not all(isinstance(b, dict) for b in data):
        raise UsageError(f"config {path} is not a JSON array of buses (run `eventbus config validate {path}`)")
    return data


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return host


def bus_urls(config_path: Path) -> list[Target]:
    """Every bus in the config as a target, in file order."""
    targets = []
    for bus in _read_buses(config_path):
        listen = str(bus.get("listen", ""))
        host, _, port = listen.rpartition(":")
        token_env = bus.get("auth_token_env")
        token = os.environ.get(token_env) if isinstance(token_env, str) else None
        scheme = "tls" if bus.get("tls") else "tcp"
        targets.append(
            Target(
                f"{scheme}://{_connect_host(host)}:{port}",
                str(bus.get("id")),
                token,
                token_env if isinstance(token_env, str) else None,
            )
        )
    return targets


def bus_ids(config_path: Path) -> list[str]:
    """The ids of the buses in the config, in file order; none when it cannot be read."""
    try:
        buses = _read_buses(config_path)
    except UsageError:
        return []
    return [str(bus["id"]) for bus in buses if isinstance(bus.get("id"), str)]


def check_url(url: str) -> str:
    """`url` as the client takes it (`host:port` gets `tcp://`); a UsageError naming
    --url when it is not `tcp://host:port` or `tls://host:port`."""
    full = url if "://" in url else f"tcp://{url}"
    scheme = full.partition("://")[0]
    if scheme not in ("tcp", "tls"):
        raise UsageError(f"--url {url}: the scheme must be tcp:// or tls://, not {scheme}:// (e.g. --url tcp://127.0.0.1:4010)")
    parts = urlsplit(full)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise UsageError(f"--url {url}: expected {scheme}://host:port (e.g. --url tcp://127.0.0.1:4010)")
    return full


def resolve_target(url: str | None, bus_id: str | None, config: Path | None, token: str | None) -> Target:
    """--url wins; then --bus (or the config's first bus) from --config."""
    if url:
        if bus_id:
            raise UsageError("give either --url or --bus, not both")
        return Target(check_url(url), None, token)
    config_path = config or default_config_path()
    targets = bus_urls(config_path)
    if not targets:
        raise UsageError(f"config {config_path} lists no buses")
    if bus_id is None:
        chosen = targets[0]
    else:
        matching = [t for t in targets if t.bus_id == bus_id]
        if not matching:
            known = ", ".join(str(t.bus_id) for t in targets)
            raise UsageError(f"no bus {bus_id!r} in {config_path} (known: {known})")
        chosen = matching[0]
    return Target(chosen.url, chosen.bus_id, token or chosen.token, chosen.token_env)
