"""The cheaper policy, risk and domain hot paths give exactly what they gave before.

Each test compares a live function with its copy as of bdbcc2b (``tests/unit/speed_reference``)
on generated inputs, by ``repr``: equal values with different Decimal exponents (``1E+2`` and
``100.0``) would change the simulation's outputs and the reasons, so they count as different.
Exceptions must match too (type and message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config.loader import load_policy
from bot.config.policy import DistanceParams, Policy
from bot.domain.decision import Decision
from bot.domain.enums import MarginMode, TradingState
from bot.domain.instrument import Instrument, MarginModel
from bot.domain.margin import (
    liquidation_price_cross,
    liquidation_price_isolated,
    max_leverage_with_liquidation_beyond,
)
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.planner import exchange_setting
from bot.engine.protection import secure_decision
from bot.instruments import load_instruments
from bot.policy.decide import base_leverages, decide
from bot.policy.inputs import ContractView
from bot.policy.leverage import vol_target_leverage
from bot.ports.store import RiskMemory
from bot.risk.guard import equity_floor
from bot.risk.limits import RiskLimits
from bot.risk.loss_budget import cap_to_loss_budget, loss_at_stop
from bot.risk.stop_placement import fit_size, placeable_stop, stop_range
from tests.unit import speed_reference as ref

ROOT = Path(__file__).resolve().parents[2]
BINANCE = load_instruments("binanceusdm")
BYBIT = load_instruments("bybit")
# Bybit's BTC table as a third tier shape, on Binance's formula: the reference predates the
# venue formulas (Bybit's own is checked by hand in tests/unit/test_margin_bybit.py).
TABLES = [
    BINANCE["BTC/USDT:USDT"],
    BINANCE["XRP/USDT:USDT"],
    replace(BYBIT["BTC/USDT:USDT"], margin_model=MarginModel.BINANCE_USDM),
]
POLICIES = [load_policy(ROOT / "policies" / f"{n}.toml") for n in ("vol_target", "static_3x")]
POLICIES += [load_policy(ROOT / "policies" / "conservative.toml")]

TICKS = [D("0.1"), D("0.10"), D("0.01"), D("0.5"), D("5"), D("1E+1"), D("0.0001"), D("0.00010")]
STEPS = [D("0.001"), D("0.0010"), D("0.1"), D("1"), D("1E+1")]


def out(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """``repr`` of the result, or of the exception (type and message)."""
    try:
        return repr(fn(*args, **kwargs))
    except (ValueError, ArithmeticError) as exc:
        return f"raised {type(exc).__name__}: {exc}"


def decimals(lo: str, hi: str) -> st.SearchStrategy[D]:
    """Decimals in [lo, hi] with every kind of exponent: few or many places, trailing zeros
    (``1.000``) and the normalised form (``1E+2``)."""
    base = st.integers(0, 8).flatmap(
        lambda p: st.decimals(D(lo), D(hi), places=p, allow_nan=False, allow_infinity=False)
    )
    return st.builds(
        lambda d, shape: d.normalize() if shape == 1 else d * D("1.000") if shape == 2 else d,
        base,
        st.integers(0, 2),
    )


@st.composite
def instruments(draw: st.DrawFn, *, filters: bool = True) -> Instrument:
    inst = draw(st.sampled_from(TABLES))
    changes: dict[str, Any] = {
        "tick_size": draw(st.sampled_from(TICKS)),
        "step_size": draw(st.sampled_from(STEPS)),
        "min_qty": draw(st.sampled_from([D(0), D("0.001"), D("0.5")])),
    }
    if filters:
        changes["min_price"] = draw(st.none() | st.sampled_from([D("0.1"), D("0.10"), D(500)]))
        changes["max_price"] = draw(st.none() | st.sampled_from([D(90000), D("1E+6")]))
        changes["percent_down"] = draw(st.none() | st.sampled_from([D("0.5"), D("0.95")]))
        changes["percent_up"] = draw(st.none() | st.sampled_from([D("1.5"), D("1.05")]))
    return replace(inst, **changes)


def reshaped(d: D) -> st.SearchStrategy[D]:
    """``d`` as it is, normalised, or with trailing zeros: equal values, different exponents
    (to catch a comparison that picks the other one of two equal values than min/max did)."""
    return st.sampled_from([d, d.normalize(), d * D("1.000")])


def boundaries(inst: Instrument) -> list[D]:
    return [b.notional_floor for b in inst.brackets] + [b.notional_cap for b in inst.brackets]


prices = decimals("0.5", "150000")
sides = st.sampled_from([1, -1])


def test_decision_fields_are_the_ones_the_hot_paths_build() -> None:
    """secure_decision and cap_to_loss_budget build a Decision field by field (no
    dataclasses.replace): a new field must be added there too."""
    assert [f.name for f in fields(Decision)] == [
        "symbol",
        "direction",
        "target_leverage",
        "target_qty",
        "stop_loss",
        "take_profit",
        "reason",
        "allow_increase",
        "participation_capped",
        "above_cap",
    ]


@given(inst=instruments(filters=False), data=st.data())
@settings(max_examples=200)
def test_bracket_lookup(inst: Instrument, data: st.DataObject) -> None:
    n = data.draw(st.sampled_from(boundaries(inst)) | decimals("-1E+9", "1E+9"))
    assert inst.bracket_for(n) is ref.bracket_for(inst, n)
    assert repr(inst.max_leverage_for(n)) == repr(ref.max_leverage_for(inst, n))


@given(inst=instruments(filters=False), price=decimals("-10", "200000"), sign=sides)
@settings(max_examples=300)
def test_stop_and_take_profit_rounding(inst: Instrument, price: D, sign: int) -> None:
    assert out(inst.stop_price, price, sign) == out(ref.stop_price, inst, price, sign)
    assert out(inst.take_profit_price, price, sign) == out(ref.take_profit_price, inst, price, sign)


@given(
    inst=instruments(filters=False),
    side=st.sampled_from([1, -1, 0, 2]),
    entry=decimals("-1", "150000"),
    notional=st.sampled_from([D(0), D(-5)]) | decimals("1", "5E+7"),
    limit_frac=decimals("0", "2.5"),
)
@settings(max_examples=400)
def test_max_leverage_with_liquidation_beyond(
    inst: Instrument, side: int, entry: D, notional: D, limit_frac: D
) -> None:
    limit = entry * limit_frac
    assert out(max_leverage_with_liquidation_beyond, inst, side, entry, notional, limit) == out(
        ref.max_leverage_with_liquidation_beyond, inst, side, entry, notional, limit
    )


@given(
    inst=instruments(filters=False),
    data=st.data(),
    side=sides,
    entry=decimals("0.001", "150000"),
    margin_frac=decimals("0", "1.2"),
)
@settings(max_examples=400)
def test_liquidation_price_solve(
    inst: Instrument, data: st.DataObject, side: int, entry: D, margin_frac: D
) -> None:
    notional = data.draw(
        st.sampled_from(boundaries(inst)[1:]).map(lambda b: b * D("1.2")) | decimals("1", "5E+7")
    )
    qty = notional / entry
    margin = notional * margin_frac

    def isolated_before() -> D | None:
        return ref.solve(inst, side, abs(qty), entry, margin)

    assert out(liquidation_price_isolated, inst, side * qty, entry, margin) == out(isolated_before)
    assert out(liquidation_price_cross, inst, side * qty, entry, margin, D(0), D(0)) == out(
        isolated_before
    )


@given(
    inst=instruments(),
    sign=st.sampled_from([1, -1, 0]),
    mark=st.sampled_from([D(0), D(-1)]) | prices,
    liq_frac=st.none() | decimals("0", "2.2"),
    buffer_frac=decimals("-0.05", "0.3"),
    wanted_frac=st.none() | decimals("0", "2.2"),
    data=st.data(),
)
@settings(max_examples=800)
def test_stop_range_and_placeable_stop(
    inst: Instrument,
    sign: int,
    mark: D,
    liq_frac: D | None,
    buffer_frac: D,
    wanted_frac: D | None,
    data: st.DataObject,
) -> None:
    liq = None if liq_frac is None else mark * liq_frac
    buffer = mark * buffer_frac
    wanted = None if wanted_frac is None else mark * wanted_frac
    if mark > 0 and sign != 0:
        # Ties: a liquidation bound equal to another bound, a wanted stop on a range end.
        ends = ref.stop_range(inst, sign, mark, liq, buffer)
        if liq is not None and data.draw(st.booleans()):
            other = data.draw(
                st.sampled_from(
                    [
                        inst.tick_size,
                        inst.min_price or mark,
                        inst.max_price or mark,
                        mark * (inst.percent_down or 1),
                        mark * (inst.percent_up or 1),
                    ]
                )
            )
            liq = data.draw(reshaped(other - sign * max(buffer, D(0))))
        if data.draw(st.booleans()):
            wanted = data.draw(reshaped(data.draw(st.sampled_from(ends))))

    def range_now() -> tuple[D, D]:
        r = stop_range(inst, sign=sign, mark=mark, liquidation=liq, buffer=buffer)
        assert r.sign == sign
        return r.nearest, r.farthest

    assert out(range_now) == out(ref.stop_range, inst, sign, mark, liq, buffer)
    assert out(
        placeable_stop, inst, sign=sign, mark=mark, wanted=wanted, liquidation=liq, buffer=buffer
    ) == out(ref.placeable_stop, inst, sign, mark, wanted, liq, buffer)


@given(
    inst=instruments(),
    sign=sides,
    mark=prices,
    qty=decimals("0", "50"),
    lev=decimals("0.5", "60"),
    buffer_frac=decimals("0", "0.2"),
    wanted_frac=st.none() | decimals("0.5", "1.5"),
)
@settings(max_examples=300)
def test_fit_size(
    inst: Instrument,
    sign: int,
    mark: D,
    qty: D,
    lev: D,
    buffer_frac: D,
    wanted_frac: D | None,
) -> None:
    """With a liquidation that moves toward the mark as the size grows (as leverage does)."""

    def liquidation_of(size: D) -> D | None:
        if size <= 0:
            return None
        return mark * (1 - sign / (lev * (1 + size / 100)))

    wanted = None if wanted_frac is None else mark * wanted_frac
    buffer = mark * buffer_frac

    def now() -> tuple[D, D | None, bool]:
        f = fit_size(
            inst,
            qty=qty,
            sign=sign,
            mark=mark,
            wanted=wanted,
            buffer=buffer,
            liquidation_of=liquidation_of,
        )
        return f.qty, f.stop, f.cut

    assert out(now) == out(ref.fit_size, inst, qty, sign, mark, wanted, buffer, liquidation_of)


# ----------------------------------------------------------------- secure_decision (engine)


def _secure_before(
    d: Decision,
    acct: AccountView,
    instruments_: dict[str, Instrument],
    mark: D,
    buffer: D,
    margin_mode: MarginMode,
) -> Decision:
    """secure_decision as of bdbcc2b, for a contract the account does not hold yet."""
    if d.target_qty == 0 or mark <= 0:
        return d
    inst = instruments_[d.symbol]
    sign = 1 if d.target_qty > 0 else -1
    target = abs(d.target_qty)
    lev_per_qty = d.target_leverage / target

    def liquidation_of(qty: D) -> D | None:
        setting = D(exchange_setting(lev_per_qty * qty, inst, qty * mark))
        try:
            if margin_mode is MarginMode.ISOLATED:
                margin = qty * mark / max(setting, D(1))
                if margin < 0:
                    raise ValueError("negative margin")
                liq = ref.solve(inst, sign, abs(sign * qty), mark, margin)
            else:
                # liquidation_price_cross's balance: wallet (less the entry's taker fee, since
                # the simulation audit) - other maintenance + other PnL
                balance = max(acct.wallet - qty * mark * inst.taker_fee, D(0)) - D(0) + D(0)
                liq = ref.solve(inst, sign, abs(sign * qty), mark, balance)
        except ValueError:
            return mark
        # Since the simulation audit: on the tick grid toward the mark, as the venue reports
        # the liquidation price of a held position (tests/audit/test_found_bugs.py).
        if liq is None:
            return None
        return ref.ceil_price(inst, liq) if sign > 0 else ref.floor_price(inst, liq)

    if inst.floor_qty(target) < inst.min_qty:
        # Since the minimum-order fix: the venue's minimum, not the stop, is the cause.
        shown = [format(x.normalize(), "f") if x else "0" for x in (target, inst.min_qty)]
        return replace(
            d,
            target_qty=D(0),
            target_leverage=D(0),
            stop_loss=None,
            take_profit=None,
            reason=f"{d.reason}; size {shown[0]} below the exchange minimum {shown[1]} "
            "-> no position",
        )
    # Since the crossed-stop fix: no size is taken whose stop had to be moved nearer the mark
    # than the policy's (a wanted stop over a tick through the mark, or moved in beyond the grid's
    # rounding from where it was wanted, a long's held at the lowest price, a short's at the
    # highest); the size is cut on until the policy's stop rests.
    wanted = d.stop_loss
    if wanted is not None and sign > 0:
        lowest = max(inst.tick_size, inst.min_price or D(0))
        wanted = max(wanted, lowest)
    elif wanted is not None and inst.max_price is not None:
        wanted = min(wanted, inst.max_price)

    def moved(at: D) -> bool:
        assert d.stop_loss is not None
        assert wanted is not None
        crossed = (d.stop_loss - mark) * sign > inst.tick_size
        return crossed or (at - ref.stop_price(inst, wanted, sign)) * sign > 0

    def fits(at: D) -> D | None:
        found = ref.placeable_stop(inst, sign, mark, d.stop_loss, liquidation_of(at), buffer)
        return None if found is None or (d.stop_loss is not None and moved(found)) else found

    size = inst.floor_qty(target)
    over = size
    stop: D | None = None
    refused: tuple[D, D] | None = None
    for _ in range(ref.MAX_CUTS):
        if size <= 0 or size < inst.min_qty:
            break
        stop = ref.placeable_stop(inst, sign, mark, d.stop_loss, liquidation_of(size), buffer)
        if stop is not None and (d.stop_loss is None or not moved(stop)):
            break
        if stop is not None:
            refused = refused or (size, stop)
            over = size
        stop = None
        smaller = inst.floor_qty(size * ref.CUT)
        size = smaller if smaller < size else size - inst.step_size
    if stop is None:
        size = D(0)
    elif refused is not None:  # the largest size below the smallest refused one that fits
        while over - size > inst.step_size:
            mid = inst.floor_qty((size + over) / 2)
            if mid <= size:
                break
            found = fits(mid)
            if found is None:
                over = mid
            else:
                size, stop = mid, found
    why = ""
    if refused is not None:
        why = (
            f"stop {d.stop_loss} -> {refused[1]} at size {refused[0]} (valid range before "
            "liquidation), nearer the mark than the policy's stop distance: no increase on it"
        )
    if refused is not None and size == 0:
        return replace(
            d,
            target_qty=D(0),
            target_leverage=D(0),
            stop_loss=None,
            take_profit=None,
            reason=f"{d.reason}; {why} -> no position",
        )
    if size == 0 or stop is None:
        return replace(
            d,
            target_qty=D(0),
            target_leverage=D(0),
            stop_loss=None,
            take_profit=None,
            reason=f"{d.reason}; no stop can rest between mark {mark} and liquidation "
            f"(buffer {buffer:.6g}) at any size -> close",
        )
    if refused is not None:
        lev = d.target_leverage
        if size != target:
            lev = (lev_per_qty * size).quantize(D("0.01"), rounding="ROUND_FLOOR")
        notes = [f"{why} -> size cut to {size}, where the policy's stop rests"]
        if stop != d.stop_loss:
            notes.append(f"stop {d.stop_loss} -> {stop} (valid range before liquidation)")
        return replace(
            d,
            target_qty=sign * size,
            target_leverage=lev,
            stop_loss=stop,
            reason=f"{d.reason}; {'; '.join(notes)}",
        )
    notes = []
    lev = d.target_leverage
    if size != target:
        lev = (lev_per_qty * size).quantize(D("0.01"), rounding="ROUND_FLOOR")
        notes.append(f"no placeable stop at size {target} -> size cut to {size}")
    if stop != d.stop_loss:
        notes.append(f"stop {d.stop_loss} -> {stop} (valid range before liquidation)")
    if not notes:
        return d
    return replace(
        d,
        target_qty=sign * size,
        target_leverage=lev,
        stop_loss=stop,
        reason=f"{d.reason}; {'; '.join(notes)}",
    )


@given(
    inst=instruments(),
    sign=sides,
    mark=prices,
    qty=decimals("0.001", "20"),
    lev=decimals("0.2", "80"),
    wanted_frac=st.none() | decimals("0.3", "1.7"),
    buffer_frac=decimals("0", "0.2"),
    mode=st.sampled_from([MarginMode.ISOLATED, MarginMode.CROSS]),
    wallet=decimals("0", "100000"),
    take=st.none() | prices,
    allow=st.booleans(),
)
@settings(max_examples=300)
def test_secure_decision(
    inst: Instrument,
    sign: int,
    mark: D,
    qty: D,
    lev: D,
    wanted_frac: D | None,
    buffer_frac: D,
    mode: MarginMode,
    wallet: D,
    take: D | None,
    allow: bool,
) -> None:
    d = Decision(
        symbol=inst.symbol,
        direction=sign,
        target_leverage=lev,
        target_qty=sign * qty,
        stop_loss=None if wanted_frac is None else mark * wanted_frac,
        take_profit=take,
        reason="BTC: why",
        allow_increase=allow,
    )
    acct = AccountView(wallet, {}, {}, {inst.symbol: mark})
    instruments_ = {inst.symbol: inst}
    buffer = mark * buffer_frac
    now = out(secure_decision, d, acct, instruments_, mark=mark, buffer=buffer, margin_mode=mode)
    assert now == out(_secure_before, d, acct, instruments_, mark, buffer, mode)


# ------------------------------------------------------------------ loss budget, guard, vol


@st.composite
def book(draw: st.DrawFn) -> tuple[list[Decision], dict[str, D], dict[str, Instrument]]:
    n = draw(st.integers(1, 4))
    decisions: list[Decision] = []
    marks: dict[str, D] = {}
    insts: dict[str, Instrument] = {}
    for k in range(n):
        sym = f"C{k}/USDT:USDT"
        inst = replace(draw(instruments(filters=False)), symbol=sym)
        mark = draw(prices)
        sign = draw(st.sampled_from([1, -1, 0]))
        qty = draw(decimals("0", "30"))
        stop_frac = draw(st.none() | decimals("0.01", "2"))
        stop = None if stop_frac is None else mark * stop_frac
        decisions.append(
            Decision(
                symbol=sym,
                direction=sign,
                target_leverage=draw(decimals("0", "20")),
                target_qty=sign * qty,
                stop_loss=stop,
                take_profit=draw(st.none() | prices),
                reason=f"C{k}: why",
                allow_increase=draw(st.booleans()),
            )
        )
        marks[sym] = mark
        insts[sym] = inst
    return decisions, marks, insts


@given(
    b=book(),
    budget=st.none() | decimals("-100", "100000"),
    slippage=decimals("-0.001", "0.01"),
    fixed=decimals("-10", "5000"),
    data=st.data(),
)
@settings(max_examples=250)
@pytest.mark.slow
def test_cap_to_loss_budget(
    b: tuple[list[Decision], dict[str, D], dict[str, Instrument]],
    budget: D | None,
    slippage: D,
    fixed: D,
    data: st.DataObject,
) -> None:
    decisions, marks, insts = b
    if budget is not None and data.draw(st.booleans()):
        fixed = data.draw(reshaped(budget))  # no room left, in another exponent
    assert out(cap_to_loss_budget, decisions, marks, insts, budget, slippage, fixed) == out(
        ref.cap_to_loss_budget, decisions, marks, insts, budget, slippage, fixed
    )
    for d in decisions:
        if d.stop_loss is not None:
            args = (d.target_qty, marks[d.symbol], d.stop_loss, slippage, insts[d.symbol])
            assert out(loss_at_stop, *args) == out(ref.loss_at_stop, *args)


@given(
    state=st.none() | st.sampled_from(list(TradingState)),
    peak=decimals("0", "100000"),
    day=decimals("0", "100000"),
    dd=decimals("0", "1"),
    daily=decimals("0", "1"),
    on_daily=st.sampled_from(["reducing", "halted"]),
    why=st.sampled_from(["why", "daily loss 5.00% >= limit 5.00% (until the next UTC day)"]),
)
@settings(max_examples=200)
def test_equity_floor(
    state: TradingState | None,
    peak: D,
    day: D,
    dd: D,
    daily: D,
    on_daily: Literal["reducing", "halted"],
    why: str,
) -> None:
    limits = RiskLimits(D(10), D(10), D(10**6), daily, dd, 60_000, 60, on_daily)
    memory = None if state is None else RiskMemory(state, why, peak, 0, day, False)
    assert repr(equity_floor(memory, limits)) == repr(ref.equity_floor(memory, limits))


@given(
    vol=decimals("-0.1", "3"),
    target=decimals("0", "1"),
    lo=decimals("0", "3"),
    span=decimals("0", "10"),
)
@settings(max_examples=200)
def test_vol_target_leverage(vol: D, target: D, lo: D, span: D) -> None:
    hi = lo + span
    assert out(vol_target_leverage, vol, target, lo, hi) == out(
        ref.vol_target_leverage, vol, target, lo, hi
    )


# ------------------------------------------------------------------------------ the policy


@st.composite
def views(draw: st.DrawFn) -> ContractView:
    inst = draw(instruments())
    price = draw(prices)
    vol = draw(decimals("0", "3"))
    direction = draw(st.sampled_from([1, -1, 0]))
    snap = MarketSnapshot(
        symbol=inst.symbol,
        asof_ms=0,
        last_price=price,
        mark_price=price,
        volatility=vol,
        atr=price * draw(decimals("0", "0.2")),
        funding=FundingInfo(draw(decimals("-0.003", "0.003")), D(8), None),
        bar_hours=D(1),
    )
    position = None
    if draw(st.booleans()):
        held = draw(decimals("0.001", "5")) * draw(sides)
        position = Position(
            inst.symbol, held, price * draw(decimals("0.7", "1.3")), D(5), MarginMode.ISOLATED
        )
    return ContractView(
        symbol=inst.symbol,
        direction=direction,
        allow_increase=draw(st.booleans()),
        max_leverage=draw(st.sampled_from([D(125), D(3), D("2.5"), D("0.5")])),
        instrument=inst,
        market=snap,
        position=position,
        resting_stop=draw(st.none() | prices),
        sleeve_equity=draw(decimals("0", "200000")),
        exit_slippage=draw(decimals("0", "0.005")),
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    policy = draw(st.sampled_from(POLICIES))
    kind = draw(st.sampled_from(["atr", "vol", "percent"]))
    stop = DistanceParams(kind=kind, distance=draw(decimals("0.1", "5")))
    take = draw(
        st.none()
        | st.builds(
            DistanceParams,
            kind=st.sampled_from(["atr", "vol", "percent"]),
            distance=decimals("0.1", "8"),
        )
    )
    return policy.model_copy(
        update={"stop_loss": stop, "take_profit": take, "allow_increase": draw(st.booleans())}
    )


@given(vs=st.lists(views(), min_size=1, max_size=3), policy=policies())
@settings(max_examples=300)
@pytest.mark.slow
def test_decide(vs: list[ContractView], policy: Policy) -> None:
    vs = [replace(v, symbol=f"C{k}/USDT:USDT") for k, v in enumerate(vs)]

    def before() -> list[Decision]:
        bases = base_leverages(vs, policy, None)
        return [ref.decide_one(v, policy, *bases[v.symbol]) for v in vs]

    assert out(decide, vs, policy) == out(before)


def test_stop_range_ties_on_round_prices() -> None:
    """Every combination of round prices written in different exponents (``1E+2``, ``100``,
    ``100.0``), where the bounds and the wanted stop tie: the live functions pick the same one
    of two equal values as the min()/max() they replaced."""
    base = TABLES[0]
    marks = [D("100.1"), D("200"), D("2E+2"), D("99.9")]
    liqs = [None, D("99.9"), D("1E+2"), D("100.0"), D("50"), D("100.2"), D("200.0"), D("90")]
    buffers = [D(0), D("0.0"), D("1E+1"), D("-1")]
    wanted = [None, D("1E+2"), D("100"), D("100.0"), D("99.95"), D("2E+2"), D("100.10")]
    filters: list[dict[str, Any]] = [
        {},
        {"min_price": D("1E+2"), "percent_down": D("0.5")},
        {"min_price": D("100.0"), "max_price": D("2E+2"), "percent_up": D("1.5")},
        {"max_price": D("100.00"), "percent_down": D("0.999"), "percent_up": D("1.001")},
    ]
    checked = 0
    for tick in (D("0.1"), D("0.10"), D("1"), D("1E+1"), D("5")):
        for f in filters:
            inst = replace(base, tick_size=tick, **f)
            for mark in marks:
                for liq in liqs:
                    for buffer in buffers:
                        for sign in (1, -1):
                            rng = stop_range(
                                inst, sign=sign, mark=mark, liquidation=liq, buffer=buffer
                            )
                            assert repr((rng.nearest, rng.farthest)) == repr(
                                ref.stop_range(inst, sign, mark, liq, buffer)
                            )
                            for w in wanted:
                                now = placeable_stop(
                                    inst,
                                    sign=sign,
                                    mark=mark,
                                    wanted=w,
                                    liquidation=liq,
                                    buffer=buffer,
                                )
                                before = ref.placeable_stop(inst, sign, mark, w, liq, buffer)
                                assert repr(now) == repr(before), (inst, sign, mark, w, liq)
                                checked += 1
    assert checked == 5 * 4 * 4 * 8 * 4 * 2 * 7


def test_loss_at_stop_ties_on_a_stop_at_the_mark() -> None:
    """A stop exactly at the mark (no move) in other exponents, with zero costs and ticks in
    other exponents: the same value, exponent included, as max(move, 0) kept."""
    values = [D("100"), D("1E+2"), D("100.00"), D("0"), D("0.0"), D("0E+1")]
    btc = load_instruments("binanceusdm")["BTC/USDT:USDT"]
    for qty in (D(1), D(-1), D("0.50")):
        for mark in values:
            for stop in values:
                for cost in (D(0), D("0.000"), D("0E+3")):
                    for tick in (D("0.1"), D("1E-8"), D("10")):
                        inst = replace(btc, tick_size=tick, taker_fee=cost)
                        args = (qty, mark, stop, cost, inst)
                        assert repr(loss_at_stop(*args)) == repr(ref.loss_at_stop(*args))
