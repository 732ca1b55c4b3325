"""Wall time of one live tick for 4 contracts when 10 % of the requests time out. Prints figures;
asserts nothing.

The whole live stack runs: ``bot.bootstrap.build_live`` (real ccxt ``binanceusdm``, signing,
HTTP, retries, the engine, the SQLite store) against the loopback Binance USD-M server of
``tests/fakes`` on 127.0.0.1, backed by a simulated account. ccxt's timeout is 3 s; a seeded
10 % of the requests (any route, reads and orders alike) are held by the server beyond that, so
the client gives up after 3 s: reads are retried, orders looked up by client id. Every tick the
marks of the four contracts (BTC, ETH, SOL, XRP) move, so trailing stops are replaced: the tick
reads the account and market data and sends protective orders. A first tick without faults
opens and protects the positions (not timed); then ``--ticks`` ticks are timed, ``Runner.tick``
from start to end. ccxt's rate limiter stays on (the bot's default).

Usage: python benchmarks/live_tick_faults.py [--ticks 15] [--rate 0.10] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loguru import logger  # noqa: E402

from bot.bootstrap import Secrets, build_live, open_store  # noqa: E402
from bot.clock import LiveClock  # noqa: E402
from bot.config.loader import load_config  # noqa: E402
from bot.domain.enums import MarginMode  # noqa: E402
from bot.instruments import load_instruments  # noqa: E402
from bot.sim.exchange import SimulatedExchange  # noqa: E402
from tests.fakes.binance_loopback import LoopbackBinance  # noqa: E402

KEY, SECRET = "bench-key-4c1d", "bench-secret-8e2f0a"
HOUR = 3_600_000
START = {
    "BTC/USDT:USDT": Decimal(60000),
    "ETH/USDT:USDT": Decimal(3000),
    "SOL/USDT:USDT": Decimal(150),
    "XRP/USDT:USDT": Decimal("0.6"),
}
TIMEOUT_MS = 3000


def candles(symbol: str, start: Decimal, n: int, seed: int) -> list[tuple[int, ...]]:
    """``n`` hourly candles of a seeded random walk; the last one closed this hour."""
    rng = random.Random(f"{seed}-{symbol}")
    now = LiveClock().now_ms()
    first = now - now % HOUR - n * HOUR
    inst = load_instruments("binanceusdm")[symbol]
    price, rows = float(start), []
    for i in range(n):
        close = price * (1 + rng.gauss(0, 0.004))
        hi, lo = max(price, close) * 1.002, min(price, close) * 0.998

        def q(x: float) -> Decimal:
            return inst.floor_price(Decimal(str(x)))

        rows.append((first + i * HOUR, q(price), q(hi), q(lo), q(close), Decimal(1000)))
        price = close
    return rows


class FaultyWire:
    """Holds a seeded fraction of the requests beyond the client's timeout (then drops them)."""

    def __init__(self, server: LoopbackBinance, rate: float, seed: int) -> None:
        self.rate = 0.0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._handle = server.handle
        self._stopping = threading.Event()
        self.faults = 0
        self.requests = 0
        self.armed_rate = rate
        server.handle = self.handle  # type: ignore[method-assign]

    def handle(self, method: str, path: str, query: str, body: str, api_key: str | None) -> Any:
        with self._lock:
            self.requests += 1
            hit = self._rng.random() < self.rate
            self.faults += hit
        if hit:
            self._stopping.wait(TIMEOUT_MS / 1000 + 0.5)
            return None
        return self._handle(method, path, query, body, api_key)

    def stop(self) -> None:
        self._stopping.set()


def write_config(directory: Path, base_url: str) -> Path:
    contracts = "".join(f'[[contracts]]\nsymbol = "{s}"\ndirection = "long"\n\n' for s in START)
    text = f"""
[account]
name = "bench"
starting_balance = 100000
margin_mode = "isolated"

{contracts}
[data]
dir = "{ROOT / "data" / "sample"}"

[policy]
file = "{ROOT / "policies" / "vol_target.toml"}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 6
max_notional_per_contract = 1000000
daily_loss_limit = 0.5
max_drawdown = 0.9
stale_data_seconds = 7200
max_orders_per_minute = 1000

[simulation]
slippage_bps = 2

[exchange]
name = "binanceusdm"
demo = false
api_url = "{base_url}"
ccxt_options = {{ timeout = {TIMEOUT_MS} }}

[runtime]
database_url = "sqlite:///{directory / "state.db"}"
log_dir = "{directory / "logs"}"
"""
    path = directory / "config.toml"
    path.write_text(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=15)
    ap.add_argument("--rate", type=float, default=0.10, help="fraction of requests timed out")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    logger.remove()  # the figures, not the log, are the output

    instruments = {s: load_instruments("binanceusdm")[s] for s in START}
    backend = SimulatedExchange(
        instruments, LiveClock(), starting_balance=Decimal(100000), margin_mode=MarginMode.ISOLATED
    )
    server = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=list(START)
    )
    server.timeout_hold_s = TIMEOUT_MS / 1000 + 0.5
    for sym, price in START.items():
        rows = candles(sym, price, 400, args.seed)
        server.set_candles(sym, "trade", rows)
        server.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    wire = FaultyWire(server, args.rate, args.seed)
    times: list[float] = []
    with server, tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), server.base_url))
        store = open_store(config, create=True)
        runner = build_live(config, store, Secrets(KEY, SECRET, None))
        runner.engine.exchange.load_instruments()  # type: ignore[attr-defined]
        store.open_run("live", str(config.source), config.policies[0].name, LiveClock().now_ms())
        if runner.tick() is None:
            raise SystemExit("the first tick (no faults) failed: nothing to measure")
        wire.rate = wire.armed_rate
        rng = random.Random(args.seed)
        for _ in range(args.ticks):
            with server.lock:
                for sym in START:
                    move = Decimal(str(1 + rng.uniform(0.004, 0.012)))
                    backend.set_mark(sym, instruments[sym].floor_price(backend.marks[sym] * move))
            started = time.perf_counter()
            result = runner.tick()
            times.append(time.perf_counter() - started)
            if result is None:
                print(f"  tick {len(times)} failed after {times[-1]:.2f} s")
        wire.stop()
        store.close()
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(
        f"live tick, 4 contracts, {TIMEOUT_MS / 1000:.0f} s timeouts on {args.rate:.0%} of "
        f"requests ({wire.faults} of {wire.requests} requests timed out), {len(times)} ticks:"
    )
    print(f"  median {statistics.median(times):.2f} s   p95 {p95:.2f} s   max {times[-1]:.2f} s")


if __name__ == "__main__":
    main()
