"""Speed and memory of the dry-run simulation. Prints figures; asserts nothing.

Scenarios (hourly decisions with policies/vol_target.toml, isolated margin):
  1. one synthetic contract, one year of 1-minute candles ($BOT_SHARED_DATA/bench/gen_data.py,
     seeded);
  2. ten synthetic contracts, one year each, in one simulation (ten contract-years);
  3. the four Binance USD-M contracts on the 5-minute history in $BOT_SHARED_DATA/data (when
     present).
Targets on the 2-core machine (issue 12): 1 contract-year <= 0.35 s of simulation, 10
contract-years <= 3.5 s, peak RSS <= 600 MB.
Data loading is timed separately from the simulation; interpreter start is excluded.

Usage: python benchmarks/bench_simulation.py [--data-cache DIR] [--skip-real]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shared_folder() -> Path:
    """The shared folder (synthetic-year generator, real history): ``$BOT_SHARED_DATA``."""
    shared = os.environ.get("BOT_SHARED_DATA")
    if not shared:
        raise SystemExit("set BOT_SHARED_DATA to the shared folder (holds bench/ and data/)")
    return Path(shared)


sys.path.insert(0, str(ROOT))

from bot.backtest.replay import replay  # noqa: E402
from bot.config.loader import load_config  # noqa: E402
from bot.instruments import load_instruments  # noqa: E402
from bot.marketdata.files import discover  # noqa: E402
from bot.sim.history import load_histories, simulation_window  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_synthetic(cache: Path, n: int) -> Path:
    if all((cache / f"SYN{k:02d}_USDT_USDT-1m.csv.gz").exists() for k in range(n)):
        return cache
    gen = shared_folder() / "bench" / "gen_data.py"
    if not gen.exists():
        raise SystemExit(f"{gen} not found: cannot generate the synthetic year")
    print(f"generating {n} synthetic contract-years into {cache} (once) ...", flush=True)
    subprocess.run(
        [sys.executable, str(gen), "--contracts", str(n), "--out", str(cache)], check=True
    )
    return cache


def run(label: str, data_dir: Path, symbols: list[str], spec_of: dict[str, str]) -> None:
    config = load_config(ROOT / "config.example.toml")
    config = config.model_copy(
        update={"simulation": config.simulation.model_copy(update={"start": None, "end": None})}
    )
    policy = config.policies[0]
    base = load_instruments("binanceusdm")
    instruments = {s: replace(base[spec_of[s]], symbol=s) for s in symbols}
    t0 = time.perf_counter()
    inventory = discover(data_dir)
    histories = load_histories(inventory, symbols, policy.timeframe)
    t_load = time.perf_counter() - t0
    start, end = simulation_window(histories, policy, config)
    t1 = time.perf_counter()
    result = replay(config, policy, histories, instruments, start, end)
    t_sim = time.perf_counter() - t1
    years = (end - start) / (365 * 86_400_000)
    contract_years = years * len(symbols)
    bars = result.bars
    print(f"\n== {label}")
    print(
        f"   contracts {len(symbols)}, span {years:.2f} years = {contract_years:.2f} "
        f"contract-years, trigger bars {bars:,}, decision ticks {len(result.ts):,}"
    )
    print(
        f"   load {t_load:.2f} s | simulate {t_sim:.2f} s "
        f"({t_sim / contract_years:.2f} s per contract-year) | "
        f"total {t_load + t_sim:.2f} s | peak RSS {peak_rss_mb():.0f} MB"
    )
    print(
        f"   orders {len(result.store.orders)}, fills {len(result.exchange.fills)}, "
        f"final equity {Decimal(str(result.equity[-1])):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data-cache", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--contracts", type=int, default=10)
    args = ap.parse_args()
    cache = ensure_synthetic(args.data_cache, args.contracts)
    syn = {f"SYN{k:02d}/USDT:USDT": "BTC/USDT:USDT" for k in range(args.contracts)}
    first = next(iter(syn))
    run("1 synthetic contract-year, 1m candles, hourly decisions", cache, [first], syn)
    run(
        f"{args.contracts} synthetic contract-years, 1m candles, hourly decisions",
        cache,
        list(syn),
        syn,
    )
    shared = os.environ.get("BOT_SHARED_DATA")
    real = Path(shared) / "data" if shared else None
    if not args.skip_real and real is not None and real.is_dir():
        symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT"]
        run(
            "4 Binance USD-M contracts, 5m history, hourly decisions",
            real,
            symbols,
            {s: s for s in symbols},
        )


if __name__ == "__main__":
    main()
