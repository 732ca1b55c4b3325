"""``bot data download`` and ``bot contracts sync|list|show`` against the loopback Binance server.

The real ccxt code path (HTTP, paging, parsing) reads what the server holds: the files must equal
the server's closed candles and funding rates row for row; a second run fetches nothing; a run
interrupted mid-way resumes without duplicating a row; the catalogue holds what the venue says.
"""

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
from bot.exchange.history_download import HistoryDownloader
from bot.instruments import load_instruments
from bot.marketdata.files import discover
from bot.sim.exchange import SimulatedExchange
from tests.fakes.binance_history import LoopbackBinanceHistory
from tests.fakes.binance_loopback import CandleRow, Fault
from tests.fakes.live_setup import live_config_text

ADA, DOGE = "ADA/USDT:USDT", "DOGE/USDT:USDT"
KEY, SECRET = "hist-key-1c9e", "hist-secret-77ab0f"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
TFS = {"1m": MINUTE, "5m": 5 * MINUTE, "1h": HOUR}

KIND_SUFFIXES: tuple[tuple[Literal["trade", "mark"], str], ...] = (("trade", ""), ("mark", "-mark"))


def _day_ms(days_ago: int) -> int:
    now = LiveClock().now_ms()
    return now - now % DAY - days_ago * DAY


def _series(
    seed: int, start: int, end: int, step: int, gap: tuple[int, int] | None
) -> list[CandleRow]:
    rng = random.Random(seed)
    price = D("0.5") + D(seed % 7) / 10
    rows: list[CandleRow] = []
    for ts in range(start, end, step):
        o = price
        c = (o * (1 + D(rng.randint(-30, 30)) / 10000)).quantize(D("0.00001"))
        h = max(o, c) + D(rng.randint(0, 5)) / 10000
        low = min(o, c) - D(rng.randint(0, 5)) / 10000
        price = c
        if gap is not None and gap[0] <= ts < gap[1]:
            continue  # the venue really has nothing here
        rows.append((ts, o, h, low, c, D(rng.randint(1000, 90000))))
    return rows


START_DAYS_AGO, END_DAYS_AGO = 3, 2  # window: two whole days that ended yesterday 00:00


@pytest.fixture
def server() -> Iterator[LoopbackBinanceHistory]:
    bundled = load_instruments("binanceusdm")
    # ADA carries BTC's bracket table and a finer tick: a catalogue that shows them read them
    # from the server, not from the bundled snapshot.
    ada = replace(bundled[ADA], tick_size=D("0.00001"), brackets=bundled["BTC/USDT:USDT"].brackets)
    backend = SimulatedExchange(
        {ADA: ada, DOGE: bundled[DOGE]},
        LiveClock(),
        starting_balance=D(1000),
        margin_mode=MarginMode.ISOLATED,
    )
    srv = LoopbackBinanceHistory(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[ADA, DOGE]
    )
    start, end = _day_ms(START_DAYS_AGO + 1), _day_ms(-1)  # beyond the window, up to now
    now = LiveClock().now_ms()
    for n, sym in enumerate((ADA, DOGE)):
        for tf, step in TFS.items():
            gap = (_day_ms(START_DAYS_AGO) + 7 * HOUR, _day_ms(START_DAYS_AGO) + 9 * HOUR)
            stop = now - now % step + step  # includes the forming bar
            srv.set_series(
                sym, "trade", tf, _series(n * 10 + len(tf), start, min(end, stop), step, gap)
            )
            srv.set_series(sym, "mark", tf, _series(n * 10 + 5, start, min(end, stop), step, gap))
        srv.set_funding(
            sym,
            [
                (ts, D(random.Random(ts + n).randint(-20, 40)) / 1000000)
                for ts in range(start, end, 8 * HOUR)
            ],
        )
        backend.set_mark(sym, D("0.5"))
    with srv:
        yield srv


@pytest.fixture
def config_path(tmp_path: Path, server: LoopbackBinanceHistory) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="hist",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            symbol=ADA,
            starting_balance=1000,
            max_orders_per_minute=30,
            data_dir=data,
        )
    )
    return path


def _file_rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    return [line.split(",") for line in lines[1:]]


def _day(days_ago: int) -> str:
    return datetime.fromtimestamp(_day_ms(days_ago) / 1000, tz=UTC).strftime("%Y-%m-%d")


def _download(config_path: Path, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "--config",
            str(config_path),
            "--contracts",
            f"{ADA},{DOGE}",
            "--timeframes",
            "1m,5m,1h",
            "--start",
            _day(START_DAYS_AGO),
            "--end",
            _day(END_DAYS_AGO),
            "--json",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


def test_download_equals_the_server_and_a_second_run_fetches_nothing(
    config_path: Path, server: LoopbackBinanceHistory
) -> None:
    server.inject(Fault("/fapi/v1/klines", "GET", kind="rate_limit", retry_after=1))
    first = _download(config_path)
    data = config_path.parent / "data"
    lo, hi = _day_ms(START_DAYS_AGO), _day_ms(END_DAYS_AGO - 1)
    for sym in (ADA, DOGE):
        stem = sym.replace("/", "_").replace(":", "_")
        for tf, step in TFS.items():
            for kind, suffix in KIND_SUFFIXES:
                want = [r for r in server._series[(sym, kind, step)] if lo <= r[0] < hi]
                got = _file_rows(data / f"{stem}-{tf}{suffix}.csv.gz")
                assert [int(g[0]) for g in got] == [w[0] for w in want], (sym, tf, kind)
                for g, w in zip(got, want, strict=True):
                    assert [float(x) for x in g[1:5]] == [float(x) for x in w[1:5]]
                    assert float(g[5]) == (float(w[5]) if kind == "trade" else 0.0)
            gaps = json.loads((data / f"{stem}-{tf}.gaps.json").read_text())
            assert gaps == [[lo + 7 * HOUR, lo + 9 * HOUR]]  # the venue's real hole, recorded
        funding = _file_rows(data / f"{stem}-funding.csv.gz")
        want_f = [(ts, r) for ts, r in server._funding_history[sym] if lo <= ts < hi]
        assert [(int(a), float(b)) for a, b in funding] == [(t, float(r)) for t, r in want_f]
    assert first["added"] == sum(
        len([r for r in rows if lo <= r[0] < hi]) for rows in server._series.values()
    ) + sum(len([t for t, _ in f if lo <= t < hi]) for f in server._funding_history.values())
    inventory = discover(data)  # the simulator reads what was written
    assert inventory.trade_timeframes(ADA) == ["1m", "5m", "1h"]
    inventory.load_candles(ADA, "1m", "mark")

    klines = len(server.calls("/fapi/v1/klines")) + len(server.calls("/fapi/v1/markPriceKlines"))
    second = _download(config_path)
    assert second["added"] == 0
    after = len(server.calls("/fapi/v1/klines")) + len(server.calls("/fapi/v1/markPriceKlines"))
    assert after == klines  # nothing was asked again, the known hole included


def test_an_interrupted_download_resumes_without_duplicates(
    config_path: Path, server: LoopbackBinanceHistory, tmp_path: Path
) -> None:
    from bot.exchange.factory import make_ccxt_exchange

    ex = make_ccxt_exchange(
        "binanceusdm",
        demo=False,
        api_url=server.base_url,
        options={"enableRateLimit": False},
        api_key=None,
        api_secret=None,
        password=None,
        clock=LiveClock(),
    ).exchange
    out = tmp_path / "resume"
    pages = {"n": 0}

    def stop_after_three(label: str, done: int, total: int) -> None:
        pages["n"] += 1
        if pages["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C

    lo, hi = _day_ms(START_DAYS_AGO), _day_ms(END_DAYS_AGO - 1)
    loader = HistoryDownloader(
        ex, out, clock=LiveClock(), page_limit=500, progress=stop_after_three
    )
    with pytest.raises(KeyboardInterrupt):
        loader.run([ADA], ["1m"], lo, hi)
    partial = _file_rows(out / "ADA_USDT_USDT-1m.csv.gz")
    assert 0 < len(partial) < 2 * 1440  # what was fetched is on disk, whole
    calls_before = len(server.calls("/fapi/v1/klines"))
    result = HistoryDownloader(ex, out, clock=LiveClock(), page_limit=500).run(
        [ADA], ["1m"], lo, hi
    )
    rows = _file_rows(out / "ADA_USDT_USDT-1m.csv.gz")
    want = [r for r in server._series[(ADA, "trade", MINUTE)] if lo <= r[0] < hi]
    assert [int(r[0]) for r in rows] == [w[0] for w in want]  # complete, no duplicate
    assert rows[: len(partial)] == partial  # kept byte for byte
    assert result.series[0].added == len(want) - len(partial)
    assert len(server.calls("/fapi/v1/klines")) - calls_before < 6  # only the missing pages


def test_the_forming_candle_is_never_written(
    server: LoopbackBinanceHistory, tmp_path: Path
) -> None:
    from bot.exchange.factory import make_ccxt_exchange

    ex = make_ccxt_exchange(
        "binanceusdm",
        demo=False,
        api_url=server.base_url,
        options={"enableRateLimit": False},
        api_key=None,
        api_secret=None,
        password=None,
        clock=LiveClock(),
    ).exchange
    now = LiveClock().now_ms()
    HistoryDownloader(ex, tmp_path, clock=LiveClock()).run(
        [DOGE], ["1h"], now - 5 * HOUR, now + HOUR
    )
    rows = _file_rows(tmp_path / "DOGE_USDT_USDT-1h.csv.gz")
    assert int(rows[-1][0]) == now - now % HOUR - HOUR  # the last CLOSED hour
    assert any(r[0] == now - now % HOUR for r in server._series[(DOGE, "trade", HOUR)])


def test_contracts_sync_reads_the_venue_with_keys(
    config_path: Path, server: LoopbackBinanceHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_API_KEY", KEY)
    monkeypatch.setenv("BOT_API_SECRET", SECRET)
    runner = CliRunner()
    sync = runner.invoke(
        app,
        [
            "contracts",
            "sync",
            "--config",
            str(config_path),
            "--contracts",
            f"{ADA},{DOGE}",
            "--json",
        ],
    )
    assert sync.exit_code == 0, sync.output
    assert set(json.loads(sync.stdout)["written"]) == {ADA, DOGE}
    assert server.calls("/fapi/v1/leverageBracket")
    catalogue = json.loads(
        (config_path.parent / "data" / "contracts" / "binanceusdm.json").read_text()
    )
    assert catalogue["read_at"].endswith("Z")
    shown = runner.invoke(app, ["contracts", "show", ADA, "--config", str(config_path), "--json"])
    assert shown.exit_code == 0, shown.output
    ada = json.loads(shown.stdout)
    assert ada["tick_size"] == "0.00001"  # the venue's, not the snapshot's 0.0001
    btc = load_instruments("binanceusdm")["BTC/USDT:USDT"]
    assert [D(b["maint_amount"]) for b in ada["brackets"]] == [b.maint_amount for b in btc.brackets]
    assert [D(b["max_leverage"]) for b in ada["brackets"]] == [b.max_leverage for b in btc.brackets]
    assert "contracts" in ada["from"]
    listed = runner.invoke(app, ["contracts", "list", "--config", str(config_path), "--json"])
    rows = {r["symbol"]: r for r in json.loads(listed.stdout)["contracts"]}
    assert "contracts/binanceusdm.json" in rows[ADA]["source"]
    assert "bundled snapshot" in rows["BTC/USDT:USDT"]["source"]

    # A second sync with a changed venue reports the change.
    book = server.backend.book  # type: ignore[attr-defined]
    book.instruments[ADA] = replace(book.instruments[ADA], min_notional=D(7))
    again = runner.invoke(
        app, ["contracts", "sync", "--config", str(config_path), "--contracts", ADA, "--json"]
    )
    assert again.exit_code == 0, again.output
    assert "min_notional 5 -> 7" in json.loads(again.stdout)["changed"][ADA]


def test_contracts_sync_without_keys_keeps_the_snapshot_brackets(
    config_path: Path, server: LoopbackBinanceHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOT_API_KEY", raising=False)
    monkeypatch.delenv("BOT_API_SECRET", raising=False)
    sync = CliRunner().invoke(
        app, ["contracts", "sync", "--config", str(config_path), "--contracts", DOGE, "--json"]
    )
    assert sync.exit_code == 0, sync.output
    assert "bundled snapshot" in json.loads(sync.stdout)["written"][DOGE]
    assert not server.calls("/fapi/v1/leverageBracket")


def test_unknown_contract_names_both_places_and_the_fix(config_path: Path) -> None:
    shown = CliRunner().invoke(
        app, ["contracts", "show", "NOPE/USDT:USDT", "--config", str(config_path)]
    )
    assert shown.exit_code == 2
    text = " ".join(shown.output.split())
    assert "contracts/binanceusdm.json" in text
    assert "bot/resources/instruments/binanceusdm.json" in text
    assert "bot contracts sync --config CONFIG --contracts NOPE/USDT:USDT" in text
