"""Which bus a command talks to: `--url`, or `--bus ID` looked up in the config.

The config is read with the server's own parser (`eventbus_core.config`, in
the core so the CLI need not import the server), as a client sees it: each
bus's `id`, `listen`, `tls` (a bus with TLS is reached at `tls://`) and the
token from `auth_token_env`, without the server's secrets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from eventbus_cli.errors import UsageError

if TYPE_CHECKING:
    from eventbus_core.config import BusConfig

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


def _read_buses(path: Path) -> tuple[BusConfig, ...]:
    # Imported here: pydantic's models load only for commands that read the config.
    from eventbus_core.config import ConfigError, load_config

    if not path.is_file():
        raise UsageError(
            f"config file {path} not found: pass --config PATH or --url tcp://host:port"
        )
    try:
        return load_config(path, secrets=False).buses
    except ConfigError as exc:
        first = next((f"{loc}: {msg}" if loc else msg for loc, msg in exc.problems), "invalid")
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise UsageError(
            f"config {path}: {first}{more} (run `eventbus config validate {path}`)"
        ) from None


def _connect_host(host: str) -> str:
    """Where a client reaches a bus that listens on `host` (an address in a URL)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def bus_urls(config_path: Path) -> list[Target]:
    """Every bus in the config as a target, in file order."""
    return [
        Target(
            f"{'tls' if bus.tls else 'tcp'}://{_connect_host(bus.host)}:{bus.port}",
            bus.id,
            bus.auth_token.get_secret_value() if bus.auth_token is not None else None,
            bus.auth_token_env,
        )
        for bus in _read_buses(config_path)
    ]


def bus_ids(config_path: Path) -> list[str]:
    """The ids of the buses in the config, in file order; none when it cannot be read."""
    try:
        return [bus.id for bus in _read_buses(config_path)]
    except UsageError:
        return []


def check_url(url: str) -> str:
    """`url` as the client takes it (`host:port` gets `tcp://`); a UsageError naming
    --url when it is not `tcp://host:port` or `tls://host:port`."""
    full = url if "://" in url else f"tcp://{url}"
    scheme = full.partition("://")[0]
    if scheme not in ("tcp", "tls"):
        raise UsageError(
            f"--url {url}: the scheme must be tcp:// or tls://, not {scheme}:// (e.g. --url tcp://127.0.0.1:4010)"
        )
    parts = urlsplit(full)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise UsageError(
            f"--url {url}: expected {scheme}://host:port (e.g. --url tcp://127.0.0.1:4010)"
        )
    return full


def resolve_target(
    url: str | None, bus_id: str | None, config: Path | None, token: str | None
) -> Target:
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
