"""EventBridge conformance: the AWS-validated cases in shared/conformance/eventbridge-patterns.

The data lives outside the repository (see its README.md for source and license);
without it this module is skipped, and tests/rules/lang/test_pattern.py still covers
every operator from the AWS documentation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eventbus_server.rules.lang.operators import PatternError
from eventbus_server.rules.lang.pattern import compile_pattern

# tests/rules/lang/<this file> -> parents[3] is the repo, parents[4] its parent holding shared/.
CASES_FILE = (
    Path(__file__).resolve().parents[4]
    / "shared"
    / "conformance"
    / "eventbridge-patterns"
    / "cases.json"
)

if not CASES_FILE.is_file():
    pytest.skip(f"EventBridge conformance data not found at {CASES_FILE}", allow_module_level=True)

CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))


def test_all_cases_are_present() -> None:
    assert len(CASES) == 156
    verdicts = [case["verdict"] for case in CASES]
    assert (verdicts.count("match"), verdicts.count("no_match"), verdicts.count("invalid")) == (
        67,
        51,
        38,
    )


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_case(case: dict[str, Any]) -> None:
    if case["verdict"] == "invalid":
        with pytest.raises(PatternError):
            compile_pattern(case["pattern"])
        return
    pattern = compile_pattern(case["pattern"])
    if case["verdict"] == "match":
        assert pattern.matches(case["event"]) is True
        assert pattern.explain(case["event"]) == []
    else:
        assert pattern.matches(case["event"]) is False
        assert pattern.explain(case["event"]) != []
