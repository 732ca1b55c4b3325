"""A stop is always placeable and always before liquidation, inside a synthetic cascade.

A 5-minute policy trades two contracts through three calm days, then a day-long liquidation
cascade whose volatility is so high that 2.5 daily-volatility units exceed the whole price (the
old code clamped such stops to one tick, which the venue refuses, and let the liquidation cap
return the venue's maximum). The simulated exchange here also enforces a minimum price of 100
ticks (Binance PRICE_FILTER, -4013) and records, for every stop it accepts, the mark and the
position's liquidation price at that moment.

It must show: zero stops refused by the exchange, zero stops at or beyond the liquidation price
(or through the mark), and after every tick every open position protected or closed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, replace
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.backtest.replay import replay
from bot.config.loader import load_config
from bot.domain.enums import OrderPurpose, OrderType
from bot.domain.orders import Order, OrderRequest
from bot.errors import OrderRejected
from bot.instruments import load_instruments
from bot.marketdata.files import discover
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import load_histories, simulation_window

ROOT = Path(__file__).resolve().parents[2]
SOL, XRP = "SOL/USDT:USDT", "XRP/USDT:USDT"
FIVE_MIN = 300_000
START = 1_735_689_600_000  # 2025-01-01


@dataclass(frozen=True, slots=True)
class StopSeen:
    symbol: str
    trigger: D
    mark: D
    liquidation: D | None
    qty: D


class WatchedExchange(SimulatedExchange):
    """The simulated exchange, recording every stop it is asked to place."""

    seen: list[StopSeen]
    refused: list[str]

    def place_order(self, request: OrderRequest) -> Order:
        if not hasattr(self, "seen"):
            self.seen, self.refused = [], []
        if request.type is OrderType.STOP_MARKET:
            pos = self.book.positions[request.symbol]
            self.seen.append(
                StopSeen(
                    request.symbol,
                    request.trigger_price or D(0),
                    self.marks[request.symbol],
                    self.book.liquidation_price(request.symbol, self.marks),
                    pos.qty,
                )
            )
        try:
            return super().place_order(request)
        except OrderRejected as exc:
            if request.purpose is OrderPurpose.STOP_LOSS:
                self.refused.append(f"{request.client_id}: {exc}")
            raise


def cascade(seed: int, price0: float, n_calm: int, n_crash: int, n_after: int) -> np.ndarray:
    """5-minute OHLCV rows: calm, a cascade (3 % moves per bar, drifting down), choppy after."""
    rng = np.random.default_rng(seed)
    sig = np.r_[np.full(n_calm, 0.002), np.full(n_crash, 0.03), np.full(n_after, 0.012)]
    drift = np.r_[np.zeros(n_calm), np.full(n_crash, -0.004), np.zeros(n_after)]
    r = drift + sig * rng.standard_normal(sig.size)
    close = price0 * np.exp(np.cumsum(r))
    open_ = np.r_[price0, close[:-1]]
    spread = np.abs(rng.standard_normal(sig.size)) * sig * np.maximum(open_, close)
    high = np.maximum(open_, close) + spread
    low = np.maximum(np.minimum(open_, close) - spread, np.minimum(open_, close) * 0.5)
    ts = START + FIVE_MIN * np.arange(sig.size)
    return np.column_stack([ts, open_, high, low, close, np.full(sig.size, 1000.0)])


def write(path: Path, rows: np.ndarray, digits: int) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        for row in rows:
            prices = ",".join(f"{x:.{digits}f}" for x in row[1:5])
            fh.write(f"{int(row[0])},{prices},{row[5]:.1f}\n")


def write_funding(path: Path, end_ms: int) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write("timestamp,funding_rate\n")
        for ts in range(START, end_ms, 8 * 3_600_000):
            fh.write(f"{ts},0.0001\n")


POLICY = """
name = "crash_5m"
kind = "vol_target"
timeframe = "5m"
atr_window = 14

[volatility]
estimator = "close_to_close"
window = 48

[leverage]
min = 1
max = 5
target_volatility = 0.8
hysteresis = 0.1

[stop_loss]
kind = "vol"
distance = 2.5

[liquidation]
buffer_vol_units = 2

[funding]
max_annual_cost = 0.5

[limits]
daily_loss = 0.5
max_drawdown = 0.9
"""


CONFIG = """
[account]
name = "crash"
starting_balance = 10000
margin_mode = "isolated"

[[contracts]]
symbol = "SOL/USDT:USDT"
direction = "long"

[[contracts]]
symbol = "XRP/USDT:USDT"
direction = "long"

[data]
dir = "data"

[policy]
file = "crash.toml"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 10
max_notional_per_contract = 1000000
daily_loss_limit = 0.5
max_drawdown = 0.9
stale_data_seconds = 900
max_orders_per_minute = 60

[simulation]
slippage_bps = 2
"""


@pytest.mark.slow
def test_cascade_every_stop_placeable_and_before_liquidation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    n_calm, n_crash, n_after = 3 * 288, 288, 288
    end_ms = START + FIVE_MIN * (n_calm + n_crash + n_after)
    for sym, seed, price0, digits in ((SOL, 7, 150.0, 2), (XRP, 11, 0.52, 4)):
        stem = sym.split("/")[0] + "_USDT_USDT"
        rows = cascade(seed, price0, n_calm, n_crash, n_after)
        write(data / f"{stem}-5m.csv.gz", rows, digits)
        write(data / f"{stem}-5m-mark.csv.gz", rows, digits)
        write_funding(data / f"{stem}-funding.csv.gz", end_ms)
    (tmp_path / "crash.toml").write_text(POLICY)
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(CONFIG)
    config = load_config(cfg_path)
    policy = config.policies[0]
    known = load_instruments("binanceusdm")
    # a minimum price of 100 ticks, as venues publish (Binance PRICE_FILTER minPrice, -4013)
    instruments = {s: replace(known[s], min_price=known[s].tick_size * 100) for s in (SOL, XRP)}
    histories = load_histories(discover(data), (SOL, XRP), policy.timeframe)
    start, end = simulation_window(histories, policy, config)
    result = replay(
        config, policy, histories, instruments, start, end, exchange_type=WatchedExchange
    )
    ex = result.exchange
    assert isinstance(ex, WatchedExchange)
    assert ex.seen, "the policy never placed a stop: the scenario does not test anything"
    assert ex.refused == []
    rejected = [
        e.reason for e in result.store.events if e.kind == "rejected" and "-sl-" in e.reason
    ]
    assert rejected == []
    for s in ex.seen:
        sign = 1 if s.qty > 0 else -1 if s.qty < 0 else 0
        if sign == 0:
            continue  # placed in the same tick before the entry fills: checked below
        assert s.trigger > 0
        assert (s.mark - s.trigger) * sign > 0, f"{s} at or through the mark"
        if s.liquidation is not None:
            assert (s.trigger - s.liquidation) * sign > 0, f"{s} beyond liquidation"
    # the crash happened to the book: positions were cut or closed for lack of room
    reasons = " ".join(d.decision.reason for d in result.store.decisions)
    assert "no stop can rest" in reasons or "size cut" in reasons or "leverage 0" in reasons
    unprotected = [e for e in result.store.events if e.kind == "unprotected"]
    for e in unprotected:  # any incident ended with the position closed in the same check
        assert "closing the position" in e.reason
    for sym in (SOL, XRP):
        pos = ex.book.positions[sym]
        if pos.qty != 0:
            stops = [o for o in ex.fetch_open_orders(sym) if o.purpose is OrderPurpose.STOP_LOSS]
            assert len(stops) == 1
