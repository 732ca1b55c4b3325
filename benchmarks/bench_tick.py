"""Cost of one engine tick for 20 contracts, excluding exchange round trips. Prints figures;
asserts nothing.

The engine runs over the in-process simulated exchange (no network), an in-memory market data
object holding seeded hourly random walks (enough history for the policy's windows) and
policies/vol_target.toml. Each tick the clock moves one hour and every contract's mark moves to
the next candle's close, so positions are resized, stops replaced and some stops triggered.
Timed: ``Engine.tick()`` only (moving the prices is not). Ticks are split into those that sent
or cancelled no order and those that did. Twice: with ``MemoryStore`` (the engine alone) and
with ``SqlStore`` on a temporary SQLite file (the engine plus its database writes).
Target: < 20 ms per tick for 20 contracts.

Usage: python benchmarks/bench_tick.py [--ticks 300] [--contracts 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.clock import SimClock  # noqa: E402
from bot.config.loader import load_policy  # noqa: E402
from bot.domain.enums import MarginMode  # noqa: E402
from bot.domain.market import FundingInfo  # noqa: E402
from bot.engine.contracts import ContractSpec  # noqa: E402
from bot.engine.market import candles_needed  # noqa: E402
from bot.engine.tick import Engine  # noqa: E402
from bot.instruments import load_instruments  # noqa: E402
from bot.ports.market import CandleWindow  # noqa: E402
from bot.ports.store import StorePort  # noqa: E402
from bot.risk.limits import RiskLimits  # noqa: E402
from bot.sim.exchange import SimulatedExchange  # noqa: E402
from bot.store.memory import MemoryStore  # noqa: E402
from bot.store.migrate import upgrade  # noqa: E402
from bot.store.sql import SqlStore  # noqa: E402

HOUR = 3_600_000
T0 = 1_750_000_000_000 - 1_750_000_000_000 % HOUR
LIMITS = RiskLimits(
    max_leverage_per_contract=Decimal(5),
    max_gross_leverage=Decimal(6),
    max_notional_per_contract=Decimal(10**7),
    daily_loss=Decimal("0.5"),  # a benchmark must not halt itself on a bad random walk
    max_drawdown=Decimal("0.9"),
    stale_data_ms=2 * HOUR,
    max_orders_per_minute=10_000,
)


class WalkMarket:
    """Hourly candles of one seeded random walk per contract, ``history`` of them before ``T0``
    and ``ahead`` after it (the ticks move through those)."""

    def __init__(self, symbols: list[str], history: int, ahead: int, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        n = history + ahead
        self.ts = T0 + HOUR * np.arange(-history, ahead, dtype=np.int64)
        self.series: dict[str, tuple[np.ndarray, ...]] = {}
        for k, sym in enumerate(symbols):
            sigma = 0.003 + 0.0003 * k  # 16 % .. 45 % a year: some above the 40 % target
            close = 100.0 * (1 + k) * np.exp(np.cumsum(rng.normal(0, sigma, n)))
            open_ = np.concatenate([[close[0]], close[:-1]])
            high = np.maximum(open_, close) * (1 + sigma / 2)
            low = np.minimum(open_, close) * (1 - sigma / 2)
            self.series[sym] = (open_, high, low, close)

    def _end(self, now_ms: int, tf_ms: int) -> int:
        return int(np.searchsorted(self.ts, now_ms - tf_ms, side="right"))

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        end = self._end(now_ms, tf_ms)
        sl = slice(max(0, end - count), end)
        o, h, lo, c = self.series[symbol]
        return CandleWindow(self.ts[sl], o[sl], h[sl], lo[sl], c[sl], tf_ms)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(Decimal("0.0001"), Decimal(8), now_ms - now_ms % (8 * HOUR) + 8 * HOUR)

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        end = self._end(now_ms, HOUR)
        if end == 0:
            return None
        return Decimal(f"{self.series[symbol][3][end - 1]:.2f}"), int(self.ts[end - 1]) + HOUR


def build(store: StorePort, n_contracts: int, ticks: int) -> tuple[Engine, SimClock, WalkMarket]:
    policy = load_policy(ROOT / "policies" / "vol_target.toml")
    btc = load_instruments("binanceusdm")["BTC/USDT:USDT"]
    symbols = [f"C{k:02d}/USDT:USDT" for k in range(n_contracts)]
    instruments = {
        s: replace(btc, symbol=s, base=s.split("/")[0], tick_size=Decimal("0.01")) for s in symbols
    }
    market = WalkMarket(symbols, history=candles_needed(policy) + 50, ahead=ticks + 2)
    clock = SimClock(T0)
    exchange = SimulatedExchange(
        instruments,
        clock,
        starting_balance=Decimal(200_000),
        margin_mode=MarginMode.ISOLATED,
        slippage_bps=Decimal(2),
    )
    move_marks(exchange, market, T0)
    engine = Engine(
        clock=clock,
        exchange=exchange,
        market=market,
        store=store,
        policy=policy,
        contracts=[ContractSpec(s, "long", Decimal(125)) for s in symbols],
        limits=LIMITS,
        account="bench",
    )
    return engine, clock, market


def move_marks(exchange: SimulatedExchange, market: WalkMarket, now_ms: int) -> None:
    for sym in market.series:
        last = market.last_price(sym, now_ms)
        if last is not None:
            exchange.set_mark(sym, last[0])


def orders_seen(store: StorePort) -> int:
    """How many order intents the store holds (the timing excludes this count)."""
    if isinstance(store, MemoryStore):
        return len(store.orders)
    assert isinstance(store, SqlStore)
    return len(store.recent_orders(10**7))


def canceled_seen(engine: Engine) -> int:
    exchange = engine.exchange
    assert isinstance(exchange, SimulatedExchange)
    return sum(1 for o in exchange.orders.values() if o.status.value == "canceled")


def run(label: str, store: StorePort, n_contracts: int, ticks: int) -> None:
    engine, clock, market = build(store, n_contracts, ticks)
    first_ms = 0.0
    quiet: list[float] = []
    busy: list[float] = []
    sent = 0
    for i in range(ticks + 1):
        before = (orders_seen(store), canceled_seen(engine))
        t0 = time.perf_counter()
        engine.tick()
        ms = (time.perf_counter() - t0) * 1000
        after = (orders_seen(store), canceled_seen(engine))
        sent += after[0] - before[0]
        if i == 0:
            first_ms = ms  # opens every position: cold caches, many orders
        elif after == before:
            quiet.append(ms)
        else:
            busy.append(ms)
        clock.advance_to(clock.now_ms() + HOUR)
        move_marks(engine.exchange, market, clock.now_ms())  # type: ignore[arg-type]
    every = quiet + busy
    print(f"\n== {label}: {n_contracts} contracts, {ticks} ticks after the first")
    print(f"   first tick (opens every position): {first_ms:.1f} ms")
    print(f"   all ticks        {fmt(every)}")
    print(f"   without orders   {fmt(quiet)}")
    print(f"   with orders      {fmt(busy)}")
    print(f"   order intents sent {sent}, positions open {open_positions(engine)}")


def open_positions(engine: Engine) -> int:
    return len(engine.exchange.fetch_positions(engine.symbols))


def fmt(samples: list[float]) -> str:
    if not samples:
        return "n=0"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"n={len(samples):4d}  median {statistics.median(samples):6.2f} ms  "
        f"p95 {p95:6.2f} ms  max {ordered[-1]:6.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--contracts", type=int, default=20)
    args = ap.parse_args()
    run("engine + MemoryStore", MemoryStore(), args.contracts, args.ticks)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        store = SqlStore.open(url)
        try:
            run("engine + SqlStore (SQLite file, WAL)", store, args.contracts, args.ticks)
        finally:
            store.close()
    print("\ntarget: < 20 ms per tick for 20 contracts, excluding exchange round trips")


if __name__ == "__main__":
    main()
