"""Boundaries of the liquidation-distance leverage cap (bot/policy/leverage.py liquidation_cap)
and of liquidation_after (bot/engine/protection.py) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)"""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.instrument import Instrument
from bot.domain.margin import liquidation_price_isolated
from bot.engine.planner import exchange_setting
from bot.policy.leverage import liquidation_cap

BTC = "BTC/USDT:USDT"


def test_the_setting_of_the_capped_leverage_keeps_the_liquidation_beyond_stop_and_buffer(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant l_minus1 (``return setting`` instead of ``setting - 1``): the planner's setting
    for a target is one above its ceiling (leverage_setting: one step of headroom), so the cap
    on the TARGET must be one below the largest setting whose liquidation lies beyond the stop
    plus the buffer (docstring: "Largest target leverage whose exchange setting puts the
    liquidation price at least buffer beyond a stop"). Returning the setting itself let the
    policy size a position whose isolated liquidation lies inside the buffer: the stop is then
    moved toward the mark or the size cut by the securing step, or, where that step is not
    reached, the position rests nearer liquidation than the policy's buffer allows."""
    inst = instruments[BTC]
    price, notional = D(60000), D(20000)
    for stop_pct, buffer_pct in (("0.05", "0.03"), ("0.02", "0.02"), ("0.1", "0.05")):
        for sign in (1, -1):
            dist, buf = price * D(stop_pct), price * D(buffer_pct)
            cap = liquidation_cap(inst, sign, price, notional, dist, buf)
            assert cap > 1
            setting = exchange_setting(cap, inst, notional)
            q = notional / price
            liq = liquidation_price_isolated(inst, sign * q, price, notional / setting)
            assert liq is not None
            limit = price - sign * (dist + buf)
            assert (limit - liq) * sign >= 0, (stop_pct, buffer_pct, sign, cap, setting, liq)


# -- liquidation_after: the position an order leaves, as the venue will report it -------------

from bot.domain.enums import MarginMode, OrderPurpose, OrderSide  # noqa: E402
from bot.domain.position import Position  # noqa: E402
from bot.engine.account import AccountView  # noqa: E402
from bot.engine.planner import market_order  # noqa: E402
from bot.engine.protection import liquidation_after, liquidation_of_held  # noqa: E402
from tests.conftest import make_exchange  # noqa: E402

ETH = "ETH/USDT:USDT"


def _trade(ex, qty: D) -> None:
    side = OrderSide.BUY if qty > 0 else OrderSide.SELL
    ex.place_order(market_order("t-1", BTC, side, OrderPurpose.ENTRY, abs(qty), reduce_only=False))


def _predicted_and_reported(
    instruments: dict[str, Instrument], held: D, held_entry: D, target: D
) -> tuple[D, D]:
    """liquidation_after for ``target`` from ``held`` (entered at ``held_entry``, isolated,
    setting 5, mark 60,000), and the liquidation the simulated venue reports once the orders
    that take ``held`` to ``target`` filled at the mark."""
    inst = instruments[BTC]
    ex, _clock = make_exchange(instruments)
    ex.set_leverage(BTC, 5)
    ex.set_mark(BTC, held_entry)
    _trade(ex, held)
    ex.set_mark(BTC, D(60000))
    positions = ex.fetch_positions([BTC])
    acct = AccountView(ex.fetch_balance().wallet, dict(positions), {}, {BTC: D(60000)})
    sign = 1 if target > 0 else -1
    predicted = liquidation_after(
        inst,
        acct,
        instruments,
        sign=sign,
        qty=abs(target),
        mark=D(60000),
        setting=D(5),
        margin_mode=MarginMode.ISOLATED,
    )
    _trade(ex, target - held)
    reported = ex.fetch_positions([BTC])[BTC].liquidation_price
    assert predicted is not None
    assert reported is not None
    return predicted, reported


def test_the_liquidation_of_a_grown_or_flipped_position_is_the_venues(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants p_after_held_le (a position grown by up to twice its size taken as held: the
    held position's liquidation), p_after_blend (the new entry at the fill alone, not blended
    with the held entry) and p_after_side (a held position of the OTHER side blended into a
    flip's entry): each predicted a liquidation price FARTHER from the mark than the venue's
    for the position the orders leave (a long added at a higher price, a long added in loss, a
    short in loss flipped to a long), so the securing step accepted a stop between the
    predicted and the true liquidation: a stop the venue's liquidation fires first (README
    "A stop lies strictly between the mark and the liquidation price ... of the position a
    trade would leave: the blended entry with the margin the leverage setting locks")."""
    inst = instruments[BTC]
    tick = inst.tick_size
    for held, entry, target in (
        (D("0.1"), D(50000), D("0.15")),  # long in profit, grown by half
        (D("0.1"), D(70000), D("0.3")),  # long in loss, tripled
        (D("-0.1"), D(57000), D("0.2")),  # short in loss, flipped to a long
    ):
        predicted, reported = _predicted_and_reported(instruments, held, entry, target)
        # never farther from the mark than the venue's (a long's: never below it)
        assert predicted >= reported - tick, (held, entry, target, predicted, reported)
        assert predicted - reported < reported * D("0.001"), (held, entry, target)


def _underwater(instruments: dict[str, Instrument]) -> AccountView:
    """A cross account whose ETH long lost far more than the wallet: its margin balance is
    below the maintenance of a BTC short at every price (the venue is liquidating it)."""
    eth = Position(ETH, D(10), D(3000), D(10), MarginMode.CROSS, D(0), None)
    btc = Position(BTC, D("-0.1"), D(60000), D(10), MarginMode.CROSS, D(0), None)
    return AccountView(D(1000), {ETH: eth, BTC: btc}, {}, {ETH: D(2000), BTC: D(60000)})


def test_an_account_already_liquidatable_leaves_no_room_for_a_stop(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants p_held_err (liquidation_of_held) and p_after_err (liquidation_after) returning
    None instead of the mark when the venue's formula says the account is already
    liquidatable: None means "this position has no liquidation price", which makes every stop
    valid; the protection check then counted a resting stop as protection for a short the
    venue is liquidating, and the securing step planned a stop (and a size) for it, instead of
    "no stop can rest" -> close (docstrings: "On error (the account would already be
    liquidatable) the mark itself: no room for a stop")."""
    acct = _underwater(instruments)
    inst = instruments[BTC]
    pos = acct.positions[BTC]
    assert liquidation_of_held(inst, pos, acct, instruments) == D(60000)
    flat = AccountView(acct.wallet, {ETH: acct.positions[ETH]}, {}, dict(acct.marks))
    after = liquidation_after(  # a new short of the same size
        inst,
        flat,
        instruments,
        sign=-1,
        qty=D("0.1"),
        mark=D(60000),
        setting=D(10),
        margin_mode=MarginMode.CROSS,
    )
    assert after == D(60000)
