"""The simulation loop alone, for comparing two trees back to back: best-of-N wall and CPU time
of ``replay`` on the synthetic contract-years, and (``--profile``) Python calls per tick and the
functions that take the most time.

Usage: python benchmarks/speed_bench.py [--root TREE] [--contracts 1] [--repeat 3]
       [--profile [tottime|cumtime]] [--lines 40]

``--root`` is the project tree to measure (default: this one), e.g. a detached worktree of an
older commit (``git worktree add --detach /tmp/base REF``), run with this tree's interpreter.
The data are the generated contract-years ``bench_research.py`` writes into ``bench-data/``
(``--data``). Compare CPU times and call counts measured in the same minute: the machine's other
load inflates wall times.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--root", type=Path, default=ROOT, help="project tree to measure")
    ap.add_argument("--contracts", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", nargs="?", const="tottime", choices=("tottime", "cumtime"))
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--lines", type=int, default=40, help="functions the profile lists")
    a = ap.parse_args()
    missing = [
        k for k in range(a.contracts) if not (a.data / f"SYN{k:02d}_USDT_USDT-1m.csv.gz").exists()
    ]
    if missing:
        raise SystemExit(
            f"{a.data}: no generated contract-year SYN{missing[0]:02d}; run "
            f"`python benchmarks/bench_research.py --contract-years {a.contracts}` once first"
        )
    sys.path.insert(0, str(a.root.resolve()))
    from loguru import logger

    logger.remove()
    from bot.backtest.replay import replay
    from bot.config.loader import load_config
    from bot.instruments import load_instruments
    from bot.marketdata.files import discover
    from bot.sim.history import load_histories, simulation_window

    config = load_config(a.root / "config.example.toml")
    window = config.simulation.model_copy(update={"start": None, "end": None})
    config = config.model_copy(update={"simulation": window})
    policy = config.policies[0]
    btc = load_instruments("binanceusdm")["BTC/USDT:USDT"]
    symbols = [f"SYN{k:02d}/USDT:USDT" for k in range(a.contracts)]
    instruments = {s: replace(btc, symbol=s) for s in symbols}
    histories = load_histories(discover(a.data), symbols, policy.timeframe)
    start, end = simulation_window(histories, policy, config)
    walls, cpus = [], []
    ticks = 0
    for _ in range(a.repeat):
        t, c = time.perf_counter(), time.process_time()
        result = replay(config, policy, histories, instruments, start, end)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        ticks = len(result.ts)
    print(
        f"{a.root}: {a.contracts} contract(s), {ticks} ticks: simulation best wall "
        f"{min(walls):.3f} s, best CPU {min(cpus):.3f} s "
        f"(all wall: {', '.join(f'{w:.2f}' for w in walls)})"
    )
    if a.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        replay(config, policy, histories, instruments, start, end)
        profiler.disable()
        stats = pstats.Stats(profiler)
        print(f"Python calls per tick: {stats.total_calls / max(ticks, 1):.0f}")  # type: ignore[attr-defined]
        stats.sort_stats(a.profile).print_stats(a.lines)


if __name__ == "__main__":
    main()
