"""Ways an operator loses a bus's SQLite file under a running server."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def delete(path: Path) -> None:
    path.unlink()


def replace(path: Path) -> None:
    """Another database moved over the file (`mv other.db global.db`)."""
    other = path.with_name("other.db")
    sqlite3.connect(other).execute("CREATE TABLE other (x)").connection.close()
    os.replace(other, path)
