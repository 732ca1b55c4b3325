"""The funding rate says who pays: a rate > 0 is paid by longs to shorts, and a short receives
it (the rate alone, "0.0100 %", left the trader to remember the convention at 3 a.m.)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.dashboard.model import ContractView


def view(qty: str | None, rate: str | None, *, foreign: bool = False) -> ContractView:
    return ContractView(
        symbol="1000PEPE/USDT:USDT",
        direction="long_short",
        tick=D("0.0000001"),
        step=D(1000),
        qty=None if qty is None else D(qty),
        entry=None,
        mark=D("0.0123456"),
        notional=None,
        leverage=None,
        target_leverage=None,
        liquidation=None,
        liq_distance=None,
        liq_distance_vol=None,
        volatility=None,
        stop_loss=None,
        take_profit=None,
        funding_rate=None if rate is None else D(rate),
        next_funding_ms=None,
        increase_allowed=None,
        decided_ms=None,
        reason=None,
        foreign=foreign,
    )


@pytest.mark.parametrize(
    ("qty", "rate", "shown"),
    [
        ("-5000", "0.0001", "longs pay: this position receives"),
        ("5000", "0.0001", "longs pay: this position pays"),
        ("-5000", "-0.0003", "shorts pay: this position pays"),
        ("5000", "-0.0003", "shorts pay: this position receives"),
        ("0", "0.0001", "longs pay"),
        (None, "-0.0001", "shorts pay"),
        ("5000", "0", "nobody pays"),
        ("5000", None, "-"),
    ],
)
def test_who_pays_the_funding(qty: str | None, rate: str | None, shown: str) -> None:
    assert view(qty, rate).funding_payer == shown


def test_a_position_not_the_bots_pays_it_all_the_same() -> None:
    assert view("5000", "0.0001", foreign=True).funding_payer == "longs pay: this position pays"
