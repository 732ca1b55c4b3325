"""The state database fails in the job that opened a position, after the entry ran on the
exchange and before its stop was placed (a disk that fills, a PostgreSQL server that goes
down). Every job of the outage fails before its protection step (each writes first), so the
position stayed without a stop for the whole outage: nothing was sent that could not be
recorded first, protective stops included.

A reduce-only stop cannot add exposure: while the store is down, the runner has the engine
place one for each position of the bot's that has no stop resting, unrecorded, and the first
job that can write again records it. A restart before that finds it resting with the bot's
client id and keeps it as the bot's stop.

The faults are real database behaviour: ``PRAGMA query_only`` (writes fail as on a read-only
file or a full disk; reads work) and a connection that cannot be made (reads fail too, as with
a PostgreSQL server down).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import event

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus, TriggerBy
from bot.domain.orders import Order
from bot.ports.client_ids import parse_purpose
from bot.runtime.preflight import unknown_own_orders
from bot.runtime.runner import Runner
from bot.sim.paper import PaperExchange
from bot.store.sql import SqlStore, StoreUnavailable, make_engine
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts import Receiver, receiver, set_runtime
from tests.runtime.test_store_faults import ReadOnlySwitch

__all__ = ["receiver"]  # the webhook receiver fixture

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

START = 1_748_822_400_000  # 2025-06-02T00:00Z
MIN = 60_000
BTC = "BTC/USDT:USDT"
Fault = Literal["read_only", "server_down"]


class ServerDown:
    """Every new connection of ``store`` fails while ``on`` (as a PostgreSQL server that went
    away): its reads fail as well as its writes."""

    def __init__(self, store: SqlStore) -> None:
        self.on = False
        event.listen(store.engine, "do_connect", self._connect)

    def _connect(self, *_args: Any) -> None:
        if self.on:
            raise sqlite3.OperationalError("could not connect to server: Connection refused")


class FailsAfterTheEntry(SqlStore):
    """With ``armed``, the database fails at the write of a filled entry's result, after the
    entry ran on the exchange: read-only from then on, or its server down."""

    armed = False
    fault: Fault = "read_only"
    read_only: ReadOnlySwitch
    server: ServerDown

    def update_order(self, client_id: str, status: OrderStatus, ts_ms: int, **kw: Any) -> None:
        entry = parse_purpose(client_id, "main") is OrderPurpose.ENTRY
        if self.armed and entry and status is OrderStatus.FILLED:
            self.armed = False
            self.down(True)
        return super().update_order(client_id, status, ts_ms, **kw)

    def down(self, on: bool) -> None:
        (self.read_only if self.fault == "read_only" else self.server).on = on
        self.engine.dispose()  # no connection made before the fault escapes it

    @property
    def is_down(self) -> bool:
        return self.read_only.on or self.server.on


@dataclass
class Bot:
    config: BotConfig
    runner: Runner
    paper: PaperExchange
    clock: SimClock
    store: FailsAfterTheEntry


def paper_bot(tmp_path: Path, receiver: Receiver, fault: Fault) -> Bot:
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    open_store(config, create=True).close()  # creates the database at the current schema
    store = FailsAfterTheEntry(make_engine(config.runtime.database_url))
    store.fault = fault
    store.read_only, store.server = ReadOnlySwitch(store), ServerDown(store)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    return Bot(config, runner, paper, clock, store)


@pytest.fixture(params=["read_only", "server_down"])
def bot(request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver) -> Iterator[Bot]:
    made = paper_bot(tmp_path, receiver, request.param)
    try:
        yield made
    finally:
        made.store.down(False)
        made.store.close()


def stops(paper: PaperExchange, symbol: str = BTC) -> list[Order]:
    return [
        o
        for o in paper.sim.fetch_open_orders(symbol)
        if o.purpose is OrderPurpose.STOP_LOSS and (o.reduce_only or o.close_position)
    ]


def held(paper: PaperExchange, symbol: str = BTC) -> Decimal:
    pos = paper.sim.fetch_positions([symbol]).get(symbol)
    return pos.qty if pos is not None else Decimal(0)


def guards(bot: Bot, minutes: int) -> None:
    for _ in range(minutes):
        bot.clock.advance_to(bot.clock.now_ms() + MIN)
        bot.runner.guard()


def open_in_the_outage(bot: Bot) -> Decimal:
    """The first tick enters; the database fails at the write of the entry's fill."""
    bot.store.armed = True
    assert bot.runner.tick() is None  # failed, and said so
    assert bot.store.is_down, "the entry never filled: the test would prove nothing"
    qty = held(bot.paper)
    assert qty != 0, "no position was opened"
    return qty


def test_a_position_opened_as_the_database_fails_gets_one_stop_for_the_outage(
    bot: Bot, receiver: Receiver
) -> None:
    qty = open_in_the_outage(bot)
    [stop] = stops(bot.paper)  # placed by the failed tick's runner, unrecorded
    guards(bot, 30)  # half an hour of guard jobs, every one failing on the database
    orders = dict(bot.paper.sim.orders)
    assert stops(bot.paper) == [stop]  # one stop for the outage, not one every minute
    assert held(bot.paper) == qty
    # The engine's stop: the bot's client id, triggered on the mark, sized to the position,
    # strictly between the mark and the liquidation price.
    assert parse_purpose(stop.client_id, "main") is OrderPurpose.STOP_LOSS
    assert stop.trigger_by in (None, TriggerBy.MARK)
    assert stop.close_position or stop.amount == abs(qty)
    pos = bot.paper.sim.fetch_positions([BTC])[BTC]
    mark = bot.paper.sim.fetch_mark_price(BTC)
    assert stop.trigger_price is not None
    assert pos.liquidation_price is not None
    assert pos.liquidation_price < stop.trigger_price < mark  # (long, as the config trades)
    # The owner was told which stop went out unrecorded.
    [body] = [b for _, b in receiver.posts if b["title"].endswith(f"unrecorded_stop:{BTC}")]
    assert stop.client_id in body["message"]
    assert "critical" in body["title"]
    # The database is back: the first job records the stop before anything else, and sends
    # nothing new (the position has its stop).
    bot.store.down(False)
    guards(bot, 1)
    record = bot.store.get_order(stop.client_id)
    assert record is not None
    assert record.status is OrderStatus.OPEN
    assert bot.paper.sim.orders == orders
    assert stops(bot.paper) == [stop]
    recorded = bot.store.recent_events(100, kinds=(EventKind.RECONCILE,))
    assert any(stop.client_id in e.reason and "recorded now" in e.reason for e in recorded)
    assert bot.runner.failures_of("guard") == 0  # the job succeeded (the tick's run goes on)
    assert bot.store.unresolved_orders() == []  # the entry's fill is recorded too
    assert bot.runner.engine.foreign == set()


def test_an_increase_filled_as_the_database_fails_is_covered_whole(bot: Bot) -> None:
    """On a venue of sized stops (Bybit: no close-position stop), a stop of the size before an
    increase whose fill the database could not record covers part of the position: before,
    any stop resting counted as protected, and 0.015 BTC stayed without one for the whole
    outage. The position gets a whole stop beside the old one, once."""
    bot.paper.sim.close_position_stops = False
    assert bot.runner.tick() is not None
    for _ in range(25):  # to the hour the policy increases the position (0.099 -> 0.114)
        bot.clock.advance_to(bot.clock.now_ms() + 60 * MIN)
        assert bot.runner.tick() is not None
    before = held(bot.paper)
    bot.store.armed = True  # the write of the increase's fill fails
    bot.clock.advance_to(bot.clock.now_ms() + 60 * MIN)
    assert bot.runner.tick() is None
    assert bot.store.is_down
    after = held(bot.paper)
    assert abs(after) > abs(before), "no increase: the test proves nothing"
    # The failed tick's runner placed a whole stop beside the one of the size before (nothing
    # is cancelled without the database); the half hour of the outage adds nothing.
    at_failure = stops(bot.paper)
    assert sorted(o.amount or Decimal(0) for o in at_failure) == [abs(before), abs(after)]
    guards(bot, 30)
    assert stops(bot.paper) == at_failure


def test_a_position_with_its_stop_gets_nothing_new_while_the_database_is_down(
    bot: Bot,
) -> None:
    assert bot.runner.tick() is not None  # the entry and its stop, recorded
    assert held(bot.paper) != 0
    assert stops(bot.paper)
    orders = dict(bot.paper.sim.orders)
    bot.store.down(True)
    guards(bot, 30)
    bot.clock.advance_to(bot.clock.now_ms() + 20 * MIN)
    assert bot.runner.tick() is None
    assert bot.paper.sim.orders == orders  # no order sent, not even a stop


def test_a_restart_before_the_stop_was_recorded_keeps_it_as_the_bots(
    bot: Bot, receiver: Receiver
) -> None:
    qty = open_in_the_outage(bot)
    [stop] = stops(bot.paper)
    guards(bot, 5)
    # The process dies before the database is back: the stop is recorded nowhere. The venue
    # (here the paper account, saved as it is) keeps the position and the stop.
    bot.store.down(False)
    assert bot.store.get_order(stop.client_id) is None
    bot.paper.save()
    bot.store.close()
    store = open_store(bot.config)
    try:
        # The live preflight names it, with the outage as a cause.
        [warning] = unknown_own_orders(bot.paper, store, [BTC], "main")
        assert stop.client_id in warning
        assert "could not be written" in warning
        runner, paper = build_paper(bot.config, store, replay=bot.config.data.dir, clock=bot.clock)
        assert held(paper) == qty
        assert stops(paper) == [stop]
        orders = dict(paper.sim.orders)
        bot.clock.advance_to(bot.clock.now_ms() + MIN)
        runner.guard()
        assert runner.failures == 0
        # The bot's stop, kept: counted as the position's stop (nothing placed, no incident),
        # the position the bot's own, the order not reported as another's.
        assert paper.sim.orders.keys() == orders.keys()
        assert stops(paper) == [stop]
        assert runner.engine.foreign == set()
        events = store.recent_events(1000)
        assert not [e for e in events if e.kind is EventKind.UNPROTECTED]
        assert not [e for e in events if "is not this bot's" in e.reason]
        # Flat, it is an orphan of the bot's: cancelled.
        store.post_command("halt", json.dumps({"flatten": True}), bot.clock.now_ms())
        bot.clock.advance_to(bot.clock.now_ms() + MIN)
        runner.guard()
        assert held(paper) == 0
        assert paper.sim.fetch_open_orders(BTC) == []
    finally:
        store.close()


def test_reads_fail_too_while_the_server_is_down(tmp_path: Path, receiver: Receiver) -> None:
    # (what the server_down fault proves: the engine protects without reading the store)
    bot = paper_bot(tmp_path, receiver, "server_down")
    try:
        open_in_the_outage(bot)
        with pytest.raises(StoreUnavailable, match="cannot read"):
            bot.store.open_orders()
        assert stops(bot.paper)
    finally:
        bot.store.down(False)
        bot.store.close()
