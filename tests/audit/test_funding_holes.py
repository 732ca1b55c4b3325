"""A short hole in an hourly funding file (one or two settlements missing) is a hole, not a
change of the settlement interval. Before, 1 h then a 2 h step read as a switch to a 2-hourly
schedule: the rate after the hole was taken to cover 2 h (the funding cost the policy reads
halved at that settlement, and averaged low for the next ones), and the report said nothing of
the missing settlement. A hole is now a step that is a whole multiple of the interval around
it; an interval change is a step the following settlements keep. The simulator charges what
the file holds and nothing for a missing settlement (none is invented), and says so."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np

from bot.marketdata.candles import Candles, FundingSeries, settlement_step
from bot.sim.events import SimEventKind
from bot.sim.history import ContractHistory, HistoricalMarket, _funding_gap, _segment_starts
from tests.audit.harness import run, write_config
from tests.audit.market import HOUR, T0, walk, write_market
from tests.audit.scenarios import BTC, ETH


def _series(steps_h: list[int]) -> FundingSeries:
    ts = T0 + np.r_[0, np.cumsum(steps_h)].astype(np.int64) * HOUR
    return FundingSeries(ts, np.full(len(ts), 1e-4), ETH, "f")


def test_a_missing_hourly_settlement_is_a_hole_and_a_kept_step_an_interval() -> None:
    one_missing = _series([1, 1, 2, 1, 1])
    assert one_missing.step_at(3) == (1.0, 1)  # the settlement after the 2 h step
    assert one_missing.settlement_hours_at(3) == 1.0
    assert one_missing.missing_before(3) == 1
    two_missing = _series([1, 1, 3, 1])
    assert two_missing.step_at(3) == (1.0, 2)
    switched = _series([1, 1, 2, 2, 2])  # the venue moved the contract to 2 h: kept
    assert switched.step_at(3) == (2.0, 0)
    assert switched.step_at(4) == (2.0, 0)
    four_hourly = _series([4, 4, 8, 4, 4])  # one 4-hourly settlement missing
    assert four_hourly.step_at(3) == (4.0, 1)
    to_eight = _series([4, 4, 8, 8, 8])  # a switch to 8 h
    assert to_eight.step_at(3) == (8.0, 0)
    eight_hourly = _series([8, 8, 24, 8])  # two 8-hourly settlements missing
    assert eight_hourly.step_at(3) == (8.0, 2)
    assert settlement_step(8.0, 8.0, 8.0) == (8.0, 0)
    assert settlement_step(None, 8.0, None) == (8.0, 0)
    # times stamped a few milliseconds off the hour are read to the minute
    assert settlement_step(1.0, 2.0 + 1e-6, 1.0) == (1.0, 1)


def test_the_funding_view_after_a_missing_hourly_settlement_stays_hourly() -> None:
    funding = _series([1] * 10 + [2] + [1] * 10)  # 0.01 % an hour, one settlement missing
    trade = walk(30 * 12, 3_000.0, seed=31)
    last = Candles(
        trade.ts, trade.open, trade.high, trade.low, trade.close, trade.volume, 300_000, ETH,
        "trade", "t",
    )  # fmt: skip
    decision = last.resample(HOUR)
    market = HistoricalMarket(
        {ETH: ContractHistory(ETH, decision, _segment_starts(decision), last, last, funding)}
    )
    after_hole = int(funding.ts[11])  # the settlement two hours after the one before
    for now in (after_hole, after_hole + HOUR, after_hole + 2 * HOUR):
        info = market.funding(ETH, now, 3)
        assert info.interval_hours == Decimal(1), now  # read as 2 h before
        assert abs(info.annualized - Decimal("0.876")) < Decimal("0.0001"), now


def test_a_hole_in_hourly_funding_is_reported_and_not_charged(tmp_path: Path) -> None:
    warm = 169  # static_3x: its volatility window (168) + 1 candles before the first decision
    run_hours = 48
    trade = walk(warm + run_hours, 60_000.0, tf_ms=HOUR, vol_per_bar=0.002, seed=7)
    start = int(trade.ts[warm])
    ts = np.arange(T0 + HOUR, int(trade.ts[-1]) + HOUR, HOUR, dtype=np.int64)
    missing = [start + 10 * HOUR, start + 20 * HOUR, start + 21 * HOUR]
    ts = ts[~np.isin(ts, missing)]
    data = tmp_path / "data"
    write_market(data, BTC, trade, trade.copy(), (ts, np.full(len(ts), 1e-4)))
    outcome = run(write_config(tmp_path, data, [BTC], policy="static_3x"))
    result = outcome.result
    [note] = [n for n in result.data_selection[BTC] if "hole(s) in the settlements" in n]
    assert note.startswith(
        f"{BTC} funding: 2 hole(s) in the settlements, 3 h without funding (3 settlement(s) "
        "missing), the longest 2025-01-08 20:00 .. 2025-01-08 23:00"
    ), note
    assert "not charged at any rate, none is invented" in note
    # what the simulator charged: the file's settlements while the position was held, none more
    charged = sorted(
        e.ts_ms
        for e in result.exchange.events
        if e.kind is SimEventKind.FUNDING and e.symbol == BTC
    )
    assert charged
    assert not set(charged) & set(missing)
    held_from = charged[0]
    assert charged == [int(t) for t in ts if held_from <= t < result.end_ms]


def test_an_hourly_file_that_stops_early_is_said_at_its_own_interval() -> None:
    # Hourly settlements that stop at 16:00 before a window ending at midnight: seven (17:00 ..
    # 23:00) are missing, nothing is paid or received for them, and nothing said so: the
    # coverage test allowed 8 h at each end whatever the file's interval. An 8-hourly file
    # stopping at 16:00 misses none; one starting late is counted at its own interval too.
    trade = walk(10 * 24, 3_000.0, tf_ms=HOUR, seed=33)
    last = Candles(
        trade.ts, trade.open, trade.high, trade.low, trade.close, trade.volume, HOUR, ETH,
        "trade", "t",
    )  # fmt: skip
    lo, hi = T0 + 2 * 24 * HOUR, T0 + 10 * 24 * HOUR
    hourly = np.arange(T0 + HOUR, hi - 8 * HOUR + 1, HOUR, dtype=np.int64)
    notes = _funding_gap(
        ETH, FundingSeries(hourly, np.full(len(hourly), 1e-4), ETH, "f"), lo, hi, last
    )
    assert notes == [
        f"{ETH} funding: settlements 2025-01-01 01:00 .. 2025-01-10 16:00 do not cover "
        "2025-01-03 00:00 .. 2025-01-11 00:00, 7 settlement(s) missing at the end (at the "
        "file's 1 h interval there): no funding is paid or received outside them"
    ]
    eight = np.arange(T0, hi - 8 * HOUR + 1, 8 * HOUR, dtype=np.int64)
    assert (
        _funding_gap(ETH, FundingSeries(eight, np.full(len(eight), 1e-4), ETH, "f"), lo, hi, last)
        == []
    )
    late = np.arange(lo + 3 * HOUR, hi, HOUR, dtype=np.int64)
    [note] = _funding_gap(
        ETH, FundingSeries(late, np.full(len(late), 1e-4), ETH, "f"), lo, hi, last
    )
    assert "2 settlement(s) missing at the start (at the file's 1 h interval there)" in note
