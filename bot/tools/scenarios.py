"""The stress test's scenarios and the market data they are sized from.

Default set (:func:`standard_scenarios`): instant moves of -50 % .. +50 % for each contract alone
and for all together, correlated crash presets, a volatility spike against every position, a
funding spike, and the worst historical move against each position over 5 m, 1 h and 1 d
(:mod:`bot.tools.extremes`). Moves are fractions of the current mark, played as gaps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.clock import ms_to_datetime
from bot.config.policy import Policy
from bot.errors import DataError
from bot.marketdata.candles import parse_timeframe
from bot.marketdata.files import DataInventory
from bot.policy.protection import DAYS_PER_YEAR
from bot.sim.history import load_history
from bot.tools.calc import to_text
from bot.tools.extremes import HORIZONS, Extreme, find_extremes
from bot.tools.portfolio import Portfolio
from bot.tools.voltrack import current_volatility

__all__ = [
    "FUNDING_SETTLEMENTS",
    "MOVE_STEPS",
    "PRESETS",
    "MarketInputs",
    "Scenario",
    "extreme_json",
    "last_close",
    "market_inputs",
    "standard_scenarios",
]

ZERO = Decimal(0)
MOVE_STEPS = tuple(Decimal(x) / 100 for x in (-50, -40, -30, -20, -10, 10, 20, 30, 40, 50))
PRESETS: tuple[tuple[str, Decimal, Decimal], ...] = (
    # (name, BTC move, every other contract's move): alts fall further in a crypto sell-off.
    ("crypto crash", Decimal("-0.30"), Decimal("-0.45")),
    ("alt crash", Decimal("-0.15"), Decimal("-0.35")),
    ("short squeeze", Decimal("0.25"), Decimal("0.40")),
)
VOL_SPIKE_FACTOR = Decimal(3)  # volatility triples...
VOL_SPIKE_SIGMAS = Decimal(2)  # ...and a two-sigma day of the new regime arrives as one gap
VOL_SPIKE_CAP = Decimal("0.9")
FUNDING_MULTIPLE = Decimal(10)
FUNDING_SETTLEMENTS = 3
FUNDING_FLOOR = Decimal("0.0001")  # Binance's default 0.01 % per 8 h when the data has none


@dataclass(frozen=True, slots=True)
class Scenario:
    """Gap ``moves`` (fractions, per contract), then ``settlements`` funding payments at
    ``funding_rates`` (fraction per settlement, > 0: longs pay)."""

    name: str
    kind: str  # "move" | "crash" | "vol_spike" | "funding" | "history"
    moves: Mapping[str, Decimal]
    funding_rates: Mapping[str, Decimal] = field(default_factory=dict)
    settlements: int = 0
    note: str = ""


@dataclass(frozen=True, slots=True)
class MarketInputs:
    """What the data directory says about each contract (absent where it has no data)."""

    volatility: dict[str, Decimal]  # the policy's estimator on its decision candles, annualised
    funding_rate: dict[str, Decimal]  # latest settled rate per interval
    extremes: list[Extreme]
    missing: list[str]  # one line per contract and series the data lacks


def market_inputs(inventory: DataInventory, policy: Policy, symbols: Sequence[str]) -> MarketInputs:
    """Volatility, funding and the worst historical moves of ``symbols`` from ``inventory``."""
    out = MarketInputs({}, {}, [], [])
    known = set(inventory.symbols())
    vp = policy.volatility
    for sym in symbols:
        if sym not in known:
            out.missing.append(f"{sym}: no data in {inventory.data_dir}")
            continue
        try:
            decision = load_history(inventory, sym, policy.timeframe).decision
            out.volatility[sym] = current_volatility(decision, vp.estimator, vp.window)
        except DataError as exc:
            out.missing.append(f"{sym}: no volatility ({exc})")
        if inventory.has_funding(sym):
            f = inventory.load_funding(sym)
            if len(f):
                out.funding_rate[sym] = Decimal(f"{float(f.rate[-1]):.10f}")
        found = find_extremes(inventory, sym)
        out.extremes.extend(found)
        out.missing.extend(_unsearched(inventory, sym, {e.horizon for e in found}))
    return out


def last_close(inventory: DataInventory, timeframe: str, symbol: str) -> tuple[Decimal, str] | None:
    """The last close of ``symbol``'s ``timeframe`` candles in ``inventory`` and where it comes
    from (what prices a spot holding no position is on); None without such candles."""
    if symbol not in inventory.symbols():
        return None
    try:
        candles = load_history(inventory, symbol, timeframe).decision
    except DataError:
        return None
    if not len(candles.ts):
        return None
    at = ms_to_datetime(int(candles.ts[-1]) + candles.tf_ms).strftime("%Y-%m-%d %H:%M UTC")
    where = f"the last {timeframe} close of {symbol} in {inventory.data_dir} ({at})"
    return Decimal(str(float(candles.close[-1]))), where


def _unsearched(inventory: DataInventory, symbol: str, found: set[str]) -> list[str]:
    """One note per horizon of :data:`HORIZONS` no worst move was found for, saying why: its
    scenario is missing from the report, which must not read as if the data had been searched."""
    tfs = inventory.trade_timeframes(symbol)
    notes = []
    for horizon in HORIZONS:
        if horizon in found:
            continue
        usable = [tf for tf in tfs if parse_timeframe(horizon) % parse_timeframe(tf) == 0]
        why = (
            f"no contiguous run of {horizon} in its {', '.join(usable)} candles"
            if usable
            else f"no last-trade candles of {horizon} or finer (it has {', '.join(tfs) or 'none'})"
        )
        notes.append(f"{symbol}: no worst {horizon} move: {why} in {inventory.data_dir}")
    return notes


def _short(symbol: str) -> str:
    return symbol.split("/")[0]


def _pct(x: Decimal | float) -> str:
    return f"{float(x) * 100:+.1f}%"


def standard_scenarios(
    portfolio: Portfolio,
    volatility: Mapping[str, Decimal],
    funding_rate: Mapping[str, Decimal],
    extremes: Sequence[Extreme],
) -> list[Scenario]:
    """The default set: instant moves of -50 %..+50 % (each contract alone and all together),
    the crash presets, a volatility spike against every position (``volatility``: annualised, per
    contract; left out when no holding has one), a funding spike (``funding_rate``: latest rate
    per contract) and the worst historical move against each position in ``extremes``.

    A spot holding whose perpetual no position is on (:meth:`Portfolio.moved_symbols`) is moved
    like a contract of the book: in the "all" moves and the presets, on its own, against the
    holding (down) in the volatility spike and the historical moves; it pays no funding."""
    symbols = portfolio.moved_symbols()
    out: list[Scenario] = []
    for step in MOVE_STEPS:
        if len(symbols) > 1:
            out.append(Scenario(f"all {_pct(step)}", "move", dict.fromkeys(symbols, step)))
    for sym in symbols:
        out += [Scenario(f"{_short(sym)} {_pct(s)}", "move", {sym: s}) for s in MOVE_STEPS]
    for name, btc, alts in PRESETS:
        moves = {s: btc if s.startswith("BTC/") else alts for s in symbols}
        note = f"BTC {_pct(btc)}, others {_pct(alts)}"
        out.append(Scenario(name, "crash", moves, note=note))
    spike = _vol_spike(portfolio, volatility)
    if spike.moves:
        # Without any volatility it would move nothing and read as survived at every leverage.
        out.append(spike)
    out.append(_funding_spike(portfolio, funding_rate))
    sides = {s: 1 for s in symbols} | {h.symbol: h.sign for h in portfolio.holdings}
    for e in extremes:
        if sides.get(e.symbol) == -e.direction:
            move = Decimal(f"{e.move:.6f}")
            name = f"worst {e.horizon} {'drop' if e.direction < 0 else 'rise'} {_short(e.symbol)}"
            out.append(Scenario(name, "history", {e.symbol: move}, note=_when(e)))
    return out


def _when(e: Extreme) -> str:
    at = ms_to_datetime(e.start_ms).strftime("%Y-%m-%d %H:%M UTC")
    prices = f"{_price_text(e.from_price)} -> {_price_text(e.to_price)}"
    return f"{_pct(e.move)} from {at} ({prices}, {e.timeframe} candles)"


def _price_text(x: float) -> str:
    """A candle price as its file wrote it, without an exponent: 1000SATS near 0.00003 read
    3.12e-05 (``:g`` and JSON floats)."""
    text = to_text(Decimal(repr(x)))
    assert text is not None  # noqa: S101 - a Decimal always gives a text
    return text


def _vol_spike(portfolio: Portfolio, volatility: Mapping[str, Decimal]) -> Scenario:
    moves: dict[str, Decimal] = {}
    parts = []
    # against every position; a spot holding alone on its perpetual: against the spot (down)
    sides = dict.fromkeys(portfolio.moved_symbols(), 1) | {
        h.symbol: h.sign for h in portfolio.holdings
    }
    for sym, sign in sides.items():
        vol = volatility.get(sym)
        if vol is None:
            continue
        size = min(VOL_SPIKE_FACTOR * VOL_SPIKE_SIGMAS * vol / DAYS_PER_YEAR.sqrt(), VOL_SPIKE_CAP)
        moves[sym] = (-sign * size).quantize(Decimal("0.0001"))
        parts.append(f"{_short(sym)} {_pct(moves[sym])} (vol {float(vol):.0%})")
    note = (
        f"volatility x{VOL_SPIKE_FACTOR}, a {VOL_SPIKE_SIGMAS}-sigma day against every position "
        f"as one gap: {', '.join(parts) or 'no volatility data'}"
    )
    return Scenario("volatility spike", "vol_spike", moves, note=note)


def _funding_spike(portfolio: Portfolio, funding_rate: Mapping[str, Decimal]) -> Scenario:
    rates = {}
    for h in portfolio.holdings:
        base = max(abs(funding_rate.get(h.symbol, ZERO)), FUNDING_FLOOR)
        rates[h.symbol] = FUNDING_MULTIPLE * base * h.sign  # against the holder
    note = (
        f"{FUNDING_MULTIPLE}x the latest funding rate (at least {FUNDING_FLOOR}) against every "
        f"position for {FUNDING_SETTLEMENTS} settlements"
    )
    return Scenario("funding spike", "funding", {}, rates, FUNDING_SETTLEMENTS, note)


def extreme_json(e: Extreme) -> dict[str, Any]:
    """A historical move as JSON-ready data (times ISO 8601 UTC, the move as a number, prices as
    strings like every other price)."""
    return {
        "contract": e.symbol,
        "horizon": e.horizon,
        "direction": "drop" if e.direction < 0 else "rise",
        "move": round(e.move, 6),
        "start": ms_to_datetime(e.start_ms).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "extreme_at": ms_to_datetime(e.at_ms).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "from_price": _price_text(e.from_price),
        "to_price": _price_text(e.to_price),
        "candles": e.timeframe,
    }
