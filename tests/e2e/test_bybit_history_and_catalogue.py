"""``bot contracts sync`` and ``bot data download`` against the loopback Bybit v5 server: the same
rules as on Binance (files equal the server's closed rows, a second run fetches nothing, the
catalogue holds what the venue's instruments-info and risk-limit say)."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from bot.cli.app import app
from bot.clock import LiveClock
from bot.domain.enums import MarginMode
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.fakes.bybit_loopback import CandleRow, LoopbackBybit
from tests.fakes.live_setup import live_config_text

BTC, ALT = "BTC/USDT:USDT", "AVAX/USDT:USDT"
KEY, SECRET = "bybit-hist-key", "bybit-hist-secret-9f"
HOUR, DAY = 3_600_000, 86_400_000

KIND_SUFFIXES: tuple[tuple[Literal["trade", "mark"], str], ...] = (("trade", ""), ("mark", "-mark"))


def _day_ms(days_ago: int) -> int:
    now = LiveClock().now_ms()
    return now - now % DAY - days_ago * DAY


def _rows(seed: int, start: int, end: int, hole: tuple[int, int]) -> list[CandleRow]:
    rng = random.Random(seed)
    price = D(2000 + seed)
    out: list[CandleRow] = []
    for ts in range(start, end, HOUR):
        o = price
        c = (o * (1 + D(rng.randint(-40, 40)) / 10000)).quantize(D("0.01"))
        price = c
        if hole[0] <= ts < hole[1]:
            continue
        out.append((ts, o, max(o, c) + 1, min(o, c) - 1, c, D(rng.randint(1, 900))))
    return out


@pytest.fixture
def server() -> Iterator[LoopbackBybit]:
    btc = load_instruments("bybit")[BTC]
    # AVAX is not in the bundled Bybit snapshot: the venue's answer is the only source.
    alt = replace(
        btc, symbol=ALT, base="AVAX", tick_size=D("0.01"), step_size=D("0.01"), min_qty=D("0.01")
    )
    backend = SimulatedExchange(
        {BTC: btc, ALT: alt},
        LiveClock(),
        starting_balance=D(1000),
        margin_mode=MarginMode.ISOLATED,
    )
    srv = LoopbackBybit(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ALT]
    )
    start, now = _day_ms(12), LiveClock().now_ms()
    hole = (_day_ms(3) + 5 * HOUR, _day_ms(3) + 8 * HOUR)
    for n, sym in enumerate((BTC, ALT)):
        rows = _rows(n, start, now - now % HOUR + HOUR, hole)
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        srv.set_funding_history(
            sym,
            [
                (ts, D(random.Random(ts).randint(-30, 60)) / 1000000)
                for ts in range(start, now, 8 * HOUR)
            ],
        )
        backend.set_mark(sym, rows[-1][4])
    with srv:
        yield srv


@pytest.fixture
def config_path(tmp_path: Path, server: LoopbackBybit) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="bybit-hist",
            venue="bybit",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            symbol=ALT,
            starting_balance=1000,
            max_orders_per_minute=30,
            data_dir=data,
            data_exchange="bybit",
        )
    )
    return path


def _file_rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as fh:
        return [line.split(",") for line in fh.read().splitlines()[1:]]


def _day(days_ago: int) -> str:
    return datetime.fromtimestamp(_day_ms(days_ago) / 1000, tz=UTC).strftime("%Y-%m-%d")


def test_bybit_sync_reads_instruments_and_risk_limits(
    config_path: Path, server: LoopbackBybit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOT_API_KEY", raising=False)  # Bybit's risk-limit endpoint is public
    monkeypatch.delenv("BOT_API_SECRET", raising=False)
    runner = CliRunner()
    sync = runner.invoke(
        app,
        [
            "contracts",
            "sync",
            "--config",
            str(config_path),
            "--contracts",
            f"{BTC},{ALT}",
            "--json",
        ],
    )
    assert sync.exit_code == 0, sync.output
    assert set(json.loads(sync.stdout)["written"]) == {BTC, ALT}
    assert server.calls("/v5/market/risk-limit")
    shown = runner.invoke(app, ["contracts", "show", ALT, "--config", str(config_path), "--json"])
    assert shown.exit_code == 0, shown.output
    alt = json.loads(shown.stdout)
    want = server.backend.instrument(ALT)
    assert D(alt["tick_size"]) == want.tick_size
    assert [D(b["notional_cap"]) for b in alt["brackets"]] == [
        b.notional_cap for b in want.brackets
    ]
    assert [D(b["maint_margin_rate"]) for b in alt["brackets"]] == [
        b.maint_margin_rate for b in want.brackets
    ]
    assert [D(b["maint_amount"]) for b in alt["brackets"]] == [
        b.maint_amount for b in want.brackets
    ]


def test_bybit_download_equals_the_server_and_resumes(
    config_path: Path, server: LoopbackBybit
) -> None:
    args = [
        "data",
        "download",
        "--config",
        str(config_path),
        "--contracts",
        f"{BTC},{ALT}",
        "--timeframes",
        "1h",
        "--start",
        _day(3),
        "--end",
        _day(2),
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    data = config_path.parent / "data"
    lo, hi = _day_ms(3), _day_ms(1)
    for sym in (BTC, ALT):
        stem = sym.replace("/", "_").replace(":", "_")
        for kind, suffix in KIND_SUFFIXES:
            want = [r for r in server._candles[(sym, kind)] if lo <= r[0] < hi]
            got = _file_rows(data / f"{stem}-1h{suffix}.csv.gz")
            assert [int(g[0]) for g in got] == [w[0] for w in want]
            for g, w in zip(got, want, strict=True):
                assert [float(x) for x in g[1:5]] == [float(x) for x in w[1:5]]
        gaps = json.loads((data / f"{stem}-1h.gaps.json").read_text())
        assert gaps == [[lo + 5 * HOUR, lo + 8 * HOUR]]
        funding = _file_rows(data / f"{stem}-funding.csv.gz")
        want_f = [(t, r) for t, r in server._funding_history[sym] if lo <= t < hi]
        assert [(int(a), float(b)) for a, b in funding] == [(t, float(r)) for t, r in want_f]
    before = len(server.calls("/v5/market/kline")) + len(
        server.calls("/v5/market/mark-price-kline")
    )
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["added"] == 0
    after = len(server.calls("/v5/market/kline")) + len(server.calls("/v5/market/mark-price-kline"))
    assert after == before


def test_bybit_sync_download_then_simulate(
    config_path: Path, server: LoopbackBybit, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole path for a contract the bundled snapshot lacks (a stand-in until then): its
    specification from the venue, its history from the venue, then a simulation on both."""
    monkeypatch.delenv("BOT_API_KEY", raising=False)
    monkeypatch.delenv("BOT_API_SECRET", raising=False)
    runner = CliRunner()
    cfg = str(config_path)
    download = runner.invoke(
        app,
        [
            "data",
            "download",
            "--config",
            cfg,
            "--contracts",
            ALT,
            "--timeframes",
            "1h",
            "--start",
            _day(11),
            "--end",
            _day(1),
        ],
    )
    assert download.exit_code == 0, download.output
    # Before the sync: Binance's figures for the same contract stand in, and the run says so.
    before = runner.invoke(app, ["simulate", "--config", cfg, "--out", str(tmp_path / "x")])
    assert before.exit_code == 0, before.output
    said = " ".join(before.output.split())
    assert f"warning: {ALT} ran on STAND-IN figures" in said
    assert "bot contracts sync" in said
    sync = runner.invoke(app, ["contracts", "sync", "--config", cfg, "--contracts", ALT])
    assert sync.exit_code == 0, sync.output
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--config", cfg, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "STAND-IN" not in result.output  # the venue's own figures now
    report = json.loads((out / "report.json").read_text())
    assert report["contracts"] == [ALT]
    assert report["n_trades"] > 0
