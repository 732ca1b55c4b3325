"""``bot sweep``: search a policy's parameters, optionally walk-forward, locally or on Dask."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot import strict_json
from bot.atomic_file import replaced_text
from bot.research import space
from bot.research.executors import make_executor
from bot.research.plots import plot_sweep
from bot.research.results import score, write_parquet
from bot.research.sweep import Sweep, SweepOutcome, SweepSpec

_TABLE_METRICS = (
    ("total_return", "{:.2%}"),
    ("sharpe", "{:.2f}"),
    ("max_drawdown", "{:.2%}"),
    ("calmar", "{:.2f}"),
    ("n_liquidations", "{}"),
)


def run_sweep(
    spec: SweepSpec, workers: int | None, cluster: str | None, console: Console
) -> SweepOutcome:
    executor = make_executor(workers, cluster)
    sweep: Sweep | None = None
    try:
        sweep = Sweep(spec, executor)
        wins = sweep.windows()
        total = sweep.total_tasks(len(wins) if wins else 1)
        best = RunningBest(spec.objective, walk_forward=spec.walk_forward is not None)
        completed = [0]
        with Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} points"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[best]}"),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("sweep", total=total, best="")

            def listen(row: dict[str, Any], n: int) -> None:
                shown = best.seen(row)
                completed[0] += n
                if row.get("resumed") or row.get("status") in ("invalid", "pruned", "no choice"):
                    # Done without running now: counted, but the time-left estimate starts
                    # afresh from here; fed as finished points, a resume of 90 of 100 done
                    # would make the last 10 look ten times faster than they are.
                    bar.reset(task, total=total, completed=completed[0], best=shown)
                else:
                    bar.update(task, advance=n, best=shown)

            sweep.listener = listen
            outcome = sweep.run()
    except BaseException:
        if sweep is not None:  # failed before its first point: nothing left to refuse a rerun
            sweep.discard_unfinished()
        raise
    finally:
        executor.close()
    write_outputs(spec, sweep, outcome)
    report(spec, sweep, outcome, console)
    # A sweep in which nothing finished (every point invalid): its summary says why, but its
    # sweep.json would refuse the corrected command in the same --out as "a different sweep".
    sweep.discard_unfinished()
    return outcome


class RunningBest:
    """The progress bar's "best so far": the best objective among the points run, or in a
    walk-forward the best TRAIN value of the window being chosen (a best over every window
    mixes periods, and TEST runs are judged, not chosen from)."""

    def __init__(self, objective: str, *, walk_forward: bool) -> None:
        self.objective = objective
        self.walk_forward = walk_forward
        self.best: dict[int, float] = {}
        self.window = 0

    def seen(self, row: dict[str, Any]) -> str:
        """Take a finished row; return the text to show."""
        value = score(row, self.objective)
        window = int(row.get("window") or 0)
        # chosen from: TRAIN rows (or a plain sweep's); TEST and the out-of-sample run are judged
        if value is not None and row.get("phase") in ("train", "all"):
            self.window = max(self.window, window)
            if window not in self.best or value > self.best[window]:
                self.best[window] = value
        value = self.best.get(self.window)
        if value is None:
            return ""
        label = f"window {self.window} best TRAIN" if self.walk_forward else "best"
        return f"{label} {self.objective} {value:+.4g}"


def best_name(base: str) -> str:
    """best.toml's policy name: the base's with ``-best`` (within the 40 characters a name
    may have)."""
    return f"{base[:35]}-best"


def write_outputs(spec: SweepSpec, sweep: Sweep, outcome: SweepOutcome) -> None:
    out = spec.out
    write_parquet(out / "results.csv")
    if outcome.best_point is not None:
        raw, _ = sweep.policy_of(outcome.best_point)
        # Its own name, so `bot simulate --policy BASE --policy best.toml` compares the two (one
        # name twice is refused); the name changes no figure.
        raw = {**raw, "name": best_name(str(raw["name"]))}
        header = "# chosen by bot sweep: " + space.point_label(outcome.best_point)
        # replaced in one step: a kill never leaves half a policy file to be simulated
        with replaced_text(out / "best.toml") as fh:
            fh.write(header + "\n" + space.to_toml(raw))
    phase = "train" if spec.walk_forward else "all"
    scored = [
        ({k: space.cell_text(r[f"param.{k}"]) for k in sweep.keys}, s)
        for r in outcome.rows
        if r.get("phase") == phase and (s := score(r, spec.objective)) is not None
    ]
    plot_sweep(out / "sweep.png", sweep.keys, scored, spec.objective)
    if outcome.best_point is None:
        (out / "best.toml").unlink(missing_ok=True)  # never a file the outcome does not back
    summary = {
        "objective": spec.objective,
        "best": outcome.best,
        "best_params": {k: str(v) for k, v in (outcome.best_point or {}).items()},
        "invalid_points": [
            {"params": {k: str(v) for k, v in p.items()}, "error": e} for p, e in outcome.invalid
        ],
        **outcome.summary,
    }
    with replaced_text(out / "summary.json") as fh:
        fh.write(strict_json.dumps(summary, indent=2, default=str) + "\n")


def report(spec: SweepSpec, sweep: Sweep, outcome: SweepOutcome, console: Console) -> None:
    for point, error in outcome.invalid:
        console.print(f"[yellow]invalid point[/yellow] {space.point_label(point)}: {error}")
    errors = [r for r in outcome.rows if r.get("status") in ("error", "failed")]
    for r in errors[:10]:
        console.print(f"[red]failed[/red] {r['key']}: {r.get('error')}")
    if spec.walk_forward:
        walk_forward_report(sweep, outcome, console)
    else:
        console.print(top_table(spec, sweep, outcome))
        for note in outcome.summary.get("best_notes", ()):
            console.print(f"[yellow]best point[/yellow]: {note}")
        dsr = outcome.summary.get("dsr")
        if dsr:
            console.print(
                f"deflated Sharpe ratio of the best point among {dsr['trials']} trials: "
                f"{dsr['deflated_sharpe']:.3f} (Bailey & López de Prado 2014; < 0.95 means the "
                "best point's Sharpe is not distinguishable from luck of the search)"
            )
    if outcome.best_point is not None:
        console.print(f"best: {space.point_label(outcome.best_point)} -> {spec.out / 'best.toml'}")
    else:
        console.print(f"[red]no point chosen[/red]: {no_choice_line(spec, outcome)}")
    console.print(f"outputs written to [bold]{spec.out}[/bold]")
    if (warning := sweep.stand_in_warning()) is not None:
        console.print(f"[yellow]{warning}[/yellow]", soft_wrap=True)


def exit_code(outcome: SweepOutcome) -> int:
    """``bot sweep``'s exit status once its outputs are written: 1 when no point was chosen
    because none ran to a result (every point invalid, in error or failed), so a script or a
    scheduler sees the sweep produced nothing; 0 otherwise, a sweep whose points ran but none
    has a finite objective included (a result: no best.toml). Errors that stop the sweep
    exit 2, as every command's (:func:`bot.cli.app.reported_errors`)."""
    ran = any(r.get("status") == "ok" for r in outcome.rows)
    return 1 if outcome.best_point is None and not ran else 0


def no_choice_line(spec: SweepSpec, outcome: SweepOutcome) -> str:
    """Why a sweep chose nothing (no best.toml is written)."""
    failed = sum(1 for r in outcome.rows if r.get("status") != "ok")
    unscored = sum(
        1 for r in outcome.rows if r.get("status") == "ok" and score(r, spec.objective) is None
    )
    return (
        f"{len(outcome.invalid)} invalid, {failed} failed, {unscored} without a finite "
        f"{spec.objective}; no best.toml written"
    )


def top_table(spec: SweepSpec, sweep: Sweep, outcome: SweepOutcome, n: int = 10) -> Table:
    ranked = sorted(
        ((s, r) for r in outcome.rows if (s := score(r, spec.objective)) is not None),
        key=lambda x: (-x[0], x[1]["key"]),
    )
    table = Table(
        title=f"top {min(n, len(ranked))} of {len(outcome.rows)} points by {spec.objective}"
    )
    for k in sweep.keys:
        table.add_column(k)
    for m, _ in _TABLE_METRICS:
        table.add_column(m, justify="right")
    for _, r in ranked[:n]:
        table.add_row(
            *[space.cell_text(r[f"param.{k}"]) for k in sweep.keys],
            *[_fmt(r.get(m), f) for m, f in _TABLE_METRICS],
        )
    return table


def walk_forward_table(sweep: Sweep, outcome: SweepOutcome) -> Table:
    table = Table(title=f"walk-forward {sweep.spec.walk_forward}: chosen point per window")
    for c in (
        "window",
        "train",
        "test",
        *sweep.keys,
        "IS return",
        "OOS return",
        "IS Sharpe",
        "OOS Sharpe",
        "DSR",
    ):
        table.add_column(c, justify="right")
    for w in outcome.summary["windows"]:
        dsr = w.get("dsr")
        table.add_row(
            str(w["window"]),
            w["train"],
            w["test"],
            *[w["params"][k] if w["params"] else "-" for k in sweep.keys],
            _fmt(w["in_sample"]["total_return"], "{:.2%}"),
            _fmt(w["out_of_sample"]["total_return"], "{:.2%}"),
            _fmt(w["in_sample"]["sharpe"], "{:.2f}"),
            _fmt(w["out_of_sample"]["sharpe"], "{:.2f}"),
            _fmt(dsr["deflated_sharpe"] if dsr else None, "{:.3f}"),
        )
    oos = outcome.summary["out_of_sample"]
    ins = outcome.summary["in_sample_mean"]
    how = {
        "one run": "one run through every TEST period, each window's choice from its TEST start",
        "stitched": "each window's TEST run alone, stitched",
    }[outcome.summary.get("out_of_sample_method", "stitched")]
    table.caption = (
        "OOS columns: each window's choice alone on its TEST period, from a flat account\n"
        f"out of sample ({how}): return {_fmt(oos.get('total_return'), '{:.2%}')}, Sharpe "
        f"{_fmt(oos.get('sharpe'), '{:.2f}')}, max drawdown "
        f"{_fmt(oos.get('max_drawdown'), '{:.2%}')} | in sample, mean per window: return "
        f"{_fmt(ins.get('total_return'), '{:.2%}')}, Sharpe {_fmt(ins.get('sharpe'), '{:.2f}')}"
    )
    return table


def walk_forward_report(sweep: Sweep, outcome: SweepOutcome, console: Console) -> None:
    """The windows' table, their notes, the out-of-sample run and which window best.toml is."""
    console.print(walk_forward_table(sweep, outcome))
    for w in outcome.summary["windows"]:
        for note in w.get("notes", ()):
            console.print(f"[yellow]window {w['window']}[/yellow]: {note}")
    if "untested_tail" in outcome.summary:
        console.print(f"[yellow]untested[/yellow]: {outcome.summary['untested_tail']}")
    for note in outcome.summary.get("out_of_sample_notes", ()):
        console.print(f"[yellow]out of sample[/yellow]: {note}")
    run = outcome.summary.get("out_of_sample_run")
    if run:
        console.print(
            f"out-of-sample run: {run['n_trades']} trades, {run['n_stop_losses']} stop-losses, "
            f"{run['n_liquidations']} liquidations, fees {_fmt(run['fees_paid'], '{:.2f}')}, "
            f"funding {_fmt(run['funding_paid'], '{:.2f}')}, slippage "
            f"{_fmt(run['slippage_paid'], '{:.2f}')}, time halted "
            f"{_fmt(run['time_halted'], '{:.1%}')}"
        )
    if outcome.best_point is not None:
        console.print(
            f"best.toml is window {outcome.summary['best_from_window']}'s choice"
            + "".join(f"; {n}" for n in outcome.summary.get("best_notes", ()))
        )


def _fmt(value: Any, fmt: str) -> str:
    if not isinstance(value, int | float):
        return "-"
    return fmt.format(value)
