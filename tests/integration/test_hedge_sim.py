"""The hedge leg in the dry-run simulation, on synthetic markets written as data files.

* A market where every contract falls together (isolated and cross margin): the hedged book's
  drawdown is the unhedged one's times (1 - hedge ratio), within 1 % of equity (fees, rounding
  to the step and the small oscillation before the fall).
* Cash and carry (spot BTC, short BTC perpetual): the account + spot earn exactly the funding in
  the data minus the fees.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bot.backtest.hedged import hedge_report, run_with_and_without_hedge
from bot.backtest.metrics import max_drawdown, summarize
from bot.backtest.replay import override, run_simulation
from bot.catalogue import instrument_to_json
from bot.cli.app import app
from bot.config.loader import load_config
from bot.domain.enums import OrderSide
from bot.errors import ConfigError
from bot.instruments import load_instruments

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
T0 = 1_748_736_000_000  # 2025-06-01 00:00 UTC
BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
BASE = {BTC: 50_000.0, ETH: 2_500.0, SOL: 100.0}


def write_market(
    folder: Path, path: np.ndarray, funding_rate: float = 0.0, symbols: tuple[str, ...] = ()
) -> None:
    """Hourly candles (last and mark identical) following ``path`` (price / base price) for
    every symbol, and a funding file settling ``funding_rate`` every 8 hours."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(path)
    ts = T0 + np.arange(n, dtype=np.int64) * HOUR
    for sym in symbols or tuple(BASE):
        stem = sym.replace("/", "_").replace(":", "_")
        close = np.round(BASE[sym] * path, 2)
        open_ = np.concatenate([[close[0]], close[:-1]])
        rows = ["timestamp,open,high,low,close,volume"]
        for t, o, c in zip(ts.tolist(), open_.tolist(), close.tolist(), strict=True):
            rows.append(f"{t},{o:.2f},{max(o, c):.2f},{min(o, c):.2f},{c:.2f},1.0")
        text = "\n".join(rows) + "\n"
        (folder / f"{stem}-1h.csv").write_text(text)
        (folder / f"{stem}-1h-mark.csv").write_text(text)
        fund = ["timestamp,funding_rate"]
        fund += [f"{t},{funding_rate}" for t in ts[::8].tolist()]
        (folder / f"{stem}-funding.csv").write_text("\n".join(fund) + "\n")


POLICY = """
name = "static_hedged"
kind = "static"
timeframe = "1h"
atr_window = 14
[volatility]
estimator = "close_to_close"
window = 24
[leverage]
min = {lev}
max = {lev}
fixed = {lev}
hysteresis = 0.6
[stop_loss]
kind = "percent"
distance = {stop}
[liquidation]
buffer_vol_units = 0
[funding]
max_annual_cost = 5
[limits]
daily_loss = 0.9
max_drawdown = 0.9
[orders]
rebalance_tolerance = 0.6
[hedge]
instruments = ["BTC/USDT:USDT"]
beta_window = 48
beta_shrinkage = 0.3
target_net_exposure = {target}
band = {band}
"""

CONFIG = """
[account]
name = "t"
starting_balance = 10000
margin_mode = "{mode}"
{contracts}
{spot}
[data]
dir = "data"
[policy]
file = "policy.toml"
[risk]
max_leverage_per_contract = 10
max_gross_leverage = 10
max_notional_per_contract = 1000000
daily_loss_limit = 0.9
max_drawdown = 0.9
stale_data_seconds = 7200
max_orders_per_minute = 100
[simulation]
{simulation}
"""


def setup(
    tmp: Path,
    path: np.ndarray,
    *,
    contracts: str,
    spot: str = "",
    rate: float = 0.0,
    lev: str = "1",
    mode: str = "isolated",
    simulation: str = "slippage_bps = 0",
    **policy: str,
) -> Path:
    write_market(tmp / "data", path, rate)
    (tmp / "policy.toml").write_text(POLICY.format(lev=lev, **policy))
    cfg = tmp / "config.toml"
    cfg.write_text(
        CONFIG.format(
            contracts=textwrap.dedent(contracts), spot=spot, mode=mode, simulation=simulation
        )
    )
    return cfg


def oscillation(n: int) -> np.ndarray:
    # Small identical moves for every contract: the beta regression sees variance, and the
    # raw beta of each contract to BTC is exactly 1.
    return np.asarray(1.0 + 0.004 * np.sin(np.arange(n) * 0.7), dtype=np.float64)


LONG_ETH_SOL = """
[[contracts]]
symbol = "ETH/USDT:USDT"
direction = "long"
[[contracts]]
symbol = "SOL/USDT:USDT"
direction = "long"
"""


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_hedged_drawdown_is_smaller_by_the_hedge_ratio(tmp_path: Path, mode: str) -> None:
    calm = oscillation(80)
    fall = calm[-1] * np.linspace(1.0, 0.85, 31)[1:]  # every contract falls 15 % together
    path = np.concatenate([calm, fall, np.full(10, fall[-1])])
    cfg = setup(
        tmp_path,
        path,
        contracts=LONG_ETH_SOL,
        lev="1.5",
        mode=mode,
        stop="20",
        target="0.5",
        band="0.25",
    )
    config = load_config(cfg)
    run = run_with_and_without_hedge(config, config.policies[0])
    hedged, unhedged = run.hedged, run.unhedged
    assert unhedged is not None
    # The hedge ratio as held when the fall starts: hedge beta-delta over the book's.
    fall_start = T0 + 80 * HOUR
    rec = next(r for r in hedged.hedge_log if r.ts_ms >= fall_start)
    ratio = float((rec.book_beta_delta - rec.net_after) / rec.book_beta_delta)
    # Book 1.5x equity (two sleeves at 1.5x each on half the equity), target 0.5x:
    # the hedge carries (1.5 - 0.5) / 1.5 of the book.
    assert abs(ratio - 2 / 3) < 0.01
    dd_h = max_drawdown(hedged.equity)
    dd_u = max_drawdown(unhedged.equity)
    assert dd_u > 0.2  # the unhedged book (1.5x equity long) lost about 1.5 x 15 %
    assert abs(dd_h - (1 - ratio) * dd_u) < 0.01, (dd_h, dd_u, ratio)
    # Protected and counted like any position: the hedge leg rests a stop above the mark.
    ex = hedged.exchange
    assert ex.book.positions[BTC].qty < 0
    stops = [o for o in ex.resting[BTC].values() if o.purpose and o.purpose.name == "STOP_LOSS"]
    assert len(stops) == 1
    assert stops[0].trigger_price is not None
    assert stops[0].trigger_price > ex.marks[BTC]
    report = hedge_report(run)
    assert report["net_exposure_max"] < report["book_exposure_max"]
    assert report["unhedged"]["max_drawdown"] > report["net_exposure_mean"] * 0.15


def test_the_net_exposure_reported_is_what_was_held_after_the_hedge_stopped_out(
    tmp_path: Path,
) -> None:
    """Everything rises 5 % in one hour: the short hedge's 3 % stop fires and the long book
    stands alone until the next decision re-hedges it. The report's net exposure is what the
    account held at each decision tick; it showed the net the decisions aimed at (about the
    0.5x target), which hid the hour the book ran 1.5x net long."""
    calm = oscillation(80)
    path = np.concatenate([calm, np.full(10, calm[-1] * 1.05)])
    cfg = setup(
        tmp_path, path, contracts=LONG_ETH_SOL, lev="1.5", stop="3", target="0.5", band="0.25"
    )
    config = load_config(cfg)
    run = run_with_and_without_hedge(config, config.policies[0])
    hedged = run.hedged
    stops = [e for e in hedged.exchange.events if e.kind == "stop_loss"]
    assert [e.symbol for e in stops] == [BTC]  # the hedge's stop, nothing else
    report = hedge_report(run)
    assert report["net_exposure_max"] > 1.4  # the book alone, 1.5x long, a little moved
    after = next(r for r in hedged.hedge_log if r.ts_ms > stops[0].ts_ms)
    assert report["net_exposure_max"] == pytest.approx(float(after.net_held / after.equity), 1e-3)
    assert abs(float(after.net_after / after.equity) - 0.5) < 0.05  # re-hedged at that tick


RANGE_SLIPPAGE = """
slippage_bps = 2
slippage_model = "range_impact"
slippage_range_fraction = 0.1
slippage_impact = 0
"""


def test_the_hedge_slippage_reported_is_what_the_hedge_fills_paid(tmp_path: Path) -> None:
    """With the range model a stop filled inside a moving candle pays the floor plus a tenth
    of the candle's range: the hedge's stop in the 5 % candle paid about 0.52 %, not 2 bps.
    The report worked each fill's reference back from ``slippage_bps`` alone (price / (1 +-
    2 bps)) and showed a fraction of what the hedge paid (its cost and the carry with it)."""
    calm = oscillation(80)
    path = np.concatenate([calm, np.full(10, calm[-1] * 1.05)])
    cfg = setup(
        tmp_path,
        path,
        contracts=LONG_ETH_SOL,
        simulation=RANGE_SLIPPAGE,
        lev="1.5",
        stop="3",
        target="0.5",
        band="0.25",
    )
    config = load_config(cfg)
    run = run_with_and_without_hedge(config, config.policies[0])
    ex = run.hedged.exchange
    closes = {T0 + k * HOUR: D(f"{BASE[BTC] * p:.2f}") for k, p in enumerate(path)}
    paid = D(0)
    stop_paid = D(0)
    for f in (f for f in ex.fills if f.symbol == BTC):
        order = ex.orders[f.client_id]
        if order.trigger_price is None:  # a market order: the last price at the tick
            reference = closes[f.timestamp_ms - HOUR]
        else:  # the stop: its trigger, or the open of a candle that gapped past it (the
            # exchange's reference is the last price where the mark crossed it, here the same
            # candle: the trigger within a rounding of the path's fraction, 1e-4 of a dollar)
            opened = closes[f.timestamp_ms - HOUR] if f.timestamp_ms > T0 else closes[T0]
            beyond = max if f.side is OrderSide.BUY else min
            reference = beyond(order.trigger_price, opened)
            stop_paid += abs(f.price - reference) * f.qty
        paid += abs(f.price - reference) * f.qty
    # The stop fired inside the 5 % candle: the floor plus a tenth of its range, not 2 bps.
    stop = next(f for f in ex.fills if f.symbol == BTC and ex.orders[f.client_id].trigger_price)
    assert stop_paid > stop.price * stop.qty * D("0.004")
    report = hedge_report(run)
    assert report["hedge_slippage"] == pytest.approx(float(paid), abs=0.01)
    assert ex.slippage_by_symbol[BTC] == pytest.approx(paid, abs=D("0.0001"))
    assert report["hedge_cost"] == pytest.approx(
        float(
            sum((f.fee for f in ex.fills if f.symbol == BTC), D(0))
            + sum((e.amount for e in ex.events if e.kind == "funding" and e.symbol == BTC), D(0))
            + paid
        ),
        abs=0.01,
    )


FOLLOW_ETH = """
[[contracts]]
symbol = "ETH/USDT:USDT"
direction = "follow"
"""

SPOT = """
[spot]
source = "config"
[[spot.holdings]]
asset = "BTC"
quantity = 0.1
"""


def test_cash_and_carry_earns_the_funding_in_the_data_minus_fees(tmp_path: Path) -> None:
    path = oscillation(160)
    rate = 0.0001
    cfg = setup(
        tmp_path,
        path,
        contracts=FOLLOW_ETH,
        spot=SPOT,
        rate=rate,
        stop="30",
        target="0",
        band="0.05",
    )
    config = load_config(cfg)
    run = run_with_and_without_hedge(config, config.policies[0])
    r = run.hedged
    ex = r.exchange
    hedge_fills = [f for f in ex.fills if f.symbol == BTC]
    assert len(hedge_fills) == 1  # one short, held to the end: spot 0.1 BTC, short 0.1 BTC
    entry = hedge_fills[0]
    assert entry.qty == D("0.1")
    assert ex.book.positions[BTC].qty == D("-0.1")
    # Funding from the data: every settlement after the entry, rate x 0.1 BTC x the mark then.
    closes = np.round(BASE[BTC] * path, 2)
    expected_funding = D(0)
    for k in range(len(path)):
        t = T0 + k * HOUR
        if k % 8 == 0 and entry.timestamp_ms < t < r.end_ms:
            expected_funding += D(str(rate)) * D("0.1") * D(f"{closes[k - 1]:.2f}")
    received = -sum((e.amount for e in ex.events if e.kind == "funding"), D(0))
    assert received == expected_funding
    assert received > 0
    # Account + spot (bought at the hedge's entry price) gained exactly funding minus fees.
    fees = sum((f.fee for f in hedge_fills), D(0))
    spot_pnl = D("0.1") * (ex.marks[BTC] - entry.price)
    gained = ex.equity() - config.account.starting_balance + spot_pnl
    assert gained == expected_funding - fees
    report = hedge_report(run)
    assert report["carry_earned"] == round(float(expected_funding - fees), 2)
    assert "perpetual's price series" in report["spot_priced_from"]


def test_bot_simulate_reports_the_hedge_and_draws_hedged_vs_unhedged(tmp_path: Path) -> None:
    config = Path(__file__).resolve().parents[2] / "config.hedged.example.toml"
    out = tmp_path / "out"
    args = ["simulate", "--config", str(config), "--start", "2025-07-01", "--end", "2025-07-20"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    for key in (
        "net_exposure_mean",
        "net_exposure_max",
        "book_beta",
        "hedge_fees",
        "hedge_funding",
        "hedge_slippage",
        "unhedged",
    ):
        assert key in report
    assert report["net_exposure_mean"] < report["book_exposure_mean"]
    assert (out / "hedged.png").stat().st_size > 10_000
    assert "net exposure mean" in result.output
    assert "unhedged return" in result.output


def _sample_with_catalogue(folder: Path, taker_fee: str) -> Path:
    """The bundled sample's files (linked) and a user catalogue charging ``taker_fee``: a run
    that reads another directory's catalogue, or the bundled one, pays another fee."""
    folder.mkdir()
    for f in (ROOT / "data" / "sample").glob("*.csv.gz"):
        (folder / f.name).symlink_to(f)
    bundled = load_instruments("binanceusdm")
    entries = {
        sym: instrument_to_json(replace(bundled[sym], taker_fee=D(taker_fee)), "the test")
        for sym in (BTC, ETH, SOL)
    }
    (folder / "contracts").mkdir()
    (folder / "contracts" / "binanceusdm.json").write_text(
        json.dumps(
            {
                "exchange": "binanceusdm",
                "as_of": "2025-01-01",
                "read_at": "2025-01-01T00:00:00Z",
                "source": "written by the test",
                "instruments": entries,
            }
        )
    )
    return folder


@pytest.mark.slow
def test_the_unhedged_figure_is_bot_simulate_of_the_policy_without_its_hedge(
    tmp_path: Path,
) -> None:
    """The report's "same book unhedged" is what `bot simulate` gives for the policy without
    its [hedge] section, on the same configuration, window and data (here `--data DIR` with
    its own catalogue). The unhedged replay loaded its data apart, without the configured
    window: it chose the sample's 1h files where the hedged run (and `bot simulate`) chose the
    5m ones covering the window, and the bundled fees instead of DIR's catalogue."""
    data = _sample_with_catalogue(tmp_path / "data", "0.001")
    config = override(
        load_config(ROOT / "config.hedged.example.toml"), date(2025, 7, 1), date(2025, 7, 20)
    )
    policy = config.policies[0]
    pair = run_with_and_without_hedge(config, policy, data_dir=data)
    unhedged = pair.unhedged
    assert unhedged is not None
    bare = run_simulation(config, policy.model_copy(update={"hedge": None}), data_dir=data)
    assert (unhedged.start_ms, unhedged.end_ms) == (bare.start_ms, bare.end_ms)
    assert unhedged.data_selection == bare.data_selection
    assert any("5m" in line for line in bare.data_selection[ETH][:1])  # the window's finer files
    assert unhedged.equity.tolist() == bare.equity.tolist()
    fees = [f.fee / (f.price * f.qty) for f in unhedged.exchange.fills if f.fee > 0]
    assert fees
    assert all(abs(x - D("0.001")) < D("1e-12") for x in fees)  # DIR's catalogue
    stats = summarize(*bare.curve_from_start(), opening=True, closing=True)
    reported = hedge_report(pair)["unhedged"]
    assert reported["total_return"] == round(stats["total_return"], 6)
    assert reported["final_equity"] == round(float(bare.equity[-1]), 2)


def test_contracts_naming_the_hedge_instrument_is_refused(tmp_path: Path) -> None:
    """`bot simulate --contracts ETH/USDT:USDT,BTC/USDT:USDT` with a policy hedged with BTC:
    the configuration refuses a hedge instrument that is also a traded contract, the flag did
    not. The hedged run made BTC the hedge leg only while the unhedged replay traded it as a
    book contract: the report said the hedge added return when it cost 15 points."""
    config = ROOT / "config.hedged.example.toml"
    args = ["simulate", "--config", str(config), "--start", "2025-07-01", "--end", "2025-07-10"]
    result = CliRunner().invoke(
        app, [*args, "--contracts", f"{ETH},{BTC}", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert (
        f"--contracts names \"{BTC}\": policy 'vol_target_hedged' hedge.instruments[0]: is also "
        "a traded contract; a hedge leg needs its own"
    ) in text
    assert not (tmp_path / "out" / "report.json").exists()
    loaded = load_config(config)
    with pytest.raises(ConfigError, match="a hedge leg needs its own"):
        run_with_and_without_hedge(loaded, loaded.policies[0], symbols=(ETH, BTC))
