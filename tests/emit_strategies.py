"""Hypothesis strategies for emit params, valid and not, as the JSON codec decodes them:
near every bound `EmitParams` draws (lengths 0/1/255/256, int64's ends, TRN and
topic syntax), wrong types, unknown and delivery keys."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

INT64_MAX = 2**63 - 1

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

_TOPIC_CHARS = "ab_:/-.*> Z9"
valid_topics = st.sampled_from(["a", "repo.pushed", "a_b:c/d-e.F9", "x" * 255, "a." * 127 + "b"])
topics = st.one_of(
    valid_topics,
    st.text(alphabet=_TOPIC_CHARS, max_size=12),
    st.text(alphabet="ab.", min_size=254, max_size=257),
    st.sampled_from(["", "_sys.x", "a..b", "a.*", ">", "a b", "ü", "x" * 256, "a.", ".a"]),
    json_scalars,
    st.lists(st.text(max_size=3), max_size=2),
)

valid_trns = st.sampled_from(
    [
        "trn:user:alice",
        "trn:org:acme:tool:workflow:etl:v2.1:prod@sha256:ab12",
        "trn:user:alice:tool:openapi:github-api:v1.0",
        "trn:a:" + "b" * 1018,
    ]
)
trns = st.one_of(
    valid_trns,
    st.builds(lambda body: "trn:" + body, st.text(alphabet="ab:._-*@9", max_size=14)),
    st.sampled_from(
        [
            "user:alice",
            "trn:user",
            "trn:user:*",
            "trn:user:alice@sha256:zz",
            "trn:user:alice@",
            "trn::a",
            "trn:a:" + "b" * 1019,
            "trn:a:b\n",
        ]
    ),
    json_scalars,
)

keys = st.one_of(
    st.text(min_size=0, max_size=3),
    st.sampled_from(["k" * 255, "k" * 256, "é" * 255, "é" * 256]),
    json_scalars,
)
timestamps = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([INT64_MAX, INT64_MAX + 1, 2**64 - 1, -(2**63), 1764300000123]),
    json_scalars,
)
objects = st.one_of(st.none(), st.dictionaries(st.text(max_size=4), json_values, max_size=3))

#: Every field an event may carry, each near its bounds and beyond them.
event_fields: dict[str, st.SearchStrategy[Any]] = {
    "payload": json_values,
    "timestamp": timestamps,
    "metadata": st.one_of(objects, json_values),
    "source_trn": st.one_of(st.none(), trns),
    "target_trn": st.one_of(st.none(), trns),
    "correlation_id": st.one_of(st.none(), keys),
    "idempotency_key": st.one_of(st.none(), keys),
    "event_id": json_values,
    "deliver_at": st.one_of(st.none(), timestamps),
    "delay_ms": st.one_of(st.none(), timestamps),
    "Topic": st.just("a"),
    "extra": json_values,
}

#: Emit params of any kind: with a topic most of the time, any subset of the other fields.
events = st.fixed_dictionaries({"topic": topics}, optional=event_fields) | st.fixed_dictionaries(
    {}, optional=event_fields
)

#: Emits the bus takes as they are: immediate, every field valid.
valid_events = st.fixed_dictionaries(
    {"topic": valid_topics},
    optional={
        "payload": json_values,
        "timestamp": st.integers(min_value=0, max_value=INT64_MAX),
        "metadata": objects,
        "source_trn": st.one_of(st.none(), valid_trns),
        "target_trn": st.one_of(st.none(), valid_trns),
        "correlation_id": st.one_of(st.none(), st.text(min_size=1, max_size=255)),
        "idempotency_key": st.one_of(st.none(), st.text(min_size=1, max_size=255)),
        "event_id": json_values,
    },
)

#: `emit_events` params: mostly `{"events": [...]}`, sometimes not even that.
batches = st.one_of(
    st.fixed_dictionaries({"events": st.lists(st.one_of(events, valid_events), max_size=4)}),
    st.fixed_dictionaries({"events": st.lists(valid_events, max_size=4)}),
    st.fixed_dictionaries(
        {"events": st.one_of(json_values, st.lists(json_values, max_size=2))},
        optional={"extra": json_values},
    ),
    st.dictionaries(st.sampled_from(["events", "event", "topic"]), json_values, max_size=2),
)
