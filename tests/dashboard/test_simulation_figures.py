"""``bot serve --sim``: the drawdown and the peak of a run are the simulation's own, measured
from the starting balance as ``report.json`` and ``equity.csv`` measure them."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.clock import SimClock
from bot.dashboard.app import create_app
from bot.dashboard.security import Guard
from bot.dashboard.simulation import SimulationSource

BTC = "BTC/USDT:USDT"
# A run that never got back above its 10 000 start (static_1d, BTC long, 2025-06-03 .. 05):
# its first tick's equity is already net of the entry's fee and slippage.
EQUITY = (
    "timestamp,time,equity,buy_and_hold,drawdown,leverage_BTC\n"
    "1748908800000,2025-06-03T00:00:00Z,9997.75,10000.00,0.000225,0.2963\n"
    "1748995200000,2025-06-04T00:00:00Z,9984.06,9954.84,0.001594,0.2954\n"
    "1749081600000,2025-06-05T00:00:00Z,9964.78,9890.16,0.003522,0.2940\n"
)


def _run(tmp_path: Path, equity: str) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    report = {
        "policy": "static_1d",
        "contracts": [BTC],
        "starting_balance": "10000",
        "final_equity": 9964.78,
        "max_drawdown": 0.003522,
    }
    (d / "report.json").write_text(json.dumps(report))
    (d / "equity.csv").write_text(equity)
    (d / "account.json").write_text('{"wallet": "9998.0996371719", "quote": "USDT"}')
    return d


def test_drawdown_and_peak_are_measured_from_the_starting_balance(tmp_path: Path) -> None:
    """Measured from the first row (9 997.75), the page showed a drawdown of 0.33 % and a peak
    of 9 997.75, an equity the account never had above its start; report.json says 0.3522 %."""
    source = SimulationSource("run", _run(tmp_path, EQUITY))
    overview = source.overview(0)
    assert overview.drawdown == Decimal("0.003522")  # report.json's max_drawdown, the last row
    assert overview.peak_equity == Decimal(10000)
    assert source.curve().drawdown == [0.000225, 0.001594, 0.003522]  # the chart's series
    client = TestClient(
        create_app({"run": source}, store=None, guard=Guard(None), clock=SimClock(0)),
        base_url="http://127.0.0.1",
    )
    page = client.get("/").text
    assert "10,000.00" in page
    assert "9,997.75" not in page


@pytest.mark.parametrize("starting", [True, False])
def test_an_output_without_the_drawdown_column_measures_it_from_the_start(
    tmp_path: Path, starting: bool
) -> None:
    """An equity.csv written without the drawdown column: from the starting balance when the
    report gives it, from the first row otherwise (nothing better is known)."""
    rows = [line.split(",") for line in EQUITY.splitlines()]
    equity = "\n".join(",".join(r[:4] + r[5:]) for r in rows) + "\n"
    d = _run(tmp_path, equity)
    if not starting:
        report = json.loads((d / "report.json").read_text())
        del report["starting_balance"]
        (d / "report.json").write_text(json.dumps(report))
    overview = SimulationSource("run", d).overview(0)
    assert overview.drawdown is not None
    if starting:
        assert overview.drawdown == Decimal("0.003522")
        assert overview.peak_equity == Decimal(10000)
    else:
        assert overview.drawdown == Decimal("0.003298")  # (9 997.75 - 9 964.78) / 9 997.75
        assert overview.peak_equity == Decimal("9997.75")
