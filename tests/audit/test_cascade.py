"""The simulation through a liquidation cascade like Binance's of 2025-10-10: last-trade wicks
far below a mark that falls much less, minutes of missing trade candles, funding at its cap
(:mod:`tests.audit.cascade`). After every tick the invariants of :mod:`tests.audit.invariants`
hold; the fills, stops, funding and report behave as the venue's documented rules say."""

from __future__ import annotations

import csv
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.domain.enums import OrderPurpose
from bot.sim.slippage import SlippageModel
from bot.sim.triggers import process_bar
from tests.audit.cascade import (
    BTC_LIKE,
    EVENT_MS,
    MAJOR_ALT,
    THIN_ALT,
    Cascade,
    write_cascade,
)
from tests.audit.harness import ROOT, Outcome, run, write_config
from tests.conftest import long_btc_with_stop

BTC, AVAX, PEPE, DOGE = "BTC/USDT:USDT", "AVAX/USDT:USDT", "1000PEPE/USDT:USDT", "DOGE/USDT:USDT"
HOUR = 3_600_000

STATIC_10X = """
name = "static_10x"
kind = "static"
timeframe = "{tf}"
[volatility]
estimator = "yang_zhang"
window = {window}
[leverage]
min = 10
max = 10
fixed = 10
[stop_loss]
kind = "percent"
distance = 4
[liquidation]
buffer_vol_units = 0
[funding]
max_annual_cost = 5
[limits]
daily_loss = 0.9
max_drawdown = 0.95
[reentry]
cooldown = "0"
"""


def _policy(name: str, tf: str = "1h") -> str:
    if name == "static_10x":
        return STATIC_10X.format(tf=tf, window=168 if tf == "1h" else 288)
    text = (ROOT / "policies" / f"{name}.toml").read_text()
    return text.replace('timeframe = "1h"', f'timeframe = "{tf}"')


def simulate(
    tmp: Path,
    symbol: str,
    price0: float,
    cascade: Cascade,
    *,
    policy: str = "static_3x",
    tf: str = "1h",
    **config: object,
) -> Outcome:
    write_cascade(tmp / "data", symbol, price0, cascade, seed=3)
    wide = {"daily_loss": 0.9, "max_drawdown": 0.95, "max_lev": 20, "max_gross": 25}
    settings = {"start": "2025-01-08", "stale": 600, "max_notional": 1e9}
    settings |= (wide if policy == "static_10x" else {}) | config
    path = write_config(tmp, tmp / "data", [symbol], policy_text=_policy(policy, tf), **settings)  # type: ignore[arg-type]
    return run(path)


def assert_clean(outcome: Outcome) -> None:
    assert outcome.checker.positions_seen > 0
    assert outcome.problems == [], "\n".join(outcome.problems[:10])


def _stop_fills(outcome: Outcome) -> list[tuple[D, D]]:
    """(fill price, trigger) of every stop-loss that filled."""
    ex = outcome.result.exchange
    out = []
    for f in ex.fills:
        if f.purpose is OrderPurpose.STOP_LOSS:
            trigger = ex.orders[f.client_id].trigger_price
            assert trigger is not None
            out.append((f.price, trigger))
    return out


# --- fills never outside the candle -------------------------------------------------------


def test_slippage_never_takes_a_stop_fill_below_the_candles_low(instruments) -> None:
    """A stop triggered just above a candle's low: the fill is a trade of that candle, so 10 bps
    of slippage stop at the low (it was 56952.99, below any price traded)."""
    ex = long_btc_with_stop(instruments, D("57010"), slippage_bps="10")
    before = ex.slippage_paid
    process_bar(ex, BTC, ex.clock.now_ms(), D(59000), D(59500), D(57000), D(57500), trades=True)
    assert ex.fills[-1].price == D(57000)
    assert ex.slippage_paid - before == D("0.1") * D(10)  # what the fill paid: 10 of 57010


@pytest.mark.parametrize("volume", ["0.4", "400000"])
def test_a_large_stop_still_pays_its_own_impact_past_the_candles_low(
    instruments, volume: str
) -> None:
    """Only the part of the slippage that stands for the candle's move and the spread stops at
    its low: an order large against the candle's volume would itself have printed a new low,
    so the square-root impact term still applies beyond it (else a large book's stops filled at
    the low a small one could get: an optimistic backtest)."""
    amount = D("0.1")
    ex = long_btc_with_stop(
        instruments,
        D("57010"),
        amount=amount,
        slippage_bps="10",
        model=SlippageModel(floor=D(0), range_fraction=D(0), impact=D(1)),
    )
    ex.candle_volume[BTC] = D(volume)  # 0.4: a thin minute, 0.1 is a quarter of what traded
    process_bar(ex, BTC, ex.clock.now_ms(), D(59000), D(59500), D(57000), D(57500), trades=True)
    impact = ex.slippage_parts(BTC, amount, inside=True)[1]
    # The 10 bps floor stops at the low (57010 -> 57000), the impact goes beyond it, and the
    # fill is on the tick (0.1) below that.
    assert ex.fills[-1].price == instruments[BTC].floor_price(D(57000) * (1 - impact))
    if volume == "0.4":
        assert impact > D("0.02")  # about 2 %: 55,792, far below the low
    else:
        assert impact < D("0.0001")  # a small order in a deep minute: at the low, to 1 bp


def test_a_stop_filling_in_a_cascade_wick_stays_inside_the_candle(tmp_path: Path) -> None:
    """10x long, BTC-like cascade on 1m last-trade candles: every stop fill lies within the
    1-minute candle it filled in."""
    outcome = simulate(tmp_path, BTC, 60_000.0, BTC_LIKE, policy="static_10x")
    assert_clean(outcome)
    fills = [f for f in outcome.result.exchange.fills if f.purpose is OrderPurpose.STOP_LOSS]
    assert fills
    rows = _candles(tmp_path / "data" / "BTC_USDT_USDT-1m.csv.gz")
    for f in fills:
        low, high = rows[f.timestamp_ms]
        assert D(repr(low)) <= f.price <= D(repr(high)), (f, low, high)


def _candles(path: Path) -> dict[int, tuple[float, float]]:
    import gzip

    with gzip.open(path, "rt") as fh:
        return {
            int(r["timestamp"]): (float(r["low"]), float(r["high"])) for r in csv.DictReader(fh)
        }


# --- mark against last ------------------------------------------------------------------


def test_a_mark_triggered_stop_fills_against_the_last_price_wick_of_its_hour(
    tmp_path: Path,
) -> None:
    """Hourly mark candles, 1-minute last-trade candles: the stop triggers on the mark (-35 %)
    and fills against the hour's last-price path, which wicked -85 % (it filled at its trigger
    less 3.6 % of the mark candle's range, as if the book had followed the mark)."""
    outcome = simulate(tmp_path, PEPE, 0.01, THIN_ALT, trigger_source="mark", balance=100_000)
    assert_clean(outcome)
    assert outcome.result.trigger_sources[PEPE] == "mark"
    [(price, trigger)] = _stop_fills(outcome)
    assert price < trigger * D("0.90"), (price, trigger)


WICK_ONLY = Cascade(trade_fall=0.5, mark_fall=0.02, gap_minutes=0, funding_cap=0.02)


def test_a_mark_triggered_stop_ignores_a_wick_the_mark_does_not_follow(tmp_path: Path) -> None:
    """Last price -50 % for two minutes, mark -2 %: the mark-triggered stop (5 % away) rests;
    the last-triggered one fires inside the wick. The position then held through the cascade
    receives the capped funding (-2 %: shorts pay longs) at the next settlement."""
    mark = simulate(tmp_path / "mark", DOGE, 0.25, WICK_ONLY, trigger_source="mark")
    last = simulate(tmp_path / "last", DOGE, 0.25, WICK_ONLY, trigger_source="last")
    assert_clean(mark)
    assert_clean(last)
    assert _stop_fills(mark) == []
    [(price, trigger)] = _stop_fills(last)
    assert D("0.125") <= price <= trigger
    settle = EVENT_MS - EVENT_MS % (8 * HOUR) + 8 * HOUR
    [paid] = [e for e in mark.result.exchange.events if e.kind == "funding" and e.ts_ms == settle]
    assert paid.amount < 0  # the long receives
    assert "rate -0.02" in paid.detail


def test_by_default_the_mark_decides_and_the_trade_minutes_time_the_stop(tmp_path: Path) -> None:
    """trigger_source "auto" on 1-minute trade candles beside hourly mark candles: the stops
    triggered on the trade candles, so a two-minute -50 % wick the mark (-2 %) never followed
    stopped the long out at the wick, where the venue, which triggers on the mark, kept it. Now
    each trade minute is held within its hour's mark range: the wick triggers nothing; a
    cascade the mark follows (-35 %) still fires the stop, in its hour, filling against the
    wick of the minute the trades reached it."""
    wick = simulate(tmp_path / "wick", DOGE, 0.25, WICK_ONLY)
    assert_clean(wick)
    assert wick.result.trigger_sources[DOGE] == "mark"
    assert any(
        "held within the range of their 1h mark" in n for n in wick.result.data_selection[DOGE]
    )
    assert _stop_fills(wick) == []
    crash = simulate(tmp_path / "crash", PEPE, 0.01, THIN_ALT, balance=100_000)
    assert_clean(crash)
    [(price, trigger)] = _stop_fills(crash)
    assert price < trigger
    [fill] = [f for f in crash.result.exchange.fills if f.purpose is OrderPurpose.STOP_LOSS]
    assert EVENT_MS <= fill.timestamp_ms < EVENT_MS + HOUR


def test_an_order_inside_a_trade_data_gap_fills_at_the_crash_not_at_the_hour_old_mark(
    tmp_path: Path,
) -> None:
    """5m decisions, hourly mark triggers, trade candles missing 21:02-21:06: the close the
    engine sent at 21:05 filled at the mark of 21:00 (the hourly bar still open), 26.30, above
    every price traded since the crash began, and booked a profit on a long that had lost 20 %.
    It fills at the last price traded before the gap."""
    outcome = simulate(tmp_path, AVAX, 25.0, MAJOR_ALT, tf="5m", trigger_source="mark")
    assert_clean(outcome)
    trade = _candles(tmp_path / "data" / "AVAX_USDT_USDT-1m.csv.gz")
    highest_since = max(h for t, (_, h) in trade.items() if EVENT_MS < t <= EVENT_MS + HOUR)
    during = [
        f
        for f in outcome.result.exchange.fills
        if EVENT_MS < f.timestamp_ms <= EVENT_MS + HOUR and f.purpose is not OrderPurpose.ENTRY
    ]
    assert during
    for f in during:
        assert f.price <= D(repr(highest_since)), f
        assert f.realized_pnl < 0, f


# --- loss limits, re-entry, stale data ---------------------------------------------------


def test_the_daily_loss_halt_follows_the_stop_and_nothing_reenters(tmp_path: Path) -> None:
    outcome = simulate(tmp_path, AVAX, 25.0, MAJOR_ALT, balance=100)
    assert_clean(outcome)
    [(_, _)] = _stop_fills(outcome)
    ex = outcome.result.exchange
    stop_ts = next(f.timestamp_ms for f in ex.fills if f.purpose is OrderPurpose.STOP_LOSS)
    halts = [e for e in outcome.result.store.events if e.kind == "state" and "halted" in e.reason]
    assert halts
    assert stop_ts <= halts[0].ts_ms <= stop_ts + HOUR
    # The 24h cooldown: no entry for a day after the stop.
    assert not [
        f
        for f in ex.fills
        if f.purpose is OrderPurpose.ENTRY and stop_ts < f.timestamp_ms < stop_ts + 24 * HOUR
    ]


LONG_GAP = Cascade(trade_fall=0.40, mark_fall=0.20, gap_minutes=25)


def test_a_trade_data_gap_in_the_cascade_is_said_and_takes_no_new_exposure(tmp_path: Path) -> None:
    outcome = simulate(
        tmp_path, AVAX, 25.0, LONG_GAP, policy="static_10x", tf="5m", trigger_source="mark"
    )
    assert_clean(outcome)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # data_gaps lists the trigger (mark) candles' gaps; the trade candles' is in the selection.
    assert any("2025-01-09 21:02 .. 2025-01-09 21:27" in n for n in report["data_selection"][AVAX])
    assert report["stale_hours"][AVAX] > 0
    gap_from, gap_to = EVENT_MS + 2 * 60_000, EVENT_MS + 27 * 60_000
    assert not [
        f
        for f in outcome.result.exchange.fills
        if f.purpose is OrderPurpose.ENTRY and gap_from + 600_000 < f.timestamp_ms <= gap_to
    ]


# --- every variant: invariants, report against the CSVs, determinism ---------------------


VARIANTS = [
    # (symbol, price, cascade, policy, margin mode, side, balance, trigger source, exchange)
    (BTC, 60_000.0, BTC_LIKE, "vol_target", "cross", "long", 10_000, "auto", "binanceusdm"),
    (BTC, 60_000.0, BTC_LIKE, "static_10x", "cross", "long", 1_000_000, "mark", "binanceusdm"),
    (AVAX, 25.0, MAJOR_ALT, "conservative", "isolated", "short", 100, "last", "binanceusdm"),
    (AVAX, 25.0, MAJOR_ALT, "static_10x", "isolated", "short", 10_000_000, "auto", "binanceusdm"),
    (PEPE, 0.01, THIN_ALT, "static_10x", "cross", "long", 100_000, "mark", "binanceusdm"),
    (PEPE, 0.01, THIN_ALT, "static_3x", "isolated", "long", 10_000, "last", "binanceusdm"),
    (BTC, 60_000.0, THIN_ALT, "static_10x", "isolated", "long", 50_000, "auto", "bybit"),
    (BTC, 60_000.0, MAJOR_ALT, "vol_target", "cross", "short", 10_000, "mark", "bybit"),
]


@pytest.mark.parametrize(
    ("symbol", "price0", "cascade", "policy", "mode", "side", "balance", "trigger", "venue"),
    VARIANTS,
)
def test_invariants_and_report_hold_through_the_cascade(
    tmp_path: Path,
    symbol: str,
    price0: float,
    cascade: Cascade,
    policy: str,
    mode: str,
    side: str,
    balance: int,
    trigger: str,
    venue: str,
) -> None:
    outcome = simulate(
        tmp_path,
        symbol,
        price0,
        cascade,
        policy=policy,
        margin_mode=mode,
        direction=side,
        balance=balance,
        trigger_source=trigger,
        exchange=venue,
    )
    assert_clean(outcome)
    ex = outcome.result.exchange
    assert ex.book.wallet >= 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    with (out / "events.csv").open() as fh:
        events = list(csv.DictReader(fh))
    with (out / "equity.csv").open() as fh:
        drawdowns = [float(r["drawdown"]) for r in csv.DictReader(fh)]
    assert report["n_liquidations"] == sum(1 for e in events if e["kind"] == "liquidation")
    insured = sum(float(e["amount"]) for e in events if e["kind"] == "insurance")
    assert report["loss_beyond_wallet"] == pytest.approx(insured, abs=0.01)
    assert report["max_drawdown"] == pytest.approx(max(drawdowns), abs=1e-5)
    assert report["slippage_paid"] == pytest.approx(float(ex.slippage_paid), abs=0.01)
    assert "auto-deleveraging" in report["not_simulated"]


def test_a_cascade_run_is_deterministic(tmp_path: Path) -> None:
    a = simulate(tmp_path / "a", PEPE, 0.01, THIN_ALT, policy="static_10x", margin_mode="cross")
    b = simulate(tmp_path / "b", PEPE, 0.01, THIN_ALT, policy="static_10x", margin_mode="cross")
    ra = json.loads((tmp_path / "a" / "out" / "report.json").read_text())
    rb = json.loads((tmp_path / "b" / "out" / "report.json").read_text())
    for r in (ra, rb):
        r.pop("elapsed_seconds")
    assert ra == rb
    assert a.result.exchange.fills == b.result.exchange.fills
