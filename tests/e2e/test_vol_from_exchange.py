"""``bot vol --exchange``: the volatility tracker on the exchange's public data (loopback)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.cli.app import app
from tests.e2e.test_live_loopback import backend, config_path, server  # noqa: F401 - fixtures
from tests.fakes.binance_loopback import LoopbackBinance


def test_vol_reads_the_exchange(config_path: Path, server: LoopbackBinance) -> None:  # noqa: F811
    result = CliRunner().invoke(app, ["vol", "--config", str(config_path), "--exchange", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert server.calls("/fapi/v1/klines", "GET")
    assert server.calls("/fapi/v1/markPriceKlines", "GET")
    [btc] = report["contracts"]
    assert btc["contract"] == "BTC/USDT:USDT"
    assert btc["volatility"]
    assert btc["policy"]["reason"].startswith("BTC: vol")
