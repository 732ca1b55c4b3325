"""How fast the dashboard answers on an account with a year of hourly history. Prints figures;
asserts nothing. Target: every page < 100 ms.

The account: a short paper replay of the bundled data (positions, resting stops, the paper
exchange's state), then a year of hourly history written straight into the same SQLite
database: 8,760 equity snapshots and position snapshots, a decision per contract per hour
(3 contracts: 26,280), ~10 orders and ~3 fills a day, a few risk events a day. Each page is
requested through FastAPI's TestClient (the whole application: routing, store queries,
templates), ``--repeat`` times after one warm-up; the median and the 95th percentile are
printed. The reference is ``/static/style.css`` in the same run: the application's fixed cost
on this machine at this moment (the machine may be shared: compare the pages to it).

Usage: python benchmarks/dashboard_pages.py [--repeat 30] [--days 365]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from sqlmodel import Session  # noqa: E402

from bot.bootstrap import build_paper, open_store  # noqa: E402
from bot.clock import SimClock  # noqa: E402
from bot.config.loader import load_config  # noqa: E402
from bot.dashboard.account import AccountSource  # noqa: E402
from bot.dashboard.app import create_app  # noqa: E402
from bot.dashboard.security import Guard  # noqa: E402
from bot.store import tables as t  # noqa: E402

HOUR = 3_600_000
START = 1_748_822_400_000  # 2025-06-02T00:00Z, where the bundled data starts
PAGES = [
    "/static/style.css",
    "/",
    "/contracts/BTC-USDT-USDT",
    "/journal",
    "/journal?symbol=ETH/USDT:USDT&since=2025-03-01T00:00",
    "/metrics",
    "/healthz",
]


def write_config(directory: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    text = text.replace(
        'database_url = "sqlite:///bot-state.db"',
        f'database_url = "sqlite:///{directory / "state.db"}"',
    )
    text = text.replace('log_dir = "logs"', f'log_dir = "{directory / "logs"}"')
    path = directory / "config.toml"
    path.write_text(text)
    return path


def build(directory: Path, days: int) -> Path:
    config_path = write_config(directory)
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    for _ in range(6):
        runner.tick()
        clock.advance_to(clock.now_ms() + HOUR)
    paper.save()
    snap = store.latest_positions()
    positions = snap[1] if snap else []
    symbols = [c.symbol for c in config.contracts]
    rng = random.Random(7)
    first = START - days * 24 * HOUR
    equity = 10_000.0
    with Session(store.engine) as session:
        for h in range(days * 24):
            ts = first + h * HOUR
            equity *= 1 + rng.gauss(0, 0.004)
            eq = Decimal(f"{equity:.6f}")
            session.add(
                t.EquityRow(
                    ts_ms=ts,
                    wallet=eq,
                    unrealized_pnl=Decimal(0),
                    equity=eq,
                    state="active",
                )
            )
            header = t.PositionSnapshotRow(ts_ms=ts)
            session.add(header)
            session.flush()
            for p in positions:
                session.add(t.position_row(header.id or 0, p))
            for sym in symbols:
                session.add(
                    t.DecisionRow(
                        tick_id=f"b{h}",
                        ts_ms=ts,
                        symbol=sym,
                        direction=1,
                        target_leverage=Decimal("1.12"),
                        target_qty=Decimal("0.052"),
                        stop_loss=Decimal("100714.3"),
                        take_profit=None,
                        reason=f"{sym[:3]}: vol 0.35 <= target 0.40 -> leverage 1.14; "
                        "within hysteresis 0.15 -> keep 1.12; SL 2.5 vol",
                        current_qty=Decimal("0.052"),
                        current_leverage=Decimal(3),
                        mark_price=Decimal("105133.5"),
                        volatility=Decimal("0.35"),
                    )
                )
            if h % 3 == 0:
                sym = symbols[h % len(symbols)]
                session.add(
                    t.OrderRow(
                        client_id=f"main-rd-bench-{h}",
                        symbol=sym,
                        side="sell",
                        type="market",
                        purpose="rd",
                        amount=Decimal("0.001"),
                        reduce_only=True,
                        status="filled",
                        filled=Decimal("0.001"),
                        created_ms=ts,
                        updated_ms=ts,
                    )
                )
            if h % 8 == 0:
                session.add(
                    t.FillRow(
                        client_id=f"main-rd-bench-{h}",
                        symbol=symbols[0],
                        side="sell",
                        qty=Decimal("0.001"),
                        price=Decimal("105000.1"),
                        fee=Decimal("0.05"),
                        ts_ms=ts,
                        purpose="rd",
                        realized_pnl=Decimal("1.5"),
                    )
                )
                session.add(
                    t.RiskEventRow(
                        ts_ms=ts, kind="reconcile", symbol=None, state="active", reason="bench"
                    )
                )
        session.commit()
    store.close()
    return config_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        config_path = build(Path(tmp), args.days)
        built = time.perf_counter() - t0
        config = load_config(config_path)
        store = open_store(config, create=True)
        equity = store.latest_equity()
        assert equity is not None
        app = create_app(
            {config.account.name: AccountSource(config, store)},
            store=store,
            guard=Guard("benchmark-token-0123456789"),
            clock=SimClock(equity.ts_ms + 60_000),
        )
        client = TestClient(app, base_url="http://127.0.0.1")
        print(f"account: {args.days} days of hourly history, built in {built:.1f} s")
        print(f"{'page':<58} {'median ms':>10} {'p95 ms':>8} {'bytes':>8}")
        for page in PAGES:
            first = client.get(page)
            if first.status_code not in (200, 503):
                raise SystemExit(f"{page}: HTTP {first.status_code}: {first.text[:200]}")
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                client.get(page)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            label = page + ("  (reference)" if page.startswith("/static") else "")
            median = statistics.median(times)
            print(f"{label:<58} {median:>10.1f} {p95:>8.1f} {len(first.content):>8}")
        store.close()


if __name__ == "__main__":
    main()
