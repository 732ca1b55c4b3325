"""Funding settlement stamps with the venues' raw jitter, and settlements off the bars' opens.

The raw stamps of a settlement carry milliseconds of jitter (Binance ``fundingTime``
08:00:00.011; the shared data README: "the exchanges' raw stamps carry up to ~30 ms of
jitter"). Loaded as they were, a settlement at 08:00:00.011 came after the simulation's 08:00
decision tick (a position that tick opened paid it, one it closed escaped it) and was priced at
the close of the 08:00 mark candle, an hour later, instead of its open; a settlement kept twice
(08:00:00.000 from one dump, 08:00:00.007 from another) was charged twice. The loader now takes
every stamp to its minute and keeps one row per settlement (``bot/marketdata/files.py``), and a
settlement that lies inside a bar is priced at that bar's open, never its close
(``bot/sim/triggers.py`` ``_settle``)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np

from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.sim.events import SimEventKind
from bot.sim.triggers import FundingTape, TriggerSeries, advance
from tests.audit.harness import Outcome, run, write_config
from tests.audit.market import HOUR, T0, walk, write_market
from tests.audit.scenarios import BTC
from tests.conftest import make_exchange

WARM = 169  # static_3x: its volatility window (168) + 1 candles before the first decision


def _simulate(tmp: Path, name: str, funding: tuple[np.ndarray, np.ndarray]) -> Outcome:
    trade = walk(WARM + 48, 60_000.0, tf_ms=HOUR, vol_per_bar=0.004, seed=5)
    data = tmp / name / "data"
    write_market(data, BTC, trade, trade.copy(), funding)
    return run(write_config(tmp / name, data, [BTC], policy="static_3x"))


def _charges(outcome: Outcome) -> list[tuple[int, Decimal]]:
    return [
        (e.ts_ms, e.amount)
        for e in outcome.result.exchange.events
        if e.kind is SimEventKind.FUNDING and e.symbol == BTC
    ]


def test_jittered_and_repeated_settlement_stamps_simulate_as_the_minute(tmp_path: Path) -> None:
    # Hourly settlements, longs pay: the first decision tick (an hour's close) opens the long
    # at a settlement's time, so the order of the two at that instant shows.
    hours = np.arange(T0 + HOUR, T0 + (WARM + 48) * HOUR, HOUR, dtype=np.int64)
    rates = np.full(hours.size, 1e-4)
    on_minute = _simulate(tmp_path, "minute", (hours, rates))
    # The same settlements as a venue stamps them: 11 ms late, or 9 ms early (every third),
    # and one of them twice (a second dump's copy 7 ms after the first, the same rate).
    jitter = np.where(np.arange(hours.size) % 3 == 0, -9, 11)
    twice = WARM + 11  # a settlement stamped early: its copy comes after it
    ts = np.insert(hours + jitter, twice + 1, hours[twice] + 7)
    jittered = _simulate(tmp_path, "jittered", (ts, np.insert(rates, twice + 1, 1e-4)))
    assert on_minute.problems == []
    assert jittered.problems == []
    charges = _charges(on_minute)
    assert len(charges) > 40
    # the first tick at a settlement opens the long after it: not charged then
    assert charges[0][0] > int(on_minute.result.exchange.fills[0].timestamp_ms)
    assert _charges(jittered) == charges
    assert jittered.result.exchange.funding_paid == on_minute.result.exchange.funding_paid
    assert jittered.result.equity[-1] == on_minute.result.equity[-1]


def test_a_settlement_inside_a_bar_is_priced_at_its_open_not_its_close() -> None:
    # A long of 1 BTC; the hourly mark bar from T0 opens at 60,000 and closes at 58,000; a
    # settlement of 0.1 % at T0 + 1 min lies inside it (a stamp taken to its minute, on bars
    # longer than a minute). The account is moved past that bar before the settlement (it had
    # no event): priced at the mark the account then held, the bar's close, the charge used a
    # price from up to a bar later. The bar's open is the mark of that instant's bar.
    ex, _ = make_exchange(load_instruments("binanceusdm"), balance="100000")
    ex.marks[BTC] = ex.lasts[BTC] = Decimal(60000)
    ex.set_leverage(BTC, 2)
    ex.place_order(
        OrderRequest(
            "e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, Decimal(1), False
        )
    )
    bars = np.array([T0, T0 + HOUR], dtype=np.int64)
    series = {
        BTC: TriggerSeries(
            bars,
            np.array([60000.0, 58000.0]),
            np.array([60100.0, 58100.0]),
            np.array([57900.0, 57900.0]),
            np.array([58000.0, 58000.0]),
            HOUR,
            "mark",
        )
    }
    tapes = {BTC: FundingTape(np.array([T0 + 60_000], dtype=np.int64), np.array([0.001]))}
    assert advance(ex, series, tapes, T0 + 2 * HOUR) is None
    charged = [(e.ts_ms, e.amount) for e in ex.events if e.kind == "funding"]
    assert charged == [(T0 + 60_000, Decimal("60"))]  # 1 x 60,000 x 0.1 %
