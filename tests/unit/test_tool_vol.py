"""``bot vol``: estimators and percentiles over the history, and the policy's decision now, which
must be the one the engine itself takes on the same data."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bot.backtest.replay import replay
from bot.cli.app import app
from bot.config.loader import load_config
from bot.errors import DataError
from bot.marketdata.candles import Candles
from bot.marketdata.files import discover
from bot.sim.history import load_history
from bot.stats.timeframes import periods_per_year
from bot.stats.volatility import ESTIMATORS, estimate
from bot.tools.voltrack import (
    WINDOWS,
    current_volatility,
    hourly_candles,
    leverage_history,
    policy_now,
    rolling_by_segment,
    track,
    vol_readings,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.example.toml"
SAMPLE = ROOT / "data" / "sample"
HOUR = 3_600_000
runner = CliRunner()


def candles(close: list[float], ts: list[int] | None = None) -> Candles:
    c = np.array(close, dtype=np.float64)
    stamps = np.array(ts if ts is not None else [i * HOUR for i in range(len(c))], dtype=np.int64)
    return Candles(
        stamps, c, c * 1.01, c * 0.99, c, np.zeros_like(c), HOUR, "X/USDT:USDT", "trade", "test"
    )


def test_rolling_never_spans_a_gap() -> None:
    # Two runs of 5 hourly closes with a 10-hour hole between them; window 3 needs 4 closes.
    ts = [i * HOUR for i in range(5)] + [(15 + i) * HOUR for i in range(5)]
    c = candles([100, 101, 99, 102, 100, 200, 190, 210, 205, 200], ts)
    series = rolling_by_segment("close_to_close", c, 3)
    assert np.isnan(series[:3]).all()  # first run warming up
    assert np.isnan(series[5:8]).all()  # second run starts afresh after the gap
    ppy = periods_per_year(HOUR)
    closes = np.array([190, 210, 205, 200], dtype=np.float64)
    expected = np.std(np.diff(np.log(closes)), ddof=1) * np.sqrt(ppy)
    assert series[-1] == pytest.approx(expected, rel=1e-12)


def test_readings_match_the_estimators_and_percentiles_count_the_history() -> None:
    c = hourly_candles(discover(SAMPLE), "BTC/USDT:USDT")
    readings = vol_readings(c)
    assert len(readings) == len(ESTIMATORS) * len(WINDOWS)
    ppy = periods_per_year(c.tf_ms)
    for r in readings:
        window = dict(WINDOWS)[r.window]
        k = window + 1
        direct = estimate(
            r.estimator, c.open[-k:], c.high[-k:], c.low[-k:], c.close[-k:], window, ppy
        )
        assert r.value == pytest.approx(direct, rel=1e-9)
        series = rolling_by_segment(r.estimator, c, window)
        seen = series[np.isfinite(series)]
        assert r.value is not None
        assert r.percentile == pytest.approx(100 * np.count_nonzero(seen <= r.value) / seen.size)
        assert r.percentile is not None
        assert 0 < r.percentile <= 100


def test_percentile_of_the_highest_value_is_100() -> None:
    # Calm hours, then 24 hours swinging 5 % up and down: every earlier 24 h window holds fewer
    # of the swings, so the latest 24 h volatility is the highest ever seen.
    calm = np.tile([0.001, -0.001], 100)
    steps = np.concatenate([calm, np.tile([0.05, -0.05], 12)])
    c = candles((100 * np.exp(np.cumsum(steps))).tolist())
    latest = {(r.estimator, r.window): r for r in vol_readings(c)}
    assert latest[("close_to_close", "24h")].percentile == 100.0
    assert latest[("close_to_close", "30d")].value is None  # 720 h of history are not there


def test_current_volatility_is_the_engines_snapshot_volatility() -> None:
    config = load_config(CONFIG)
    policy = config.policies[0]
    now, decisions = policy_now(config, policy, discover(SAMPLE))
    decision_candles = load_history(discover(SAMPLE), "BTC/USDT:USDT", policy.timeframe).decision
    vp = policy.volatility
    vol = current_volatility(decision_candles, vp.estimator, vp.window)
    snap = decisions["BTC/USDT:USDT"].snapshot
    assert snap is not None
    assert snap.volatility == vol
    assert now == int(decision_candles.ts[-1]) + decision_candles.tf_ms


def test_policy_now_is_what_the_engine_decides_on_a_flat_account() -> None:
    config = load_config(CONFIG)
    policy = config.policies[0]
    inventory = discover(SAMPLE)
    now, mine = policy_now(config, policy, inventory)
    symbols = tuple(c.symbol for c in config.contracts)
    histories = {s: load_history(inventory, s, policy.timeframe) for s in symbols}
    from bot.tools.voltrack import config_instruments

    # One engine tick at `now` through the real simulation loop, on a fresh (flat) account.
    result = replay(
        config, policy, histories, config_instruments(config, symbols), now, now + 3_600_000
    )
    engine = {r.decision.symbol: r.decision for r in result.store.decisions}
    assert set(engine) == set(symbols)
    for sym in symbols:
        d = mine[sym].decision
        assert d is not None
        assert d.target_leverage == engine[sym].target_leverage
        assert d.reason == engine[sym].reason
        assert d.target_leverage > 0


def test_risk_parity_policy_decides_through_the_covariance() -> None:
    config = load_config(CONFIG, policy_overrides=[ROOT / "policies" / "risk_parity.toml"])
    _, decisions = policy_now(config, config.policies[0], discover(SAMPLE))
    reasons = [d.decision.reason for d in decisions.values() if d.decision is not None]
    assert len(reasons) == 3
    assert all("ERC weight" in r for r in reasons)


def test_leverage_history_applies_the_vol_target_formula() -> None:
    config = load_config(CONFIG)
    policy = config.policies[0]  # yang_zhang 168 x 1h, target 0.70, leverage in [0.5, 5]
    c = load_history(discover(SAMPLE), "ETH/USDT:USDT", policy.timeframe).decision
    ts, vol, lev = leverage_history(c, policy, Decimal(3))
    assert np.isnan(lev[:168]).all()
    i = len(vol) - 1
    assert lev[i] == pytest.approx(min(max(0.70 / round(vol[i], 6), 0.5), 3.0), abs=1e-12)
    finite = lev[np.isfinite(lev)]
    assert finite.min() >= 0.5
    assert finite.max() <= 3.0  # the cap given wins over the policy's max of 5
    assert ts[-1] == c.ts[-1] + c.tf_ms


def test_track_reports_funding_annualised() -> None:
    config = load_config(CONFIG)
    report = track(config, config.policies[0], discover(SAMPLE))
    btc = report[0]
    assert btc.symbol == "BTC/USDT:USDT"
    assert btc.funding_interval_hours == Decimal(8)
    assert btc.funding_rate is not None
    # 3 settlements a day x 365 days.
    assert btc.funding_annualized == btc.funding_rate * 1095


def test_json_shape_and_plot_via_the_cli(tmp_path: Path) -> None:
    png = tmp_path / "vol.png"
    result = runner.invoke(app, ["vol", "--config", str(CONFIG), "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["policy"] == "vol_target"
    assert [c["contract"] for c in data["contracts"]] == [
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
        "SOL/USDT:USDT",
    ]
    for c in data["contracts"]:
        assert set(c["volatility"]) == set(ESTIMATORS)
        for by_window in c["volatility"].values():
            assert set(by_window) == {"24h", "7d", "30d"}
            assert all(isinstance(v["value"], float) for v in by_window.values())
        assert isinstance(c["policy"]["target_leverage"], str)
        assert c["policy"]["reason"].startswith(c["contract"].split("/")[0] + ": vol ")
        assert isinstance(c["funding"]["annualized"], str)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["vol", "--config", str(CONFIG), "--data", str(tmp_path / "no")])
    assert result.exit_code == 2
    assert "--data" in result.output
    assert "not a directory" in " ".join(result.output.split())  # rich wraps at 80 columns
    # A data directory without a configured contract: the error names it and what is there.
    eth_only = tmp_path / "eth"
    eth_only.mkdir()
    for f in SAMPLE.glob("ETH_*"):
        shutil.copy(f, eth_only / f.name)
    config = load_config(CONFIG)
    with pytest.raises(DataError) as err:
        track(config, config.policies[0], discover(eth_only))
    assert "no data for 'BTC/USDT:USDT'; available: ETH/USDT:USDT" in str(err.value)


def test_unknown_policy_file_is_a_config_error(tmp_path: Path) -> None:
    args = ["vol", "--config", str(CONFIG), "--policy", str(tmp_path / "nope.toml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "nope.toml" in result.output


def test_policy_now_keeps_within_the_largest_market_order_as_the_engine_does(
    tmp_path: Path,
) -> None:
    """A venue whose largest market order is below the policy's size: the engine cuts the size
    to it (one order must close the position, one stop protect it); ``bot vol`` shows that same
    cut decision, not a leverage the bot would never take."""
    from dataclasses import replace

    from bot.catalogue import catalogue_path, write_catalogue
    from bot.instruments import load_instruments
    from bot.tools.voltrack import config_instruments

    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    btc = "BTC/USDT:USDT"
    small = replace(load_instruments("binanceusdm")[btc], max_order_qty=Decimal("0.005"))
    write_catalogue(
        catalogue_path(data, "binanceusdm"), "binanceusdm", {btc: (small, "test")}, 0, "test"
    )
    text = CONFIG.read_text().replace('dir = "data/sample"', f'dir = "{data}"')
    text = text.replace('file = "policies/', f'file = "{ROOT / "policies"}/')
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_config(path)
    policy = config.policies[0]
    inventory = discover(data)
    now, mine = policy_now(config, policy, inventory)
    symbols = tuple(c.symbol for c in config.contracts)
    histories = {s: load_history(inventory, s, policy.timeframe) for s in symbols}
    result = replay(
        config, policy, histories, config_instruments(config, symbols), now, now + 3_600_000
    )
    engine = {r.decision.symbol: r.decision for r in result.store.decisions}
    d = mine[btc].decision
    assert d is not None
    assert Decimal(0) < d.target_qty <= Decimal("0.005")  # within the largest market order
    assert "largest market order" in d.reason
    assert d.target_leverage == engine[btc].target_leverage
    assert d.reason == engine[btc].reason


def test_policy_now_keeps_within_the_gross_cap_as_the_engine_does(tmp_path: Path) -> None:
    """With max_gross_leverage below the sum of the targets the engine scales the increases
    into it (the gross cap); ``bot vol`` shows the same scaled decisions."""
    from bot.tools.voltrack import config_instruments

    text = CONFIG.read_text().replace('dir = "data/sample"', f'dir = "{SAMPLE}"')
    text = text.replace('file = "policies/', f'file = "{ROOT / "policies"}/')
    text = text.replace("max_gross_leverage = 6", "max_gross_leverage = 0.3")
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_config(path)
    policy = config.policies[0]
    inventory = discover(SAMPLE)
    now, mine = policy_now(config, policy, inventory)
    symbols = tuple(c.symbol for c in config.contracts)
    histories = {s: load_history(inventory, s, policy.timeframe) for s in symbols}
    result = replay(
        config, policy, histories, config_instruments(config, symbols), now, now + 3_600_000
    )
    engine = {r.decision.symbol: r.decision for r in result.store.decisions}
    for sym in symbols:
        d = mine[sym].decision
        assert d is not None
        assert "gross cap" in d.reason
        assert d.target_qty == engine[sym].target_qty
        assert d.reason == engine[sym].reason


def test_policy_now_shows_the_volume_and_cuts_to_the_participation_as_the_engine_does(
    tmp_path: Path,
) -> None:
    """A 50,000,000 USDT book with ``max_participation``: ``bot vol`` shows the mean volume per
    candle and the most one tick may add, and its decision is the engine's first tick, cut to
    it."""
    from bot.tools.voltrack import config_instruments

    policy_text = (ROOT / "policies" / "vol_target.toml").read_text()
    policy_text = policy_text.replace(
        "rebalance_tolerance = 0.1", "rebalance_tolerance = 0.1\nmax_participation = 0.002"
    )
    (tmp_path / "thin.toml").write_text(policy_text)
    text = CONFIG.read_text().replace('dir = "data/sample"', f'dir = "{SAMPLE}"')
    text = text.replace('file = "policies/vol_target.toml"', f'file = "{tmp_path / "thin.toml"}"')
    text = text.replace("starting_balance = 10000", "starting_balance = 50000000")
    text = text.replace("max_notional_per_contract = 50000", "max_notional_per_contract = 5e9")
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_config(path)
    policy = config.policies[0]
    inventory = discover(SAMPLE)
    now, mine = policy_now(config, policy, inventory)
    symbols = tuple(c.symbol for c in config.contracts)
    histories = {s: load_history(inventory, s, policy.timeframe) for s in symbols}
    result = replay(
        config, policy, histories, config_instruments(config, symbols), now, now + 3_600_000
    )
    engine = {r.decision.symbol: r.decision for r in result.store.decisions}
    for sym in symbols:
        got = mine[sym]
        d = got.decision
        assert d is not None
        assert got.snapshot is not None
        assert got.snapshot.avg_volume is not None
        assert got.participation_room is not None
        assert "max participation 0.002" in d.reason
        assert abs(d.target_qty) == got.participation_room
        assert d.target_qty == engine[sym].target_qty
        assert d.reason == engine[sym].reason
    result_cli = runner.invoke(app, ["vol", "--config", str(path), "--json"])
    assert result_cli.exit_code == 0, result_cli.output
    data = json.loads(result_cli.stdout)
    for c in data["contracts"]:
        p = c["policy"]
        assert p["max_participation"] == "0.002"
        assert p["volume_window"] == 168
        assert Decimal(p["max_qty_per_tick"]) <= Decimal("0.002") * Decimal(p["avg_volume"])
    table = runner.invoke(app, ["vol", "--config", str(path)])
    assert table.exit_code == 0, table.output
    assert "max/tick" in table.output


def test_a_hole_in_the_funding_history_is_not_the_funding_interval(tmp_path: Path) -> None:
    """BTC's settlement before the last is missing (a hole in the data, not a 16 h interval):
    the rate is still per 8 h settlement, as the engine reads it (bot.sim.history caps the
    observed interval at 8 h). bot vol took the hole for the interval and showed half the
    yearly cost."""
    import gzip

    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    path = data / "BTC_USDT_USDT-funding.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    del lines[-2]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    config = load_config(CONFIG)
    btc = track(config, config.policies[0], discover(data))[0]
    assert btc.funding_rate is not None
    assert btc.funding_interval_hours == Decimal(8)
    assert btc.funding_annualized == btc.funding_rate * 1095


def test_the_tables_say_when_the_volatility_and_the_decision_were_taken() -> None:
    """The data's last candle may be days old (or older than finer files beside it): the JSON
    said as of when, the tables did not, and a stale volatility read as today's."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import policy_table, vol_table

    config = load_config(CONFIG)
    report = track(config, config.policies[0], discover(SAMPLE))
    out = StringIO()
    console = Console(file=out, width=250)
    console.print(vol_table(report[0]))
    console.print(policy_table(report, "vol_target"))
    shown = " ".join(out.getvalue().split())
    # The sample's last 1 h candle closes at 2025-10-01 00:00 UTC, the decision is taken then.
    assert shown.count("as of 2025-10-01 00:00 UTC") == 2


def test_hourly_candles_run_on_with_finer_candles_newer_than_the_1h_file(tmp_path: Path) -> None:
    """A 1 h file that ends before the 5 m file beside it (a data directory updated in 5 m):
    the volatility of `bot vol` and `bot calc --data` was the 1 h file's, as of its end, days
    before the newest candle. The 1 h history now runs on with the 5 m candles after it,
    aggregated exactly to 1 h."""
    import gzip

    def write(name: str, tf_ms: int, start: int, closes: list[float]) -> None:
        lines = ["timestamp,open,high,low,close,volume"]
        prev = closes[0]
        for k, close in enumerate(closes):
            hi, lo = max(prev, close) * 1.001, min(prev, close) * 0.999
            lines.append(f"{start + k * tf_ms},{prev},{hi},{lo},{close},1")
            prev = close
        (tmp_path / name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    start = 1_759_276_800_000  # 2025-10-01 00:00 UTC
    write("DOGE_USDT_USDT-1h.csv.gz", HOUR, start, [0.2 + 0.001 * (k % 5) for k in range(300)])
    # 5 m candles from 100 h in to 400 h: overlap the 1 h file, then 100 h beyond it.
    five = [0.2 + 0.002 * (k % 3) for k in range(300 * 12)]
    write("DOGE_USDT_USDT-5m.csv.gz", 300_000, start + 100 * HOUR, five)
    c = hourly_candles(discover(tmp_path), "DOGE/USDT:USDT")
    assert c.tf_ms == HOUR
    assert int(c.ts[0]) == start
    assert int(c.ts[-1]) == start + 399 * HOUR
    assert c.segments() == [(start, start + 399 * HOUR)]
    # The first 300 h are the 1 h file's own, the rest the 5 m candles aggregated.
    only_1h = discover(tmp_path).load_candles("DOGE/USDT:USDT", "1h")
    assert np.array_equal(c.close[:300], only_1h.close)
    by_5m = discover(tmp_path).load_candles("DOGE/USDT:USDT", "5m").resample(HOUR)
    assert np.array_equal(c.close[300:], by_5m.close[-100:])
    assert np.array_equal(c.high[300:], by_5m.high[-100:])


def test_an_unusable_plot_path_is_one_error_before_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--plot afile/x.png (afile a file) was a FileExistsError traceback once the volatility
    history had been computed."""
    from bot.tools import voltrack

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("the volatility was computed before --plot was checked")

    monkeypatch.setattr(voltrack, "track", never)
    (tmp_path / "afile").write_text("mine")
    for given, said in [
        ("afile/x.png", "afile is a file, not a directory"),
        (".", "is a directory, not a file"),
        ("new/" + "a" * 300 + ".png", "cannot write there: File name too long"),
    ]:
        plot = tmp_path / given
        result = runner.invoke(app, ["vol", "--config", str(CONFIG), "--plot", str(plot)])
        assert result.exit_code == 2, result.output
        assert f"--plot {plot}" in " ".join(result.output.split())
        assert said in " ".join(result.output.split())
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # new/ was made and removed again
    assert (tmp_path / "afile").read_text() == "mine"
