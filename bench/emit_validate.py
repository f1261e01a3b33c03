"""Validating emits, per event: which validator the emit hot path uses (issue 14).

    .venv/bin/python -m bench.emit_validate [--events 1000] [--repeat 200]

Each candidate turns the params of one `emit_events` call (1,000 of the
bench's ~50-byte events, as the JSON codec decoded them) into the rows the
writer stores (`NewEvent`), as the bus must:

- `pydantic`: `EmitEventsParams.model_validate`, then a `NewEvent` per event
  (the path before issue 14);
- `pydantic-json`: `EmitEventsParams.model_validate_json` on the params' own
  bytes (for reference: the bus decodes a whole JSON-RPC line at once, so it
  never holds those bytes alone), then the rows;
- `msgspec`: `msgspec.convert` into a struct with the same constraints, the
  topic and TRN regexes (msgspec's `pattern` runs Python's `re` too) behind
  the same cache of names already checked, then the rows; skipped when
  msgspec is not installed (it is no dependency);
- `hand-written`: `eventbus_core.emit_rows.new_events`.

Also a frozen vs a plain slotted dataclass for the row itself. Prints µs
per event, best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import orjson

from eventbus_core.emit_rows import new_events, row_of
from eventbus_core.event import NewEvent, now_ms
from eventbus_core.params import EmitEventsParams
from eventbus_core.topics import TOPIC_RE
from eventbus_core.trn import TRN_RE

from ._common import make_payload


def _params(count: int) -> dict[str, Any]:
    events = [
        {
            "topic": "bench.batch",
            "payload": make_payload(i),
            "source_trn": "trn:user:alice:tool:bench:v1",
            "correlation_id": f"c-{i}",
        }
        for i in range(count)
    ]
    return {"events": events}


def _pydantic(params: dict[str, Any]) -> list[NewEvent]:
    now = now_ms()
    return [row_of(e, now) for e in EmitEventsParams.model_validate(params).events]


def _msgspec_candidate() -> Callable[[dict[str, Any]], list[NewEvent]] | None:
    try:
        import msgspec
    except ImportError:
        return None
    from typing import Annotated

    # defstruct, not a class body: this module's annotations are strings (__future__).
    key = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    trn = Annotated[str, msgspec.Meta(max_length=1024)]
    emit = msgspec.defstruct(
        "Emit",
        [
            ("topic", Annotated[str, msgspec.Meta(max_length=255)]),
            ("payload", Any, None),
            ("timestamp", Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None, None),
            ("metadata", dict[str, Any] | None, None),
            ("source_trn", trn | None, None),
            ("target_trn", trn | None, None),
            ("correlation_id", key | None, None),
            ("idempotency_key", key | None, None),
            ("event_id", Any, None),
        ],
        forbid_unknown_fields=True,
    )
    batch = msgspec.defstruct(
        "Batch",
        [("events", Annotated[list[emit], msgspec.Meta(max_length=10_000)])],  # type: ignore[valid-type]
        forbid_unknown_fields=True,
    )

    topic_ok, trn_ok = TOPIC_RE.fullmatch, TRN_RE.fullmatch
    # The same shortcut as emit_rows: names checked once are looked up after.
    topics: set[str] = set()
    trns: set[str] = set()

    def convert(params: dict[str, Any]) -> list[NewEvent]:
        now = now_ms()
        rows = []
        for e in msgspec.convert(params, batch).events:
            if e.topic not in topics:
                if topic_ok(e.topic) is None:
                    raise ValueError("topic")
                topics.add(e.topic)
            for trn in (e.source_trn, e.target_trn):
                if trn is not None and trn not in trns:
                    if trn_ok(trn) is None:
                        raise ValueError("trn")
                    trns.add(trn)
            rows.append(row_of(e, now))
        return rows

    return convert


def _best_us(fn: Callable[[], object], repeat: int, per: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best / per * 1e6


@dataclasses.dataclass(frozen=True, slots=True)
class _Frozen:
    topic: str
    payload: Any
    timestamp: int
    metadata: Any = None
    source_trn: Any = None
    target_trn: Any = None
    correlation_id: Any = None
    idempotency_key: Any = None


@dataclasses.dataclass(slots=True)
class _Plain:
    topic: str
    payload: Any
    timestamp: int
    metadata: Any = None
    source_trn: Any = None
    target_trn: Any = None
    correlation_id: Any = None
    idempotency_key: Any = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    params = _params(args.events)
    raw = orjson.dumps(params)
    candidates: dict[str, Callable[[], object]] = {
        "pydantic": lambda: _pydantic(params),
        "pydantic-json": lambda: [
            row_of(e, 0) for e in EmitEventsParams.model_validate_json(raw).events
        ],
        "hand-written": lambda: new_events(params, now_ms()),
    }
    msgspec_convert = _msgspec_candidate()
    if msgspec_convert is not None:
        candidates["msgspec"] = lambda: msgspec_convert(params)
    assert new_events(params, 0) is not None
    for name, fn in candidates.items():
        print(f"{name:14} {_best_us(fn, args.repeat, args.events):6.3f} µs/event")
    n = args.events
    for kind in (_Frozen, _Plain):
        us = _best_us(lambda k=kind: [k("t", i, i) for i in range(n)], args.repeat, n)  # type: ignore[misc]
        print(f"row {kind.__name__:9} {us:6.3f} µs/event")


if __name__ == "__main__":
    main()
