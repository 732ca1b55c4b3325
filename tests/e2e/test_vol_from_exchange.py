"""``bot vol --exchange``: the volatility tracker on the exchange's public data (loopback)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.cli.app import app
from tests.e2e.test_live_loopback import (  # noqa: F401 - fixtures
    Venue,
    backend,
    config_path,
    server,
    venue,
)
from tests.fakes.loopback_core import LoopbackServer


def test_vol_reads_the_exchange(
    config_path: Path,  # noqa: F811
    server: LoopbackServer,  # noqa: F811
    venue: Venue,  # noqa: F811
) -> None:
    result = CliRunner().invoke(app, ["vol", "--config", str(config_path), "--exchange", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert server.calls(venue.klines_get, "GET")
    assert server.calls(venue.mark_klines_get, "GET")
    [btc] = report["contracts"]
    assert btc["contract"] == "BTC/USDT:USDT"
    assert btc["volatility"]
    assert btc["policy"]["reason"].startswith("BTC: vol")
