"""`python -m eventbus_server --config event_buses.json [--bus ID ...]`.

The same server as `eventbus serve`, without importing the CLI; tests and
benchmarks start it as a subprocess this way.
"""

from __future__ import annotations

import argparse
import sys

from eventbus_core.config import ConfigError, load_config
from eventbus_server.app import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventbus_server")
    parser.add_argument("--config", default="event_buses.json")
    parser.add_argument("--bus", action="append", default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.bus:
            for bus_id in args.bus:
                config.bus(bus_id)
    except (ConfigError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(config, bus_ids=args.bus, log_level=args.log_level, log_format=args.log_format)


if __name__ == "__main__":
    sys.exit(main())
