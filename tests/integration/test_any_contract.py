"""``bot simulate`` on contracts beyond the original four: specs from the catalogue layers, data
generated here, and data selection by coverage (a short 5m file beside a long 1h file)."""

from __future__ import annotations

import csv
import gzip
import json
import math
import random
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from bot.catalogue import instrument_to_json
from bot.cli.app import app
from bot.instruments import load_instruments

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
DAYS = 40
runner = CliRunner()


def _write(path: Path, header: str, lines: list[str]) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write(header + "\n" + "\n".join(lines) + "\n")


def _market(data: Path, symbol: str, price: float, seed: int, hours: int, *, tf_ms: int) -> None:
    """A seeded random walk: trade and mark candles at ``tf_ms`` and 8-hourly funding."""
    rng = random.Random(seed)
    stem = symbol.replace("/", "_").replace(":", "_")
    tf = "1h" if tf_ms == HOUR else f"{tf_ms // 60_000}m"
    trade, mark = [], []
    n = hours * HOUR // tf_ms
    step_vol = 0.012 * math.sqrt(tf_ms / HOUR)
    for i in range(n):
        ts = T0 + i * tf_ms
        o = price
        price = o * math.exp(rng.gauss(0.0003 * tf_ms / HOUR, step_vol))
        hi = max(o, price) * (1 + abs(rng.gauss(0, step_vol / 3)))
        lo = min(o, price) * (1 - abs(rng.gauss(0, step_vol / 3)))
        trade.append(f"{ts},{o!r},{hi!r},{lo!r},{price!r},{rng.uniform(1e3, 1e5)!r}")
        mark.append(f"{ts},{o!r},{hi!r},{lo!r},{price!r},0.0")
    _write(data / f"{stem}-{tf}.csv.gz", "timestamp,open,high,low,close,volume", trade)
    _write(data / f"{stem}-{tf}-mark.csv.gz", "timestamp,open,high,low,close,volume", mark)
    if tf_ms == HOUR:
        funding = [f"{T0 + k * 8 * HOUR},{rng.uniform(-1e-4, 3e-4)!r}" for k in range(hours // 8)]
        _write(data / f"{stem}-funding.csv.gz", "timestamp,funding_rate", funding)


def _config(tmp: Path, data: Path, exchange: str, symbols: list[str]) -> Path:
    contracts = "".join(f'\n[[contracts]]\nsymbol = "{s}"\ndirection = "long"\n' for s in symbols)
    path = tmp / f"{exchange}.toml"
    path.write_text(
        f"""
[account]
name = "alts"
starting_balance = 10000
margin_mode = "isolated"
{contracts}
[data]
dir = "{data}"
exchange = "{exchange}"

[policy]
file = "{ROOT / "policies" / "vol_target.toml"}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 6
max_notional_per_contract = 50000
daily_loss_limit = 0.05
max_drawdown = 0.5
stale_data_seconds = 7200
max_orders_per_minute = 30

[simulation]
start = 2025-01-12
end = 2025-02-08
slippage_bps = 2
"""
    )
    return path


def _simulate(config: Path, out: Path, *extra: str) -> dict[str, object]:
    result = runner.invoke(app, ["simulate", "--config", str(config), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    return report


def test_binance_alts_from_the_bundled_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "binance"
    data.mkdir()
    symbols = ["ADA/USDT:USDT", "DOGE/USDT:USDT", "BNB/USDT:USDT", "LINK/USDT:USDT"]
    for n, (sym, px) in enumerate(zip(symbols, (0.5, 0.1, 600.0, 15.0), strict=True)):
        _market(data, sym, px, seed=n, hours=DAYS * 24, tf_ms=HOUR)
    # A 5m ADA file that ends before the window: the 1h file, which covers it, must be used.
    _market(data, "ADA/USDT:USDT", 0.5, seed=99, hours=5 * 24, tf_ms=300_000)
    report = _simulate(_config(tmp_path, data, "binanceusdm", symbols), tmp_path / "out")
    assert report["contracts"] == symbols
    assert int(str(report["n_trades"])) > 0
    assert str(report["start"]).startswith("2025-01-12")
    ada_notes = " ".join(report["data_selection"]["ADA/USDT:USDT"])  # type: ignore[index]
    assert "ADA/USDT:USDT trade: 1h" in ada_notes
    assert "finer files passed over because they cover less: 5m" in ada_notes


def test_bybit_eth_sol_bnb_from_the_bundled_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "bybit"
    data.mkdir()
    symbols = ["ETH/USDT:USDT", "SOL/USDT:USDT", "BNB/USDT:USDT"]
    for n, (sym, px) in enumerate(zip(symbols, (3000.0, 150.0, 600.0), strict=True)):
        _market(data, sym, px, seed=10 + n, hours=DAYS * 24, tf_ms=HOUR)
    bundled = load_instruments("bybit")
    assert set(symbols) <= set(bundled)
    assert not (data / "contracts").exists()  # no user catalogue: the snapshot is the source
    config = _config(tmp_path, data, "bybit", symbols)
    result = runner.invoke(
        app, ["simulate", "--config", str(config), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["contracts"] == symbols
    assert int(str(report["n_trades"])) > 0
    assert str(report["start"]).startswith("2025-01-12")
    for sym in symbols:
        notes = " ".join(report["data_selection"][sym])
        assert f"{sym} trade: 1h" in notes
    # The stand-in brackets (SOL, BNB) are said on the console, ETH's published table is not.
    text = " ".join(result.output.split())
    assert "warning: SOL/USDT:USDT, BNB/USDT:USDT ran on STAND-IN leverage brackets" in text
    assert "ETH/USDT:USDT ran on" not in text


def test_contracts_show_and_list_flag_the_stand_in_figures(tmp_path: Path) -> None:
    data = tmp_path / "bybit"
    data.mkdir()
    config = str(_config(tmp_path, data, "bybit", ["SOL/USDT:USDT"]))
    shown = runner.invoke(app, ["contracts", "show", "SOL/USDT:USDT", "--config", config, "--json"])
    assert shown.exit_code == 0, shown.output
    sol = json.loads(shown.stdout)
    assert sol["stand_in"] is True
    assert sol["spec_source"].startswith("STAND-IN risk limits")
    text = runner.invoke(app, ["contracts", "show", "SOL/USDT:USDT", "--config", config])
    assert text.exit_code == 0, text.output
    assert "STAND-IN, not the venue's own" in " ".join(text.output.split())
    eth = runner.invoke(app, ["contracts", "show", "ETH/USDT:USDT", "--config", config, "--json"])
    assert json.loads(eth.stdout)["stand_in"] is False
    listed = runner.invoke(app, ["contracts", "list", "--config", config, "--json"])
    assert listed.exit_code == 0, listed.output
    flags = {row["symbol"]: row["stand_in"] for row in json.loads(listed.stdout)["contracts"]}
    assert flags == {
        "BNB/USDT:USDT": True,
        "BTC/USDT:USDT": False,
        "ETH/USDT:USDT": False,
        "SOL/USDT:USDT": True,
    }


def test_bybit_contracts_come_from_the_users_catalogue(tmp_path: Path) -> None:
    data = tmp_path / "bybit"
    data.mkdir()
    # Contracts the bundled Bybit snapshot does not carry.
    # (Their prices fit the BTC filters the catalogue below gives them.)
    symbols = ["ADA/USDT:USDT", "DOGE/USDT:USDT", "LINK/USDT:USDT"]
    for n, (sym, px) in enumerate(zip(symbols, (3000.0, 150.0, 600.0), strict=True)):
        _market(data, sym, px, seed=10 + n, hours=DAYS * 24, tf_ms=HOUR)
    config = _config(tmp_path, data, "bybit", symbols)

    # Offline, without a catalogue: Binance's figures for the same contracts stand in, with
    # Bybit's fees and liquidation formula, and the run says so (it was refused before).
    stood_in = runner.invoke(
        app, ["simulate", "--config", str(config), "--out", str(tmp_path / "x")]
    )
    assert stood_in.exit_code == 0, stood_in.output
    text = " ".join(stood_in.output.split())
    assert (
        "warning: ADA/USDT:USDT, DOGE/USDT:USDT, LINK/USDT:USDT ran on STAND-IN figures: "
        "binanceusdm's tick, step, minimums and leverage brackets for the same contract, with "
        "bybit's fees and liquidation formula"
    ) in text
    assert "bot contracts sync --config CONFIG --contracts ADA/USDT:USDT," in text
    shown = runner.invoke(app, ["contracts", "show", "ADA/USDT:USDT", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "STAND-IN" in shown.output

    # The user's catalogue (the format `bot contracts sync` writes; here written by hand with
    # Bybit's BTC tier table standing in for the real ones) replaces the stand-in.
    btc = load_instruments("bybit")["BTC/USDT:USDT"]
    entries = {}
    for sym in symbols:
        base = sym.split("/")[0]
        spec = instrument_to_json(btc, "test fixture: BTC's tiers and filters")
        entries[sym] = {**spec, "base": base}
    (data / "contracts").mkdir()
    (data / "contracts" / "bybit.json").write_text(
        json.dumps(
            {
                "exchange": "bybit",
                "as_of": "2025-01-01",
                "read_at": "2025-01-01T00:00:00Z",
                "source": "written by the test",
                "instruments": entries,
            }
        )
    )
    done = runner.invoke(app, ["simulate", "--config", str(config), "--out", str(tmp_path / "o")])
    assert done.exit_code == 0, done.output
    assert "STAND-IN" not in done.output
    report = _simulate(config, tmp_path / "out")
    assert report["contracts"] == symbols
    assert int(str(report["n_trades"])) > 0
    # `--data DIR` reads DIR's catalogue, not the configured data directory's.
    empty = tmp_path / "empty"
    empty.mkdir()
    elsewhere = _config(tmp_path, empty, "bybit", symbols)
    report = _simulate(elsewhere, tmp_path / "out2", "--data", str(data))
    assert report["contracts"] == symbols


def test_todays_main_binance_contracts_from_the_bundled_snapshot(tmp_path: Path) -> None:
    # 1000PEPE trades near 0.01 on a 0.0000001 tick with whole-unit lots: quantities run to the
    # millions and every price has 7 decimals.
    data = tmp_path / "binance"
    data.mkdir()
    symbols = ["1000PEPE/USDT:USDT", "SUI/USDT:USDT", "WIF/USDT:USDT"]
    for n, (sym, px) in enumerate(zip(symbols, (0.0112, 3.4, 1.9), strict=True)):
        _market(data, sym, px, seed=20 + n, hours=DAYS * 24, tf_ms=HOUR)
    out = tmp_path / "out"
    report = _simulate(_config(tmp_path, data, "binanceusdm", symbols), out)
    assert report["contracts"] == symbols
    assert int(str(report["n_trades"])) > 0
    # Every order is on the bundled contract's grid: the simulation used these specs.
    specs = load_instruments("binanceusdm")
    with (out / "orders.csv").open() as fh:
        orders = list(csv.DictReader(fh))
    for sym in symbols:
        mine = [o for o in orders if o["symbol"] == sym]
        assert any(o["purpose"] == "entry" and o["status"] == "filled" for o in mine), sym
        spec = specs[sym]
        for o in mine:
            assert Decimal(o["amount"]) % spec.step_size == 0, o
            if o["trigger_price"]:
                assert Decimal(o["trigger_price"]) % spec.tick_size == 0, o
    pepe_stops = [o for o in orders if o["symbol"] == symbols[0] and o["trigger_price"]]
    assert pepe_stops
    assert all(Decimal(o["trigger_price"]) < 1 for o in pepe_stops)


def test_a_bybit_contract_spelled_otherwise_simulates_and_sweeps_on_its_stand_in(
    tmp_path: Path,
) -> None:
    """Bybit's SHIB1000 is Binance's 1000SHIB: offline it runs on Binance's figures for that
    contract (it was refused before), and both `bot simulate` and `bot sweep` say so."""
    data = tmp_path / "bybit"
    data.mkdir()
    shib = "SHIB1000/USDT:USDT"
    _market(data, shib, 0.0142, seed=31, hours=DAYS * 24, tf_ms=HOUR)
    config = _config(tmp_path, data, "bybit", [shib])
    report = _simulate(config, tmp_path / "out")
    assert report["contracts"] == [shib]
    assert int(str(report["n_trades"])) > 0
    swept = runner.invoke(
        app,
        [
            "sweep",
            "--config",
            str(config),
            "--policy",
            str(ROOT / "policies" / "vol_target.toml"),
            "--param",
            "leverage.max=2,3",
            "--workers",
            "1",
            "--out",
            str(tmp_path / "sweep"),
        ],
    )
    assert swept.exit_code == 0, swept.output
    assert f"warning: {shib} ran on STAND-IN figures: binanceusdm's" in " ".join(
        swept.output.split()
    )
