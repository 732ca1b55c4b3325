"""The engine over the SQL store: what the bot computes from a venue's answer is always a value
the store can keep, or an order that filled would stay unresolved, every job failing on it."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.config.loader import load_policy
from bot.domain.enums import OrderPurpose, OrderStatus, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket, protective

# A few more digits than the simulated exchange keeps (1e-10): a multi-fill average.
EXTRA = D("3E-12")


class TerseAnswers(SimulatedExchange):
    """Answers orders as Binance does: no fee in the order (the bot estimates it at the taker
    rate), and an average price of 12 decimals."""

    def _terse(self, order: Order) -> Order:
        if order.average_price is None:
            return replace(order, fee=None)
        return replace(order, fee=None, average_price=order.average_price + EXTRA)

    def place_order(self, request: OrderRequest) -> Order:
        return self._terse(super().place_order(request))

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        found = super().fetch_order(symbol, client_id)
        return self._terse(found) if found is not None else None


def build_on(
    store: SqlStore, instruments: dict[str, Instrument], venue: type[SimulatedExchange]
) -> tuple[Engine, SimulatedExchange]:
    """The engine of tests.unit.test_engine over ``store``, trading on a ``venue``."""
    ex, clock = make_exchange(instruments)
    ex.__class__ = venue
    market = FakeMarket()
    px, _ = market.last_price(BTC, clock.now_ms()) or (D(0), 0)
    ex.set_mark(BTC, px)
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )
    return engine, ex


def test_a_fee_estimate_finer_than_the_store_keeps_is_recorded_and_the_entry_protected(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    engine, ex = build_on(store, instruments, TerseAnswers)
    # qty 0.001 step x a 12-decimal average x the 0.05 % taker rate: up to 19 decimals, one
    # more than NUMERIC(38, 18) holds. Refused, the entry stayed "pending" after it filled:
    # the tick failed before its stop, and every later job failed settling it.
    engine.tick()
    engine.guard()
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty > 0
    assert protective(ex)[OrderPurpose.STOP_LOSS]
    assert store.unresolved_orders() == []
    [fill] = store.recent_fills(1)
    record = store.get_order(fill.client_id)
    assert record is not None
    assert record.status is OrderStatus.FILLED
    assert record.average_price == fill.price  # the venue's numbers are kept as they came
    exact = fill.qty * fill.price * instruments[BTC].taker_fee
    assert exact != exact.quantize(D("1E-18")), "it fits; the test would prove nothing"
    assert D(0) <= fill.fee - exact < D("1E-18")  # rounded up (a fee is charged), 18 decimals


class PrintedEntries(SimulatedExchange):
    """Positions with an average entry price of 16 decimals, as a venue prints a double."""

    def fetch_positions(self, symbols: list[str]) -> dict[str, Position]:  # type: ignore[override]
        return {
            s: replace(p, entry_price=p.entry_price + D("3E-16")) if p.is_open else p
            for s, p in super().fetch_positions(symbols).items()
        }


def test_an_equity_finer_than_the_store_keeps_does_not_stop_the_loss_limits(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    # A 0.001 step times a 16-decimal entry gives an unrealised PnL, and so an equity, of 19
    # decimals: its new peak could not be saved, and every guard and tick failed at the risk
    # state, before the loss limits or any stop, for as long as it lasted.
    engine, ex = build_on(store, instruments, SimulatedExchange)
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    ex.__class__ = PrintedEntries
    for _ in range(2):
        ex.set_mark(BTC, ex.marks[BTC] * D("1.01"))  # a new equity peak each time
        engine.guard()
        engine.tick()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.peak_equity > 10100  # the new peaks were saved
    # a fall past the drawdown limit still halts (the limit acts on the equity it can save)
    ex.set_mark(BTC, ex.marks[BTC] * D("0.5"))
    engine.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is not TradingState.ACTIVE
