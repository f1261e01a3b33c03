"""The one place config is loaded and validated (DESIGN.md §7).

`load_config(path)` reads `event_buses.json` (a JSON array of buses), expands
`${ENV}` in `storage_url`, reads each bus's token from `auth_token_env`,
resolves `storage_path` against the config file's folder, and returns frozen
models. Every problem is reported at once, each with its location
(`[1].listen: ...`), in a `ConfigError`. Nothing reads `os.environ` later.

It lives in the core so the server and the CLI read the file with one
parser. The CLI loads it with `secrets=False`: a client needs a bus's id,
address, TLS and token variable, not the server's secrets, so a variable
that is only set where the server runs is no problem there (it stays
unexpanded, and the token is None).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from eventbus_core.durations import parse_duration_s
from eventbus_core.locations import format_loc, plain_message
from eventbus_core.numbers import INT64_MAX
from eventbus_core.rules import MAX_BACKOFF_MS, MAX_TIMEOUT_MS
from eventbus_core.trn import validate_trn_pattern

__all__ = [
    "BusConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "RetentionConfig",
    "RetryConfig",
    "TlsConfig",
    "ToolRoute",
    "hide_credentials",
    "load_config",
    "parse_config",
]

_BUS_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The config is invalid; `problems` lists every `(location, message)`."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {loc}: {msg}" if loc else f"  {msg}" for loc, msg in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{source}: {len(self.problems)} {noun}\n{lines}")


def _bus_id(value: str) -> str:
    if not _BUS_ID_RE.fullmatch(value):
        raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def _listen(value: str) -> str:
    host, port = split_listen(value)
    if not host:
        raise ValueError("must be 'host:port' (for example '127.0.0.1:4010')")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """`'127.0.0.1:4010'` → `('127.0.0.1', 4010)`; `'[::1]:4010'` → `('::1', 4010)`."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("must be 'host:port' (for example '127.0.0.1:4010')")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


#: The longest duration a config takes: 100 years. Beyond it nothing changes but that
#: milliseconds stop fitting where they go (a dedup_window of 1e300 s made every
#: emit with an idempotency_key fail: SQLite cannot compare with such a timestamp).
MAX_DURATION_S = 100 * 365.25 * 86_400


def _duration_s(value: Any) -> float:
    seconds = parse_duration_s(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(
            f"a duration must be at most 100 years ({MAX_DURATION_S:.0f} s), not {value!r}"
        )
    return seconds


BusId = Annotated[str, AfterValidator(_bus_id)]
Listen = Annotated[str, AfterValidator(_listen)]
TrnPattern = Annotated[str, AfterValidator(validate_trn_pattern)]
DurationS = Annotated[float, BeforeValidator(_duration_s)]
#: A timeout: a duration above zero.
TimeoutS = Annotated[float, BeforeValidator(_duration_s), Field(gt=0)]


class _Strict(BaseModel):
    # strict: `"yes"` is not a boolean and `"8"` is not an integer (DESIGN §7). Paths and
    # arrays opt out below, since JSON has no path or tuple type to be strict about.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


#: A path or an array, from a JSON string or array (items stay strict).
Lax = Field(strict=False)


class RetentionConfig(_Strict):
    max_age: DurationS | None = None
    max_events: int | None = Field(default=None, ge=1, le=INT64_MAX)


class RetryConfig(_Strict):
    attempts: int = Field(default=3, ge=1, le=100)
    backoff_ms: int = Field(default=200, ge=0, le=MAX_BACKOFF_MS)


class TlsConfig(_Strict):
    cert: Annotated[Path, Lax]
    key: Annotated[Path, Lax]


def hide_credentials(url: str) -> str:
    """`scheme://user:password@host/…` → `scheme://***@host/…`, for logs and `config show`."""
    return re.sub(r"//[^@/]*@", "//***@", url)


class ToolRoute(_Strict):
    """Where tools whose TRN matches `match` are invoked (used by the rule engine)."""

    match: TrnPattern
    kind: Literal["http", "jsonrpc", "command", "python", "mcp"]
    url: str | None = None
    method: str | None = None
    argv: Annotated[tuple[str, ...], Lax] | None = None
    function: str | None = None
    timeout_ms: int = Field(default=30_000, ge=1, le=MAX_TIMEOUT_MS)
    headers: dict[str, str] | None = None
    # `mcp` routes (DESIGN §12): a stdio server's argv, or `url` for Streamable HTTP.
    command: Annotated[tuple[str, ...], Lax] | None = None
    #: The MCP tool name; else the TRN's last segment (the one before it when that is a version).
    tool: str | None = Field(default=None, min_length=1)
    #: Extra environment of a stdio MCP server (`${ENV}` is expanded, like headers).
    env: dict[str, str] | None = None
    #: What an `http` route posts: `{tool_id, input, event, firing_id}` (json) or the
    #: event as a structured CloudEvent (DESIGN §14).
    format: Literal["json", "cloudevents"] = "json"

    @model_validator(mode="after")
    def _kind_has_its_target(self) -> ToolRoute:
        if self.kind == "mcp":
            return self._mcp_target()
        needed = {"http": "url", "jsonrpc": "url", "command": "argv", "python": "function"}[
            self.kind
        ]
        if getattr(self, needed) in (None, ()):
            raise ValueError(f"a '{self.kind}' tool route needs '{needed}'")
        extra = [key for key in ("command", "tool", "env") if getattr(self, key) is not None]
        if extra:
            raise ValueError(f"'{extra[0]}' is only for 'mcp' tool routes")
        if self.format != "json" and self.kind != "http":
            raise ValueError("'format' is only for 'http' tool routes")
        return self

    def _mcp_target(self) -> ToolRoute:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "an 'mcp' tool route needs either 'command' (stdio) or 'url' (Streamable HTTP)"
            )
        if self.command is not None and (not self.command or not self.command[0]):
            raise ValueError('\'command\' must name a program: ["program", "arg", …]')
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("an 'mcp' route's 'url' must start with http:// or https://")
        if self.headers is not None and self.url is None:
            raise ValueError(
                "'headers' are for an 'mcp' route with 'url'; a stdio server takes 'env'"
            )
        if self.env is not None and self.command is None:
            raise ValueError("'env' is for an 'mcp' route with 'command'")
        if self.method is not None or self.argv is not None or self.function is not None:
            raise ValueError(
                "an 'mcp' route takes 'command' or 'url' (not 'argv', 'method' or 'function')"
            )
        return self


class _Listens:
    """`host` and `port` of a model's `listen` (the bus's, its HTTP side's)."""

    if TYPE_CHECKING:  # a field of the model; declared here it would move ahead of `id`
        listen: str

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


class HttpConfig(_Strict, _Listens):
    """The bus's HTTP side (DESIGN §14): metrics, health, CloudEvents in, Server-Sent Events out."""

    listen: Listen
    #: /metrics without the bus's token (a token bus guards every other path).
    metrics_public: bool = False
    #: The largest request body (POST /events); none: the bus's max_message_bytes.
    max_body_bytes: int | None = Field(default=None, ge=1024, le=INT64_MAX)
    #: Open `GET /events` streams at once; past it 429.
    max_streams: int = Field(default=256, ge=1, le=100_000)
    #: Seconds between keep-alive comments on an idle event stream.
    heartbeat_s: TimeoutS = 15.0


class BusConfig(_Strict, _Listens):
    id: BusId
    listen: Listen
    persist: bool = False
    enable_rules: bool = False
    allowed_sources: Annotated[tuple[TrnPattern, ...], Lax] | None = None
    max_concurrency: int = Field(default=8, ge=1, le=10_000)
    storage_path: Annotated[Path, Lax] | None = None
    storage_url: SecretStr | None = None
    # Every integer within int64 (DESIGN §3): 10**30 passed, and memory_buffer crashed the start.
    queue_size: int = Field(default=10_000, ge=1, le=INT64_MAX)
    #: The emit queue in bytes of the requests waiting in it (their JSON lines).
    max_queue_bytes: int = Field(default=64 * 1_048_576, ge=1024, le=INT64_MAX)
    max_message_bytes: int = Field(default=1_048_576, ge=1024, le=INT64_MAX)
    max_connections: int = Field(default=1024, ge=1, le=INT64_MAX)
    subscriber_buffer: int = Field(default=10_000, ge=1, le=INT64_MAX)
    memory_buffer: int = Field(default=10_000, ge=1, le=INT64_MAX)
    #: The same ring in bytes (of its events as JSON): 10,000 events of 1 MB were 10 GB.
    memory_buffer_bytes: int = Field(default=256 * 1_048_576, ge=1024, le=INT64_MAX)
    durability: Literal["normal", "full"] = "normal"
    retention: RetentionConfig | None = None
    dedup_window: DurationS = 600.0
    auth_token_env: str | None = None
    auth_token: SecretStr | None = Field(default=None, exclude=True)
    #: The config file's folder (never written in the file): `storage_path` is resolved
    #: against it and a `python` tool's module is imported with it on the import path.
    config_dir: Path | None = Field(default=None, exclude=True)
    tls: TlsConfig | None = None
    tools: Annotated[tuple[ToolRoute, ...], Lax] = ()
    retry: RetryConfig = RetryConfig()
    max_hops: int = Field(default=8, ge=1, le=1000)
    max_tool_reply_bytes: int = Field(default=1_048_576, ge=1, le=INT64_MAX)
    max_rules: int = Field(default=10_000, ge=1, le=1_000_000)
    max_consumers: int = Field(default=1000, ge=1, le=100_000)
    # The limits of DESIGN §3: no client can hurt another (docs/protocol.md#limits).
    max_inflight: int = Field(default=256, ge=1, le=1_000_000)
    max_output_bytes: int = Field(default=16 * 1_048_576, ge=65_536, le=INT64_MAX)
    write_timeout_s: TimeoutS = 30.0
    max_batch: int = Field(default=1000, ge=1, le=1_000_000)
    max_subscriptions: int = Field(default=1000, ge=1, le=1_000_000)
    read_timeout_s: TimeoutS = 30.0
    auth_timeout_s: TimeoutS = 10.0
    #: Buses of this process whose rules may emit here (an `EmitEvent` with `bus`).
    accept_from_buses: Annotated[tuple[BusId, ...], Lax] = ()
    # Scheduled events and schedules (DESIGN §11, docs/schedules.md): past the caps -32005.
    #: Delayed events stored and not yet due.
    max_scheduled: int = Field(default=100_000, ge=1, le=100_000_000)
    #: Recurring schedules.
    max_schedules: int = Field(default=1000, ge=1, le=1_000_000)
    #: How far ahead `deliver_at` / `delay_ms` may be (default a year).
    max_schedule_delay_s: TimeoutS = 365 * 24 * 3600.0
    #: The HTTP side door (DESIGN §14); none: no HTTP.
    http: HttpConfig | None = None

    @property
    def http_body_limit(self) -> int:
        """The largest HTTP request body: `http.max_body_bytes`, else `max_message_bytes`."""
        limit = self.http.max_body_bytes if self.http is not None else None
        return limit if limit is not None else self.max_message_bytes

    @model_validator(mode="after")
    def _storage_fits_persist(self) -> BusConfig:
        if self.storage_path is not None and self.storage_url is not None:
            raise ValueError(
                "set either storage_path (SQLite) or storage_url (PostgreSQL), not both"
            )
        has_storage = self.storage_path is not None or self.storage_url is not None
        if self.persist and not has_storage:
            raise ValueError("persist is true but neither storage_path nor storage_url is set")
        if has_storage and not self.persist:
            raise ValueError(
                "storage is set but persist is false; set persist: true or remove the storage"
            )
        url = self.storage_url.get_secret_value() if self.storage_url is not None else None
        # A URL still holding a ${NAME} was loaded without secrets (a client's view).
        if (
            url is not None
            and not _ENV_RE.search(url)
            and not url.startswith(("postgresql://", "postgres://"))
        ):
            raise ValueError("storage_url must start with postgresql://")
        return self

    @property
    def storage_kind(self) -> str:
        if self.storage_url is not None:
            return "postgres"
        return "sqlite" if self.storage_path is not None else "memory"

    def storage_description(self) -> str:
        """What `bus_info` and logs show; never the database password."""
        if self.storage_path is not None:
            return f"sqlite:{self.storage_path}"
        if self.storage_url is not None:
            return "postgres:" + hide_credentials(self.storage_url.get_secret_value())
        return "memory"


#: The models under a bus key, for "did you mean" on their unknown keys.
_NESTED: dict[str, type[BaseModel]] = {
    "retention": RetentionConfig,
    "retry": RetryConfig,
    "tls": TlsConfig,
    "tools": ToolRoute,
    "http": HttpConfig,
}


class Config(_Strict):
    path: Path | None = None
    buses: tuple[BusConfig, ...]

    def bus(self, bus_id: str) -> BusConfig:
        for bus in self.buses:
            if bus.id == bus_id:
                return bus
        known = ", ".join(b.id for b in self.buses) or "none"
        raise KeyError(f"no bus {bus_id!r} in the config (known: {known})")


def _prepare_bus(
    raw: Any, index: int, base_dir: Path, env: Mapping[str, str], secrets: bool
) -> tuple[Any, list[tuple[str, str]]]:
    """Resolve paths, env references and the token before validation."""
    if not isinstance(raw, dict):
        return raw, []
    bus = dict(raw)
    problems: list[tuple[str, str]] = []
    path = bus.get("storage_path")
    if isinstance(path, str) and path:
        bus["storage_path"] = str((base_dir / path).resolve())
    elif path == "":
        # Path("") would be "." in the current directory, not a file next to the config.
        problems.append((f"[{index}].storage_path", "must not be empty"))
    url = bus.get("storage_url")
    if isinstance(url, str):
        bus["storage_url"] = _expand(url, f"[{index}].storage_url", env, problems, secrets)
    tools = bus.get("tools")
    if isinstance(tools, list):
        # Tool credentials stay out of the file too: `"Authorization": "Bearer ${TOKEN}"`.
        bus["tools"] = [
            _expand_headers(route, f"[{index}].tools[{i}]", env, problems, secrets)
            for i, route in enumerate(tools)
        ]
    if "config_dir" in bus:
        problems.append(
            (
                f"[{index}].config_dir",
                "not allowed in the file; it is the folder of the config file",
            )
        )
    bus["config_dir"] = base_dir.resolve()
    if "auth_token" in bus:
        problems.append(
            (
                f"[{index}].auth_token",
                "not allowed in the file; name an env variable with auth_token_env",
            )
        )
        bus.pop("auth_token")
    token_env = bus.get("auth_token_env")
    if isinstance(token_env, str):
        token = env.get(token_env)
        if not token and secrets:
            problems.append(
                (
                    f"[{index}].auth_token_env",
                    f"environment variable {token_env} is not set or empty",
                )
            )
        elif token:
            bus["auth_token"] = token
    return bus, problems


def _expand(
    text: str, where: str, env: Mapping[str, str], problems: list[tuple[str, str]], secrets: bool
) -> str:
    """`${NAME}` → the variable's value; an unset one is a problem at `where` (without
    `secrets`, it stays as it is written)."""
    if not secrets:
        return _ENV_RE.sub(lambda m: env.get(m.group(1), m.group(0)), text)
    for name in _ENV_RE.findall(text):
        if name not in env:
            problems.append((where, f"environment variable {name} is not set"))
    return _ENV_RE.sub(lambda m: env.get(m.group(1), ""), text)


def _expand_headers(
    route: Any, where: str, env: Mapping[str, str], problems: list[tuple[str, str]], secrets: bool
) -> Any:
    """`${NAME}` in a route's `headers` and (an `mcp` stdio server's) `env` values."""
    if not isinstance(route, dict):
        return route
    expanded_route = dict(route)
    for key in ("headers", "env"):
        values = route.get(key)
        if isinstance(values, dict):
            expanded_route[key] = {
                name: _expand(value, f"{where}.{key}.{name}", env, problems, secrets)
                if isinstance(value, str)
                else value
                for name, value in values.items()
            }
    return expanded_route


def _listen_address(value: Any) -> tuple[str, int] | None:
    try:
        return split_listen(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _binds(host: str) -> set[tuple[int, str]]:
    """What binding `host` takes: (IP version, address), `*` for every address of that version."""
    if host == "localhost":
        return {(4, "127.0.0.1"), (6, "::1")}
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return {(0, host.lower())}  # a name: only the same name is known to collide
    return {(address.version, "*" if address.is_unspecified else str(address))}


def _collide(a: set[tuple[int, str]], b: set[tuple[int, str]]) -> bool:
    return any(
        (va == vb and "*" in (ha, hb)) or (va, ha) == (vb, hb) for va, ha in a for vb, hb in b
    )


def _duplicates(raw_buses: Sequence[Any]) -> list[tuple[str, str]]:
    """Duplicate ids and colliding listen addresses, also among buses that have other problems.

    `0.0.0.0:P` takes port P on every IPv4 address, so it collides with
    `127.0.0.1:P` (and `[::]:P` with every IPv6 address): caught here, not as
    `[Errno 98]` when the second bus binds.
    """
    problems: list[tuple[str, str]] = []
    seen_ids: dict[str, int] = {}
    seen_listen: list[tuple[str, Any, int, set[tuple[int, str]]]] = []
    for index, bus in enumerate(raw_buses):
        if not isinstance(bus, dict):
            continue
        bus_id = bus.get("id")
        if isinstance(bus_id, str):
            if bus_id in seen_ids:
                problems.append(
                    (f"[{index}].id", f"duplicate bus id {bus_id!r} (also [{seen_ids[bus_id]}])")
                )
            seen_ids.setdefault(bus_id, index)
        http = bus.get("http")
        listens = [("listen", bus.get("listen"))]
        if isinstance(http, dict):
            listens.append(("http.listen", http.get("listen")))
        for key, listen in listens:
            address = _listen_address(listen)
            if address is None or address[1] == 0:
                continue
            where = f"[{index}].{key}"
            binds = _binds(address[0])
            for other, other_listen, port, other_binds in seen_listen:
                if port == address[1] and _collide(binds, other_binds):
                    if binds == other_binds:
                        message = f"duplicate listen address {listen!r} (also {other})"
                    else:
                        message = f"{listen!r} collides with {other_listen!r} of {other}: both take port {port}"
                    problems.append((where, message))
                    break
            seen_listen.append(
                (where if key != "listen" else f"[{index}]", listen, address[1], binds)
            )
    return problems


def _problems(exc: ValidationError, index: int) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = format_loc([index, *error["loc"]])
        message = (
            _unknown_key(error["loc"])
            if error["type"] == "extra_forbidden"
            else plain_message(error)
        )
        problems.append((loc, message))
    return problems


def _unknown_key(loc: Sequence[Any]) -> str:
    """`unknown key 'max_conection' (did you mean 'max_connections'?)`."""
    key = str(loc[-1])
    model: type[BaseModel] = BusConfig
    for step in loc[:-1]:
        if isinstance(step, str):
            nested = _NESTED.get(step)
            if nested is None:
                break
            model = nested
    known = [
        name for name, info in model.model_fields.items() if not info.exclude and name != "path"
    ]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _unknown_senders(raw_buses: Sequence[Any]) -> list[tuple[str, str]]:
    """`accept_from_buses` entries that name no bus of the file (or the bus itself)."""
    ids = [bus.get("id") for bus in raw_buses if isinstance(bus, dict)]
    known = {bus_id for bus_id in ids if isinstance(bus_id, str)}
    problems: list[tuple[str, str]] = []
    for index, bus in enumerate(raw_buses):
        senders = bus.get("accept_from_buses") if isinstance(bus, dict) else None
        if not isinstance(senders, list):
            continue
        for position, sender in enumerate(senders):
            if not isinstance(sender, str) or (sender in known and sender != bus.get("id")):
                continue
            where = f"[{index}].accept_from_buses[{position}]"
            if sender == bus.get("id"):
                problems.append(
                    (where, "a bus's own rules may always emit on it; list other buses only")
                )
                continue
            close = difflib.get_close_matches(sender, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append((where, f"no bus {sender!r} in this config{hint}"))
    return problems


def parse_config(
    data: Any,
    *,
    source: str = "config",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    secrets: bool = True,
) -> Config:
    """Validate already-decoded config data; raises ConfigError with every problem."""
    env = os.environ if env is None else env
    base_dir = base_dir or Path.cwd()
    if not isinstance(data, list):
        raise ConfigError(source, [("", "the config must be a JSON array of buses")])
    if not data:
        raise ConfigError(source, [("", "the config lists no buses")])
    problems: list[tuple[str, str]] = []
    buses: list[BusConfig] = []
    for index, raw in enumerate(data):
        prepared, found = _prepare_bus(raw, index, base_dir, env, secrets)
        problems.extend(found)
        try:
            buses.append(BusConfig.model_validate(prepared))
        except ValidationError as exc:
            problems.extend(_problems(exc, index))
    problems.extend(_duplicates(data))
    problems.extend(_unknown_senders(data))
    if problems:
        raise ConfigError(source, problems)
    return Config(buses=tuple(buses))


def load_config(
    path: str | Path, *, env: Mapping[str, str] | None = None, secrets: bool = True
) -> Config:
    """Read and validate `event_buses.json`; raises ConfigError with every problem.

    `secrets=False`: a client's view (see the module's docstring)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            str(path), [("", f"cannot read the config file: {exc.strerror}")]
        ) from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(str(path), [("", f"not valid JSON: {exc}")]) from None
    config = parse_config(
        data, source=str(path), base_dir=path.resolve().parent, env=env, secrets=secrets
    )
    return config.model_copy(update={"path": path.resolve()})
