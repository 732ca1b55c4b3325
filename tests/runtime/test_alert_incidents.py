"""One alert per incident: an incident that goes on is not sent at every job (nor every hour of
the dedup window... only once per window), and one that ends and comes back is a new incident,
sent again even within the window: a second position without a stop, a second liquidation, the
account unreadable again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.alerts import Alert, AlertRules, Notifier
from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, TradingState
from bot.domain.orders import Order
from bot.ports.store import RiskEvent
from bot.runtime.runner import Runner
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import Outbox, sent
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts import Receiver, receiver, set_runtime  # noqa: F401 - a fixture

T0 = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000
RULES = AlertRules(D("0.8"), D(3), dedup_seconds=3600, max_per_hour=20)


def test_an_incident_that_ends_and_comes_back_is_sent_again(store: SqlStore) -> None:
    clock = SimClock(T0)
    n = Notifier(store, clock, None, RULES, account="acct")
    out = Outbox().serve(n)
    naked = Alert("no_stop:BTC/USDT:USDT", "critical", "BTC has no stop")
    assert sent(n, [naked]) == 1
    for minute in range(1, 5):  # it goes on: one alert, not one per job
        clock.advance_to(T0 + minute * MINUTE)
        assert sent(n, [naked]) == 0
    clock.advance_to(T0 + 5 * MINUTE)
    n.resolved([naked.key])  # the stop rests again
    clock.advance_to(T0 + 20 * MINUTE)
    assert sent(n, [naked]) == 1  # a new incident, within the hour of the first
    clock.advance_to(T0 + 21 * MINUTE)
    assert sent(n, [naked]) == 0
    assert out.count(naked.key) == 2


@pytest.fixture
def paper_runner(tmp_path: Path) -> Iterator[tuple[Runner, SqlStore, SimClock, Outbox]]:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    clock = SimClock(T0)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    out = Outbox().serve(runner.notifier)
    try:
        assert runner.tick() is not None
        yield runner, store, clock, out
    finally:
        runner.notifier.close()
        paper.save()
        store.close()


def guard_after(
    runner: Runner, store: SqlStore, clock: SimClock, kind: EventKind, reason: str
) -> None:
    """Ten minutes on, the engine has recorded ``kind`` in this job; the guard job runs."""
    clock.advance_to(clock.now_ms() + 10 * MINUTE)
    account_wide = kind in (EventKind.UNREADABLE, EventKind.READABLE)
    symbol = None if account_wide else runner.engine.symbols[0]
    store.record_event(
        RiskEvent(
            ts_ms=clock.now_ms(), kind=kind, symbol=symbol, state=TradingState.ACTIVE, reason=reason
        )
    )
    runner.guard()


def test_a_second_liquidation_within_the_hour_is_alerted(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    runner, store, clock, out = paper_runner
    guard_after(runner, store, clock, EventKind.EXIT, "position 0.5 closed by a liquidation")
    guard_after(runner, store, clock, EventKind.EXIT, "position 0.3 closed by an ADL")
    exits = [t for t in out.titles if ": exit:" in t]
    assert len(exits) == 2, out.titles


def test_a_position_unprotected_again_within_the_hour_is_alerted(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    runner, store, clock, out = paper_runner
    key = f"unprotected:{runner.engine.symbols[0]}"
    guard_after(runner, store, clock, EventKind.UNPROTECTED, "stop rejected by the venue")
    guard_after(runner, store, clock, EventKind.UNPROTECTED, "stop rejected by the venue")
    assert out.count(key) == 1  # the same incident, going on
    guard_after(runner, store, clock, EventKind.PROTECTED, "incident over")
    guard_after(runner, store, clock, EventKind.UNPROTECTED, "stop rejected by the venue")
    assert out.count(key) == 2, out.titles


def test_the_account_unreadable_again_within_the_hour_is_alerted(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    runner, store, clock, out = paper_runner
    guard_after(runner, store, clock, EventKind.UNREADABLE, "unreadable: 1 read in a row")
    guard_after(runner, store, clock, EventKind.UNREADABLE, "unreadable: 2 reads in a row")
    assert out.count("unreadable:account") == 1
    guard_after(runner, store, clock, EventKind.READABLE, "readable again")
    guard_after(runner, store, clock, EventKind.UNREADABLE, "unreadable: 1 read in a row")
    assert out.count("unreadable:account") == 2, out.titles


def test_a_contract_without_a_decision_is_alerted_once_per_stretch(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    """A contract whose candles have a gap gets no decision until its window refills: the
    trader running the bot unattended is told once, and again for a new stretch."""
    runner, store, clock, out = paper_runner
    key = f"no_decision:{runner.engine.symbols[0]}"
    gap = "gap in the 1h candles from ...: no decision until ..."
    guard_after(runner, store, clock, EventKind.NO_DECISION, gap)
    guard_after(runner, store, clock, EventKind.MARKET_DATA, "another job")
    assert out.count(key) == 1
    guard_after(runner, store, clock, EventKind.DECIDING, "decisions resume")
    guard_after(runner, store, clock, EventKind.NO_DECISION, gap)
    assert out.count(key) == 2, out.titles


def test_a_position_not_the_bots_is_alerted_once_until_it_is_flat(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    """A hand position the bot leaves alone is told once (not at every job), and again for
    another one after the first was closed; each hand addition to the bot's is told."""
    runner, store, clock, out = paper_runner
    key = f"foreign:{runner.engine.symbols[0]}"
    hand = "position -0.05 was not opened by this bot (opened from flat outside the bot)"
    guard_after(runner, store, clock, EventKind.FOREIGN, hand)
    guard_after(runner, store, clock, EventKind.MARKET_DATA, "another job")
    assert out.count(key) == 1
    guard_after(runner, store, clock, EventKind.FOREIGN_GONE, "flat: the bot's again")
    guard_after(runner, store, clock, EventKind.FOREIGN, hand)
    assert out.count(key) == 2, out.titles
    guard_after(runner, store, clock, EventKind.ADDED, "position 0.1 -> 0.2: added")
    guard_after(runner, store, clock, EventKind.ADDED, "position 0.2 -> 0.3: added")
    assert len([t for t in out.titles if ": added:" in t]) == 2, out.titles


def test_a_critical_alert_over_the_hourly_limit_is_held_not_lost(store: SqlStore) -> None:
    """A state change or an exit is keyed by its time and alerted once: dropped by the hourly
    limit it would never reach the owner. Critical ones wait for room; warnings are dropped."""
    clock = SimClock(T0)
    rules = AlertRules(D("0.8"), D(3), dedup_seconds=3600, max_per_hour=1)
    n = Notifier(store, clock, None, rules, account="acct")
    out = Outbox().serve(n)
    burst = [
        Alert("state:halted@2025-06-02T00:00:00Z", "critical", "active -> halted"),
        Alert("exit:BTC/USDT:USDT@2025-06-02T00:00:00Z", "critical", "BTC liquidated"),
        Alert("tick_failed", "warning", "tick failed"),
    ]
    sent(n, burst)
    assert len(out.sent) == 1
    clock.advance_to(T0 + 30 * MINUTE)
    sent(n, [])
    assert len(out.sent) == 1  # the same hour: still no room
    clock.advance_to(T0 + 61 * MINUTE)
    sent(n, [])
    assert len(out.sent) == 2  # room again: the held one goes out
    assert out.count("state:halted@2025-06-02T00:00:00Z") == 1
    assert out.count("exit:BTC/USDT:USDT@2025-06-02T00:00:00Z") == 1
    assert out.count("tick_failed") == 0


def test_a_second_move_to_reducing_after_failed_jobs_is_alerted(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    """Failed jobs move the account to reducing; a person resumes; failures move it again
    within the hour: both moves reach the owner (the second was keyed "state" like the first,
    and swallowed by the dedup window)."""
    runner, store, clock, out = paper_runner
    runner.max_failures = 1

    def venue_down() -> None:
        raise RuntimeError("venue down")

    runner.before_tick.append(venue_down)
    clock.advance_to(clock.now_ms() + 10 * MINUTE)
    assert runner.tick() is None
    store.post_command("resume", '{"reason": "checked"}', clock.now_ms())
    clock.advance_to(clock.now_ms() + 10 * MINUTE)
    runner.guard()  # applies the resume; a job that succeeds
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE
    clock.advance_to(clock.now_ms() + 10 * MINUTE)
    assert runner.tick() is None
    reducing = [t for t in out.titles if "active -> reducing" in t or ": state:reducing" in t]
    assert len(reducing) == 2, out.titles


def test_a_stop_missing_again_after_it_rested_is_alerted(
    paper_runner: tuple[Runner, SqlStore, SimClock, Outbox],
) -> None:
    """The alert conditions on the account the tick read: a position without a stop, then its
    stop resting (the incident is over), then missing again within the hour: two alerts; while
    it stays missing, none more."""
    runner, _, clock, out = paper_runner
    acct = runner.engine.last_account
    assert acct is not None
    [sym] = [s for s, p in acct.positions.items() if p.is_open]
    stops = acct.resting[sym]
    assert stops  # the tick protected its entry
    key = f"no_stop:{sym}"

    def tick_sees(resting: list[Order]) -> None:
        clock.advance_to(clock.now_ms() + 5 * MINUTE)
        acct.resting[sym] = resting
        runner._alert(clock.now_ms())

    tick_sees([])
    tick_sees([])  # still missing: the same incident
    assert out.count(key) == 1
    tick_sees(stops)  # the stop rests again
    tick_sees([])
    assert out.count(key) == 2, out.titles


# Apprise's PGP support imports the deprecated ``imghdr`` (see tests/runtime/test_alerts.py).
@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
def test_a_critical_alert_held_for_a_failing_destination_survives_a_restart(
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811 - the fixture imported above
) -> None:
    """The destination fails, the bot halts (a critical alert, held), the bot restarts (a
    supervisor after a crash): the alert reaches the owner at the first job, not lost with the
    process."""
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    clock = SimClock(T0)
    receiver.status = 500
    for run in ("before", "after"):
        store = open_store(config, create=True)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        try:
            if run == "before":
                store.post_command("halt", '{"flatten": false}', clock.now_ms())
                assert runner.tick() is not None
            else:
                receiver.status = 200
                clock.advance_to(clock.now_ms() + MINUTE)
                runner.guard()
        finally:
            runner.notifier.close()  # (what a process does when it stops)
            paper.save()
            store.close()
    halted = [t for t in receiver.titles() if t.startswith("[main] critical: state:halted@")]
    assert len(halted) == 2, receiver.titles()  # refused once, delivered after the restart


def test_only_undelivered_critical_alerts_owed_to_a_destination_are_restored(
    store: SqlStore,
) -> None:
    """Whatever their age (a halt held for hours is still news); not one delivered, a repeat,
    a warning, nor one owed only to a destination no longer configured."""
    clock = SimClock(T0 + 5 * 3_600_000)
    now = clock.now_ms()
    here = ["default"]  # the destination a bare sender is

    def record(ago_ms: int, key: str, severity: str, message: str, to: list[str]) -> int:
        return store.record_alert(now - ago_ms, key, severity, message, destinations=to)

    first = record(10 * MINUTE, "state:halted@x", "critical", "sent", here)
    store.mark_alert_delivered(first, "default", ts_ms=now - 10 * MINUTE)
    record(5 * MINUTE, "state:halted@x", "critical", "a duplicate of it", [])
    record(4 * MINUTE, "exit:BTC@y", "critical", "never sent", here)
    record(3 * MINUTE, "tick_failed", "warning", "a warning", here)
    record(4 * 3_600_000, "exit:ETH@z", "critical", "hours ago", here)
    record(2 * MINUTE, "exit:SOL@w", "critical", "elsewhere", ["d9"])
    n = Notifier(store, clock, None, RULES, account="acct")
    out = Outbox().serve(n)
    from bot.store import views

    assert n.restore(views.owed_critical(store, ["default"], dedup_ms=3_600_000)) == 2
    sent(n, [])
    assert out.titles == ["[acct] critical: exit:ETH@z", "[acct] critical: exit:BTC@y"]
    # each says when it was: sent late
    assert [body for _, body in out.sent] == [
        "hours ago (at 2025-06-02 01:00:00 UTC)",
        "never sent (at 2025-06-02 04:56:00 UTC)",
    ]


@dataclass
class DriftingVenue:
    """The offsets the venue's clock is measured at, one per measurement (a hand-written fake
    of the adapter's measure_clock_offset)."""

    offsets: list[int]
    recv_window_ms: int = 10_000

    def measure_clock_offset(self) -> int:
        return self.offsets.pop(0)


def test_a_clock_offset_that_grows_past_the_receive_window_is_sent_again_as_critical(
    store: SqlStore,
) -> None:
    """2 s off at start (a warning), 12 s at the next resync, within the hour: every signed
    request, stops included, is now refused. That escalation was a duplicate of the warning's
    key within the dedup window: recorded, not sent until a resync an hour later (if the
    offset was still past the window then)."""
    from bot.runtime.clock_offset import ClockOffsetCheck

    clock = SimClock(T0)
    notifier = Notifier(store, clock, None, RULES, account="acct")
    out = Outbox().serve(notifier)
    venue = DriftingVenue([2_000, 12_000, 12_000])
    check = ClockOffsetCheck(
        venue,  # type: ignore[arg-type]
        store,
        notifier,
        clock,
        "binanceusdm",
    )
    check.at_start()
    assert len(out.titles) == 1  # (sent before the resync: the critical goes first otherwise)
    clock.advance_to(T0 + 50 * MINUTE)  # the resync comes an hour after the start, or sooner
    check.resync()
    # at once, not an hour later at the next resync (the critical key's own dedup window)
    assert [t.split(": ", 1)[0] for t in out.titles] == ["[acct] warning", "[acct] critical"]
    clock.advance_to(T0 + 100 * MINUTE)
    check.resync()  # still past it: the same incident, within its hour
    assert len(out.titles) == 2
