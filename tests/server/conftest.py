from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["memory", "sqlite"])
def storage_fields(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A bus's storage fields, once in memory and once on a SQLite file."""
    return {} if request.param == "memory" else {"persist": True, "storage_path": "b.db"}
