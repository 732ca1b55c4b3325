"""The engine's tick against the simulated exchange and a hand-written market data fake."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import (
    EventKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.ports.market import CandleWindow
from bot.ports.store import RiskMemory
from bot.risk.limits import RiskLimits
from bot.risk.state import set_state
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"
HOUR = 3_600_000
LIMITS = RiskLimits(
    max_leverage_per_contract=D(5),
    max_gross_leverage=D(6),
    max_notional_per_contract=D(10**6),
    daily_loss=D("0.05"),
    max_drawdown=D("0.25"),
    stale_data_ms=2 * HOUR,
    max_orders_per_minute=60,
)


class FakeMarket:
    """Hourly candles of a seeded random walk around 60000; ``available`` limits the history."""

    def __init__(self, n: int = 400, available: int | None = None) -> None:
        rng = np.random.default_rng(7)
        close = 60000 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
        self.ts = T0 - HOUR * np.arange(n, 0, -1, dtype=np.int64)
        self.close = close
        self.open = np.concatenate([[close[0]], close[:-1]])
        self.high = np.maximum(self.open, close) * 1.002
        self.low = np.minimum(self.open, close) * 0.998
        self.available = available

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        end = int(np.searchsorted(self.ts, now_ms - tf_ms, side="right"))
        start = max(0, end - count)
        if self.available is not None:
            start = max(start, end - self.available)
        sl = slice(start, end)
        return CandleWindow(
            self.ts[sl], self.open[sl], self.high[sl], self.low[sl], self.close[sl], tf_ms
        )

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(D("0.0001"), D(8), now_ms + HOUR)

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        return D(f"{self.close[-1]:.1f}"), int(self.ts[-1]) + HOUR


def build(
    instruments: dict[str, Instrument],
    market: FakeMarket | None = None,
    limits: RiskLimits = LIMITS,
    *,
    mode: MarginMode = MarginMode.ISOLATED,
    balance: str = "10000",
) -> tuple[Engine, SimulatedExchange, MemoryStore]:
    ex, clock = make_exchange(instruments, mode=mode, balance=balance)
    market = market or FakeMarket()
    px, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, px)
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=limits,
        account="t",
        margin_mode=mode,
    )
    return engine, ex, store


def protective(ex: SimulatedExchange) -> dict[OrderPurpose, list]:  # type: ignore[type-arg]
    out: dict[OrderPurpose, list] = {}  # type: ignore[type-arg]
    for o in ex.fetch_open_orders(BTC):
        assert o.purpose is not None
        out.setdefault(o.purpose, []).append(o)
    return out


def test_first_tick_opens_and_protects(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    result = engine.tick()
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty > 0
    rest = protective(ex)
    [sl] = rest[OrderPurpose.STOP_LOSS]
    [tp] = rest[OrderPurpose.TAKE_PROFIT]
    for o in (sl, tp):
        assert o.reduce_only
        assert o.amount == pos.qty
        assert o.side is OrderSide.SELL
    assert sl.type is OrderType.STOP_MARKET
    assert sl.trigger_price is not None
    assert sl.trigger_price < ex.marks[BTC] < (tp.trigger_price or 0)
    assert pos.liquidation_price is not None
    assert pos.liquidation_price < sl.trigger_price
    assert result.decisions[0].reason.startswith("BTC: vol")
    assert all(
        r.status is OrderStatus.FILLED or r.status is OrderStatus.OPEN
        for r in store.orders.values()
    )


def test_a_second_tick_changes_nothing_that_is_right(instruments: dict[str, Instrument]) -> None:
    engine, _ex, store = build(instruments)
    engine.tick()
    before = dict(store.orders)
    engine.tick()
    assert store.orders.keys() == before.keys()


def test_halted_closes_everything_with_reduce_only(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(set_state(memory, TradingState.HALTED, "test", sticky=True))
    n = len(store.orders)
    engine.tick()
    assert ex.fetch_positions([BTC]) == {}
    closes = [r for r in list(store.orders.values())[n:] if r.request.purpose is OrderPurpose.CLOSE]
    assert len(closes) == 1
    assert closes[0].request.reduce_only
    assert ex.fetch_open_orders(BTC) == []  # orphaned protective orders cancelled
    n = len(store.orders)
    engine.tick()
    assert len(store.orders) == n  # halted: nothing new


def test_unknown_order_is_resolved_before_deciding(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    req = OrderRequest(
        "t-en-BTC-x-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.01"), False
    )
    store.save_intent(req, T0)
    ex.place_order(req)  # reached the exchange, but the reply was lost
    store.update_order(req.client_id, OrderStatus.UNKNOWN, T0)
    lost = OrderRequest(
        "t-en-BTC-x-2", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.01"), False
    )
    store.save_intent(lost, T0)  # persisted, never sent (crash before the send)
    engine.tick()
    assert store.orders[req.client_id].status is OrderStatus.FILLED
    # The simulated exchange's lookups are final: never sent, never will be (a venue's are not:
    # tests/unit/test_unknown_after_restart.py).
    assert store.orders[lost.client_id].status is OrderStatus.CANCELED
    assert store.unresolved_orders() == []


def test_position_without_data_still_gets_a_stop(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments, FakeMarket(available=5))  # too little history
    engine.contracts = (ContractSpec(BTC, "follow", D(125)),)  # adopt the trader's position
    ex.set_leverage(BTC, 3)
    ex.place_order(
        OrderRequest(
            "manual", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.05"), False
        )
    )
    engine.tick()
    [sl] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert sl.amount == D("0.05")
    assert sl.reduce_only
    assert any(e.kind == "reconcile" for e in store.events)


def test_orphaned_stop_is_cancelled(instruments: dict[str, Instrument]) -> None:
    engine, ex, _store = build(instruments)
    engine.tick()
    qty = ex.fetch_positions([BTC])[BTC].qty
    ex.place_order(
        OrderRequest(
            "manual-close", BTC, OrderSide.SELL, OrderType.MARKET, OrderPurpose.CLOSE, qty, True
        )
    )
    engine.contracts = (ContractSpec(BTC, "follow", D(125)),)  # follow: flat stays flat
    engine.tick()
    assert ex.fetch_open_orders(BTC) == []


@pytest.mark.parametrize("state", [TradingState.REDUCING])
def test_reducing_denies_increases_and_records_why(
    instruments: dict[str, Instrument], state: TradingState
) -> None:
    engine, ex, store = build(instruments)
    memory = engine.update_risk_state(T0, engine.reconcile(T0))
    store.save_risk_memory(set_state(memory, state, "test", sticky=True))
    engine.tick()
    assert ex.fetch_positions([BTC]) == {}
    denied = [e for e in store.events if e.kind == "denied"]
    assert denied
    assert "only reduce-only" in denied[0].reason


def test_halt_without_flatten_holds_positions_with_stops(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    qty = ex.fetch_positions([BTC])[BTC].qty
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(
        set_state(memory, TradingState.HALTED, "bot halt", sticky=True, flatten=False)
    )
    n = len(store.orders)
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty == qty
    assert len(protective(ex)[OrderPurpose.STOP_LOSS]) == 1
    assert len(store.orders) == n  # nothing new sent
    assert "hold, stops resting" in store.decisions[-1].decision.reason


def test_a_loss_limit_crossed_under_a_hold_halt_closes_the_positions(
    instruments: dict[str, Instrument],
) -> None:
    # A person's plain `bot halt` holds the positions with their stops; the drawdown limit
    # crossed during it still closes them (before: the halt held them past any loss).
    engine, ex, store = build(instruments)
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    memory = store.load_risk_memory()
    assert memory is not None
    held = set_state(memory, TradingState.HALTED, "bot halt", sticky=True, flatten=False)
    store.save_risk_memory(replace(held, peak_equity=memory.peak_equity * 2))  # 50 % down
    engine.guard()
    assert ex.fetch_positions([BTC]) == {}  # closed, reduce-only
    after = store.load_risk_memory()
    assert after is not None
    assert after.state is TradingState.HALTED
    assert after.flatten
    assert after.sticky  # still a person's to lift
    state = [e for e in store.events if e.kind == EventKind.STATE][-1]
    assert "was holding its positions" in state.reason
    assert "drawdown" in state.reason


def test_a_hold_halt_within_the_limits_stays_a_hold(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    qty = ex.fetch_positions([BTC])[BTC].qty
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(
        set_state(memory, TradingState.HALTED, "bot halt", sticky=True, flatten=False)
    )
    engine.guard()
    assert ex.fetch_positions([BTC])[BTC].qty == qty
    after = store.load_risk_memory()
    assert after is not None
    assert not after.flatten


def test_foreign_position_is_left_alone_unless_followed(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    ex.set_leverage(BTC, 3)
    ex.place_order(
        OrderRequest(
            "trader-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.05"), False
        )
    )
    engine.tick()  # direction long, but the bot did not open this position
    assert ex.fetch_open_orders(BTC) == []
    assert ex.fetch_positions([BTC])[BTC].qty == D("0.05")
    assert store.orders == {}
    assert any("not opened by this bot" in e.reason for e in store.events)
    engine.contracts = (ContractSpec(BTC, "follow", D(125)),)
    engine.tick()  # follow: adopted, protected, never increased
    [sl] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert sl.amount == D("0.05")
    assert ex.fetch_positions([BTC])[BTC].qty <= D("0.05")


def test_a_stop_that_fired_is_recorded(instruments: dict[str, Instrument]) -> None:
    from bot.sim.triggers import process_bar

    engine, ex, store = build(instruments)
    engine.tick()
    [sl] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert sl.trigger_price is not None
    low = sl.trigger_price - 100
    process_bar(ex, BTC, T0 + 1, ex.marks[BTC], ex.marks[BTC], low, low)
    engine.tick()
    assert store.orders[sl.client_id].status is OrderStatus.FILLED
    assert any(e.kind == "triggered" for e in store.events)


class CountingStore(MemoryStore):
    """The memory store, counting how often the risk memory is read."""

    def __init__(self) -> None:
        super().__init__()
        self.memory_reads = 0

    def load_risk_memory(self) -> RiskMemory | None:
        self.memory_reads += 1
        return super().load_risk_memory()


def test_a_tick_reads_the_risk_memory_once_and_records_in_one_call(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _ = build(instruments)
    store = CountingStore()
    engine.store = engine.reconciler.store = store
    engine.tick()
    assert len(store.orders) >= 3  # the entry, its stop-loss and its take-profit: each gated
    assert store.memory_reads == 1
    assert len(store.equity) == len(store.positions) == 1
    assert [r.decision.symbol for r in store.decisions] == [BTC]
    # A halt written between jobs (an operator command) is seen by the next job.
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(set_state(memory, TradingState.HALTED, "operator", sticky=True))
    assert engine.tick().state is TradingState.HALTED
    assert ex.fetch_positions([BTC]) == {}


def test_a_notional_cap_below_the_target_sizes_the_position_instead_of_vetoing_it(
    instruments: dict[str, Instrument],
) -> None:
    """An account whose target notional is above the notional cap used to have every entry
    denied by the gate, tick after tick: it never traded."""
    engine, ex, store = build(instruments)
    engine.tick()
    uncapped = ex.fetch_positions([BTC])[BTC].qty * ex.marks[BTC]
    cap = (uncapped / 4).quantize(D(1))
    engine, ex, store = build(instruments, limits=replace(LIMITS, max_notional_per_contract=cap))
    result = engine.tick()
    pos = ex.fetch_positions([BTC])[BTC]
    assert 0 < pos.qty * ex.marks[BTC] <= cap
    assert pos.qty * ex.marks[BTC] > cap * D("0.99")
    assert f"notional cap {cap} at last price" in result.decisions[0].reason
    assert not [e for e in store.events if e.kind is EventKind.DENIED]


def test_a_position_a_rally_carried_above_the_notional_cap_is_cut_back_to_it(
    instruments: dict[str, Instrument],
) -> None:
    """The gate checks only what an order adds: a position sized at the notional cap that the
    price then carried 8 % above it was kept, the cut back (7 %) being below the policy's
    rebalance tolerance (10 %); with a tolerance of 0.5 a 43 % rally held 1.45 times the cap."""
    engine, ex, _ = build(instruments)
    engine.tick()
    cap = (ex.fetch_positions([BTC])[BTC].qty * ex.marks[BTC] / 4).quantize(D(1))
    market = FakeMarket()
    engine, ex, _ = build(
        instruments, market, limits=replace(LIMITS, max_notional_per_contract=cap)
    )
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert cap * D("0.99") < held * ex.marks[BTC] <= cap
    for series in (market.open, market.high, market.low, market.close):
        series *= 1.08  # the same returns (the same volatility), every price 8 % higher
    last, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, last)
    assert held * last > cap * D("1.07")
    clock = engine.clock
    assert isinstance(clock, SimClock)
    clock.advance(timedelta(hours=1))
    [d] = engine.tick().decisions
    now = ex.fetch_positions([BTC])[BTC].qty
    assert 0 < now < held
    assert now * last <= cap
    assert f"held {held} above the notional cap {cap}" in d.reason
    assert d.above_cap
    # At the cap, the next decision is an ordinary rebalance again.
    clock.advance(timedelta(hours=1))
    [d] = engine.tick().decisions
    assert not d.above_cap
    assert ex.fetch_positions([BTC])[BTC].qty == now
