"""A cross wallet below zero (a loss realised past it: a stop filled in a gap) while another
position holds profits: the account lives on its margin balance, and the liquidation price of a
cross position is Binance's formula on WB - TMM1 + UPNL1 as one sum. The engine took such a
wallet as zero, which puts the liquidation price farther than it is (a stop planned on it could
sit beyond it); the simulated exchange called the account liquidatable at every price."""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import liquidation_price_cross, maintenance_margin
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.protection import liquidation_after, liquidation_of_held

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def _cross(symbol: str, qty: str, entry: str) -> Position:
    return Position(
        symbol=symbol,
        qty=D(qty),
        entry_price=D(entry),
        leverage=D(5),
        margin_mode=MarginMode.CROSS,
        isolated_margin=D(0),
        liquidation_price=None,  # the venue did not say: the engine computes it
    )


def _account() -> AccountView:
    # wallet -400 after a long's stop gapped past it; a short ETH 4,500 in profit carries it
    return AccountView(
        wallet=D("-400"),
        positions={ETH: _cross(ETH, "-10", "3000"), BTC: _cross(BTC, "0.1", "60000")},
        resting={},
        marks={ETH: D("2550"), BTC: D("60000")},
    )


def _by_hand(instruments: dict[str, Instrument]) -> D | None:
    """BTC's liquidation on the margin balance: wallet 0 and the deficit with ETH's PnL."""
    eth = instruments[ETH]
    mm = maintenance_margin(eth, D(10) * D(2550))
    upnl = D(-10) * (D(2550) - D(3000)) + D(-400)
    return liquidation_price_cross(instruments[BTC], D("0.1"), D(60000), D(0), mm, upnl)


def test_a_held_cross_position_on_a_wallet_below_zero(instruments: dict[str, Instrument]) -> None:
    acct = _account()
    liq = liquidation_of_held(instruments[BTC], acct.positions[BTC], acct, instruments)
    expected = _by_hand(instruments)
    assert expected is not None
    assert liq == expected
    # nearer than the wallet taken as zero (the engine's answer before)
    eth = instruments[ETH]
    clamped = liquidation_price_cross(
        instruments[BTC],
        D("0.1"),
        D(60000),
        D(0),
        maintenance_margin(eth, D(10) * D(2550)),
        D(-10) * (D(2550) - D(3000)),
    )
    assert clamped is not None
    assert clamped < liq < D(60000)


def test_a_planned_cross_entry_on_a_wallet_below_zero(instruments: dict[str, Instrument]) -> None:
    acct = _account()
    acct.positions = {ETH: acct.positions[ETH]}  # BTC not held yet: the entry is planned
    liq = liquidation_after(
        instruments[BTC],
        acct,
        instruments,
        sign=1,
        qty=D("0.1"),
        mark=D(60000),
        setting=D(5),
        margin_mode=MarginMode.CROSS,
    )
    fee = D("0.1") * D(60000) * instruments[BTC].taker_fee
    eth = instruments[ETH]
    upnl = D(-10) * (D(2550) - D(3000)) + D(-400) - fee
    exact = liquidation_price_cross(
        instruments[BTC], D("0.1"), D(60000), D(0), maintenance_margin(eth, D(25500)), upnl
    )
    assert exact is not None
    assert liq == instruments[BTC].ceil_price(exact)
