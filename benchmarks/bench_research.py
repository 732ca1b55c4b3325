"""Speed of the simulation and of sweeps, beside a plain per-candle Python loop (the reference).
Prints figures; asserts nothing. Timings on a shared machine are inflated by its load: compare
each figure with the reference loop measured in the same run.

Data: one synthetic contract-year of 1-minute candles per contract, written once by the seeded
generator ``$BOT_SHARED_DATA/bench/gen_data.py`` (or ``--generator``) into ``--data-cache``; the
files are linked as BTC/ETH/SOL so ``bot simulate`` can run on them with the bundled specs.

Figures:
  * parse of one contract-year: cold (CSV, fills the binary cache) and warm (.npy cache);
  * simulation of one contract-year with policies/vol_target.toml (warm cache);
  * the whole ``bot simulate`` process on that contract-year (interpreter start included, the
    project's bytecode up to date as after a first run), and
    where its time goes: interpreter start, imports, config, data load, simulation loop, report
    files, charts (``simulate_phases.py``; the wall time of each phase and the CPU time of the
    command's own process, the chart helper's excluded);
  * ``--contracts-years N``: N contract-years in one simulation;
  * ``--grid P``: a P-point grid over 3 contract-years with ``--workers`` processes.
Usage: python benchmarks/bench_research.py [--grid 100] [--workers 2] [--contract-years 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

NAMES = ("BTC", "ETH", "SOL")


def generator(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    shared = os.environ.get("BOT_SHARED_DATA")
    if not shared:
        raise SystemExit("set BOT_SHARED_DATA (the shared data folder) or pass --generator")
    return Path(shared) / "bench" / "gen_data.py"


def ensure_data(cache: Path, n: int, gen: Path) -> Path:
    if not all((cache / f"SYN{k:02d}_USDT_USDT-1m.csv.gz").exists() for k in range(n)):
        print(f"generating {n} synthetic contract-years into {cache} (once) ...", flush=True)
        subprocess.run(
            [sys.executable, str(gen), "--contracts", str(n), "--out", str(cache)], check=True
        )
    linked = cache / "as-bundled"
    linked.mkdir(exist_ok=True)
    for k, name in enumerate(NAMES[: min(n, 3)]):
        for series in ("1m", "funding"):
            dst = linked / f"{name}_USDT_USDT-{series}.csv.gz"
            if not dst.exists():
                dst.symlink_to(cache / f"SYN{k:02d}_USDT_USDT-{series}.csv.gz")
    return linked


def reference_loop(data: Path) -> float:
    """The plain per-candle loop: EWMA volatility target, one position, fees, in pure Python."""
    from bot.marketdata.files import load_candles

    c = load_candles(data / "BTC_USDT_USDT-1m.csv.gz", "BTC/USDT:USDT", 60_000)
    close = c.close.tolist()
    t0 = time.perf_counter()
    var, pos, cash, lam = 1e-8, 0.0, 10_000.0, 0.94
    prev = close[0]
    for i, px in enumerate(close):
        r = px / prev - 1.0
        var = lam * var + (1 - lam) * r * r
        prev = px
        if i % 60 == 0:
            equity = cash + pos * px
            vol = math.sqrt(var * 525_600)
            target = min(5.0, 0.4 / vol if vol > 0 else 1.0) * equity / px
            trade = target - pos
            cash -= trade * px + abs(trade) * px * 0.0005
            pos = target
    return time.perf_counter() - t0


# Runs a command and prints the largest peak RSS among it and its descendants, in KB. A small
# process of its own: a child forked from this (large) benchmark process would report this
# process's size as its own peak (Linux carries the parent's high-water mark across fork).
_PEAK_OF = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def run_for_peak_rss(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` (checked, output captured); the peak RSS in MB of its largest process."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_OF, *cmd], check=True, env=env, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1]) / 1024


def config_for(tmp: Path, data: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('dir = "data/sample"', f'dir = "{data}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    text = re.sub(r"(?m)^(start|end) = .*$", "", text)
    path = tmp / "bench-config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def simulate_in_process(cfg: Path, symbols: tuple[str, ...]) -> tuple[float, float, int]:
    from bot.backtest.replay import _instruments, load_data, replay
    from bot.config.loader import load_config
    from bot.sim.history import simulation_window

    config = load_config(cfg)
    policy = config.policies[0]
    t0 = time.perf_counter()
    histories = load_data(config, policy, symbols)
    t_load = time.perf_counter() - t0
    start, end = simulation_window(histories, policy, config)
    t1 = time.perf_counter()
    result = replay(config, policy, histories, _instruments(config, symbols), start, end)
    return t_load, time.perf_counter() - t1, result.bars


PHASES = ("start", "imports", "config", "load", "simulation", "report", "charts", "other")


def whole_process(cfg: Path, tmp: Path, env: dict[str, str], repeat: int) -> None:
    """``bot simulate`` on one contract-year as a user runs it, ``repeat`` times (the fastest run
    is the least disturbed by other load on the machine; the median is shown too), then the same
    command through ``simulate_phases.py``: where the time goes, in its fastest run."""
    args = ["--config", str(cfg), "--contracts", "BTC/USDT:USDT", "--out", str(tmp / "out")]
    plain = [sys.executable, "-m", "bot.cli.app", "simulate", *args]
    # The project's own bytecode, as the first run of any interpreter writes it; without it every
    # run compiles bot/ again (an editable install does not compile it, and a set
    # PYTHONDONTWRITEBYTECODE stops imports from writing it). The libraries' bytecode comes with
    # their install.
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bot")], check=True)
    print(
        f"bytecode of bot/ brought up to date once (python -m compileall): "
        f"{time.perf_counter() - t0:.2f} s; PYTHONDONTWRITEBYTECODE "
        f"{'is set' if os.environ.get('PYTHONDONTWRITEBYTECODE') else 'is not set'} here"
    )
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(plain, check=True, env=env, capture_output=True)
        took.append(time.perf_counter() - t0)
    print(
        f"whole `bot simulate` process, 1 contract-year, warm cache: {min(took):.2f} s fastest, "
        f"{float(np.median(took)):.2f} s median ({', '.join(f'{t:.2f}' for t in took)})"
    )
    runs = []
    for k in range(repeat):
        out = tmp / f"phases-{k}.json"
        timed = [sys.executable, str(ROOT / "benchmarks" / "simulate_phases.py"), *args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            timed, check=True, env={**env, "BOT_PHASES_OUT": str(out)}, capture_output=True
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        got = json.loads(out.read_text(encoding="utf-8"))
        # The command and its helper together, interpreter start and exit included.
        got["all_cpu"] = sum(after[:2]) - sum(before[:2])
        got["wall"]["start"] = wall - got["wall"]["total"]  # interpreter start and exit
        got["wall"]["total"] = wall
        runs.append(got)
    best = min(runs, key=lambda r: r["wall"]["total"])
    wall, cpu = best["wall"], best["cpu"]
    split = ", ".join(f"{p} {wall.get(p, 0.0):.2f}" for p in PHASES)
    print(f"  where it goes (wall s, fastest of {repeat}): {split} = {wall['total']:.2f}")
    outside = wall["total"] - wall.get("simulation", 0.0)
    print(f"  everything but the simulation loop: {outside:.2f} s wall")
    split = ", ".join(f"{p} {cpu.get(p, 0.0):.2f}" for p in PHASES if p != "start")
    helper = best.get("children_cpu", 0.0)
    print(
        f"  CPU s of the command's process: {split} = {cpu['total']:.2f}; "
        f"of its chart helper: {helper:.2f}; interpreter start and exit: "
        f"{best['all_cpu'] - cpu['total'] - helper:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data-cache", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--generator", type=Path, default=None)
    ap.add_argument("--grid", type=int, default=0, help="points of the sweep benchmark (0: skip)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--contract-years", type=int, default=0, help="N-contract simulation (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the whole-process figure")
    args = ap.parse_args()
    args.data_cache = args.data_cache.resolve()  # the configs it writes live elsewhere
    n_files = max(3, args.contract_years)
    data = ensure_data(args.data_cache, n_files, generator(args.generator))
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        os.environ["BOT_DATA_CACHE"] = str(tmp / "cache")
        cfg = config_for(tmp, data)
        print(f"reference per-candle Python loop, 1 contract-year: {reference_loop(data):.2f} s")

        from bot.marketdata.files import load_candles

        src = data / "BTC_USDT_USDT-1m.csv.gz"
        os.environ["BOT_DATA_CACHE"] = "off"
        t0 = time.perf_counter()
        load_candles(src, "BTC/USDT:USDT", 60_000)
        t_parse = time.perf_counter() - t0
        os.environ["BOT_DATA_CACHE"] = str(tmp / "cache")
        load_candles(src, "BTC/USDT:USDT", 60_000)  # fills the cache
        t0 = time.perf_counter()
        load_candles(src, "BTC/USDT:USDT", 60_000)
        t_warm = time.perf_counter() - t0
        print(
            f"parse 1 contract-year of 1m candles: CSV {t_parse:.3f} s, cached .npy {t_warm:.3f} s"
        )

        t_load, t_sim, bars = simulate_in_process(cfg, ("BTC/USDT:USDT",))
        print(
            f"simulate 1 contract-year (vol_target, warm cache): load {t_load:.2f} s, "
            f"simulation {t_sim:.2f} s ({bars:,} trigger bars)"
        )

        env = {**os.environ, "BOT_DATA_CACHE": str(tmp / "cache")}
        whole_process(cfg, tmp, env, args.repeat)

        if args.contract_years:
            from dataclasses import replace

            from bot.backtest.replay import replay
            from bot.config.loader import load_config
            from bot.instruments import load_instruments
            from bot.marketdata.files import discover
            from bot.sim.history import load_histories, simulation_window

            config = load_config(cfg)
            policy = config.policies[0]
            syms = [f"SYN{k:02d}/USDT:USDT" for k in range(args.contract_years)]
            btc = load_instruments("binanceusdm")["BTC/USDT:USDT"]
            inst = {s: replace(btc, symbol=s) for s in syms}
            hist = load_histories(discover(args.data_cache), syms, policy.timeframe)
            start, end = simulation_window(hist, policy, config)
            t0 = time.perf_counter()
            replay(config, policy, hist, inst, start, end)
            print(
                f"simulate {len(syms)} contract-years in one run: {time.perf_counter() - t0:.2f} s"
            )

        if args.grid:
            side = max(2, round(args.grid**0.5))
            vols = ",".join(f"{x:.3f}" for x in np.linspace(0.2, 0.8, side))
            maxes = ",".join(str(x) for x in range(2, 2 + math.ceil(args.grid / side)))
            sweep = [
                sys.executable,
                "-m",
                "bot.cli.app",
                "sweep",
                "--config",
                str(cfg),
                "--policy",
                str(ROOT / "policies" / "vol_target.toml"),
                "--param",
                f"leverage.target_volatility={vols}",
                "--param",
                f"leverage.max={maxes}",
                "--workers",
                str(args.workers),
                "--contracts",
                "BTC/USDT:USDT,ETH/USDT:USDT,SOL/USDT:USDT",
                "--out",
                str(tmp / "sweep"),
            ]
            n = side * math.ceil(args.grid / side)
            t0 = time.perf_counter()
            peak = run_for_peak_rss(sweep, env)
            took = time.perf_counter() - t0
            print(
                f"{n}-point grid over 3 contract-years, {args.workers} workers: {took:.1f} s "
                f"({took / n:.2f} s per point); peak RSS of its largest process (the sweep or "
                f"a worker): {peak:.0f} MB"
            )
        # (Its children's peak is not shown: forked from this process, they would report its
        # size as theirs; the sweep's figure above comes from a process of its own.)
        print(
            f"peak RSS of this process (the in-process simulations): "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()
