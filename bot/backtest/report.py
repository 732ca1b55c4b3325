"""Simulation outputs: ``report.json``, ``equity.csv``, ``orders.csv``, ``decisions.csv``,
``events.csv``, ``report.png``, and the end state ``positions.csv`` + ``account.json`` (the input
of ``bot stress --from-sim``). The same inputs give byte-identical files (apart from
``elapsed_seconds`` in the JSON)."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.backtest.charts import Charts, LocalCharts
from bot.backtest.metrics import summarize
from bot.backtest.replay import SimulationResult
from bot.backtest.report_figures import honest_figures
from bot.domain.enums import OrderPurpose
from bot.numbers import unsigned
from bot.store.incidents import unprotected_spans
from bot.strict_json import NOT_FINITE, dumps, name_of


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_all(ms: npt.ArrayLike) -> list[str]:
    """:func:`_iso` of every stamp, computed by numpy in one pass (the same strings: whole
    seconds, rounded down)."""
    seconds = np.asarray(ms, dtype=np.int64) // 1000
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return [t + "Z" for t in text.tolist()]


def _r(x: float, places: int = 6) -> float:
    return round(float(x), places) if np.isfinite(x) else float(x)


def not_finite_reasons(stats: dict[str, float], span_ms: int) -> dict[str, str]:
    """Why a figure of ``stats`` is not finite (report.json writes it ``null``, see
    bot.strict_json): the CAGR of a short run with a large gain overflows a float when
    annualised, and the Calmar ratio follows it."""
    reasons: dict[str, str] = {}
    hours = span_ms / 3_600_000
    cagr = stats.get("cagr", 0.0)
    if not math.isfinite(cagr):
        reasons["cagr"] = (
            f"{name_of(cagr)}: a total return of {stats.get('total_return', math.nan):.2%} over "
            f"{hours:.1f} h does not annualise to a number (the run is too short)"
        )
    calmar = stats.get("calmar", 0.0)
    if not math.isfinite(calmar):
        reasons["calmar"] = (
            f"{name_of(calmar)}: the CAGR ({name_of(cagr)}) over the max drawdown "
            f"({stats.get('max_drawdown', math.nan):.2%})"
        )
    return reasons


def build_report(result: SimulationResult, elapsed: float) -> dict[str, Any]:
    ex = result.exchange
    curve = result.curve_from_start()
    stats = summarize(*curve, opening=True, closing=True) if len(result.ts) else {}
    # report.json writes a figure that is not finite as null, and here why (bot.strict_json)
    reasons = not_finite_reasons(stats, int(curve[1][-1] - curve[1][0]))
    events = ex.events
    fills = ex.fills
    n_orders = sum(1 for r in result.store.orders.values())
    lev_all = np.vstack(list(result.leverage.values())) if result.leverage else np.zeros((1, 1))
    # The average over the decision ticks (each stands for the interval after it; the point at
    # the end for none), the maximum over every point the account was seen at.
    ticks = lev_all[:, : result.decision_ticks]
    held = ticks[ticks > 0]
    return {
        "policy": result.policy.name,
        "start": _iso(result.start_ms),
        "end": _iso(result.end_ms),
        "contracts": list(result.symbols),
        "bars": result.bars,
        "decision_ticks": result.decision_ticks,
        "trigger_source": result.trigger_sources,
        "data_selection": result.data_selection,
        "starting_balance": str(result.starting_balance),
        "final_equity": _r(float(ex.equity()), 2),
        **{k: _r(v) for k, v in stats.items()},
        "n_orders": n_orders,
        "n_trades": len(fills),
        "n_stop_losses": sum(1 for e in events if e.kind == "stop_loss"),
        "n_take_profits": sum(1 for e in events if e.kind == "take_profit"),
        "n_liquidations": sum(1 for e in events if e.kind == "liquidation"),
        "n_denials": sum(1 for e in result.store.events if e.kind == "denied"),
        "n_stops_rejected": sum(
            1 for e in result.store.events if e.kind == "rejected" and "-sl-" in e.reason
        ),
        "unprotected": _unprotected_spans(result),
        "fees_paid": _r(float(ex.fees_paid), 2),
        "funding_paid": _r(float(ex.funding_paid), 2),
        "avg_leverage": _r(float(held.mean()) if held.size else 0.0, 4),
        "max_leverage": _r(float(lev_all.max()) if lev_all.size else 0.0, 4),
        "buy_and_hold_return": _r(float(result.benchmark[-1] / result.benchmark[0] - 1))
        if len(result.benchmark)
        else 0.0,
        "data_gaps": {s: [[_iso(a), _iso(b)] for a, b in g] for s, g in result.gaps.items()},
        **honest_figures(result),
        **({NOT_FINITE: reasons} if reasons else {}),
        "elapsed_seconds": round(elapsed, 3),
    }


def _unprotected_spans(result: SimulationResult) -> dict[str, list[list[str | None]]]:
    """Per contract, each span a position spent without a valid stop: [since, until]."""
    return {
        sym: [[_iso(since), _iso(until) if until is not None else None] for since, until in spans]
        for sym, spans in unprotected_spans(result.store.events).items()
    }


def write_outputs(
    result: SimulationResult, out: Path, elapsed: float, charts: Charts | None = None
) -> dict[str, Any]:
    """Write every output of ``result`` into ``out``. ``charts``: where ``report.png`` is drawn
    (the caller then calls its ``finish()``); by default here, after the data files."""
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(result, elapsed)
    painter = charts if charts is not None else LocalCharts()
    # Asked for first: a helper process draws it while the data files are written.
    painter.draw(
        "plot_report",
        out / "report.png",
        title=f"{result.policy.name}: {report['start'][:10]} .. {report['end'][:10]}",
        ts_ms=result.ts,
        equity=result.equity,
        benchmark_equity=result.benchmark,
        starting_balance=float(result.starting_balance),
        leverage=result.leverage,
        markers={
            "stop-out": [e.ts_ms for e in result.exchange.events if e.kind == "stop_loss"],
            "liquidation": [e.ts_ms for e in result.exchange.events if e.kind == "liquidation"],
            "halt": [
                e.ts_ms
                for e in result.store.events
                if e.kind == "state" and "-> halted" in e.reason
            ],
        },
    )
    (out / "report.json").write_text(dumps(report, indent=2) + "\n", encoding="utf-8")
    _write_equity(result, out / "equity.csv")
    _write_orders(result, out / "orders.csv")
    _write_decisions(result, out / "decisions.csv")
    _write_events(result, out / "events.csv")
    _write_positions(result, out / "positions.csv")
    _write_account(result, out / "account.json")
    if charts is None:
        painter.finish()
    return report


POSITION_COLUMNS = (
    "symbol",
    "qty",
    "entry_price",
    "leverage",
    "isolated_margin",
    "mark",
    "stop_loss",
)
"""Columns of ``positions.csv``: signed qty (base asset), prices and margin in the quote currency,
the exchange leverage setting, and the trigger of the resting stop-loss (empty if none)."""


def _write_positions(result: SimulationResult, path: Path) -> None:
    ex = result.exchange
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(POSITION_COLUMNS)
        for sym in sorted(ex.book.positions):
            pos = ex.book.positions[sym]
            if pos.qty == 0:
                continue
            stops = [
                o.trigger_price
                for o in ex.resting.get(sym, {}).values()
                if o.purpose is OrderPurpose.STOP_LOSS
            ]
            w.writerow(
                [
                    sym,
                    _dec(pos.qty),
                    _dec(pos.entry_price),
                    _dec(ex.book.leverage[sym]),
                    _dec(pos.isolated_margin),
                    _dec(ex.marks.get(sym)),
                    _dec(stops[0]) if stops else "",
                ]
            )


def _write_account(result: SimulationResult, path: Path) -> None:
    ex = result.exchange
    account = {
        "as_of": _iso(result.end_ms),
        "quote": ex.quote,
        "wallet": _dec(ex.book.wallet),
        "margin_mode": ex.book.margin_mode.value,
    }
    path.write_text(dumps(account, indent=2) + "\n", encoding="utf-8")


def _write_equity(result: SimulationResult, path: Path) -> None:
    dd = result.drawdown()
    # Column by column, then joined: numbers and times never need CSV quoting, and the lines end
    # in "\r\n" as the csv module's do.
    columns = [
        [str(t) for t in result.ts.tolist()],
        _iso_all(result.ts),
        [f"{x:.2f}" for x in result.equity.tolist()],
        [f"{x:.2f}" for x in result.benchmark.tolist()],
        [f"{x:.6f}" for x in dd.tolist()],
        *[[f"{x:.4f}" for x in result.leverage[s].tolist()] for s in result.symbols],
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(
            [
                "timestamp",
                "time",
                "equity",
                "buy_and_hold",
                "drawdown",
                *[f"leverage_{s.split('/')[0]}" for s in result.symbols],
            ]
        )
        fh.writelines(",".join(row) + "\r\n" for row in zip(*columns, strict=True))


def _dec(x: Decimal | None) -> str:
    """A decimal's text for the CSV files; a zero never carries a sign."""
    return "" if x is None else format(unsigned(x), "f")


def _write_orders(result: SimulationResult, path: Path) -> None:
    fills = {f.client_id: f for f in result.exchange.fills}
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "created",
                "client_id",
                "symbol",
                "purpose",
                "side",
                "type",
                "amount",
                "trigger_price",
                "reduce_only",
                "status",
                "filled",
                "fill_price",
                "fill_time",
                "fee",
                "realized_pnl",
                "error",
            ]
        )
        for r in result.store.orders.values():
            q = r.request
            f = fills.get(r.client_id)
            w.writerow(
                [
                    _iso(r.created_ms),
                    r.client_id,
                    q.symbol,
                    q.purpose.name.lower(),
                    q.side.value,
                    q.type.value,
                    _dec(q.amount),
                    _dec(q.trigger_price),
                    q.reduce_only,
                    _status(result, r.client_id, r.status.value),
                    _dec(f.qty) if f else "",
                    _dec(f.price) if f else "",
                    _iso(f.timestamp_ms) if f else "",
                    _dec(f.fee) if f else "",
                    _dec(f.realized_pnl) if f else "",
                    r.error or "",
                ]
            )
        for f in result.exchange.fills:
            if f.liquidation:
                w.writerow(
                    [
                        _iso(f.timestamp_ms),
                        f.client_id,
                        f.symbol,
                        "liquidation",
                        f.side.value,
                        "market",
                        _dec(f.qty),
                        "",
                        True,
                        "filled",
                        _dec(f.qty),
                        _dec(f.price),
                        _iso(f.timestamp_ms),
                        _dec(f.fee),
                        _dec(f.realized_pnl),
                        "",
                    ]
                )


def _status(result: SimulationResult, client_id: str, recorded: str) -> str:
    order = result.exchange.orders.get(client_id)
    return order.status.value if order is not None else recorded


def _write_decisions(result: SimulationResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "time",
                "symbol",
                "mark",
                "volatility",
                "current_qty",
                "target_leverage",
                "target_qty",
                "stop_loss",
                "take_profit",
                "reason",
            ]
        )
        records = result.store.decisions
        times = dict(zip(result.ts.tolist(), _iso_all(result.ts), strict=True))
        w.writerows(
            [
                times.get(r.ts_ms) or _iso(r.ts_ms),
                r.decision.symbol,
                _dec(r.mark_price),
                _dec(r.volatility),
                _dec(r.current_qty),
                _dec(r.decision.target_leverage),
                _dec(r.decision.target_qty),
                _dec(r.decision.stop_loss),
                _dec(r.decision.take_profit),
                r.decision.reason,
            ]
            for r in records
        )


def _write_events(result: SimulationResult, path: Path) -> None:
    rows: list[tuple[int, str, str, str, str]] = [
        (e.ts_ms, e.kind, e.symbol, e.detail, _dec(e.amount)) for e in result.exchange.events
    ]
    rows += [
        (e.ts_ms, e.kind, e.symbol or "", f"[{e.state.value}] {e.reason}", "")
        for e in result.store.events
    ]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "kind", "symbol", "detail", "amount"])
        for ts, kind, sym, detail, amount in rows:
            w.writerow([_iso(ts), kind, sym, detail, amount])
