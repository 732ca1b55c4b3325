"""The simulated book never produces a zero with a sign: Decimal keeps the sign of a zero
product, and a "-0.0000000000" in orders.csv or events.csv reads as a different value to a
strict reader or a diff against another run (CI found one: a short closed at its entry)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.domain.enums import MarginMode
from bot.instruments import load_instruments
from bot.numbers import unsigned
from bot.sim.book import Book, charged

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
