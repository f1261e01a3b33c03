"""SVG snapshots of the main screens (pytest-textual-snapshot) with fixed data:
no network, fixed ids and timestamps, fixed rates. Update after a deliberate
change with `pytest tests/ui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from eventbus_cli.ui.app import DashboardApp
from eventbus_cli.ui.model import BusView
from eventbus_cli.ui.schedules import ScheduleBoard
from eventbus_core.results import ConsumerInfo, ScheduledEventInfo, ScheduleInfo

T0 = 1_795_900_000_000


def fixed_buses() -> list[BusView]:
    main = BusView("global", "tcp://127.0.0.1:4010")
    main.state = "connected"
    main.info = {
        "storage": "sqlite:/srv/eventbus/data/global.db",
        "enable_rules": True,
        "stats": {"last_event_id": 1042},
    }
    sources = ["trn:user:alice:cli:v1", "trn:org:acme:ci:v1", "trn:eventbus:global:rule:relay"]
    for i in range(30):
        topic = ("repo.pushed", "orders.created", "orders.seen")[i % 3]
        main.add_event(
            {
                "event_id": 1013 + i,
                "topic": topic,
                "payload": {"n": i, "repo": "acme/api"},
                "timestamp": T0 + i * 250,
                "metadata": {"caused_by": {"event_id": 1012 + i, "rule_id": "relay", "hops": 1}}
                if topic == "orders.seen"
                else None,
                "source_trn": sources[i % 3],
                "target_trn": "trn:org:acme:svc:v1" if i % 5 == 0 else None,
                "correlation_id": f"c-{i // 3}",
            }
        )
    for n, topic in enumerate(main.topics.values()):
        for second in range(30):
            topic._since_tick = (second * (n + 2)) % 17
            topic.tick(1.0)
    main.rate = 42.0
    for i, status in enumerate(["ok", "ok", "failed", "skipped", "ok"]):
        main.add_firing(
            {
                "firing_id": 200 + i,
                "rule_id": "relay" if i != 2 else "fetch-repo",
                "event_id": 1029 + 3 * i,
                "status": status,
                "attempts": 3 if status == "failed" else 1,
                "started_at": T0 + 4000 + 1000 * i,
                "duration_ms": 4 + i,
                "result": {"event_id": 1030 + 3 * i} if status == "ok" else None,
                "error": {
                    "failed": "tool trn:user:alice:openapi:github-api:get-repo:v1 timed out after 30000 ms",
                    "skipped": "loop guard: max_hops 8",
                }.get(status),
            }
        )
    main.rules = [
        {
            "id": "relay",
            "enabled": True,
            "topic": "orders.created",
            "action": {"type": "EmitEvent", "topic": "orders.seen"},
            "fired": 10,
            "failed": 0,
            "last_fired_at": T0 + 9000,
        },
        {
            "id": "fetch-repo",
            "enabled": False,
            "topic": "repo.pushed",
            "action": {
                "type": "InvokeTool",
                "tool_id": "trn:user:alice:openapi:github-api:get-repo:v1",
            },
            "fired": 3,
            "failed": 1,
            "last_fired_at": T0 + 2,
        },
    ]
    main.consumers.value = sorted(
        [
            consumer(
                "resizers",
                "jobs.resize.>",
                pending=1_204,
                ack_pending=16,
                acked=48_210,
                redelivered=37,
                last=1040,
            ),
            consumer("auditors", ">", source_trn="trn:user:*", pending=0, acked=1_042, last=1042),
            consumer(
                "deployers",
                "deploy.*",
                pattern={"payload": {"env": ["prod"]}},
                pending=3,
                ack_pending=1,
                waiting=2,
                acked=310,
                redelivered=12,
                dead=4,
                last=1037,
            ),
            consumer("backfill", "orders.>", pending=100_000),
        ],
        key=lambda c: c["name"],
    )
    hour = 3_600_000
    main.schedules.value = ScheduleBoard(
        [
            # T0 is 2026-11-28 21:06:40 UTC: each next and last tick is where the bus puts it.
            schedule("heartbeat", "health.ping", every_ms=5_000, ticks=2_417, last=T0 + 10_000),
            schedule(
                "nightly-report",
                "reports.nightly",
                cron="30 2 * * *",
                timezone="Europe/Berlin",  # 01:30 UTC in November
                ticks=41,
                last=T0 + 15_800_000 - 24 * hour,
                next_tick=T0 + 15_800_000,
            ),
            schedule(
                "sweep", "jobs.sweep", every_ms=hour, enabled=False, ticks=3, last=T0 - 400_000
            ),
        ],
        False,
        [
            delayed("7f3a9c01d2e4b5a6c7d8e9f0", T0 + 42_000, "reminders.due", {"to": "alice"}),
            delayed("0e4b0a2b97d408ed26128609", T0 + 600_000, "invoice.remind", {"invoice": 42}),
            delayed("90bfa2191867e533b48cf010", T0 + 3 * 86_400_000, "campaign.start", None),
        ],
        False,
    )
    workflow = BusView("workflow", "tcp://127.0.0.1:4011")
    workflow.state = "connected"
    workflow.info = {"storage": "memory", "enable_rules": False, "stats": {"last_event_id": 7}}
    gone = BusView("audit", "tcp://10.0.0.9:4012")
    gone.state = "unreachable: cannot connect to tcp://10.0.0.9:4012: Connect call failed"
    return [main, workflow, gone]


def consumer(
    name: str,
    topic: str,
    *,
    source_trn: str | None = None,
    pattern: dict[str, Any] | None = None,
    pending: int = 0,
    ack_pending: int = 0,
    waiting: int = 0,
    acked: int = 0,
    redelivered: int = 0,
    dead: int = 0,
    last: int = 0,
) -> ConsumerInfo:
    return {
        "name": name,
        "topic": topic,
        "source_trn": source_trn,
        "target_trn": None,
        "pattern": pattern,
        "ack_wait_ms": 30_000,
        "max_deliver": 5,
        "backoff_ms": [],
        "max_ack_pending": 1000,
        "created_at": T0,
        "updated_at": T0,
        "stats": {
            "pending": pending,
            "ack_pending": ack_pending,
            "waiting": waiting,
            "acked": acked,
            "redelivered": redelivered,
            "dead": dead,
            "last_delivered_id": last,
            "cursor": last,
        },
    }


def schedule(
    schedule_id: str,
    topic: str,
    *,
    cron: str | None = None,
    every_ms: int | None = None,
    timezone: str = "UTC",
    enabled: bool = True,
    ticks: int,
    last: int,
    next_tick: int | None = None,
) -> ScheduleInfo:
    return {
        "id": schedule_id,
        "cron": cron,
        "every_ms": every_ms,
        "timezone": timezone,
        "event": {"topic": topic},
        "enabled": enabled,
        "next_tick": (next_tick or last + (every_ms or 0)) if enabled else None,
        "last_tick": last,
        "ticks": ticks,
        "created_at": T0,
        "updated_at": T0,
    }


def delayed(schedule_id: str, deliver_at: int, topic: str, payload: Any) -> ScheduledEventInfo:
    return {
        "schedule_id": schedule_id,
        "deliver_at": deliver_at,
        "created_at": T0,
        "event": {"topic": topic, "payload": payload},
    }


def dashboard() -> DashboardApp:
    return DashboardApp(fixed_buses(), live=False, clock=lambda: T0 / 1000 + 12.5)


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.3)


def test_main_screen_at_80x24(snap_compare: Any) -> None:
    assert snap_compare(dashboard(), terminal_size=(80, 24), run_before=settle)


def test_main_screen_at_160x48(snap_compare: Any) -> None:
    assert snap_compare(dashboard(), terminal_size=(160, 48), run_before=settle)


def test_firings_tab(snap_compare: Any) -> None:
    assert snap_compare(dashboard(), terminal_size=(160, 48), press=["2"], run_before=settle)


def test_consumers_tab(snap_compare: Any) -> None:
    """The bus's consumers by name; the one with dead letters in red, a lag past the bus's count as 100000+."""
    assert snap_compare(dashboard(), terminal_size=(160, 48), press=["4"], run_before=settle)


def test_schedules_tab(snap_compare: Any) -> None:
    """Schedules by id (one switched off, dim), their ticks and when the next is due; under
    them the pending delayed events, the next due first."""
    assert snap_compare(dashboard(), terminal_size=(160, 48), press=["5"], run_before=settle)


def test_event_detail(snap_compare: Any) -> None:
    """orders.created #1041: its rule firing, and the event that firing made (#1042)."""

    async def open_detail(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.3)
        await pilot.press("end", "up", "enter")
        await pilot.pause(0.3)

    assert snap_compare(dashboard(), terminal_size=(160, 48), run_before=open_detail)
