"""A stress scenario and the same move replayed through the simulated exchange agree on which
positions liquidate (and which stop out), and both agree with an independent computation.

Independent computation, by hand from Binance's formula for a fresh isolated position of margin
N / L in the first bracket (all notionals here stay in it):

    long:  LP = EP * (1 - 1/L) / (1 - MMR)        short: LP = EP * (1 + 1/L) / (1 + MMR)

A gap to P liquidates a long when P <= LP (a short when P >= LP). A stop resting between the
mark and LP fills when the gap reaches it but not LP, at P less the slippage.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.backtest.replay import run_simulation
from bot.backtest.report import write_outputs
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import TriggerSeries, advance
from bot.tools.portfolio import Holding, Portfolio, read_portfolio
from bot.tools.scenarios import Scenario
from bot.tools.stress import Limits, run_scenario

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
INSTRUMENTS = load_instruments("binanceusdm")
ENTRY = {"BTC/USDT:USDT": D(60000), "ETH/USDT:USDT": D(3000), "SOL/USDT:USDT": D(150)}
LIMITS = Limits(D("0.05"), D("0.25"))
SLIPPAGE_BPS = D(2)
BAR_MS = 60_000


def independent_lp(h: Holding) -> Decimal | None:
    mmr = INSTRUMENTS[h.symbol].brackets[0].maint_margin_rate
    lev = D(h.leverage)
    if h.qty > 0:
        return None if lev == 1 else h.entry_price * (1 - 1 / lev) / (1 - mmr)
    return h.entry_price * (1 + 1 / lev) / (1 + mmr)


def expected(h: Holding, move: Decimal) -> str:
    price = h.mark * (1 + move)
    lp = independent_lp(h)
    if lp is not None and (price <= lp if h.qty > 0 else price >= lp):
        return "liquidated"
    stop = h.stop_loss
    if stop is not None and (price <= stop if h.qty > 0 else price >= stop):
        return "stopped"
    return "held"


def replay_by_hand(p: Portfolio, moves: dict[str, Decimal]) -> SimulatedExchange:
    """The book opened on a plain SimulatedExchange and each move replayed as one gap bar of
    trigger data through the simulation's own ``advance``."""
    ex = SimulatedExchange(
        INSTRUMENTS, SimClock(0), starting_balance=p.wallet, margin_mode=p.margin_mode
    )
    for n, h in enumerate(p.holdings):
        ex.marks[h.symbol] = ex.lasts[h.symbol] = h.entry_price
        ex.set_leverage(h.symbol, h.leverage)
        side = OrderSide.BUY if h.qty > 0 else OrderSide.SELL
        ex.place_order(
            OrderRequest(
                f"o{n}", h.symbol, side, OrderType.MARKET, OrderPurpose.ENTRY, abs(h.qty), False
            )
        )
        if h.stop_loss is not None:
            ex.place_order(
                OrderRequest(
                    f"s{n}",
                    h.symbol,
                    side.opposite,
                    OrderType.STOP_MARKET,
                    OrderPurpose.STOP_LOSS,
                    abs(h.qty),
                    True,
                    trigger_price=h.stop_loss,
                )
            )
    # Opened without slippage; the book is the trader's from here on, so the opening fee is not
    # part of it (the wallet is the one the portfolio states). Slippage applies to the scenario.
    ex.book.wallet = p.wallet
    ex.slippage = SLIPPAGE_BPS / 10000
    # The gap bar, then one more bar at the same price, each in its own call of ``advance`` (one
    # decision interval each). The simulation scans a contract's bars with the other contracts'
    # marks as of the last call, so a cross liquidation caused by several contracts moving
    # together shows on the second bar; the stress test, which moves every mark at once, sees
    # it at once. Isolated positions do not depend on other marks: the first bar decides.
    series = {}
    for sym, move in moves.items():
        bars = np.array([float(ex.marks[sym] * (1 + move))] * 2)
        stamps = np.array([BAR_MS, 2 * BAR_MS], dtype=np.int64)
        series[sym] = TriggerSeries(stamps, bars, bars, bars, bars, BAR_MS, "mark")
    advance(ex, series, {}, 2 * BAR_MS)
    advance(ex, series, {}, 3 * BAR_MS)
    return ex


def outcome_of(ex: SimulatedExchange, sym: str) -> str:
    if any(e.kind == "liquidation" and e.symbol == sym for e in ex.events):
        return "liquidated"
    if any(e.kind == "stop_loss" and e.symbol == sym for e in ex.events):
        return "stopped"
    return "held"


@st.composite
def books(draw: st.DrawFn) -> tuple[Portfolio, dict[str, Decimal]]:
    symbols = draw(st.lists(st.sampled_from(sorted(ENTRY)), min_size=1, max_size=3, unique=True))
    holdings = []
    moves = {}
    for sym in symbols:
        entry = ENTRY[sym]
        inst = INSTRUMENTS[sym]
        lev = draw(st.sampled_from([1, 2, 3, 5, 10, 20]))
        sign = draw(st.sampled_from([1, -1]))
        margin = D(draw(st.integers(500, 2000)))
        qty = inst.floor_qty(margin * lev / entry) * sign
        h = Holding(sym, qty, entry, lev, entry)
        lp = independent_lp(h)
        if draw(st.booleans()) and lp is not None:
            # A stop a fraction of the way from the mark to the liquidation price.
            frac = D(draw(st.integers(10, 90))) / 100
            h = Holding(
                sym,
                qty,
                entry,
                lev,
                entry,
                stop_loss=inst.stop_price(entry + (lp - entry) * frac, sign),
            )
        holdings.append(h)
        # Anywhere in -60 % .. +60 %, or within 0.5 % of the liquidation price or the stop, where
        # a wrong formula or a wrong rule would show.
        near = [x for x in (lp, h.stop_loss) if x is not None]
        if bool(near) and draw(st.booleans()):
            level = draw(st.sampled_from(near))
            offset = D(draw(st.integers(-50, 50))) / 10000
            moves[sym] = (level / entry - 1 + offset).quantize(D("0.0001"))
        else:
            moves[sym] = D(draw(st.integers(-6000, 6000))) / 10000
    return Portfolio(D(10000), MarginMode.ISOLATED, tuple(holdings), "hypothesis"), moves


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_stress_replay_and_hand_computation_agree(
    case: tuple[Portfolio, dict[str, Decimal]],
) -> None:
    p, moves = case
    o = run_scenario(p, INSTRUMENTS, Scenario("x", "move", moves), LIMITS, SLIPPAGE_BPS)
    ex = replay_by_hand(p, moves)
    for h in p.holdings:
        mine = (
            "liquidated"
            if h.symbol in o.liquidated
            else ("stopped" if any(s.symbol == h.symbol for s in o.stopped) else "held")
        )
        assert mine == outcome_of(ex, h.symbol) == expected(h, moves[h.symbol]), h
    assert o.pnl == ex.equity() - p.wallet
    signs = {h.symbol: h.sign for h in p.holdings}
    for s in o.stopped:
        gapped = ENTRY[s.symbol] * (1 + moves[s.symbol])
        # Gap slippage: the fill is the moved price, 2 bps worse, never the trigger, on the
        # tick against the position (a long's stop sells down to it, a short's buys up).
        slipped = gapped * (1 - signs[s.symbol] * SLIPPAGE_BPS / 10000)
        assert s.fill_price == INSTRUMENTS[s.symbol].fill_on_tick(slipped, -signs[s.symbol])


def test_cross_crash_threshold_agrees_with_the_replay() -> None:
    # Wallet 2 000 backs BTC 0.1 @ 60 000 and SOL 40 @ 150 (N 6 000, MMR 0.004 and 0.005).
    # Equity 2 000 + 12 000 m = MM (6 000 x 0.004 + 6 000 x 0.005)(1 + m) at
    # m* = (54 - 2 000) / (12 000 - 54) = -0.16290.
    btc = Holding("BTC/USDT:USDT", D("0.1"), D(60000), 10, D(60000))
    sol = Holding("SOL/USDT:USDT", D(40), D(150), 10, D(150))
    p = Portfolio(D(2000), MarginMode.CROSS, (btc, sol), "cross")
    for pct, liquidates in ((-16, False), (-17, True)):
        moves = {s: D(pct) / 100 for s in ENTRY if s != "ETH/USDT:USDT"}
        o = run_scenario(p, INSTRUMENTS, Scenario("crash", "crash", moves), LIMITS, SLIPPAGE_BPS)
        ex = replay_by_hand(p, moves)
        replayed = {e.symbol for e in ex.events if e.kind == "liquidation"}
        assert set(o.liquidated) == replayed
        assert bool(replayed) is liquidates


def test_stress_of_a_simulation_end_state_matches_its_own_exchange(tmp_path: Path) -> None:
    config = load_config(ROOT / "config.example.toml")
    window = {"start": date(2025, 9, 1), "end": date(2025, 9, 10)}
    config = config.model_copy(update={"simulation": config.simulation.model_copy(update=window)})
    write_outputs(run_simulation(config, config.policies[0]), tmp_path, 0.0)
    p = read_portfolio(None, tmp_path, None, None, D(1), MarginMode.ISOLATED)
    assert p.holdings, "the simulation should end holding positions"
    seen_liquidation = seen_stop = False
    for pct in (-5, -10, -20, -35, -50):
        move = D(pct) / 100
        scenario = Scenario("all", "move", dict.fromkeys(p.symbols(), move))
        o = run_scenario(p, INSTRUMENTS, scenario, LIMITS, config.simulation.slippage_bps)
        # The same move on the simulation's own exchange at its end state (a fresh run, so no
        # earlier move has touched it), one contract after the other.
        ex = run_simulation(config, config.policies[0]).exchange
        assert ex.book.wallet == p.wallet
        for sym in p.symbols():
            ex.set_mark(sym, ex.marks[sym] * (1 + move))
        assert set(o.liquidated) == {e.symbol for e in ex.events if e.kind == "liquidation"}
        stops = {e.symbol for e in ex.events if e.kind == "stop_loss"}
        assert {s.symbol for s in o.stopped} == stops
        assert o.equity_after == ex.equity()
        seen_liquidation |= bool(o.liquidated)
        seen_stop |= bool(o.stopped)
    assert seen_liquidation
    assert seen_stop


def bracketed_lp(h: Holding) -> Fraction | None:
    """Binance's isolated liquidation price by hand, in exact fractions, over the contract's
    whole bracket table: for each bracket (MMR, cum) solve margin + side x |q| x (P - EP) =
    |q| x P x MMR - cum, and keep the root whose notional |q| x P lies in that bracket."""
    inst = INSTRUMENTS[h.symbol]
    side, q, ep = h.sign, Fraction(abs(h.qty)), Fraction(h.entry_price)
    margin = q * ep / h.leverage
    last = len(inst.brackets) - 1
    for k, b in enumerate(inst.brackets):
        mmr, cum = Fraction(b.maint_margin_rate), Fraction(b.maint_amount)
        price = (margin + cum - side * q * ep) / (q * mmr - side * q)
        inside = Fraction(b.notional_floor) <= q * price and (
            k == last or q * price < Fraction(b.notional_cap)
        )
        if price > 0 and inside:
            return price
    return None


# Other contracts than BTC, shorts, several brackets (notionals of 0.1-1.6 M on DOGE and
# 1000PEPE: brackets 2 to 4), a 10x contract: (symbol, signed qty, entry, leverage, stop as a
# fraction of the way from the entry to the liquidation price, or None).
OTHER_BOOKS = [
    ("DOGE/USDT:USDT", -500_000, "0.2", 10, "0.5"),
    ("DOGE/USDT:USDT", -5_000_000, "0.2", 5, "0.3"),
    ("DOGE/USDT:USDT", 8_000_000, "0.2", 3, None),
    ("1000PEPE/USDT:USDT", -9_000_000, "0.0123", 20, "0.6"),
    ("1000PEPE/USDT:USDT", 9_000_000, "0.0123", 10, "0.4"),
    ("COAI/USDT:USDT", -7_000, "1.25", 10, "0.5"),
    ("COAI/USDT:USDT", -40_000, "1.25", 5, "0.5"),
    ("TAO/USDT:USDT", -9, "420", 25, None),
]


@pytest.mark.parametrize(("symbol", "qty", "entry", "lev", "stop_at"), OTHER_BOOKS)
def test_other_contracts_and_shorts_agree_with_the_replay_and_the_hand_computation(
    symbol: str, qty: int, entry: str, lev: int, stop_at: str | None
) -> None:
    inst = INSTRUMENTS[symbol]
    h = Holding(symbol, D(qty), D(entry), lev, D(entry))
    lp = bracketed_lp(h)
    assert lp is not None
    if stop_at is not None:
        way = D(lp.numerator) / D(lp.denominator) - h.entry_price
        stop = inst.stop_price(h.entry_price + way * D(stop_at), h.sign)
        h = Holding(symbol, D(qty), D(entry), lev, D(entry), stop_loss=stop)
    p = Portfolio(D(qty).copy_abs() * D(entry), MarginMode.ISOLATED, (h,), "other")
    at_lp = lp / Fraction(h.entry_price) - 1
    # Either side of the liquidation price by 0.2 %, of the stop, and far past both.
    levels = [float(at_lp) - 0.002, float(at_lp) + 0.002, -0.5, 0.5, 0.01, -0.01]
    if h.stop_loss is not None:
        at_stop = float(h.stop_loss / h.entry_price - 1)
        levels += [at_stop - 0.001, at_stop + 0.001]
    seen = set()
    for level in levels:
        move = D(f"{level:.4f}")
        o = run_scenario(
            p, INSTRUMENTS, Scenario("x", "move", {symbol: move}), LIMITS, SLIPPAGE_BPS
        )
        mine = "liquidated" if o.liquidated else "stopped" if o.stopped else "held"
        price = Fraction(h.mark * (1 + move))
        by_hand = (
            "liquidated"
            if (price <= lp if h.qty > 0 else price >= lp)
            else "stopped"
            if h.stop_loss is not None
            and (price <= h.stop_loss if h.qty > 0 else price >= h.stop_loss)
            else "held"
        )
        ex = replay_by_hand(p, {symbol: move})
        assert mine == outcome_of(ex, symbol) == by_hand, (symbol, move)
        assert o.equity_after == ex.equity()
        seen.add(mine)
    assert "liquidated" in seen
    assert ("stopped" in seen) is (h.stop_loss is not None)
