"""``bot vol``: realised volatility now against its history, funding, and the policy's leverage.

For each configured contract: every estimator of :mod:`bot.stats.volatility` over 24 h, 7 d and
30 d of 1 h candles (read, or resampled exactly from finer candles), each value's percentile
among the same estimator's rolling values over the whole history available (windows never span a
data gap), the latest funding rate annualised, and the decision the policy would take now on a
flat account holding the config's starting balance. That decision is the engine's: one tick of
the simulation at that moment (the same tick paper and live trading run: policy, securing step,
gross cap, loss budget, participation and margin steps), so ``bot vol`` shows the leverage the
bot would set. With it, the mean traded volume per decision candle over the volatility window
and, when the policy sets ``[orders] max_participation``, the most one tick may add (the first
tick's size is cut to it: the rest follows over the next ticks).

Volatilities are annualised fractions (0.6 = 60 % a year); percentiles are 0..100.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, assert_never

import numpy as np
import numpy.typing as npt

from bot.backtest.replay import replay
from bot.bootstrap import config_instruments, contract_specs, risk_limits
from bot.clock import ms_to_datetime
from bot.config.models import BotConfig
from bot.config.policy import Policy, RiskParitySizing, StaticSizing, VolTargetSizing
from bot.domain.decision import Decision
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.engine.tick import Engine
from bot.errors import DataError
from bot.marketdata.candles import Candles
from bot.marketdata.files import DataInventory
from bot.policy.leverage import vol_target_leverage
from bot.policy.participation import participation_room
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import load_histories
from bot.stats.timeframes import parse_timeframe, periods_per_year
from bot.stats.volatility import ESTIMATORS
from bot.stats.window_series import rolling
from bot.tools.calc import to_text

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_WINDOW_HOURS",
    "WINDOWS",
    "ContractVol",
    "PolicyNow",
    "VolReading",
    "config_instruments",
    "current_volatility",
    "hourly_candles",
    "jsonable",
    "leverage_history",
    "policy_now",
    "rolling_by_segment",
    "track",
    "vol_readings",
]

F64 = npt.NDArray[np.float64]
HOUR_MS = 3_600_000
WINDOWS: tuple[tuple[str, int], ...] = (("24h", 24), ("7d", 168), ("30d", 720))
"""(label, number of 1 h candles) of the reported windows."""
DEFAULT_ESTIMATOR = "yang_zhang"
DEFAULT_WINDOW_HOURS = 168  # one week of 1 h candles, as in policies/vol_target.toml
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class VolReading:
    estimator: str
    window: str  # label, e.g. "7d"
    value: float | None  # annualised; None without enough history
    percentile: float | None  # share of rolling values <= value, 0..100


@dataclass(frozen=True, slots=True)
class PolicyNow:
    """The policy's decision at ``asof_ms`` for one contract (``decision`` None: no data)."""

    snapshot: MarketSnapshot | None
    decision: Decision | None
    max_leverage: Decimal  # the hard cap the view carried
    # The most one tick may add ([orders] max_participation x the snapshot's mean volume per
    # candle, base units); None: the cap is off or the volume unknown.
    participation_room: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ContractVol:
    symbol: str
    asof_ms: int  # close of the last 1 h candle
    readings: tuple[VolReading, ...]
    funding_rate: Decimal | None  # last settled rate, fraction per interval
    funding_interval_hours: Decimal | None
    funding_ms: int | None  # time of that settlement
    policy: PolicyNow

    @property
    def funding_annualized(self) -> Decimal | None:
        if self.funding_rate is None or self.funding_interval_hours is None:
            return None
        return FundingInfo(self.funding_rate, self.funding_interval_hours, None).annualized


def hourly_candles(inventory: DataInventory, symbol: str) -> Candles:
    """1 h last-trade candles of ``symbol``: the 1 h file, else the finest resampled exactly;
    run on with the finer candles (resampled exactly) that end later, so that a 1 h file
    older than the 5 m or 1 m beside it does not make the volatility days old."""
    tfs = inventory.trade_timeframes(symbol)
    if not tfs:
        raise DataError(f"{inventory.data_dir}: no last-trade candles for {symbol}")
    finer = [tf for tf in tfs if HOUR_MS % parse_timeframe(tf) == 0 and tf != "1h"]
    if "1h" not in tfs and not finer:
        raise DataError(
            f"{inventory.data_dir}: {symbol} has no 1h candles and its finest ({tfs[0]}) cannot "
            "be aggregated to 1h"
        )
    hourly = [inventory.load_candles(symbol, tf).resample(HOUR_MS) for tf in finer]
    base = inventory.load_candles(symbol, "1h") if "1h" in tfs else hourly[0]
    newest = max(hourly, key=lambda c: int(c.ts[-1]) if len(c) else -1, default=base)
    if not len(newest) or (len(base) and newest.ts[-1] <= base.ts[-1]):
        return base
    return _run_on(base, newest) if len(base) else newest


def _run_on(base: Candles, later: Candles) -> Candles:
    """``base`` followed by the candles of ``later`` (same timeframe) that open after it."""
    tail = later.slice_time(int(base.ts[-1]) + base.tf_ms, int(later.ts[-1]) + later.tf_ms)
    return Candles(
        ts=np.concatenate((base.ts, tail.ts)),
        open=np.concatenate((base.open, tail.open)),
        high=np.concatenate((base.high, tail.high)),
        low=np.concatenate((base.low, tail.low)),
        close=np.concatenate((base.close, tail.close)),
        volume=np.concatenate((base.volume, tail.volume)),
        tf_ms=base.tf_ms,
        symbol=base.symbol,
        kind=base.kind,
        source=f"{base.source} then {tail.source}",
    )


def rolling_by_segment(name: str, c: Candles, window: int, lam: float = 0.94) -> F64:
    """Estimator ``name`` at every candle of ``c``, computed per contiguous run (NaN at gaps)."""
    out = np.full(len(c), np.nan)
    ppy = periods_per_year(c.tf_ms)
    for first_ms, last_ms in c.segments():
        a = int(np.searchsorted(c.ts, first_ms))
        b = int(np.searchsorted(c.ts, last_ms)) + 1
        out[a:b] = rolling(
            name, c.open[a:b], c.high[a:b], c.low[a:b], c.close[a:b], window, ppy, lam
        )
    return out


def _percentile(series: F64, value: float) -> float | None:
    seen = series[np.isfinite(series)]
    return None if seen.size == 0 else float(100.0 * np.mean(seen <= value))


def vol_readings(c: Candles, lam: float = 0.94) -> tuple[VolReading, ...]:
    """Every estimator over every window of :data:`WINDOWS`, with its percentile in history."""
    out = []
    for name in ESTIMATORS:
        for label, window in WINDOWS:
            series = rolling_by_segment(name, c, window, lam)
            last = float(series[-1]) if len(series) else float("nan")
            if not np.isfinite(last):
                out.append(VolReading(name, label, None, None))
                continue
            out.append(VolReading(name, label, last, _percentile(series, last)))
    return tuple(out)


def current_volatility(
    c: Candles, estimator: str = DEFAULT_ESTIMATOR, window: int = DEFAULT_WINDOW_HOURS
) -> Decimal:
    """Latest annualised volatility of ``c`` (6 decimals, as the engine rounds it)."""
    series = rolling_by_segment(estimator, c, window)
    if not len(series) or not np.isfinite(series[-1]):
        raise DataError(
            f"{c.source}: {window} contiguous candles needed for {estimator} volatility, "
            f"the last run of data is shorter"
        )
    return Decimal(f"{float(series[-1]):.6f}")


def policy_now(
    config: BotConfig, policy: Policy, inventory: DataInventory
) -> tuple[int, dict[str, PolicyNow]]:
    """(as-of ms, decision per contract) on a flat account with the starting balance.

    ``now`` is the latest decision time at which every contract has a closed candle. The
    decision is the engine's own: one tick of the simulation at ``now`` on a fresh account
    (:func:`bot.backtest.replay.replay`), with every step of the tick (policy, securing, gross
    cap, loss budget, participation, margin, hedge legs), so ``bot vol`` can never show a
    leverage the bot would not set.
    """
    symbols = tuple(c.symbol for c in config.contracts)
    tf = parse_timeframe(policy.timeframe)
    histories = load_histories(
        inventory, symbols, policy.timeframe, config.simulation.trigger_source
    )
    instruments = config_instruments(config, symbols)
    limits = risk_limits(config, policy)
    now = min(int(h.decision.ts[-1]) + tf for h in histories.values())
    seen: dict[str, MarketSnapshot] = {}

    def note(_t: int, engine: Engine, _exchange: SimulatedExchange) -> None:
        seen.update(engine.last_snapshots())

    result = replay(config, policy, histories, instruments, now, now + tf, after_tick=note)
    decisions = {r.decision.symbol: r.decision for r in result.store.decisions}
    caps = {
        spec.symbol: min(spec.max_leverage, limits.max_leverage_per_contract)
        for spec in contract_specs(config, symbols)
    }
    fraction = policy.orders.max_participation
    rooms: dict[str, Decimal] = {}
    for sym, snap in seen.items():
        if fraction is not None and snap.avg_volume is not None:
            rooms[sym] = participation_room(instruments[sym], fraction, snap.avg_volume)
    return now, {
        s: PolicyNow(seen.get(s), decisions.get(s), caps[s], rooms.get(s)) for s in symbols
    }


def track(config: BotConfig, policy: Policy, inventory: DataInventory) -> list[ContractVol]:
    """The whole ``bot vol`` report, one entry per configured contract."""
    lam = float(policy.volatility.ewma_lambda)
    _, decisions = policy_now(config, policy, inventory)
    out = []
    for contract in config.contracts:
        sym = contract.symbol
        c = hourly_candles(inventory, sym)
        rate = hours = None
        funding_ms = None
        if inventory.has_funding(sym):
            f = inventory.load_funding(sym)
            if len(f):
                rate = Decimal(f"{float(f.rate[-1]):.10f}")
                hours = Decimal(repr(f.settlement_hours_at(-1))) if len(f) > 1 else Decimal(8)
                funding_ms = int(f.ts[-1])
        out.append(
            ContractVol(
                symbol=sym,
                asof_ms=int(c.ts[-1]) + c.tf_ms,
                readings=vol_readings(c, lam),
                funding_rate=rate,
                funding_interval_hours=hours,
                funding_ms=funding_ms,
                policy=decisions[sym],
            )
        )
    return out


def leverage_history(
    decision_candles: Candles, policy: Policy, cap: Decimal
) -> tuple[npt.NDArray[np.int64], F64, F64]:
    """(close times ms, policy volatility, target leverage) over the whole history.

    The policy's estimator and window on its decision candles, turned into leverage with the
    vol-target formula (``target / vol`` clamped to the policy's [min, max], then to ``cap``); a
    static policy's leverage is its fixed value. Risk-parity books are drawn with the same
    per-contract formula: the allocation across contracts is not reproduced here. Before a
    policy's first full window the values are NaN. Floats: this is a picture, not an order.
    """
    p = policy.volatility
    vol = rolling_by_segment(p.estimator, decision_candles, p.window, float(p.ewma_lambda))
    lev = policy.leverage
    lev_out = np.full(len(vol), np.nan)
    sizing = policy.sizing
    for i in np.flatnonzero(np.isfinite(vol)).tolist():
        match sizing:
            case StaticSizing(fixed=fixed):
                value = fixed
            case (
                VolTargetSizing(target_volatility=target)
                | RiskParitySizing(target_volatility=target)
            ):
                value = vol_target_leverage(Decimal(f"{vol[i]:.6f}"), target, lev.min, lev.max)
            case _:
                assert_never(sizing)
        lev_out[i] = float(min(value, cap))
    return decision_candles.ts + decision_candles.tf_ms, vol, lev_out


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def jsonable(report: list[ContractVol], policy: Policy) -> dict[str, Any]:
    """The report as JSON-ready data: Decimals as strings, volatilities (annualised fractions)
    and percentiles (0..100) as numbers rounded to 6 places."""
    contracts = []
    for c in report:
        vols: dict[str, dict[str, dict[str, float | None]]] = {}
        for r in c.readings:
            vols.setdefault(r.estimator, {})[r.window] = {
                "value": None if r.value is None else round(r.value, 6),
                "percentile": None if r.percentile is None else round(r.percentile, 6),
            }
        d, snap = c.policy.decision, c.policy.snapshot
        contracts.append(
            {
                "contract": c.symbol,
                "asof": _iso(c.asof_ms),
                "volatility": vols,
                "funding": {
                    "rate": to_text(c.funding_rate),
                    "interval_hours": to_text(c.funding_interval_hours),
                    "annualized": to_text(c.funding_annualized),
                    "time": _iso(c.funding_ms),
                },
                "policy": {
                    "asof": _iso(snap.asof_ms) if snap is not None else None,
                    "volatility": to_text(snap.volatility) if snap is not None else None,
                    "target_leverage": to_text(d.target_leverage) if d is not None else None,
                    "target_qty": to_text(d.target_qty) if d is not None else None,
                    "max_leverage": to_text(c.policy.max_leverage),
                    # Mean traded volume per decision candle over the volatility window (base
                    # units; null: unknown), and the most one tick may add when the cap is on.
                    "avg_volume": to_text(snap.avg_volume) if snap is not None else None,
                    "volume_window": policy.volatility.window,
                    "max_participation": to_text(policy.orders.max_participation),
                    "max_qty_per_tick": to_text(c.policy.participation_room),
                    "reason": d.reason if d is not None else "not enough data",
                },
            }
        )
    return {
        "policy": policy.name,
        "estimator": policy.volatility.estimator,
        "windows": [label for label, _ in WINDOWS],
        "contracts": contracts,
    }
