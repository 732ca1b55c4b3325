"""Bybit contracts through a liquidation cascade (:mod:`tests.audit.cascade`) and the crash's
edges, on Bybit's own liquidation arithmetic (``MarginModel.BYBIT_UTA``: the conservative of
its two valuations, fee to close in the maintenance margin; :mod:`bot.domain.margin`).

After every tick, besides the invariants of :mod:`tests.audit.invariants` (a valid resting stop
strictly between the mark and the simulated exchange's liquidation price, books balanced), the
engine's own liquidation estimate equals the simulated exchange's, and no order the engine
planned is refused for margin. Outside the replay: liquidations fill at Bybit's price, on the
tick against the position (a cross account where its equity meets Bybit's maintenance, fee to
close included), never before a
reachable stop; a cross book with a negative wallet; ``bot stress`` and ``bot calc --exchange
bybit`` against the simulated exchange and a hand computation; a Bybit long at 1x, which Bybit
liquidates near entry x MMR.
"""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import MarginModel
from bot.domain.margin import (
    cross_maintenance,
    liquidation_price_cross,
    liquidation_price_isolated,
    maintenance_margin,
    worst_margin,
)
from bot.domain.orders import OrderRequest
from bot.engine.account import AccountView
from bot.engine.protection import liquidation_of_held, secure_stop
from bot.engine.tick import Engine
from bot.errors import ConfigError
from bot.instruments import load_instruments
from bot.sim.account_watch import account_path, first_cross_liquidation
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import TriggerSeries, advance, process_bar
from bot.tools.calc import CalcRequest, calculate
from bot.tools.portfolio import Holding, Portfolio
from bot.tools.scenarios import Scenario
from bot.tools.stress import Limits, run_scenario
from tests.audit.cascade import BTC_LIKE, MAJOR_ALT, THIN_ALT, Cascade, write_cascade
from tests.audit.harness import ROOT, Outcome, run, write_config
from tests.audit.invariants import TickChecker
from tests.audit.market import Series, eight_hourly, stem, write_market
from tests.audit.scenarios import SCENARIOS
from tests.audit.test_cascade import STATIC_10X, _policy

BYBIT = load_instruments("bybit")
BTC, ETH, SOL, BNB = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "BNB/USDT:USDT"
BAR_MS = 60_000
LIMITS = Limits(D("0.05"), D("0.25"))


def test_the_catalogue_is_bybits_arithmetic() -> None:
    assert {s: i.margin_model for s, i in BYBIT.items()} == dict.fromkeys(
        (BTC, ETH, SOL, BNB), MarginModel.BYBIT_UTA
    )


# --- the cascade, every tick checked -------------------------------------------------------


class BybitTickChecker(TickChecker):
    """:class:`TickChecker` and, for every open position, the engine's liquidation estimate
    (from the position as held, without the venue's figure) against the simulated exchange's
    own, and the figure the exchange reports on its tick grid, toward the mark."""

    def __call__(self, t: int, engine: Engine, ex: SimulatedExchange) -> None:
        super().__call__(t, engine, ex)
        held = {s: p for s, p in ex.book.positions.items() if p.qty != 0}
        if not held:
            return
        positions = {s: ex.book.to_position(s) for s in held}
        acct = AccountView(ex.book.wallet, positions, {}, dict(ex.marks))
        reported = ex.fetch_positions(list(held))
        for sym, pos in positions.items():
            inst = ex.instrument(sym)
            theirs = ex.book.liquidation_price(sym, ex.marks)
            mine = liquidation_of_held(inst, pos, acct, ex.book.instruments)
            if mine != theirs:
                self.fail(t, f"{sym}: engine's liquidation {mine} != the exchange's {theirs}")
            shown = reported[sym].liquidation_price
            if theirs is not None and shown is not None:
                on_grid = inst.ceil_price(theirs) if pos.qty > 0 else inst.floor_price(theirs)
                if shown != on_grid:
                    self.fail(t, f"{sym}: reported liquidation {shown} != {on_grid}")


STATIC = """
name = "static_{lev}x"
kind = "static"
timeframe = "{tf}"
[volatility]
estimator = "yang_zhang"
window = {window}
[leverage]
min = {lev}
max = {lev}
fixed = {lev}
[stop_loss]
kind = "percent"
distance = {stop}
[liquidation]
buffer_vol_units = 0
[funding]
max_annual_cost = 5
[limits]
daily_loss = 0.9
max_drawdown = 0.95
[reentry]
cooldown = "0"
"""


def _bybit_policy(name: str, tf: str) -> str:
    window = 168 if tf == "1h" else 288
    if name == "static_25x":
        # Bybit liquidates a fresh 25x BTC position (exchange setting 26) about 3.3 % away
        # (1/26 less the MMR and the fee to close): a 3.4 % stop lies beyond it (the config
        # check, about 1/L - MMR - fee = 3.45 %, lets it through), the engine must cope.
        return STATIC.format(lev=25, stop="3.4", tf=tf, window=window)
    if name == "static_20x":
        # SOL's first Bybit tier keeps 2.5 %: liquidated about 2.2 % away at 20x (setting 21).
        return STATIC.format(lev=20, stop="2.4", tf=tf, window=window)
    if name == "static_half":
        # A target of 0.5x takes the exchange setting 1: a long's margin is its whole value,
        # which Bybit still liquidates, about entry x MMR (Binance's formula: never).
        return STATIC.format(lev="0.5", stop="20", tf=tf, window=window)
    if name == "static_10x":
        return STATIC_10X.format(tf=tf, window=window)
    return _policy(name, tf)


def simulate_bybit(
    tmp: Path,
    symbol: str,
    price0: float,
    cascade: Cascade,
    *,
    policy: str,
    tf: str = "1h",
    **config: object,
) -> Outcome:
    write_cascade(tmp / "data", symbol, price0, cascade, seed=3)
    wide = {"daily_loss": 0.9, "max_drawdown": 0.95, "max_lev": 50, "max_gross": 55}
    settings = {"start": "2025-01-08", "stale": 600, "max_notional": 1e9}
    settings |= (wide if policy.startswith("static_") and policy != "static_3x" else {}) | config
    text = _bybit_policy(policy, tf)
    path = write_config(tmp, tmp / "data", [symbol], policy_text=text, exchange="bybit", **settings)  # type: ignore[arg-type]
    return _run_bybit(path)


def _run_bybit(path: Path) -> Outcome:
    """:func:`tests.audit.harness.run` with :class:`BybitTickChecker` after every tick."""
    return run(path, checker=BybitTickChecker)


BYBIT_VARIANTS = [
    # (symbol, price, cascade, policy, margin mode, side, balance, trigger source, timeframe)
    (BTC, 60_000.0, BTC_LIKE, "static_25x", "isolated", "long", 10_000, "auto", "1h"),
    (BTC, 60_000.0, BTC_LIKE, "static_25x", "cross", "long", 10_000, "mark", "1h"),
    (ETH, 3_000.0, MAJOR_ALT, "static_25x", "isolated", "short", 10_000, "auto", "1h"),
    (ETH, 3_000.0, MAJOR_ALT, "static_25x", "cross", "long", 10_000, "last", "1h"),
    (SOL, 150.0, THIN_ALT, "static_20x", "isolated", "long", 1_000, "auto", "5m"),
    (SOL, 150.0, THIN_ALT, "static_10x", "cross", "short", 100_000, "auto", "1h"),
    (BNB, 600.0, MAJOR_ALT, "static_3x", "cross", "long", 10_000, "auto", "1h"),
    (BTC, 60_000.0, MAJOR_ALT, "conservative", "isolated", "long", 10_000, "auto", "1h"),
    (ETH, 3_000.0, THIN_ALT, "risk_parity", "cross", "long", 10_000, "auto", "5m"),
    (SOL, 150.0, MAJOR_ALT, "vol_target", "isolated", "short", 10_000, "auto", "1h"),
    (BTC, 60_000.0, MAJOR_ALT, "vol_target", "cross", "long", 10_000, "mark", "5m"),
    (SOL, 150.0, THIN_ALT, "static_half", "isolated", "long", 10_000, "mark", "1h"),
]


@pytest.mark.parametrize(
    ("symbol", "price0", "cascade", "policy", "mode", "side", "balance", "trigger", "tf"),
    BYBIT_VARIANTS,
)
def test_bybit_invariants_hold_through_the_cascade(
    tmp_path: Path,
    symbol: str,
    price0: float,
    cascade: Cascade,
    policy: str,
    mode: str,
    side: str,
    balance: int,
    trigger: str,
    tf: str,
) -> None:
    outcome = simulate_bybit(
        tmp_path,
        symbol,
        price0,
        cascade,
        policy=policy,
        tf=tf,
        margin_mode=mode,
        direction=side,
        balance=balance,
        trigger_source=trigger,
    )
    assert outcome.checker.positions_seen > 0
    assert outcome.problems == [], "\n".join(outcome.problems[:10])
    ex = outcome.result.exchange
    assert all(i.margin_model is MarginModel.BYBIT_UTA for i in ex.book.instruments.values())
    # No order the engine planned was refused by the venue (for margin or anything else).
    refused = [e for e in outcome.result.store.events if e.kind is EventKind.REJECTED]
    assert refused == []
    if policy.startswith("static_"):
        # The cascade reached the fixed-leverage positions: a stop fired (or the venue
        # liquidated one), and never was a liquidation the first exit of a stopped position.
        assert any(f.purpose is OrderPurpose.STOP_LOSS or f.liquidation for f in ex.fills)
    if policy in ("static_25x", "static_20x"):
        # The policy's stop lies beyond Bybit's liquidation at its fixed leverage: the
        # liquidation cap (Bybit's formula) cut the leverage until the stop lies inside.
        reasons = [r.decision.reason for r in outcome.result.store.decisions]
        assert any("beyond SL -> leverage" in r for r in reasons)


# --- liquidation at Bybit's price, never before a reachable stop ---------------------------


def _bybit_exchange(mode: MarginMode, balance: str = "10000") -> SimulatedExchange:
    return SimulatedExchange(
        dict(BYBIT), SimClock(0), starting_balance=D(balance), margin_mode=mode
    )


def _open(
    ex: SimulatedExchange, sym: str, qty: D, price: D, lev: int, stop: D | None = None
) -> None:
    ex.marks[sym] = ex.lasts[sym] = price
    ex.set_leverage(sym, lev)
    side = OrderSide.BUY if qty > 0 else OrderSide.SELL
    ex.place_order(
        OrderRequest(f"o-{sym}", sym, side, OrderType.MARKET, OrderPurpose.ENTRY, abs(qty), False)
    )
    if stop is not None:
        ex.place_order(
            OrderRequest(
                f"s-{sym}",
                sym,
                side.opposite,
                OrderType.STOP_MARKET,
                OrderPurpose.STOP_LOSS,
                abs(qty),
                True,
                trigger_price=stop,
            )
        )


def _books_balance(ex: SimulatedExchange, start: D) -> None:
    realized = sum((f.realized_pnl for f in ex.fills), D(0))
    fees = sum((f.fee for f in ex.fills), D(0))
    expected = start + realized - fees - ex.funding_paid + ex.insurance_shortfall
    assert ex.book.wallet == expected
    assert ex.book.wallet >= 0


@pytest.mark.parametrize("mode", [MarginMode.ISOLATED, MarginMode.CROSS])
@pytest.mark.parametrize(
    ("sym", "qty", "price", "lev"), [(BTC, "1", "60000", 20), (SOL, "-30", "150", 10)]
)
@pytest.mark.parametrize("with_stop", [False, True])
def test_a_liquidation_fills_at_bybits_price_and_never_before_a_reachable_stop(
    mode: MarginMode, sym: str, qty: str, price: str, lev: int, with_stop: bool
) -> None:
    """A 1-minute bar runs through the liquidation price without gapping: no stop, the
    position is liquidated at Bybit's price (no slippage here; on the tick, against the
    position), and the books balance; with a stop halfway to it, the stop fills and nothing is
    liquidated."""
    ex = _bybit_exchange(mode, "10000")
    inst = BYBIT[sym]
    q, entry = D(qty), D(price)
    ex.marks[sym] = ex.lasts[sym] = entry
    ex.set_leverage(sym, lev)
    _open(ex, sym, q, entry, lev)
    liq = ex.book.liquidation_price(sym, ex.marks)
    assert liq is not None
    if mode is MarginMode.ISOLATED:
        margin = ex.book.positions[sym].isolated_margin
        assert liq == liquidation_price_isolated(inst, q, entry, margin)
    else:
        assert liq == liquidation_price_cross(inst, q, entry, ex.book.wallet, D(0), D(0))
    stop = inst.stop_price(entry + (liq - entry) / 2, 1 if q > 0 else -1) if with_stop else None
    if stop is not None:
        _open_stop_only(ex, sym, q, stop)
    sign = 1 if q > 0 else -1
    far = liq - sign * entry * D("0.02")
    o, h, low = (entry, entry, far) if q > 0 else (entry, far, entry)
    process_bar(ex, sym, BAR_MS, o, h, low, far, trades=True)
    liquidations = [f for f in ex.fills if f.liquidation]
    stops = [f for f in ex.fills if f.purpose is OrderPurpose.STOP_LOSS]
    if with_stop:
        assert liquidations == []
        [fill] = stops
        assert fill.price == stop
    else:
        [fill] = liquidations
        assert fill.price == inst.fill_on_tick(liq, -sign)  # a long sold, a short bought back
    assert ex.book.positions[sym].qty == 0
    _books_balance(ex, D("10000"))


def _open_stop_only(ex: SimulatedExchange, sym: str, qty: D, stop: D) -> None:
    side = OrderSide.SELL if qty > 0 else OrderSide.BUY
    ex.place_order(
        OrderRequest(
            f"s-{sym}",
            sym,
            side,
            OrderType.STOP_MARKET,
            OrderPurpose.STOP_LOSS,
            abs(qty),
            True,
            trigger_price=stop,
        )
    )


def test_a_cross_bybit_account_is_liquidated_where_its_equity_meets_bybits_maintenance() -> None:
    """Two Bybit longs on one cross wallet fall together inside one bar, not far enough for
    either one's own liquidation price (the other held at its mark): the account is liquidated
    on the joint path where its equity meets Bybit's maintenance margin, fee to close included
    and each long held to its value at entry (:func:`cross_maintenance`, the rule the alerts'
    ratio reads). The joint search took the tiered maintenance without the fee: the account was
    liquidated about 0.055 % of its notional (110 USDT here) later, below Bybit's price; then,
    each valued at the mark alone, 0.06 % later (BTC at 53 664.17 instead of 53 695.87)."""
    ex = _bybit_exchange(MarginMode.CROSS, "20000")
    _open(ex, BTC, D("1.5"), D(60000), 20)
    _open(ex, ETH, D(30), D(3000), 20)
    wallet = ex.book.wallet  # 20 000 less the opening fees
    entries = {BTC: 60000.0, ETH: 3000.0}
    series = {}
    for sym, e in entries.items():
        o = np.array([e])
        low = np.array([e * 0.85])
        series[sym] = TriggerSeries(
            np.array([BAR_MS], dtype=np.int64), o, o.copy(), low, low.copy(), BAR_MS, "mark"
        )
    own = {s: ex.book.liquidation_price(s, ex.marks) for s in entries}
    assert all(
        liq is not None and liq < D(repr(e * 0.85))
        for (s, e), liq in zip(entries.items(), own.values(), strict=True)
    )
    advance(ex, series, {}, 2 * BAR_MS)
    fills = {f.symbol: f for f in ex.fills if f.liquidation}
    assert set(fills) == {BTC, ETH}
    qty = {BTC: D("1.5"), ETH: D(30)}
    equity = wallet + sum(qty[s] * (fills[s].price - D(repr(entries[s]))) for s in entries)
    mm = sum(
        cross_maintenance(BYBIT[s], qty[s], D(repr(entries[s])), fills[s].price) for s in entries
    )
    # Within the fills' rounding onto the tick: 1.5 x 0.1 + 30 x 0.01 at most.
    assert abs(equity - mm) < D("0.45"), (equity, mm)
    _books_balance(ex, D(20000))


def _falling(start: float, lows: list[float]) -> TriggerSeries:
    """1-minute mark bars from ``start``, each opening where the previous one closed, at its
    low (a price falling bar by bar)."""
    low = np.array(lows)
    o = np.concatenate(([start], low[:-1]))
    ts = np.arange(1, len(lows) + 1, dtype=np.int64) * BAR_MS
    return TriggerSeries(ts, o, o.copy(), low, low.copy(), BAR_MS, "mark")


def _ratio_at(ex: SimulatedExchange, prices: dict[str, D]) -> D:
    """The account's cross margin ratio with each position at ``prices``, as the alerts read it
    (:func:`worst_margin`: :func:`position_maintenance` over the margin balance)."""
    held = [
        (ex.book.to_position(s), BYBIT[s], prices[s])
        for s, p in ex.book.positions.items()
        if p.qty != 0
    ]
    worst = worst_margin(held, ex.book.wallet)
    assert worst is not None
    return worst.ratio


def _first_bar_at_ratio_one(ex: SimulatedExchange, series: dict[str, TriggerSeries]) -> int:
    """The first bar whose lows (the longs' adverse prices) put the account's ratio at >= 1."""
    for k in range(len(next(iter(series.values())).ts)):
        if _ratio_at(ex, {s: D(repr(float(b.low[k]))) for s, b in series.items()}) >= 1:
            return k
    return -1


def test_a_cross_bybit_long_is_liquidated_at_the_bar_its_margin_ratio_reaches_one() -> None:
    """1 BTC long at 60 000 on a cross wallet of 6 000 (10x), falling bar by bar. The account's
    margin ratio (:func:`position_maintenance`: 300 at entry plus the fee to close on the value
    at the mark) reaches 1 at (60 000 - 6 000 + 300) / (1 - 0.00055) = 54 329.88; the third
    bar's low, 54 329.8, is past it. The simulated exchange liquidates the account on that bar,
    at margin.py's cross liquidation price (sold on the tick below it: 54 329.8), and its float
    search finds the same bar. Before,
    the cross solve charged the fee to close on the bankruptcy value (54 329.7) and the float
    search valued the maintenance at the mark alone (54 301.37): liquidated a bar later, with
    the alerts' ratio at 1.0002 on the third bar."""
    ex = _bybit_exchange(MarginMode.CROSS, "10000")
    _open(ex, BTC, D(1), D(60000), 10)
    ex.book.wallet = D(6000)
    lows = [58000.0, 56000.0, 54329.8, 54000.0]
    series = {BTC: _falling(60000.0, lows)}
    hit = _first_bar_at_ratio_one(ex, series)
    assert hit == 2
    liq = liquidation_price_cross(BYBIT[BTC], D(1), D(60000), D(6000), D(0), D(0))
    assert liq == D(54300) / D("0.99945")
    assert liq == ex.book.liquidation_price(BTC, ex.marks)
    assert D(repr(lows[hit])) <= liq < D(repr(lows[hit - 1]))
    assert abs(_ratio_at(ex, {BTC: liq}) - 1) < D("1e-9")
    path = account_path(ex, series, {BTC: len(lows)}, BAR_MS)
    assert path is not None
    assert first_cross_liquidation(path) == hit
    advance(ex, series, {}, (len(lows) + 1) * BAR_MS)
    [fill] = [f for f in ex.fills if f.liquidation]
    assert fill.timestamp_ms == int(series[BTC].ts[hit])
    assert fill.price == BYBIT[BTC].floor_price(liq)  # sold on the tick below


def test_a_cross_bybit_account_is_held_to_the_other_longs_value_at_entry() -> None:
    """Long 1 BTC at 60 000 and long 100 ETH at 3 000 on a cross wallet of 70 000; ETH has
    fallen to 2 400 (-60 000) and BTC falls bar by bar. ETH's maintenance is held to its value
    at entry (:func:`cross_maintenance`): 300 000 x 0.5 % = 1 500 (1 200 at the mark) plus the
    fee to close 240 000 x 0.055 % = 132. With ETH held fixed, BTC's liquidation price is
    (60 000 - (70 000 - 1 632 - 60 000) + 300) / 0.99945 = 51 960.58; at the third bar's low,
    51 800, the account's ratio is (1 632 + 328.49) / 1 800 = 1.09, and 0.92 were ETH valued at
    its mark alone. The simulated exchange liquidates the account on that bar, and its float
    search finds the same bar; before, with ETH valued at the mark, BTC's price was 51 660.23
    and the account lived a bar longer."""
    ex = _bybit_exchange(MarginMode.CROSS, "100000")
    _open(ex, BTC, D(1), D(60000), 10)
    _open(ex, ETH, D(100), D(3000), 10)
    ex.book.wallet = D(70000)
    ex.marks[ETH] = ex.lasts[ETH] = D(2400)
    lows = [58000.0, 53000.0, 51800.0, 50000.0]
    series = {BTC: _falling(60000.0, lows), ETH: _falling(2400.0, [2400.0] * len(lows))}
    hit = _first_bar_at_ratio_one(ex, series)
    assert hit == 2
    eth = ex.book.to_position(ETH)
    at_mark = maintenance_margin(BYBIT[ETH], D(100) * D(2400))
    at_bar = D(repr(lows[hit]))
    btc_mm = cross_maintenance(BYBIT[BTC], D(1), D(60000), at_bar)
    equity = D(70000) + (at_bar - D(60000)) + eth.unrealized_pnl(D(2400))
    assert (btc_mm + at_mark) / equity < 1  # ETH at the mark alone: the account would live
    eth_mm = cross_maintenance(BYBIT[ETH], D(100), D(3000), D(2400))
    assert eth_mm == D(1632)
    liq = liquidation_price_cross(BYBIT[BTC], D(1), D(60000), D(70000), eth_mm, D(-60000))
    assert liq == (D(60000) - (D(70000) - D(1632) - D(60000)) + D(300)) / D("0.99945")
    assert liq == ex.book.liquidation_price(BTC, ex.marks)
    assert at_bar <= liq < D(repr(lows[hit - 1]))
    assert abs(_ratio_at(ex, {BTC: liq, ETH: D(2400)}) - 1) < D("1e-9")
    ends = {s: len(lows) for s in series}
    path = account_path(ex, series, ends, BAR_MS)
    assert path is not None
    assert first_cross_liquidation(path) == hit
    advance(ex, series, {}, (len(lows) + 1) * BAR_MS)
    fills = {f.symbol: f for f in ex.fills if f.liquidation}
    assert {s: f.timestamp_ms for s, f in fills.items()} == dict.fromkeys(
        (BTC, ETH), int(series[BTC].ts[hit])
    )
    assert fills[BTC].price == BYBIT[BTC].floor_price(liq)  # sold on the tick below
    assert fills[ETH].price == D(2400)


# --- a cross book with a negative wallet ---------------------------------------------------


@pytest.mark.parametrize("side", [1, -1])
def test_a_cross_book_with_a_negative_wallet_engine_and_exchange_agree(side: int) -> None:
    """A stop filled in a gap left the cross wallet below zero while BTC holds a profit: the
    exchange's liquidation price of BTC (Bybit's, the deficit counted with the other
    positions' PnL) is the engine's, and the engine's stop lies strictly inside it."""
    ex = _bybit_exchange(MarginMode.CROSS, "10000")
    _open(ex, BTC, D("0.5") * side, D(60000), 10)
    _open(ex, ETH, D(-5), D(3000), 10)
    ex.marks[BTC] = D(60000) * (1 + D("0.05") * side)  # BTC in profit
    ex.book.wallet = D(-400)  # ETH's loss realised past the wallet, ETH still held
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    positions = {s: ex.book.to_position(s) for s in (BTC, ETH)}
    acct = AccountView(ex.book.wallet, positions, {}, dict(ex.marks))
    assert liquidation_of_held(BYBIT[BTC], positions[BTC], acct, BYBIT) == liq
    eth_mm = cross_maintenance(BYBIT[ETH], D(-5), D(3000), ex.marks[ETH])
    by_hand = liquidation_price_cross(BYBIT[BTC], D("0.5") * side, D(60000), D(0), eth_mm, D(-400))
    assert liq == by_hand
    mark = ex.marks[BTC]
    stop = secure_stop(BYBIT[BTC], positions[BTC], acct, BYBIT, wanted=None, buffer=D(0))
    assert stop is not None
    assert (mark - stop) * side > 0
    assert (stop - liq) * side > 0


# --- bot stress and bot calc --exchange bybit against the simulated exchange ---------------


def bybit_lp_by_hand(
    side: int, q: D, entry: D, lev: int, mmr: D, taker: D, mode: MarginMode = MarginMode.ISOLATED
) -> Fraction:
    """Bybit's liquidation price of a fresh position (first tier, no deduction) whose margin
    (isolated) or wallet (cross) is its initial margin, by hand in exact fractions: the entry
    valuation for a long, the mark valuation for a short, the taker fee in the maintenance
    margin: on the bankruptcy value when isolated, on the value at the mark in cross."""
    qf, ef, m, r, t = (Fraction(x) for x in (q, entry, q * entry / lev, mmr, taker))
    if mode is MarginMode.CROSS:
        # m + side * q * (P - e) = max(q * e * r, q * P * r) + t * q * P
        at_entry = (qf * ef * r - m + side * qf * ef) / (qf * (side - t))
        at_mark = (side * qf * ef - m) / (qf * (side - r - t))
        return max(at_entry, at_mark) if side > 0 else min(at_entry, at_mark)
    fee = t * (qf * ef - side * m)
    if side > 0:
        at_entry = ef - (m - fee - qf * ef * r) / qf
        at_mark = (qf * ef - (m - fee)) / (qf * (1 - r))
        return max(at_entry, at_mark)
    at_entry = ef + (m - fee - qf * ef * r) / qf
    at_mark = (m - fee + qf * ef) / (qf * (1 + r))
    return min(at_entry, at_mark)


def _replay(p: Portfolio, moves: dict[str, D]) -> SimulatedExchange:
    # (room for the opening fee: the book is the portfolio's once open, as bot stress opens it)
    ex = SimulatedExchange(
        dict(BYBIT), SimClock(0), starting_balance=p.wallet * 2, margin_mode=p.margin_mode
    )
    for h in p.holdings:
        _open(ex, h.symbol, h.qty, h.entry_price, h.leverage, h.stop_loss)
    ex.book.wallet = p.wallet
    ex.slippage = D(2) / 10000
    series = {}
    for sym, move in moves.items():
        bars = np.array([float(ex.marks[sym] * (1 + move))] * 2)
        stamps = np.array([BAR_MS, 2 * BAR_MS], dtype=np.int64)
        series[sym] = TriggerSeries(stamps, bars, bars, bars, bars, BAR_MS, "mark")
    advance(ex, series, {}, 2 * BAR_MS)
    advance(ex, series, {}, 3 * BAR_MS)
    return ex


BOOKS = [
    # (symbol, signed qty, entry, leverage, stop as a fraction of the way to liquidation)
    (BTC, "0.2", "60000", 20, "0.5"),
    (BTC, "-0.2", "60000", 25, None),
    (ETH, "3", "3000", 10, None),
    (ETH, "-3", "3000", 50, "0.6"),
    (SOL, "30", "150", 1, None),
    (SOL, "-30", "150", 20, "0.4"),
]


@pytest.mark.parametrize("mode", [MarginMode.ISOLATED, MarginMode.CROSS])
@pytest.mark.parametrize(("symbol", "qty", "entry", "lev", "stop_at"), BOOKS)
def test_stress_calc_and_the_simulated_exchange_agree_on_a_bybit_position(
    symbol: str, qty: str, entry: str, lev: int, stop_at: str | None, mode: MarginMode
) -> None:
    """One Bybit position whose wallet is its initial margin (isolated: its margin; cross:
    the whole wallet, the same collateral): bot stress, the simulated exchange replaying the
    move and a hand computation of Bybit's formula agree on liquidated / stopped / held either
    side of the liquidation price and of the stop, and on the equity after; bot calc --exchange
    bybit gives the hand computation's liquidation price."""
    inst = BYBIT[symbol]
    q, e = D(qty), D(entry)
    side = 1 if q > 0 else -1
    rate = inst.brackets[0].maint_margin_rate
    lp = bybit_lp_by_hand(side, abs(q), e, lev, rate, inst.taker_fee, mode)
    assert abs(q) * D(lp.numerator) / D(lp.denominator) < inst.brackets[0].notional_cap
    # bot calc --exchange bybit: the same collateral (|q| x entry / lev) at that leverage.
    calc = calculate(
        CalcRequest(symbol, side, e, abs(q) * e / lev, mode, leverage=D(lev), exchange="bybit")
    )
    assert calc.liquidation_price is not None
    assert abs(Fraction(calc.liquidation_price) - lp) < Fraction(1, 10**12)
    stop = None
    if stop_at is not None:
        way = D(lp.numerator) / D(lp.denominator) - e
        stop = inst.stop_price(e + way * D(stop_at), side)
    h = Holding(symbol, q, e, lev, e, stop_loss=stop)
    p = Portfolio(abs(q) * e / lev, mode, (h,), "bybit")
    at_lp = float(lp / Fraction(e)) - 1
    levels = [at_lp - 0.002, at_lp + 0.002, 0.01, -0.01, 0.5 * side * -1]
    if stop is not None:
        at_stop = float(stop / e - 1)
        levels += [at_stop - 0.001, at_stop + 0.001]
    seen = set()
    for level in levels:
        move = D(f"{level:.4f}")
        o = run_scenario(p, BYBIT, Scenario("x", "move", {symbol: move}), LIMITS, D(2))
        mine = "liquidated" if o.liquidated else "stopped" if o.stopped else "held"
        price = Fraction(e * (1 + move))
        by_hand = (
            "liquidated"
            if (price <= lp if side > 0 else price >= lp)
            else "stopped"
            if stop is not None and (price <= stop if side > 0 else price >= stop)
            else "held"
        )
        ex = _replay(p, {symbol: move})
        replayed = (
            "liquidated"
            if any(ev.kind == "liquidation" for ev in ex.events)
            else "stopped"
            if any(ev.kind == "stop_loss" for ev in ex.events)
            else "held"
        )
        assert mine == replayed == by_hand, (symbol, move)
        assert o.equity_after == ex.equity()
        seen.add(mine)
    assert "liquidated" in seen
    assert ("stopped" in seen) is (stop is not None)


# --- a Bybit long at 1x --------------------------------------------------------------------


@pytest.mark.parametrize("mode", [MarginMode.ISOLATED, MarginMode.CROSS])
def test_a_bybit_long_at_1x_has_a_liquidation_price_near_entry_times_mmr(mode: MarginMode) -> None:
    """Bybit's entry valuation liquidates a 1x long at about entry x MMR (Binance's formula:
    never). The exchange reports it, the engine plans a stop strictly inside it, bot calc shows
    it and its 99.5 % distance, bot stress names it the nearest liquidation."""
    ex = _bybit_exchange(mode, "6100")  # room for the opening fee
    _open(ex, BTC, D("0.1"), D(60000), 1)
    ex.book.wallet = D(6000)
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    assert D(299) < liq < D(301)  # 60 000 x 0.5 %, no fee: a 1x long has no bankruptcy value
    reported = ex.fetch_positions([BTC])[BTC]
    assert reported.liquidation_price == BYBIT[BTC].ceil_price(liq)
    pos = ex.book.to_position(BTC)
    acct = AccountView(ex.book.wallet, {BTC: pos}, {}, dict(ex.marks))
    stop = secure_stop(BYBIT[BTC], pos, acct, BYBIT, wanted=D(57000), buffer=D(600))
    assert stop == D(57000)
    far = secure_stop(BYBIT[BTC], pos, acct, BYBIT, wanted=D(200), buffer=D(0))
    assert far is not None
    assert liq < far < ex.marks[BTC]
    calc = calculate(CalcRequest(BTC, 1, D(60000), D(6000), mode, leverage=D(1), exchange="bybit"))
    assert calc.liquidation_price is not None
    assert calc.liquidation_distance is not None
    assert abs(calc.liquidation_distance - D("0.995")) < D("0.0001")
    o = run_scenario(
        Portfolio(D(6000), mode, (Holding(BTC, D("0.1"), D(60000), 1, D(60000)),), "1x"),
        BYBIT,
        Scenario("x", "move", {BTC: D("-0.999")}),
        LIMITS,
        D(0),
    )
    assert o.liquidated == (BTC,)


# --- the named adversarial markets on Bybit: gaps past the stop, crashes, a squeeze --------

NAMED = [
    # (scenario of tests.audit.scenarios, policy, margin mode, side)
    ("gap_down_30_over_6h", "static_25x", "isolated", "long"),
    ("gap_down_30_over_6h", "static_25x", "cross", "long"),
    ("gap_up_30_over_6h", "static_25x", "isolated", "short"),
    ("gap_up_30_over_6h", "vol_target", "cross", "short"),
    ("crash_10_mark_40", "static_25x", "cross", "long"),
    ("spike_100", "static_20x", "isolated", "short"),
    ("spike_100", "static_3x", "cross", "short"),
]


@pytest.mark.parametrize(("scenario", "policy", "mode", "side"), NAMED)
def test_bybit_invariants_hold_in_the_named_markets(
    tmp_path: Path, scenario: str, policy: str, mode: str, side: str
) -> None:
    """A gap past the stop liquidates at the bar's open or fills the stop there, never a
    position whose stop the mark reached first; every tick as above."""
    symbols = SCENARIOS[scenario](tmp_path / "data")
    wide = {"daily_loss": 0.9, "max_drawdown": 0.95, "max_lev": 50, "max_gross": 55}
    settings = wide if policy.startswith("static_") and policy != "static_3x" else {}
    path = write_config(
        tmp_path,
        tmp_path / "data",
        symbols,
        policy_text=_bybit_policy(policy, "1h"),
        exchange="bybit",
        margin_mode=mode,
        direction=side,
        stale=7200,
        **settings,  # type: ignore[arg-type]
    )
    outcome = _run_bybit(path)
    assert outcome.checker.positions_seen > 0
    assert outcome.problems == [], "\n".join(outcome.problems[:10])
    refused = [e for e in outcome.result.store.events if e.kind is EventKind.REJECTED]
    assert refused == []
    if scenario.startswith("gap_") and policy == "static_25x":
        # The gap opened past the stop and Bybit's liquidation price: the venue liquidated.
        assert any(f.liquidation for f in outcome.result.exchange.fills)


# --- the config check: a percent stop beyond Bybit's liquidation ---------------------------


def test_a_percent_stop_beyond_bybits_liquidation_is_refused_for_a_bybit_simulation(
    tmp_path: Path,
) -> None:
    """``[data] exchange = "bybit"`` simulates on Bybit's specifications, but the check that
    a percent stop fires before the liquidation read only the live venue's (Binance by
    default: SOL keeps 0.5 % there, 2.5 % on Bybit): a 20x policy with a 4.4 % stop passed,
    though Bybit liquidates it about 2.4 % away. Both venues are checked, Bybit's fee to close
    counted."""
    text = STATIC.format(lev=20, stop="4.4", tf="1h", window=168)
    path = write_config(
        tmp_path, tmp_path, [SOL], policy_text=text, exchange="bybit", max_lev=20, max_gross=25
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "stop_loss.distance = 4.4 %" in message
    assert "SOL/USDT:USDT" in message
    assert "about 2.44 % away" in message  # 5 % - 2.5 % - 0.055 %
    # Within Bybit's room it loads.
    ok = STATIC.format(lev=20, stop="2.4", tf="1h", window=168)
    load_config(write_config(tmp_path, tmp_path, [SOL], policy_text=ok, exchange="bybit"))


def test_a_bybit_cross_squeeze_threshold_agrees_between_stress_the_replay_and_by_hand() -> None:
    """Wallet 2 000 backs shorts of BTC 0.1 @ 60 000 and SOL 20 @ 150 on Bybit (N 6 000 and
    3 000, MMR 0.5 % and 2.5 %, taker 0.055 % to close; a short's maintenance is valued at the
    mark). Both marks m higher: 2 000 - 9 000 m = (30 + 75 + 4.95)(1 + m) at m* = 1 890.05 /
    9 109.95 = 0.207472 (without the fee to close: 0.208127). A squeeze of 20.76 % liquidates
    the account in bot stress, in the replay (the joint search) and by hand; 20.74 % does not.
    The replay's joint search left the fee out: it held the account through the bar of the
    20.76 % move, which liquidated it only on the next bar (bot stress: at once)."""
    m_star = Fraction(189005, 910995)
    btc = Holding(BTC, D("-0.1"), D(60000), 10, D(60000))
    sol = Holding(SOL, D(-20), D(150), 10, D(150))
    p = Portfolio(D(2000), MarginMode.CROSS, (btc, sol), "cross")
    for pct in ("0.2076", "0.2074"):
        moves = {BTC: D(pct), SOL: D(pct)}
        o = run_scenario(p, BYBIT, Scenario("squeeze", "move", moves), LIMITS, D(2))
        ex = _replay(p, moves)
        replayed = {e.symbol for e in ex.events if e.kind == "liquidation"}
        by_hand = Fraction(pct) >= m_star
        assert set(o.liquidated) == replayed, pct
        assert bool(replayed) is by_hand, pct
        # On the bar that moved both marks (the joint search), not on the next one.
        assert {e.ts_ms for e in ex.events if e.kind == "liquidation"} <= {BAR_MS}


# --- a cascade spliced into Bybit's real history ---------------------------------------------

_REAL = [
    ROOT.parent / "shared" / "data" / "bybit",
    Path.home() / "work" / "shared" / "data" / "bybit",
    Path("/work/shared/data/bybit"),
]
REAL_BYBIT = next((p for p in _REAL if (p / "BTC_USDT_USDT-5m.csv.gz").exists()), None)
REAL_DAYS = 14


def _real_5m(symbol: str) -> Series:
    """The first 14 days of Bybit's real 5-minute candles of ``symbol``."""
    assert REAL_BYBIT is not None
    rows = np.loadtxt(REAL_BYBIT / f"{stem(symbol)}-5m.csv.gz", delimiter=",", skiprows=1)
    rows = rows[: REAL_DAYS * 288]
    ts = rows[:, 0].astype(np.int64)
    return Series(ts, rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5])


@pytest.mark.skipif(REAL_BYBIT is None, reason="Bybit's real history (shared/data/bybit) absent")
@pytest.mark.parametrize(
    ("policy", "mode", "side"),
    [
        ("static_25x", "cross", "long"),
        ("static_25x", "isolated", "long"),
        ("static_25x", "cross", "short"),
    ],
)
def test_a_cascade_spliced_into_bybits_real_btc_and_eth(
    tmp_path: Path, policy: str, mode: str, side: str
) -> None:
    """BTC and ETH on Bybit's real 5-minute history (2025-06-22 on), both crashing 30 % (mark
    -20 %) in the same candle on day 12, or squeezing 30 % for shorts: one cross wallet
    behind both (the joint search), or isolated; every tick checked."""
    data = tmp_path / "data"
    event = 12 * 288 + 150
    for symbol in (BTC, ETH):
        trade = _real_5m(symbol)
        mark = trade.copy()
        if side == "long":
            trade.crash_inside(event, 0.30, recover=0.1)
            mark = trade.copy()
            mark.low[event] = max(mark.low[event], mark.open[event] * 0.8)
        else:
            trade.spike_inside(event, 0.30, 0.1)
            mark = trade.copy()
            mark.high[event] = min(mark.high[event], mark.open[event] * 1.2)
        end = int(trade.ts[-1]) + 300_000
        write_market(data, symbol, trade, mark, eight_hourly(int(trade.ts[0]), end, 0.0001))
    wide = {"daily_loss": 0.9, "max_drawdown": 0.95, "max_lev": 50, "max_gross": 55}
    path = write_config(
        tmp_path,
        data,
        [BTC, ETH],
        policy_text=_bybit_policy(policy, "1h"),
        exchange="bybit",
        margin_mode=mode,
        direction=side,
        stale=7200,
        **(wide if policy == "static_25x" else {}),  # type: ignore[arg-type]
    )
    outcome = _run_bybit(path)
    assert outcome.checker.positions_seen > 0
    assert outcome.problems == [], "\n".join(outcome.problems[:10])
    refused = [e for e in outcome.result.store.events if e.kind is EventKind.REJECTED]
    assert refused == []
    if policy == "static_25x":
        fills = outcome.result.exchange.fills
        assert any(f.purpose is OrderPurpose.STOP_LOSS or f.liquidation for f in fills)
