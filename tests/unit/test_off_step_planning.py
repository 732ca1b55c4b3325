"""The planner's sizes for positions no order can carry (off the venue's quantity step or below
its minimum): the protective order that covers them, and what a close or cut trades."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.domain.decision import Decision
from bot.domain.enums import OrderPurpose, OrderSide, OrderStatus, OrderType, TriggerBy
from bot.domain.instrument import Bracket, Instrument
from bot.domain.orders import Order
from bot.engine.planner import (
    ProtectionPlan,
    plan_protection,
    plan_size,
    size_after,
    stop_sizing,
)
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


def test_no_increase_off_the_step_while_a_kept_stop_covers_the_position_whole(
    instruments: dict[str, Instrument],
) -> None:
    """(A venue without close-position stops.) The stop of 0.203 would be sized 0.2 and replace
    a kept stop on the whole 0.123: the increase that leaves 0.003 off the step is not sent."""
    inst = coarse(instruments[BTC])
    grow = replace(decision("0.203"), allow_increase=True)
    held = plan_size(grow, HELD, D(3), inst, D(60000), D("0.1"), Ids(), kept_whole=True)
    assert (held.increase, held.reduce) == ([], [])
    assert "increase 0.08 not sent: position 0.123 is covered whole by a kept" in held.held_back
    assert size_after(grow, HELD, inst, D(60000), D("0.1"), kept_whole=True) == HELD
    # without a kept stop covering it whole, the increase goes as before
    sent = plan_size(grow, HELD, D(3), inst, D(60000), D("0.1"), Ids())
    assert [r.amount for r in sent.increase] == [D("0.08")]
    assert sent.held_back == ""
    # an increase that brings a position below the minimum onto the step is sent
    below = replace(inst, min_qty=D("0.2"))
    on_step = plan_size(
        replace(grow, target_qty=D("0.32")),
        D("0.12"),
        D(3),
        below,
        D(60000),
        D("0.1"),
        Ids(),
        kept_whole=True,
    )
    assert [r.amount for r in on_step.increase] == [D("0.2")]


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


# -- moving a close-position stop: the venue holds one per side (Binance -4130) -----------------

BELOW_MIN = D("0.004")  # below the coarse minimum 0.01: no order can carry any part of it


def close_position_stop(cid: str, trigger: str, purpose: OrderPurpose | None) -> Order:
    return Order(
        cid,
        "9",
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        purpose,
        None,
        D(0),
        OrderStatus.OPEN,
        False,
        trigger_price=D(trigger),
        close_position=True,
        trigger_by=TriggerBy.MARK,
    )


def test_a_valid_close_position_stop_below_the_minimum_is_kept_not_moved(
    instruments: dict[str, Instrument],
) -> None:
    """No part of the position is on the step to bridge the swap: moving the stop cancels it
    first, and a refusal of the new one left the position naked (then closed at market). A
    stop that still protects stays; a tighter or looser one is not worth that."""
    inst = coarse(instruments[BTC])
    old = close_position_stop("t-sl-old", "54000", OrderPurpose.STOP_LOSS)
    asked: list[str] = []

    def valid(o: Order) -> bool:
        asked.append(o.client_id)
        return True

    plan = plan_protection(
        BTC,
        BELOW_MIN,
        D(56000),
        None,
        [old],
        D("0.002"),
        Ids(),
        instrument=inst,
        close_position=True,
        still_protects=valid,
    )
    assert (plan.place, plan.cancel, plan.then_place, plan.restore) == ([], [], [], [])
    assert asked == ["t-sl-old"]
    [note] = plan.notes
    assert "t-sl-old kept at 54000 (wanted 56000)" in note
    assert "below the exchange's minimum order 0.01" in note
    # a lasting condition, keyed without the wanted price (which moves with the mark)
    assert "56000" not in plan.standing[note]
    assert "t-sl-old" in plan.standing[note]


def test_a_close_position_stop_below_the_minimum_that_no_longer_protects_is_replaced(
    instruments: dict[str, Instrument],
) -> None:
    """A stop beyond the liquidation price (or through the mark) protects nothing: it is
    replaced, old first, and there is no old trigger worth putting back."""
    inst = coarse(instruments[BTC])
    old = close_position_stop("t-sl-old", "54000", OrderPurpose.STOP_LOSS)
    for still_protects in (lambda o: False, None):
        plan = plan_protection(
            BTC,
            BELOW_MIN,
            D(56000),
            None,
            [old],
            D("0.002"),
            Ids(),
            instrument=inst,
            close_position=True,
            still_protects=still_protects,
        )
        assert plan.place == []  # no bridge: nothing on the step
        assert plan.cancel == ["t-sl-old"]
        [new] = plan.then_place
        assert (new.trigger_price, new.close_position, new.amount) == (D(56000), True, None)
        assert plan.restore == []


def test_a_bridged_close_position_move_puts_the_old_trigger_back_if_refused(
    instruments: dict[str, Instrument],
) -> None:
    """Off the step (0.123 at the step 0.01) the part on the step bridges the swap; should the
    new close-position stop be refused, the old trigger, valid when planned, goes back."""
    inst = coarse(instruments[BTC])
    old = close_position_stop("t-sl-old", "54000", OrderPurpose.STOP_LOSS)
    plan = plan_protection(
        BTC,
        HELD,
        D(56000),
        None,
        [old],
        D("0.002"),
        Ids(),
        instrument=inst,
        close_position=True,
        still_protects=lambda o: True,
    )
    [bridge] = plan.place
    assert (bridge.amount, bridge.reduce_only) == (D("0.12"), True)
    assert plan.cancel == ["t-sl-old"]
    assert [r.trigger_price for r in plan.then_place] == [D(56000)]
    [back] = plan.restore
    assert (back.trigger_price, back.close_position, back.amount) == (D(54000), True, None)
    assert back.client_id not in {bridge.client_id, plan.then_place[0].client_id}


def test_a_close_position_stop_by_hand_that_does_not_count_is_left_and_the_step_part_covered(
    instruments: dict[str, Instrument],
) -> None:
    """A close-position stop placed by hand on the last price holds the venue's one slot on
    this side: the bot neither cancels it nor tries its own (-4130); it protects the part on
    the step with a reduce-only stop and names the rest."""
    inst = coarse(instruments[BTC])
    hand = replace(close_position_stop("web_7", "54000", None), trigger_by=TriggerBy.LAST)
    plan = plan_protection(
        BTC, HELD, D(55000), None, [hand], D("0.002"), Ids(), instrument=inst, close_position=True
    )
    [stop] = plan.place
    assert (stop.amount, stop.close_position, stop.reduce_only) == (D("0.12"), False, True)
    assert (plan.cancel, plan.then_place, plan.remainder) == ([], [], D("0.003"))
    [note] = [n for n in plan.notes if "web_7 placed by hand does not count" in n]
    assert note in plan.standing  # a lasting condition: recorded once while it lasts
    # one on the mark counts: the bot leaves it be and places nothing
    counted = replace(hand, trigger_by=TriggerBy.MARK)
    plan = plan_protection(
        BTC,
        HELD,
        D(55000),
        None,
        [counted],
        D("0.002"),
        Ids(),
        instrument=inst,
        close_position=True,
    )
    assert (plan.place, plan.cancel, plan.then_place) == ([], [], [])


# -- a venue without close-position stops (Bybit): a stop that still protects is kept -----------


def sized_stop(cid: str, trigger: str, amount: D, *, flagged: bool | None = True) -> Order:
    """The bot's reduce-only stop-loss of ``amount``, as the venue lists it (``flagged``: Bybit's
    ``closeOnTrigger`` as its reply says)."""
    return Order(
        cid,
        "9",
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        amount,
        D(0),
        OrderStatus.OPEN,
        True,
        trigger_price=D(trigger),
        trigger_by=TriggerBy.MARK,
        close_on_trigger=flagged,
    )


def plan_on_bybit(
    held: D,
    resting: list[Order],
    inst: Instrument,
    *,
    protects: bool = True,
    unflagged: tuple[str, ...] = (),
) -> ProtectionPlan:
    return plan_protection(
        BTC,
        held,
        D(56000),
        None,
        resting,
        D("0.002"),
        Ids(),
        instrument=inst,
        close_position=False,
        still_protects=lambda o: protects,
        unflagged=unflagged,
    )


def test_below_the_minimum_a_sized_stop_that_still_protects_is_kept_not_cancelled(
    instruments: dict[str, Instrument],
) -> None:
    """Bybit, the venue's minimum raised above the position: no order can replace the stop, and
    a moved stop used to cancel it and place nothing (the bot itself took the position's only
    protection away). It stays where it is, said once while it lasts."""
    inst = replace(instruments[BTC], min_qty=D("0.2"))
    old = sized_stop("t-sl-old", "54000", D("0.117"))
    plan = plan_on_bybit(D("0.117"), [old], inst)
    assert (plan.place, plan.cancel, plan.then_place, plan.remainder) == ([], [], [], D(0))
    [note] = plan.notes
    assert "stop-loss t-sl-old kept at 54000 (wanted 56000)" in note
    assert "below the exchange's minimum order 0.2" in note
    assert "56000" not in plan.standing[note]  # recorded once, whatever the wanted price
    # a duplicate goes, the one kept stays
    dup = sized_stop("t-sl-dup", "53000", D("0.117"))
    plan = plan_on_bybit(D("0.117"), [old, dup], inst)
    assert (plan.place, plan.cancel) == ([], ["t-sl-dup"])
    # one that no longer protects (through the mark, beyond the liquidation) is cancelled: no
    # order can replace it, and it protects nothing
    plan = plan_on_bybit(D("0.117"), [old], inst, protects=False)
    assert (plan.place, plan.cancel) == ([], ["t-sl-old"])


def test_off_the_step_a_stop_on_the_whole_position_is_kept_over_one_on_the_part(
    instruments: dict[str, Instrument],
) -> None:
    """0.123 at the step 0.01 without close-position stops: a new stop covers 0.12 only. The
    resting one on all 0.123 (placed before the step changed) still protects: it stays rather
    than leave 0.003 with no stop."""
    inst = coarse(instruments[BTC])
    whole = sized_stop("t-sl-whole", "54000", HELD)
    plan = plan_on_bybit(HELD, [whole], inst)
    assert (plan.place, plan.cancel, plan.remainder) == ([], [], D(0))
    [note] = plan.notes
    assert "t-sl-whole kept at 54000 (wanted 56000): it still protects 0.123" in note
    assert "a new one could cover only 0.12 of position 0.123" in note
    # one on the part on the step is moved as wanted, new before old: the new covers as much
    part = sized_stop("t-sl-part", "54000", D("0.12"))
    plan = plan_on_bybit(HELD, [part], inst)
    [new] = plan.place
    assert (new.amount, new.trigger_price, plan.cancel) == (D("0.12"), D(56000), ["t-sl-part"])
    # once it no longer protects, the whole one is replaced by the best the venue takes
    plan = plan_on_bybit(HELD, [whole], inst, protects=False)
    assert ([r.amount for r in plan.place], plan.cancel) == ([D("0.12")], ["t-sl-whole"])


def test_a_stop_without_the_closing_flag_is_kept_only_when_nothing_can_replace_it(
    instruments: dict[str, Instrument],
) -> None:
    """A stop an older version placed without Bybit's closeOnTrigger is replaced by one with it
    (the venue cancels it on an account short of margin); below the minimum nothing can be
    placed, and it is better than none."""
    old = sized_stop("t-sl-old", "54000", HELD, flagged=False)
    plan = plan_on_bybit(HELD, [old], coarse(instruments[BTC]), unflagged=("t-sl-old",))
    assert ([r.amount for r in plan.place], plan.cancel) == ([D("0.12")], ["t-sl-old"])
    below = replace(instruments[BTC], min_qty=D("0.2"))
    plan = plan_on_bybit(HELD, [old], below, unflagged=("t-sl-old",))
    assert (plan.place, plan.cancel) == ([], [])
