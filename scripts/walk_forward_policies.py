"""Walk-forward choice of the shipped policies' leverage parameters (issue 10, item 8).

For each policy (vol_target, risk_parity, conservative) a small grid of
``target_volatility x leverage.min x hysteresis`` is simulated month by month on the shared
history, through the project's own simulation (:func:`bot.backtest.replay.simulation_window` and
:func:`bot.backtest.replay.replay`, the path ``bot simulate`` takes; never a second simulator). Each
calendar month is one independent run from the configured starting balance, with warm-up taken
from the data before the month.

Walk-forward: for every test month, the grid point with the best annualised Sharpe of daily
returns over the ``--train`` preceding months is chosen, and only that point's result in the
test month is recorded as out of sample. The test month is never used to choose. static_3x and
1x equal-weight buy-and-hold (the simulation's own benchmark series) are recorded on the same
test months.

Usage (the data directory is never hard-coded)::

    BOT_SHARED_DATA=/path/to/shared/data python scripts/walk_forward_policies.py --out out/wf
    python scripts/walk_forward_policies.py --data /path/to/shared/data --out out/wf

Only the 1h candles, 1h mark candles and funding of the data directory are used (a private
directory of links is made), so stops trigger on 1h mark candles: the cheap configuration the
2-core machine can afford for hundreds of runs. Output: ``runs.csv`` (every month and grid
point), ``walk_forward.csv`` (the out-of-sample choice per test month) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.backtest.metrics import max_drawdown  # noqa: E402
from bot.backtest.replay import _instruments, replay  # noqa: E402
from bot.backtest.report import build_report  # noqa: E402
from bot.clock import datetime_to_ms  # noqa: E402
from bot.config.loader import load_config, load_policy  # noqa: E402
from bot.config.models import BotConfig  # noqa: E402
from bot.config.policy import Policy  # noqa: E402
from bot.marketdata.files import discover  # noqa: E402
from bot.sim.history import ContractHistory, load_histories, simulation_window  # noqa: E402

# The grid per policy: target_volatility, leverage.min, hysteresis (12 points each).
GRIDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "vol_target": (("0.3", "0.5", "0.7"), ("0.25", "0.5"), ("0.1", "0.25")),
    "risk_parity": (("0.3", "0.5", "0.7"), ("0", "0.25"), ("0.1", "0.25")),
    "conservative": (("0.15", "0.25", "0.35"), ("0.1", "0.25"), ("0.15", "0.3")),
}


RESUME = "72h"  # the one run's second variant: a drawdown halt resumed after this long


@dataclass(frozen=True, slots=True)
class Run:
    policy: str
    point: str
    month: str
    total_return: float
    max_drawdown: float
    sharpe: float
    turnover: float
    daily: tuple[float, ...]


def month_starts(first: date, last: date) -> list[date]:
    out = []
    y, m = first.year, first.month
    while date(y, m, 1) <= last:
        out.append(date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def month_end(d: date) -> date:
    nxt = date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def link_hourly(src: Path, dst: Path) -> None:
    """Link the 1h, 1h-mark and funding files of ``src`` into ``dst``."""
    for p in src.iterdir():
        if p.name.endswith(("-1h.csv.gz", "-1h-mark.csv.gz", "-funding.csv.gz")):
            (dst / p.name).symlink_to(p.resolve())


def daily_returns(ts: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]) -> list[float]:
    """Returns from one UTC day's last equity to the next (the first from the opening equity)."""
    day = ts // 86_400_000
    last = np.r_[np.nonzero(np.diff(day))[0], len(day) - 1]
    closes = np.r_[equity[0], equity[last]].astype(np.float64)
    return [float(x) for x in np.diff(closes) / closes[:-1]]


def simulate_month(
    config: BotConfig,
    policy: Policy,
    histories: dict[str, ContractHistory],
    month: date,
    label: str,
    point: str,
) -> tuple[Run, Run | None]:
    cfg = config.model_copy(
        update={
            "simulation": config.simulation.model_copy(
                update={"start": month, "end": month_end(month)}
            )
        }
    )
    symbols = tuple(histories)
    start, end = simulation_window(histories, policy, cfg)
    res = replay(cfg, policy, histories, _instruments(cfg, symbols), start, end)
    eq = res.equity
    traded = sum(float(f.qty * f.price) for f in res.exchange.fills)
    turnover = traded / float(np.mean(eq))
    run = Run(
        label,
        point,
        month.isoformat()[:7],
        float(eq[-1] / float(res.starting_balance) - 1),
        max_drawdown(np.r_[float(res.starting_balance), eq]),
        ann_sharpe(daily_returns(res.ts, eq)),  # (the first day's return included)
        turnover,
        tuple(daily_returns(res.ts, eq)),
    )
    bench = None
    if label == "static_3x":
        b = res.benchmark
        bench = Run(
            "buy_hold_1x",
            "-",
            run.month,
            float(b[-1] / float(res.starting_balance) - 1),
            max_drawdown(np.r_[float(res.starting_balance), b]),
            ann_sharpe(daily_returns(res.ts, b)),
            0.0,
            tuple(daily_returns(res.ts, b)),
        )
    return run, bench


def with_point(policy: Policy, tv: str, lo: str, hy: str) -> Policy:
    lev = policy.leverage.model_copy(
        update={"target_volatility": Decimal(tv), "min": Decimal(lo), "hysteresis": Decimal(hy)}
    )
    return policy.model_copy(update={"leverage": lev})


def ann_sharpe(daily: list[float]) -> float:
    r = np.asarray(daily)
    if len(r) < 2 or float(np.std(r, ddof=1)) == 0:
        return -math.inf
    return float(np.mean(r) / np.std(r, ddof=1) * math.sqrt(365))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=os.environ.get("BOT_SHARED_DATA"))
    ap.add_argument("--config", type=Path, default=ROOT / "config.example.toml")
    ap.add_argument("--first", type=date.fromisoformat, default=date(2024, 2, 1))
    ap.add_argument("--last", type=date.fromisoformat, default=date(2025, 9, 1))
    ap.add_argument("--train", type=int, default=3, help="training months before each test month")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "walk_forward")
    ap.add_argument("--only", default=None, help="comma-separated policies (default all)")
    ap.add_argument(
        "--choices",
        type=Path,
        default=None,
        help="a summary.md of an earlier run: run only its one-run table, on the choices "
        "recorded there (the grid and the monthly runs are not run again)",
    )
    args = ap.parse_args()
    if args.train < 1:
        ap.error("--train must be at least 1 month")
    if args.data is None:
        ap.error("give --data or set BOT_SHARED_DATA to the shared data directory")
    data = Path(args.data)
    if not data.is_dir():
        ap.error(f"--data {data}: not a directory")
    args.out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config)
    months = month_starts(args.first, args.last)
    names = args.only.split(",") if args.only else list(GRIDS)
    t0 = time.perf_counter()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        link_hourly(data, Path(tmp))
        cfg = config.model_copy(update={"data": config.data.model_copy(update={"dir": Path(tmp)})})
        symbols = tuple(c.symbol for c in cfg.contracts)
        cache: dict[tuple[str, str], dict[str, ContractHistory]] = {}
        inv = discover(Path(tmp))

        def hist(policy: Policy) -> dict[str, ContractHistory]:
            key = (policy.timeframe, cfg.simulation.trigger_source)
            if key not in cache:
                cache[key] = load_histories(inv, symbols, *key)
            return cache[key]

        if args.choices is not None:
            recorded = read_choices(args.choices)
            names = [n for n in names if n in recorded] if args.only else list(recorded)
            table = one_run_table(cfg, names, recorded, months[args.train :], hist)
            (args.out / "one_run.md").write_text(table)
            print(table)
            return 0
        base = load_policy(ROOT / "policies" / "static_3x.toml")
        for m in months:
            run, bench = simulate_month(cfg, base, hist(base), m, "static_3x", "-")
            runs.append(run)
            if bench is not None:
                runs.append(bench)
        print(f"baselines done in {time.perf_counter() - t0:.0f} s", flush=True)
        for name in names:
            shipped = load_policy(ROOT / "policies" / f"{name}.toml")
            for tv, lo, hy in product(*GRIDS[name]):
                pol = with_point(shipped, tv, lo, hy)
                point = f"tv={tv} min={lo} hyst={hy}"
                for m in months:
                    runs.append(simulate_month(cfg, pol, hist(pol), m, name, point)[0])
                print(f"{name} {point} done at {time.perf_counter() - t0:.0f} s", flush=True)
        write_runs(args.out / "runs.csv", runs)
        labels = [m.isoformat()[:7] for m in months]
        table, choices = walk_forward(runs, names, labels, args.train)
        test_months = months[args.train :]
        table += one_run_table(cfg, names, choices, test_months, hist)
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


def write_runs(path: Path, runs: list[Run]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["policy", "point", "month", "return", "max_drawdown", "sharpe", "turnover"])
        for r in runs:
            w.writerow([r.policy, r.point, r.month, r.total_return, r.max_drawdown, r.sharpe,
                        r.turnover])  # fmt: skip


def walk_forward(
    runs: list[Run], names: list[str], months: list[str], train: int
) -> tuple[str, dict[str, list[str]]]:
    """The table of independent test months, and each policy's chosen point per test month."""
    by = {(r.policy, r.point, r.month): r for r in runs}
    choices: dict[str, list[str]] = {}
    tests = months[train:]
    lines = ["# Walk-forward out-of-sample results", ""]
    rows: dict[str, list[Run]] = {}
    chosen_log: list[str] = []
    for name in names:
        points = sorted({r.point for r in runs if r.policy == name})
        oos: list[Run] = []
        for i, m in enumerate(tests):
            window = months[i : i + train]
            scored = []
            for p in points:
                daily = [x for mm in window for x in by[(name, p, mm)].daily]
                dd = max(by[(name, p, mm)].max_drawdown for mm in window)
                scored.append((ann_sharpe(daily), -dd, p))
            best = max(scored)
            choices.setdefault(name, []).append(best[2])
            oos.append(by[(name, best[2], m)])
            chosen_log.append(f"| {name} | {m} | {best[2]} | {best[0]:.2f} |")
        rows[name] = oos
        # What the procedure deploys now: the fit on the last `train` months.
        last = months[-train:]
        final = max(
            (
                ann_sharpe([x for mm in last for x in by[(name, p, mm)].daily]),
                -max(by[(name, p, mm)].max_drawdown for mm in last),
                p,
            )
            for p in points
        )
        lines.append(
            f"- {name}: fit on {last[0]}..{last[-1]} -> {final[2]} (Sharpe {final[0]:.2f})"
        )
    for name in ("static_3x", "buy_hold_1x"):
        rows[name] = [by[(name, "-", m)] for m in tests]
    lines += [
        "",
        f"Out of sample: {tests[0]} .. {tests[-1]} ({len(tests)} test months, each one run from "
        f"the starting balance; chosen on the {train} months before)",
        "",
        "| policy | compounded return | mean monthly return | worst month max drawdown | "
        "Sharpe (daily, ann.) | turnover / month (x equity) | months up |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, oos in rows.items():
        comp = float(np.prod([1 + r.total_return for r in oos]) - 1)
        daily = [x for r in oos for x in r.daily]
        lines.append(
            f"| {name} | {comp:+.1%} | {np.mean([r.total_return for r in oos]):+.2%} | "
            f"{max(r.max_drawdown for r in oos):.1%} | {ann_sharpe(daily):.2f} | "
            f"{np.mean([r.turnover for r in oos]):.1f} | "
            f"{sum(r.total_return > 0 for r in oos)}/{len(oos)} |"
        )
    lines += ["", "| policy | test month | chosen point | train Sharpe |", "|---|---|---|---|"]
    lines += chosen_log
    return "\n".join(lines) + "\n", choices


def read_choices(path: Path) -> dict[str, list[str]]:
    """Each policy's chosen point per test month, from the chosen-point table of a
    ``summary.md`` this script wrote (in test-month order)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[2].startswith("tv="):
            out.setdefault(cells[0], []).append(cells[2])
    if not out:
        raise SystemExit(f"{path}: no chosen-point table (| policy | test month | chosen point |)")
    return out


def point_policy(shipped: Policy, point: str) -> Policy:
    """The policy of a ``tv=.. min=.. hyst=..`` label."""
    values = dict(part.split("=") for part in point.split())
    return with_point(shipped, values["tv"], values["min"], values["hyst"])


def one_run_table(
    config: BotConfig,
    names: list[str],
    choices: dict[str, list[str]],
    tests: list[date],
    hist: Callable[[Policy], dict[str, ContractHistory]],
) -> str:
    """One run through every test month per policy, each month's choice deciding from its
    first day (``replay``'s switches: positions, stops and the risk state carry over, as when a
    trader restarts the bot with the month's new policy file); static_3x and buy-and-hold as
    one run over the same span."""
    window = {"start": tests[0], "end": month_end(tests[-1])}
    cfg = config.model_copy(update={"simulation": config.simulation.model_copy(update=window)})
    # the same run with an operator who resumes a drawdown halt after 72 h (the example's
    # halt is final: live, only a person resumes it)
    resumed = config.model_copy(
        update={
            "simulation": config.simulation.model_copy(
                update={**window, "resume_after_halt": RESUME}
            )
        }
    )
    symbols = tuple(c.symbol for c in cfg.contracts)
    lines = [
        "",
        f"One run through the test months ({tests[0].isoformat()[:7]} .. "
        f"{tests[-1].isoformat()[:7]}), each month's choice from its first day:",
        "",
        "| policy | return | max drawdown | Sharpe (daily, ann.) | trades | stop-losses | "
        "fees + slippage | time halted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    plans: list[tuple[str, Policy, list[tuple[int, Policy]]]] = []
    for name in names:
        shipped = load_policy(ROOT / "policies" / f"{name}.toml")
        chosen = [point_policy(shipped, p) for p in choices[name]]
        switches = [
            (datetime_to_ms(datetime.combine(m, dt_time(0), tzinfo=UTC)), pol)
            for m, pol, before in zip(tests[1:], chosen[1:], chosen, strict=False)
            if pol != before
        ]
        plans.append((name, chosen[0], switches))
    plans.append(("static_3x", load_policy(ROOT / "policies" / "static_3x.toml"), []))
    runs = [(name, first, switches, c) for name, first, switches in plans for c in (cfg, resumed)]
    for name, first, switches, c in runs:
        histories = hist(first)
        start, end = simulation_window(histories, first, c)
        res = replay(c, first, histories, _instruments(c, symbols), start, end, switches=switches)
        report = build_report(res, 0.0)
        label = name if c is cfg else f"{name}, halt resumed after {RESUME}"
        curves: list[tuple[str, npt.NDArray[np.float64], dict[str, Any] | None]]
        curves = [(label, res.equity, report)]
        if name == "static_3x" and c is cfg:
            curves.append(("buy_hold_1x", res.benchmark, None))
        for row_label, eq, rep in curves:
            balance = float(res.starting_balance)
            ret = float(eq[-1] / balance - 1)
            dd = max_drawdown(np.r_[balance, eq])
            daily = daily_returns(res.ts, np.asarray(eq))
            if rep is None:
                lines.append(f"| {row_label} | {ret:+.1%} | {dd:.1%} | {ann_sharpe(daily):.2f} | "
                             "- | - | - | - |")  # fmt: skip
                continue
            costs = float(rep["fees_paid"]) + float(rep["slippage_paid"])
            lines.append(
                f"| {row_label} | {ret:+.1%} | {dd:.1%} | {ann_sharpe(daily):.2f} | "
                f"{rep['n_trades']} | {rep['n_stop_losses']} | {costs:.0f} | "
                f"{float(rep['time_halted']):.1%} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
