"""Exit codes and the one place CLI failures become a red line (DESIGN.md §9).

0 ok · 1 the bus answered with an error · 2 usage or config error · 3 cannot connect.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUS_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 the bus answered with an error, 2 usage/config error, 3 cannot connect."


class UsageError(Exception):
    """Bad arguments or config: exit 2."""
