"""Run ``bot simulate ARGS...`` and write where its time went (JSON) to ``$BOT_PHASES_OUT``.

Used by ``bench_research.py`` as the child process of the whole-process figure: the same command
as ``python -m bot.cli.app simulate ARGS...``, with timers around the steps it goes through, so
the split adds up to the process's own wall time. Phases, in seconds, in the order they run:

* ``imports``: from this script's first line to the configuration load (the CLI, the simulate
  path and everything they import, argument parsing);
* ``config``: loading and validating the configuration and policy files;
* ``load``: loading the market data (warm cache: the binary entries);
* ``simulation``: the replay loop;
* ``report``: the data files (report.json, CSVs), charts excluded;
* ``charts``: drawing the PNGs, matplotlib's import included (it is imported only then);
* ``other``: the rest (the summary table, exit).

The interpreter's own start (before this script's first line) is what the parent measures
beyond ``total``. Only names looked up at call time are wrapped, so the command runs unchanged.
"""

import time

T0 = time.perf_counter()
C0 = time.process_time()

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

SPENT: dict[str, float] = {}  # wall time per phase
CPU: dict[str, float] = {}  # this process's CPU time per phase (the helper's is not in it)
_open: list[str] = []  # the phase running now; a phase inside another is taken out of it


def _add(phase: str, wall: float, cpu: float) -> None:
    SPENT[phase] = SPENT.get(phase, 0.0) + wall
    CPU[phase] = CPU.get(phase, 0.0) + cpu


def _timed(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if "imports" not in SPENT:
            _add("imports", time.perf_counter() - T0, time.process_time() - C0)
        t0, c0 = time.perf_counter(), time.process_time()
        _open.append(phase)
        try:
            return fn(*args, **kwargs)
        finally:
            _open.pop()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            _add(phase, wall, cpu)
            if _open:  # e.g. charts asked for inside write_outputs: not report time
                _add(_open[-1], -wall, -cpu)

    return run


def _patch(owner: Any, attr: str, phase: str) -> None:
    setattr(owner, attr, _timed(phase, getattr(owner, attr)))


def _patch_charts() -> None:
    try:
        import bot.backtest.charts as charts
    except ImportError:  # an older checkout: charts drawn by bot.backtest.plots, in process
        import bot.backtest.plots as plots

        for name in ("plot_report", "plot_comparison"):
            _patch(plots, name, "charts")  # before the modules that import these names
        return
    for painter in (charts.LocalCharts, charts.HelperCharts):
        # asking for a chart (the helper: sending it) and waiting for the last one to be drawn
        _patch(painter, "draw", "charts")
        _patch(painter, "finish", "charts")


def main() -> int:
    _patch_charts()
    import bot.backtest.replay as replay
    import bot.backtest.report as report
    import bot.config.loader as loader

    _patch(loader, "load_config", "config")
    _patch(replay, "load_data", "load")
    _patch(replay, "replay", "simulation")
    _patch(report, "write_outputs", "report")
    from bot.cli.app import app

    code = 0
    try:
        app(args=["simulate", *sys.argv[1:]], prog_name="bot")
    except SystemExit as exc:
        code = int(exc.code or 0)
    total, cpu = time.perf_counter() - T0, time.process_time() - C0
    _add("other", total - sum(SPENT.values()), cpu - sum(CPU.values()))
    SPENT["total"], CPU["total"] = total, cpu
    # CPU of the processes this one started and waited for: the chart helper (policies compared
    # in parallel: the workers too).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = os.environ.get("BOT_PHASES_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            helper = children.ru_utime + children.ru_stime  # user and system, as process_time()
            json.dump({"wall": SPENT, "cpu": CPU, "children_cpu": helper}, fh)
    return code


if __name__ == "__main__":
    sys.exit(main())
