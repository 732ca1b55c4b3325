"""The planner's sizes for positions no order can carry (off the venue's quantity step or below
its minimum): the protective order that covers them, and what a close or cut trades."""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.decision import Decision
from bot.domain.enums import OrderPurpose
from bot.domain.instrument import Bracket, Instrument
from bot.engine.planner import plan_protection, plan_size, stop_sizing
from tests.unit.test_engine import BTC
from tests.unit.test_off_step_positions import HELD, coarse


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, purpose: OrderPurpose) -> str:
        self.n += 1
        return f"t-{purpose.value}-{self.n}"


def decision(qty: str) -> Decision:
    return Decision(
        symbol=BTC,
        direction=1 if D(qty) > 0 else 0,
        target_leverage=D(1),
        target_qty=D(qty),
        stop_loss=None,
        take_profit=None,
        reason="test",
        allow_increase=False,
    )


def test_close_of_an_off_step_position_closes_the_step_part(
    instruments: dict[str, Instrument],
) -> None:
    inst = coarse(instruments[BTC])
    plan = plan_size(decision("0"), HELD, D(3), inst, D(60000), D("0.1"), Ids())
    assert [(r.amount, r.reduce_only, r.purpose) for r in plan.reduce] == [
        (D("0.12"), True, OrderPurpose.CLOSE)
    ]
    assert plan.remainder == D("0.003")
    assert any("0.003 stays" in n for n in plan.notes)
    # a cut to a tenth of the size trades at most the step part too
    cut = plan_size(decision("0.001"), HELD, D(3), inst, D(60000), D("0.1"), Ids())
    assert [r.amount for r in cut.reduce] == [D("0.12")]
    # an on-step position closes whole, as before
    whole = plan_size(decision("0"), D("0.12"), D(3), inst, D(60000), D("0.1"), Ids())
    assert ([r.amount for r in whole.reduce], whole.remainder) == ([D("0.12")], D(0))


def test_stop_sizing() -> None:
    inst = coarse(
        Instrument(
            BTC,
            "BTC",
            "USDT",
            D("0.1"),
            D("0.001"),
            D("0.001"),
            D(5),
            (replace_bracket(),),
            D(0),
            D(0),
            D(0),
        )
    )
    assert stop_sizing(D("0.12"), inst, False) == stop_sizing(D("0.12"), inst, True)
    assert stop_sizing(D("0.12"), inst, True).amount == D("0.12")
    assert stop_sizing(HELD, inst, True).close_position
    part = stop_sizing(HELD, inst, False)
    assert (part.amount, part.remainder, part.close_position) == (D("0.12"), D("0.003"), False)
    none = stop_sizing(D("0.004"), inst, False)
    assert (none.amount, none.remainder, none.placeable) == (None, D("0.004"), False)


def replace_bracket() -> Bracket:
    return Bracket(D(0), D(10) ** 9, D(100), D("0.005"), D(0))


def test_plan_protection_for_an_off_step_position(instruments: dict[str, Instrument]) -> None:
    inst = coarse(instruments[BTC])
    plan = plan_protection(
        BTC, HELD, D(55000), None, [], D("0.002"), Ids(), instrument=inst, close_position=True
    )
    [stop] = plan.place
    assert (stop.amount, stop.close_position, stop.reduce_only) == (None, True, False)
    plan = plan_protection(
        BTC, HELD, D(55000), None, [], D("0.002"), Ids(), instrument=inst, close_position=False
    )
    [stop] = plan.place
    assert (stop.amount, stop.close_position, plan.remainder) == (D("0.12"), False, D("0.003"))
