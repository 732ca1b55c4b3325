"""The simulated book never produces a zero with a sign: Decimal keeps the sign of a zero
product, and a "-0.0000000000" in orders.csv or events.csv reads as a different value to a
strict reader or a diff against another run (CI found one: a short closed at its entry)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.engine.contracts import ContractSpec
from bot.engine.reconcile import Reconciler
from bot.instruments import load_instruments
from bot.numbers import unsigned
from bot.sim.book import Book, charged
from bot.store.memory import MemoryStore
from tests.conftest import make_exchange

BTC = "BTC/USDT:USDT"


@pytest.mark.parametrize("mode", list(MarginMode))
@pytest.mark.parametrize("qty", [Decimal("0.5"), Decimal("-0.5")])
def test_a_close_at_the_entry_price_realises_an_unsigned_zero(
    mode: MarginMode, qty: Decimal
) -> None:
    book = Book(
        {BTC: load_instruments("binanceusdm")[BTC]},
        starting_balance=Decimal(10_000),
        margin_mode=mode,
    )
    book.leverage[BTC] = Decimal(3)
    book.trade(BTC, qty, Decimal("0.2001"), Decimal(0))
    closed = book.trade(BTC, -qty, Decimal("0.2001"), Decimal(0))
    assert closed.realized_pnl == 0
    assert not closed.realized_pnl.is_signed(), closed.realized_pnl
    assert book.wallet == Decimal(10_000)


def test_unsigned_keeps_every_other_value() -> None:
    assert str(unsigned(Decimal("-0E-10"))) == "0E-10"
    assert unsigned(Decimal("-1.5")) == Decimal("-1.5")
    assert not charged(Decimal("-1E-12")).is_signed()


def test_a_live_fill_at_the_entry_price_records_an_unsigned_zero(
    instruments: dict[str, Instrument],
) -> None:
    """The reconcile's record of one of the bot's fills (live and paper): a short closed at
    its entry price realised "-0" in the order history."""
    ex, _ = make_exchange(instruments)
    rec = Reconciler(
        exchange=ex,
        store=MemoryStore(),
        contracts=[ContractSpec(BTC, "short", Decimal(125))],
        instruments=instruments,
        event=lambda *_: None,
    )
    short = Position(BTC, Decimal("-0.5"), Decimal("60000"), Decimal(3), MarginMode.CROSS)
    close = Order(
        "t-sl-1", "1", BTC, OrderSide.BUY, OrderType.STOP_MARKET, OrderPurpose.STOP_LOSS,
        Decimal("0.5"), Decimal("0.5"), OrderStatus.FILLED, True, average_price=Decimal("60000"),
    )  # fmt: skip
    fill = rec.fill_of(close, short, 0)
    assert fill is not None
    assert fill.realized_pnl == 0
    assert not fill.realized_pnl.is_signed(), fill.realized_pnl
