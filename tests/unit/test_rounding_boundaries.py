"""Boundaries of the rounding of stop-loss and take-profit triggers onto the venue's tick
(bot/domain/instrument.py stop_price, take_profit_price) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

A trigger the policy wants between two ticks is rounded toward the mark: the stop then fires
no later than the policy planned (no more loss than its distance), the take-profit no farther
than its target. Every other test's levels fell on the tick or were checked only to lie on it,
so rounding them the other way went unnoticed."""

from __future__ import annotations

from decimal import Decimal as D

from bot.config.policy import DistanceParams
from bot.domain.instrument import Instrument
from bot.policy.decide import decide
from bot.risk.stop_placement import placeable_stop
from tests.unit.test_policy_properties import VOL_TARGET, view

BTC = "BTC/USDT:USDT"
# Percent distances, so the levels are worked by hand: stop 2.5 %, take-profit 6 %.
PERCENT = VOL_TARGET.model_copy(
    update={
        "stop_loss": DistanceParams(kind="percent", distance=D("2.5")),
        "take_profit": DistanceParams(kind="percent", distance=D(6)),
    }
)


def test_a_stop_between_two_ticks_is_rounded_toward_the_mark(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant i_stop_dir (a long's stop rounded down, a short's up): at a price of 60,000.1
    (BTC's tick 0.1), 2.5 % is 1,500.0025. A long's stop wanted at 58,500.0975 is placed at
    58,500.1, a short's wanted at 61,500.1025 at 61,500.1: rounded away from the mark, each
    fired a tick after the policy's distance, a tick more loss on every stop."""
    long_stop, short_stop = (
        decide([view(D("0.7"), D("60000.1"), direction=sign)], PERCENT)[0].stop_loss
        for sign in (1, -1)
    )
    assert (long_stop, short_stop) == (D("58500.1"), D("61500.1"))
    # The engine's own placement (a stop placed again around the mark) rounds the same way.
    inst = instruments[BTC]
    for sign, wanted, placed in ((1, "58500.0975", "58500.1"), (-1, "61500.1025", "61500.1")):
        got = placeable_stop(
            inst, sign=sign, mark=D("60000.1"), wanted=D(wanted), liquidation=None, buffer=D(0)
        )
        assert got == D(placed)


def test_a_take_profit_between_two_ticks_is_rounded_toward_the_mark() -> None:
    """Mutant i_tp_dir (a long's take-profit rounded up, a short's down): at 60,000.1, 6 % is
    3,600.006. A long's take-profit wanted at 63,600.106 is placed at 63,600.1, a short's
    wanted at 56,400.094 at 56,400.1: the target is reached no later than planned, never a
    tick beyond it."""
    long_tp, short_tp = (
        decide([view(D("0.7"), D("60000.1"), direction=sign)], PERCENT)[0].take_profit
        for sign in (1, -1)
    )
    assert (long_tp, short_tp) == (D("63600.1"), D("56400.1"))
