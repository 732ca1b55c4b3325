"""A position that shrank without the bot's order is named from what the exchange says: a manual
partial reduction is "reduced outside the bot", not "liquidation"; a liquidation the venue
records is a liquidation; the re-entry cooldown still starts (the safe side). Engine against the
simulated exchange; the venue's records through the real ccxt classes and both loopback venues."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.clock import LiveClock, SimClock
from bot.config.loader import load_policy
from bot.domain.enums import (
    EventKind,
    ForcedKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderType,
)
from bot.domain.instrument import Instrument
from bot.domain.orders import ForcedClose, OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.exchange.capabilities import BINANCE_USDM, BYBIT
from bot.exchange.forced_probe import MAX_WINDOWS, VENUE_CLOCK_SLACK_MS
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from bot.store.sql import SqlStore
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
)
from tests.fakes.alert_outbox import Outbox
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter
from tests.unit.test_engine import LIMITS, ROOT, FakeMarket, build


def _cooldowns(store: object) -> list[str]:
    return [e.reason for e in store.events if e.kind == EventKind.COOLDOWN]  # type: ignore[attr-defined]


def test_a_manual_partial_reduction_is_reduced_outside_the_bot(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.book.positions[BTC].qty
    assert held > 0
    resting = {o.client_id for o in ex.fetch_open_orders(BTC)}
    # the trader sells a third by hand on the venue (not the bot's client id)
    part = ex.instrument(BTC).floor_qty(held / 3)
    ex.place_order(
        OrderRequest(
            "web_1", BTC, OrderSide.SELL, OrderType.MARKET, OrderPurpose.REDUCE, part, True
        )
    )
    assert {o.client_id for o in ex.fetch_open_orders(BTC)} == resting  # stop and TP rest on
    engine.tick()
    [cooldown] = _cooldowns(store)
    assert "after reduced outside the bot" in cooldown
    assert "liquidation" not in cooldown.split("(")[0]
    assert "the venue records no liquidation or ADL" in cooldown
    [noted] = [e.reason for e in store.events if e.kind == EventKind.EXIT]
    assert noted.startswith(f"position {held} -> {held - part}")
    # the safe behaviour stays: no new exposure while the cooldown runs
    assert engine.cooldowns.active(BTC, engine.clock.now_ms()) is not None


def test_a_liquidation_the_venue_records_is_named_liquidation(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    liq = ex.fetch_positions([BTC])[BTC].liquidation_price
    assert liq is not None
    ex.set_mark(BTC, liq * D("0.9"))  # a gap through the stop and the liquidation price
    assert ex.book.positions[BTC].qty == 0
    engine.tick()
    [cooldown] = _cooldowns(store)
    assert "after liquidation [" in cooldown


def test_the_bots_stop_filling_is_a_stop_loss(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - 1)
    engine.tick()
    [cooldown] = _cooldowns(store)
    assert "after stop-loss [" in cooldown


def test_a_stop_fill_found_by_a_reading_that_names_no_exit_is_a_stop_loss(
    instruments: dict[str, Instrument],
) -> None:
    """The stop fires right after a guard's reading; the runner's own reading for its alerts
    (``Engine.reconcile`` alone, after the guard) finds it filled and settles its record. The
    next job, which sees the record filled already, names the exit from that fill: a stop-loss,
    not "closed outside the bot" with an exit alert."""
    engine, ex, store = build(instruments)
    engine.tick()
    engine.guard()
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - 1)
    engine.reconcile(engine.clock.now_ms())  # the runner's reading for the alert conditions
    assert [e.kind for e in store.events].count(EventKind.TRIGGERED) == 1
    engine.guard()
    [cooldown] = _cooldowns(store)
    assert "after stop-loss [" in cooldown
    assert [e.reason for e in store.events if e.kind == EventKind.EXIT] == []
    engine.guard()  # named once: the next job has nothing more to say
    assert len(_cooldowns(store)) == 1


def _restarted(engine: Engine, ex: SimulatedExchange, store: MemoryStore) -> Engine:
    """A new process's engine on ``engine``'s clock, account, market and store (a restart)."""
    return Engine(
        clock=engine.clock,
        exchange=ex,
        market=engine.market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
        margin_mode=MarginMode.ISOLATED,
    )


def test_a_stop_fill_a_reading_settled_before_the_process_died_is_a_stop_loss_after_restart(
    instruments: dict[str, Instrument],
) -> None:
    """As above, but the process dies (kill -9) right after the runner's reading settled the
    stop's record filled: the knowledge that the bot's stop closed the position lived in the
    dead process's memory only, and the restarted bot named it "closed outside the bot". A new
    engine on the same store and account names it from the record: a stop-loss, once."""
    engine, ex, store = build(instruments)
    engine.tick()
    engine.guard()
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - 1)
    clock = engine.clock
    assert isinstance(clock, SimClock)
    clock.advance_to(clock.now_ms() + 1_000)  # (the runner's reading comes after the job's)
    engine.reconcile(clock.now_ms())  # the runner's reading, then kill -9
    restarted = _restarted(engine, ex, store)
    restarted.guard()
    restarted.guard()
    assert [e.reason for e in store.events if e.kind == EventKind.EXIT] == []
    [cooldown] = _cooldowns(store)
    assert "after stop-loss [" in cooldown
    # a start after the exit was named starts no second cooldown
    again = _restarted(engine, ex, store)
    again.guard()
    assert len(_cooldowns(store)) == 1


def test_a_take_profit_named_by_the_tick_that_re_entered_is_not_brought_back_at_a_restart(
    instruments: dict[str, Instrument],
) -> None:
    """The tick that finds its take-profit filled names it (a take-profit records no exit and
    starts no cooldown), re-enters and records the positions, in one millisecond. The new
    position is liquidated while the bot is down: the restart names it a liquidation. The
    take-profit's fill, settled in that record's millisecond, was taken for one no job had
    named, and the liquidation was named the take-profit's: no exit, no alert."""
    engine, ex, store = build(instruments)
    engine.tick()
    [tp] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.TAKE_PROFIT]
    assert tp.trigger_price is not None
    clock = engine.clock
    assert isinstance(clock, SimClock)
    clock.advance_to(clock.now_ms() + 5 * 60_000)
    ex.set_mark(BTC, tp.trigger_price + 1)
    assert ex.book.positions[BTC].qty == 0  # the take-profit filled
    clock.advance_to(clock.now_ms() + 3_600_000)
    engine.tick()  # finds the fill, re-enters
    assert ex.book.positions[BTC].qty > 0
    clock.advance_to(clock.now_ms() + 3 * 60_000)
    liquidation = ex.fetch_positions([BTC])[BTC].liquidation_price
    assert liquidation is not None
    ex.set_mark(BTC, liquidation * D("0.9"))  # liquidated while no bot runs
    assert ex.book.positions[BTC].qty == 0
    clock.advance_to(clock.now_ms() + 3 * 60_000)
    restarted = _restarted(engine, ex, store)
    assert restarted.reconciler.took_profit == set()
    restarted.guard()
    [exit_] = [e.reason for e in store.events if e.kind == EventKind.EXIT]
    assert exit_.endswith(": liquidation"), exit_


# -- the venue's record of forced closes, over the wire ------------------------------------------


class ForcedAccount(SimulatedExchange):
    """The simulated account with the forced closes a test sets (the simulator has no ADL)."""

    closes: list[ForcedClose]

    def fetch_forced_closes(self, symbol: str, since_ms: int) -> list[ForcedClose] | None:
        return [c for c in self.closes if c.symbol == symbol and c.timestamp_ms >= since_ms]


@pytest.fixture
def forced_account() -> ForcedAccount:
    ex = btc_account()
    ex.__class__ = ForcedAccount
    assert isinstance(ex, ForcedAccount)
    now = LiveClock().now_ms()
    ex.closes = [
        ForcedClose(BTC, ForcedKind.LIQUIDATION, D("0.004"), now - 60_000),
        ForcedClose(BTC, ForcedKind.ADL, D("0.002"), now - 30_000),
        ForcedClose(BTC, ForcedKind.LIQUIDATION, D("0.5"), now - 86_400_000),  # long ago
    ]
    return ex


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_forced_closes_read_from_the_venue(venue: str, forced_account: ForcedAccount) -> None:
    cls = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    with cls(
        forced_account, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]
    ) as server:
        adapter = loopback_adapter(
            venue,
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            since = LiveClock().now_ms() - 3_600_000
            got = adapter.fetch_forced_closes(BTC, since)
        finally:
            adapter.exchange.close()
        path = "/fapi/v1/forceOrders" if venue == "binanceusdm" else "/v5/execution/list"
        [call] = server.calls(path, "GET")
        assert int(call.params["startTime"]) == since
        assert server.errors == []
    assert got is not None
    assert sorted((c.kind.value, c.qty) for c in got) == [
        ("auto-deleveraging", D("0.002")),
        ("liquidation", D("0.004")),
    ]


DAY = 86_400_000
WEEK = 7 * DAY


def _read_forced(
    venue: str, account: ForcedAccount, since: int
) -> tuple[list[ForcedClose] | None, list[tuple[int, int | None]]]:
    """``fetch_forced_closes`` over the wire (the real ccxt class, the loopback venue, which
    answers the window the venue documents); with it, each request's start and end."""
    cls = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    with cls(account, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]) as server:
        adapter = loopback_adapter(
            venue,
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            got = adapter.fetch_forced_closes(BTC, since)
        finally:
            adapter.exchange.close()
        path = "/fapi/v1/forceOrders" if venue == "binanceusdm" else "/v5/execution/list"
        asked = [
            (
                int(c.params["startTime"]),
                int(c.params["endTime"]) if "endTime" in c.params else None,
            )
            for c in server.calls(path, "GET")
        ]
        assert server.errors == []
    return got, asked


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_a_liquidation_after_more_than_a_week_without_a_reading_is_read(
    venue: str, forced_account: ForcedAccount
) -> None:
    """Both venues answer a week per request (Bybit: a start alone, the 7 days after it; a
    start and an end at most 7 days apart): a reading 10 days old is read window by window to
    now, so a liquidation of the last hour is one, not "the venue records no liquidation"."""
    now = LiveClock().now_ms()
    since = now - 10 * DAY
    forced_account.closes = [
        ForcedClose(BTC, ForcedKind.LIQUIDATION, D("0.004"), now - 3_600_000),
        ForcedClose(BTC, ForcedKind.ADL, D("0.002"), now - 9 * DAY),
        ForcedClose(BTC, ForcedKind.LIQUIDATION, D("0.5"), now - 11 * DAY),  # before the reading
    ]
    got, asked = _read_forced(venue, forced_account, since)
    assert got is not None
    assert sorted((c.kind.value, c.qty) for c in got) == [
        ("auto-deleveraging", D("0.002")),
        ("liquidation", D("0.004")),
    ]
    # consecutive windows from the reading, each within the week, the last open to now
    assert asked == [(since, since + WEEK - 1), (since + WEEK, None)]


def test_the_windows_of_one_lookup() -> None:
    """A week a request, the last open-ended once a start alone reaches past the venue's now
    (and its clock's minute of slack); 13 windows at most, the record's age at most."""
    now = LiveClock().now_ms()
    bybit, binance = BYBIT.forced_probe, BINANCE_USDM.forced_probe
    recent = now - WEEK + VENUE_CLOCK_SLACK_MS + 1
    assert bybit.windows(recent, now) == [(recent, None)]
    old = recent - 1
    assert bybit.windows(old, now) == [(old, old + WEEK - 1), (old + WEEK, None)]
    future = now + 60_000  # a reading after now asks from it
    assert bybit.windows(future, now) == [(future, None)]
    assert len(bybit.windows(now - 12 * WEEK, now) or []) == MAX_WINDOWS
    assert bybit.windows(now - 13 * WEEK, now) is None
    assert binance.windows(now - 89 * DAY, now) is not None
    assert binance.windows(now - 90 * DAY - 1, now) is None  # "the past 90 days" only


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_a_reading_older_than_the_record_read_is_unknown(
    venue: str, forced_account: ForcedAccount
) -> None:
    """Binance keeps 90 days of force orders, and one lookup walks 13 weeks at most: a reading
    older than that cannot say "no liquidation" (``None``: unknown), and nothing is asked."""
    now = LiveClock().now_ms()
    got, asked = _read_forced(venue, forced_account, now - 100 * DAY)
    assert (got, asked) == (None, [])


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_a_full_page_is_unknown(venue: str, forced_account: ForcedAccount) -> None:
    """A window whose answer fills the page (100 rows) may hold rows the page cut, a
    liquidation among them: the record is unknown, not the rows the page holds."""
    now = LiveClock().now_ms()
    forced_account.closes = [
        ForcedClose(BTC, ForcedKind.ADL, D("0.001"), now - 1_000_000 + k) for k in range(100)
    ]
    got, asked = _read_forced(venue, forced_account, now - 3_600_000)
    assert got is None
    assert len(asked) == 1
    forced_account.closes = forced_account.closes[:99]
    got, _ = _read_forced(venue, forced_account, now - 3_600_000)
    assert got is not None
    assert len(got) == 99


def test_the_owner_is_alerted_with_the_right_name(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    from bot.alerts import AlertRules, Notifier
    from bot.runtime.runner import Runner

    _, ex, _ = build(instruments)  # the simulated account; the engine below records in SQL
    engine = Engine(
        clock=ex.clock,
        exchange=ex,
        market=FakeMarket(),
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )
    rules = AlertRules()
    notifier = Notifier(store, ex.clock, None, rules, account="t")
    out = Outbox().serve(notifier)
    runner = Runner(engine=engine, store=store, clock=ex.clock, notifier=notifier, rules=rules)
    runner.tick()
    held = ex.book.positions[BTC].qty
    part = ex.instrument(BTC).floor_qty(held / 3)
    ex.place_order(
        OrderRequest(
            "web_1", BTC, OrderSide.SELL, OrderType.MARKET, OrderPurpose.REDUCE, part, True
        )
    )
    runner.tick()
    [(title, body)] = [(t, b) for t, b in out.sent if "exit:" in t]
    # keyed by its time: a second exit of the contract within the hour is its own alert
    assert title.startswith(f"[t] warning: exit:{BTC}@")
    assert "reduced outside the bot" in body
    assert "liquidation" not in body.split("(")[0]
