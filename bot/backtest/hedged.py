"""Hedged against unhedged: the same policy on the same data with and without its hedge leg.

The unhedged book is a second replay over the same window and the same histories, the data
loaded once for both (the two runs cannot share one pass: each replay owns the trigger cursors
of its simulated exchange). The
report adds, for a policy with a ``[hedge]`` section: net exposure (mean and max of
``|net beta-delta| / equity`` as held at each decision tick: what the decisions before it left
the account with, caps and refusals included), the hedge's cost (fees, funding, slippage on
the hedge legs), the book's beta (notional-weighted), and, with spot holdings, the carry:
funding received on the hedge legs, the spot leg's PnL and the account + spot total.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from bot import strict_json
from bot.backtest.charts import Charts, LocalCharts
from bot.backtest.metrics import drawdown_series, summarize
from bot.backtest.replay import (
    Progress,
    SimulationResult,
    load_data,
    refuse_traded_hedge,
    run_simulation,
)
from bot.config.models import BotConfig
from bot.config.policy import Policy

ZERO = Decimal(0)


@dataclass(slots=True)
class HedgedRun:
    hedged: SimulationResult
    unhedged: SimulationResult | None  # None when the policy has no hedge


def run_with_and_without_hedge(
    config: BotConfig,
    policy: Policy,
    *,
    symbols: tuple[str, ...] | None = None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
    not_before: int | None = None,
) -> HedgedRun:
    """The policy's run and, if it hedges, the same window replayed without the hedge leg.

    Both runs replay the one loading of the data (:func:`load_data`: the files chosen for the
    configured window and the policy's warm-up, from ``data_dir`` when given) and the same
    instruments (the catalogue of ``data_dir`` too): the unhedged replay is ``bot simulate``
    of the policy without its ``[hedge]`` section on the hedged run's window. Loaded apart,
    without the window, it chose other files (1h candles where the hedged run had 5m ones)
    and compared the hedge with another book's return."""
    traded = symbols or tuple(c.symbol for c in config.contracts)
    if symbols is not None:
        refuse_traded_hedge(policy, symbols)  # before any data is read
    histories = load_data(config, policy, traded, data_dir)
    hedged = run_simulation(
        config,
        policy,
        symbols=symbols,
        data_dir=data_dir,
        progress=progress,
        not_before=not_before,
        histories=histories,
    )
    if policy.hedge is None:
        return HedgedRun(hedged, None)
    bare = policy.model_copy(update={"hedge": None})
    unhedged = run_simulation(
        config,
        bare,
        symbols=traded,
        data_dir=data_dir,
        histories={s: histories[s] for s in traded},
        window=(hedged.start_ms, hedged.end_ms),
    )
    return HedgedRun(hedged, unhedged)


def _round(x: float, places: int = 6) -> float:
    return round(float(x), places) if np.isfinite(x) else float(x)


def hedge_report(run: HedgedRun) -> dict[str, Any]:
    """The hedge figures of ``report.json`` (empty for a policy without a hedge). The hedge's
    slippage is what its legs' fills paid beyond their reference prices as the simulated
    exchange counted them (``slippage_by_symbol``: whatever the slippage model, the rounding
    onto the tick and the liquidations included), the hedge legs' share of ``slippage_paid``.
    Worked back from a fixed ``slippage_bps`` it missed the range and impact terms of the
    data-driven model and the liquidations."""
    r = run.hedged
    if not r.hedge_symbols:
        return {}
    legs = set(r.hedge_symbols)
    ex = r.exchange
    fills = [f for f in ex.fills if f.symbol in legs]
    fees = sum((f.fee for f in fills), ZERO)
    slip = sum((ex.slippage_by_symbol.get(sym, ZERO) for sym in r.hedge_symbols), ZERO)
    funding = sum((e.amount for e in ex.events if e.kind == "funding" and e.symbol in legs), ZERO)
    log = [rec for rec in r.hedge_log if rec.equity > 0]
    net = np.array([float(abs(rec.net_held / rec.equity)) for rec in log])
    book = np.array([float(abs(rec.book_beta_delta / rec.equity)) for rec in log])
    betas = [float(rec.book_beta_delta / rec.book_gross) for rec in log if rec.book_gross > 0]
    out: dict[str, Any] = {
        "hedge_instruments": list(r.hedge_symbols),
        "net_exposure_mean": _round(net.mean() if net.size else 0.0, 4),
        "net_exposure_max": _round(net.max() if net.size else 0.0, 4),
        "book_exposure_mean": _round(book.mean() if book.size else 0.0, 4),
        "book_exposure_max": _round(book.max() if book.size else 0.0, 4),
        "book_beta": _round(float(np.mean(betas)) if betas else 0.0, 4),
        "hedge_fees": _round(float(fees), 2),
        "hedge_funding": _round(float(funding), 2),
        "hedge_slippage": _round(float(slip), 2),
        "hedge_cost": _round(float(fees + funding + slip), 2),
        "hedge_trades": len(fills),
        "hedge_stop_losses": sum(
            1 for e in ex.events if e.kind == "stop_loss" and e.symbol in legs
        ),
    }
    if r.spot_value is not None and len(r.spot_value):
        spot_pnl = float(r.spot_value[-1] - r.spot_value[0])
        total = r.equity + r.spot_value
        out.update(
            {
                "spot_value_start": _round(r.spot_value[0], 2),
                "spot_value_end": _round(r.spot_value[-1], 2),
                "spot_pnl": _round(spot_pnl, 2),
                "carry_funding_received": _round(float(-funding), 2),
                "carry_earned": _round(float(-funding - fees - slip), 2),
                "total_with_spot_start": _round(total[0], 2),
                "total_with_spot_end": _round(total[-1], 2),
                "spot_priced_from": "the perpetual's price series (no spot series in the data)",
            }
        )
    u = run.unhedged
    if u is not None and len(u.ts):
        stats = summarize(*u.curve_from_start(), opening=True, closing=True)
        out["unhedged"] = {
            "computed_by": "a second replay of the same window without the hedge leg",
            "final_equity": _round(u.equity[-1], 2),
            "total_return": _round(stats.get("total_return", float("nan"))),
            "max_drawdown": _round(stats.get("max_drawdown", float("nan"))),
            "sharpe": _round(stats.get("sharpe", float("nan"))),
        }
    return out


def plot_hedged(run: HedgedRun, path: Path, charts: Charts) -> None:
    """Equity and drawdown, hedged against unhedged (account + spot when spot is held)."""
    r, u = run.hedged, run.unhedged
    if u is None:
        return
    spot = r.spot_value if r.spot_value is not None else np.zeros(len(r.ts))
    hedged_total = r.equity + spot
    unhedged_total = u.equity + (spot if len(spot) == len(u.equity) else 0.0)
    label = " (+ spot)" if r.spot_value is not None else ""
    charts.draw(
        "plot_comparison",
        path,
        title=f"{r.policy.name}: hedged vs unhedged{label}",
        runs={
            f"hedged{label}": (r.ts, hedged_total, drawdown_series(hedged_total)),
            f"unhedged{label}": (u.ts, unhedged_total, drawdown_series(unhedged_total)),
        },
        benchmark=(r.ts, r.benchmark),
    )


HEDGE_SUMMARY_KEYS = (
    ("net_exposure_mean", "net exposure mean", "{:.2f}x"),
    ("net_exposure_max", "net exposure max", "{:.2f}x"),
    ("book_beta", "book beta", "{:.2f}"),
    ("hedge_fees", "hedge fees", "{:,.2f}"),
    ("hedge_funding", "hedge funding", "{:,.2f}"),
    ("hedge_slippage", "hedge slippage", "{:,.2f}"),
    ("carry_earned", "carry earned", "{:,.2f}"),
)


def add_hedge_outputs(
    run: HedgedRun,
    out: Path,
    report: dict[str, Any],
    charts: Charts | None = None,
) -> dict[str, Any]:
    """Add the hedge figures to ``report`` (and rewrite ``report.json``) and draw
    ``hedged.png`` (``charts``: where, see :func:`bot.backtest.report.write_outputs`); the
    report unchanged for a policy without a hedge."""

    extra = hedge_report(run)
    if not extra:
        return report
    report = {**report, **extra}
    painter = charts if charts is not None else LocalCharts()
    plot_hedged(run, out / "hedged.png", painter)
    (out / "report.json").write_text(strict_json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if charts is None:
        painter.finish()
    return report
