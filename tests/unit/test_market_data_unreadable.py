"""One contract's market data that cannot be read costs that contract its decision for the tick,
not the whole tick: it holds its position with its stop, the event says why, and rejected
credentials still stop the job. Under a halt that flattens it is closed all the same: a close
needs the account reading alone."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import numpy as np
import pytest

from bot.clock import SimClock
from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.tick import Engine
from bot.errors import AuthenticationFailed, ExchangeError, OrderRejected, TransientExchangeError
from bot.ports.market import CandleWindow
from bot.risk.state import set_state, state_event
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, FakeMarket, build


class BrokenMarket(FakeMarket):
    """The candles read raises ``error`` while it is set."""

    error: ExchangeError | None = None

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        if self.error is not None:
            raise self.error
        return super().closed_candles(symbol, tf_ms, count, now_ms)


def test_unreadable_candles_hold_the_contract_with_its_stop(
    instruments: dict[str, Instrument],
) -> None:
    market = BrokenMarket()
    engine, ex, store = build(instruments, market)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    market.error = TransientExchangeError("klines of BTCUSDT: HTTP 502 after 4 attempts")
    result = engine.tick()  # no exception: the tick goes on without this contract's decision
    assert result.decisions == []
    assert result.state is TradingState.ACTIVE
    assert ex.fetch_positions([BTC])[BTC].qty == held
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert len(stops) == 1
    assert stops[0].amount == held
    [event] = [e for e in store.events if e.kind is EventKind.MARKET_DATA]
    assert event.symbol == BTC
    assert "HTTP 502" in event.reason
    market.error = None
    assert engine.tick().decisions  # readable again: decided as before


def _halt_and_flatten(engine: Engine, store: MemoryStore) -> None:
    """What ``bot halt --flatten`` saves (Runner.apply_commands), one hour on."""
    memory = store.load_risk_memory()
    assert memory is not None
    now = engine.clock.now_ms()
    memory = set_state(memory, TradingState.HALTED, "bot halt", sticky=True, flatten=True)
    store.save_risk_memory(memory, state_event(now, memory, "command 1: halt flatten"))
    _later(engine)


def _later(engine: Engine) -> None:
    clock = engine.clock
    assert isinstance(clock, SimClock)
    clock.advance(timedelta(hours=1))


def test_a_flattening_halt_closes_a_contract_whose_market_data_is_unreadable(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: the contract got no decision, so no flat decision either: the tick under ``bot
    halt --flatten`` left its position open, until the next guard's flatten closed it."""
    market = BrokenMarket()
    engine, ex, store = build(instruments, market)
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    _halt_and_flatten(engine, store)
    market.error = TransientExchangeError("klines of BTCUSDT: HTTP 502 after 4 attempts")
    sent = len(store.orders)
    result = engine.tick()
    assert result.state is TradingState.HALTED
    assert ex.fetch_positions([BTC]) == {}
    [close] = [r.request for r in list(store.orders.values())[sent:]]
    assert close.purpose is OrderPurpose.CLOSE
    assert close.reduce_only
    assert ex.fetch_open_orders(BTC) == []  # its stop, an orphan now, cancelled
    [decision] = result.decisions
    assert decision.target_qty == 0
    assert "no decision this tick" in decision.reason
    assert any(e.kind is EventKind.MARKET_DATA for e in store.events)  # still said


class RefusingCloses:
    """The simulated venue refusing every market close (Binance -4131 in a crash's book)."""

    def __init__(self, ex: SimulatedExchange) -> None:
        self.place = ex.place_order
        ex.place_order = self.place_order  # type: ignore[method-assign]

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.CLOSE:
            raise OrderRejected("PERCENT_PRICE filter limit", code=-4131)
        return self.place(request)


def test_its_refused_close_is_a_flatten_incident(instruments: dict[str, Instrument]) -> None:
    """The tick's close of a contract without market data is tried like the guard's: refused
    at that job and the next, the position still held is a ``flatten_pending`` incident."""
    market = BrokenMarket()
    engine, ex, store = build(instruments, market)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    _halt_and_flatten(engine, store)
    market.error = TransientExchangeError("klines of BTCUSDT: HTTP 502 after 4 attempts")
    RefusingCloses(ex)
    engine.tick()  # the close is tried, and refused
    assert ex.fetch_positions([BTC])[BTC].qty == held
    _later(engine)
    engine.tick()  # refused again: the position is still held after an earlier job's close
    [pending] = [e for e in store.events if e.kind is EventKind.FLATTEN_PENDING]
    assert pending.symbol == BTC
    assert "PERCENT_PRICE" in pending.reason


def test_rejected_credentials_still_stop_the_job(instruments: dict[str, Instrument]) -> None:
    market = BrokenMarket()
    engine, _ex, _store = build(instruments, market)
    engine.tick()
    market.error = AuthenticationFailed("API key rejected")
    with pytest.raises(AuthenticationFailed):
        engine.tick()


def test_a_contract_never_read_gets_no_position(instruments: dict[str, Instrument]) -> None:
    market = BrokenMarket()
    market.error = TransientExchangeError("klines: timeout")
    engine, ex, _store = build(instruments, market)
    engine.tick()
    assert ex.fetch_positions([BTC]).get(BTC) is None
    assert ex.book.wallet == D(10000)


class FutureStampedMarket(FakeMarket):
    """The last price carries a time ``ahead_ms`` after the bot's clock while it is set."""

    ahead_ms: int | None = None

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        got = super().last_price(symbol, now_ms)
        if got is None or self.ahead_ms is None:
            return got
        return got[0], now_ms + self.ahead_ms


def test_a_price_dated_in_the_future_is_not_fresh(instruments: dict[str, Instrument]) -> None:
    """A price stamped beyond the stale-data limit ahead of the clock would read as fresh for
    as long as the stamp says: it costs its contract the decision and counts as stale data."""
    market = FutureStampedMarket()
    engine, ex, store = build(instruments, market)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    limit = engine.limits.stale_data_ms
    market.ahead_ms = limit  # a clock difference up to the limit is taken as it comes
    assert engine.tick().decisions
    assert not [e for e in store.events if e.kind is EventKind.MARKET_DATA]
    market.ahead_ms = limit + 1000
    result = engine.tick()
    assert result.decisions == []
    assert ex.fetch_positions([BTC])[BTC].qty == held
    [event] = [e for e in store.events if e.kind is EventKind.MARKET_DATA]
    assert "ahead of the bot's clock" in event.reason
    assert "not believable" in event.reason
    assert engine.stale_contracts(engine.clock.now_ms()) == [BTC]


class FrozenMarket(FakeMarket):
    """Every candle a flat bar at the last close while ``frozen`` (a feed that repeats its last
    price, or a contract the venue has halted)."""

    frozen = False

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        window = super().closed_candles(symbol, tf_ms, count, now_ms)
        if not self.frozen:
            return window
        flat = np.full(len(window.ts), float(self.close[-1]))
        return CandleWindow(window.ts, flat, flat, flat, flat, tf_ms)


def test_prices_that_never_move_are_not_sized_on(instruments: dict[str, Instrument]) -> None:
    """Defect: a volatility of 0 took the policy's highest leverage (vol_target: target / 0)
    with a stop one tick from the price. A window without one price change is a frozen feed or
    a halted contract: that contract holds, protected, and counts as stale data."""
    market = FrozenMarket()
    engine, ex, store = build(instruments, market)
    market.frozen = True
    result = engine.tick()
    assert result.decisions == []
    assert ex.fetch_positions([BTC]).get(BTC) is None  # nothing opened on it
    [event] = [e for e in store.events if e.kind is EventKind.MARKET_DATA]
    assert "prices did not move" in event.reason
    assert "volatility 0" in event.reason
    assert engine.stale_contracts(engine.clock.now_ms()) == [BTC]
    market.frozen = False
    assert engine.tick().decisions  # moving again: decided as before
