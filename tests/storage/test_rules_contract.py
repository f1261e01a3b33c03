"""The storage contract for rules, rule firings and the engine's cursor."""

from __future__ import annotations

from collections.abc import Callable

from eventbus_server.storage import Storage
from eventbus_server.storage.base import Firing, FiringQuery, FiringSelection

BODY = {"id": "r1", "topic": "orders.*", "action": {"type": "EmitEvent", "topic": "x"}}


async def test_rules_are_stored_replaced_listed_and_deleted(storage: Storage) -> None:
    assert await storage.load_rules() == []
    assert await storage.put_rule("r2", {**BODY, "id": "r2"}, True, 10) is True
    assert await storage.put_rule("r1", BODY, False, 11) is True
    rules = await storage.load_rules()
    assert [(r.id, r.enabled, r.created_at) for r in rules] == [("r1", False, 11), ("r2", True, 10)]
    assert rules[0].body == BODY

    replaced = {**BODY, "topic": "orders.>"}
    assert await storage.put_rule("r1", replaced, True, 20) is False
    (r1,) = [r for r in await storage.load_rules() if r.id == "r1"]
    assert (r1.body["topic"], r1.enabled, r1.created_at, r1.updated_at) == (
        "orders.>",
        True,
        11,
        20,
    )

    assert await storage.set_rule_enabled("r1", False, 30) is True
    assert await storage.set_rule_enabled("nope", False, 30) is False
    assert await storage.delete_rule("r2") is True
    assert await storage.delete_rule("r2") is False
    assert [(r.id, r.enabled) for r in await storage.load_rules()] == [("r1", False)]


async def test_a_pair_is_claimed_once_and_the_cursor_moves_with_it(storage: Storage) -> None:
    assert await storage.load_cursor() is None
    first = await storage.claim_firings([("r1", 5), ("r2", 5)], cursor=5)
    assert [(f.rule_id, f.event_id, f.status) for f in first] == [
        ("r1", 5, "pending"),
        ("r2", 5, "pending"),
    ]
    assert first[0].firing_id < first[1].firing_id
    # Replaying the same events after a crash claims nothing new.
    again = await storage.claim_firings([("r1", 5), ("r1", 6)], cursor=6)
    assert [(f.rule_id, f.event_id) for f in again] == [("r1", 6)]
    assert await storage.load_cursor() == 6
    # The cursor never moves back.
    await storage.claim_firings([], cursor=3)
    await storage.save_cursor(4)
    assert await storage.load_cursor() == 6
    await storage.save_cursor(9)
    assert await storage.load_cursor() == 9


async def test_finishing_a_firing_records_it_and_counts_it_on_its_rule(storage: Storage) -> None:
    await storage.put_rule("r1", BODY, True, 1)
    ok, bad, skipped = await storage.claim_firings([("r1", 1), ("r1", 2), ("r1", 3)], cursor=3)
    assert [f.event_id for f in await storage.list_firings(FiringQuery(status="pending"))] == [
        1,
        2,
        3,
    ]

    await storage.finish_firing(_done(ok, "ok", result={"n": [1, "two"]}, started_at=100))
    await storage.finish_firing(_done(bad, "failed", error="tool said no", started_at=200))
    await storage.finish_firing(_done(skipped, "skipped", error="max_hops", started_at=300))

    assert await storage.list_firings(FiringQuery(status="pending")) == []
    (rule,) = await storage.load_rules()
    assert (rule.fired, rule.failed, rule.last_fired_at) == (1, 1, 200)
    firings = await storage.list_firings(FiringQuery())
    assert [(f.status, f.attempts, f.result, f.error) for f in firings] == [
        ("ok", 2, {"n": [1, "two"]}, None),
        ("failed", 2, None, "tool said no"),
        ("skipped", 2, None, "max_hops"),
    ]
    assert firings[0].wire()["duration_ms"] == 7


async def test_firings_are_listed_by_rule_status_and_cursor(storage: Storage) -> None:
    claimed = await storage.claim_firings([("a", 1), ("b", 1), ("a", 2), ("a", 3)], cursor=3)
    await storage.finish_firing(_done(claimed[2], "failed", error="x"))

    def ids(firings: list[Firing]) -> list[int]:
        return [f.firing_id for f in firings]

    all_ids = ids(claimed)
    assert ids(await storage.list_firings(FiringQuery(rule_id="a"))) == [
        all_ids[0],
        all_ids[2],
        all_ids[3],
    ]
    assert ids(await storage.list_firings(FiringQuery(status="failed"))) == [all_ids[2]]
    assert ids(await storage.list_firings(FiringQuery(since=all_ids[1], limit=1))) == [all_ids[2]]
    assert ids(await storage.list_firings(FiringQuery(order="desc", limit=2))) == [
        all_ids[3],
        all_ids[2],
    ]
    assert ids(await storage.list_firings(FiringQuery(order="desc", since=all_ids[1]))) == [
        all_ids[0]
    ]


async def test_rules_firings_and_cursor_survive_reopen(reopen: Callable[[], Storage]) -> None:
    store = reopen()
    await store.open()
    await store.put_rule("r1", BODY, True, 1)
    done, pending = await store.claim_firings([("r1", 1), ("r1", 2)], cursor=2)
    await store.finish_firing(_done(done, "ok"))
    await store.close()

    store = reopen()
    await store.open()
    try:
        assert [r.id for r in await store.load_rules()] == ["r1"]
        assert await store.load_cursor() == 2
        assert [f.firing_id for f in await store.pending_firings()] == [pending.firing_id]
        assert await store.claim_firings([("r1", 1), ("r1", 2)], cursor=2) == []
    finally:
        await store.close()


def _done(
    firing: Firing,
    status: str,
    *,
    result: object = None,
    error: str | None = None,
    started_at: int = 50,
    attempts: int = 2,
) -> Firing:
    return Firing(
        firing.firing_id,
        firing.rule_id,
        firing.event_id,
        status,
        attempts,
        started_at,
        7,
        result,
        error,
    )


async def test_rearming_sets_chosen_final_firings_pending_and_takes_them_off_failed(
    storage: Storage,
) -> None:
    await storage.put_rule("r1", BODY, True, 1)
    await storage.put_rule("r2", {**BODY, "id": "r2"}, True, 1)
    a, b, c, d = await storage.claim_firings([("r1", 1), ("r1", 2), ("r2", 3), ("r1", 4)], cursor=4)
    await storage.finish_firing(_done(a, "failed", error="no", started_at=1, attempts=3))
    await storage.finish_firing(_done(b, "ok", started_at=2))
    await storage.finish_firing(_done(c, "failed", error="no", started_at=3, attempts=2))
    # d stays pending: never re-armed, it is running.

    none = await storage.rearm_firings(FiringSelection(firing_ids=(b.firing_id, d.firing_id)))
    assert none == []  # b is ok and d pending: not dead letters
    chosen = await storage.rearm_firings(FiringSelection(rule_id="r1"))
    assert [(f.firing_id, f.status, f.attempts) for f in chosen] == [(a.firing_id, "pending", 3)]
    rules = {r.id: r for r in await storage.load_rules()}
    assert (rules["r1"].failed, rules["r2"].failed) == (0, 1)
    rest = await storage.rearm_firings(FiringSelection())
    assert [f.firing_id for f in rest] == [c.firing_id]
    ok = await storage.rearm_firings(FiringSelection(firing_ids=(b.firing_id,), status="ok"))
    assert [f.firing_id for f in ok] == [b.firing_id]
    pending = await storage.list_firings(FiringQuery(status="pending"))
    assert [f.firing_id for f in pending] == [a.firing_id, b.firing_id, c.firing_id, d.firing_id]
    assert (
        await storage.rearm_firings(FiringSelection(firing_ids=(a.firing_id,))) == []
    )  # pending now
