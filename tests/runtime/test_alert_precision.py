"""Alert texts show prices to the contract's tick and sizes exactly without an exponent: a
1000PEPE-like contract (tick 0.0000001, step 1000) read "position 1.23E+5" and a liquidation
price with 14 decimals; the liquidation price is rounded toward the mark (never more room than
there is)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.alerts import AlertRules, conditions
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide
from bot.domain.position import Position
from tests.runtime.test_alerts import INSTRUMENT, order, snapshot

PEPE = replace(INSTRUMENT, tick_size=D("0.0000001"), step_size=D(1000), min_qty=D(1000))
SYM = PEPE.symbol


def alerts_for(qty: str, liq: str, mark: str, stop_amount: str) -> dict[str, str]:
    pos = Position(SYM, D(qty), D("0.0000123"), D(5), MarginMode.CROSS, D(0), D(liq))
    side = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY  # the stop closes it
    found = conditions(
        positions={SYM: pos},
        resting={SYM: [replace(order(OrderPurpose.STOP_LOSS, side), amount=D(stop_amount))]},
        marks={SYM: D(mark)},
        snapshots={SYM: replace(snapshot("1", "0.9"), mark_price=D(mark))},
        instruments={SYM: PEPE},
        wallet=D(100),
        rules=AlertRules(liquidation_vol_units=D(30)),
    )
    return {a.key.split(":")[0]: a.message for a in found}


def test_a_long_on_a_coarse_tick_and_a_large_step() -> None:
    # a quantity as the engine computes it on a step of 1000 (1.23E+5), a raw liquidation price
    got = alerts_for("1.23E+5", "0.00001134999999", "0.00001212345678", "1E+5")
    assert got["part_unprotected"].startswith(f"{SYM}: position 123000: ")
    # 0.00001134999999 rounded up (toward the mark above it), the mark to the tick
    assert "liquidation 0.0000114 is " in got["liq_distance"]
    assert "from the mark 0.0000121 " in got["liq_distance"]
    assert "E+" not in " ".join(got.values())


def test_a_short_liquidation_is_rounded_down_toward_the_mark() -> None:
    # a short's liquidation is above the mark: rounded down, toward it
    got = alerts_for("-1.23E+5", "0.00001290000001", "0.00001212345678", "1E+5")
    assert "liquidation 0.0000129 is " in got["liq_distance"]
    assert got["part_unprotected"].startswith(f"{SYM}: position -123000: ")
