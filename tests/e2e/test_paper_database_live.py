"""A trader's first day through the CLI, against the loopback Binance USD-M: paper-trade with
``bot run --config my.toml``, then go live with ``bot run --config my.toml --live`` (README,
"Paper and live trading"), both on the one ``database_url`` of ``my.toml``.

The live bot took the paper account's equity peak (10,000) as the real account's: with a wallet
of 6,000 its first tick recorded a sticky drawdown halt and closed every position, the trader's
own hand-opened BTC long included (``direction = "follow"``), and logged the paper position as
closed outside the bot. The live start is refused now, before it sends a request; on a database
of its own it trades, and records the venue account it traded, so that a later live start on
another one (here a test server at another ``api_url``) is refused the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.bootstrap import ENV_KEY, ENV_SECRET
from bot.cli.app import app
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from bot.store import views
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import live_config_text, serve_btc_history

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"
KEY, SECRET = "first-day-key-51c7", "first-day-secret-9e0b"


@pytest.fixture
def venue() -> SimulatedExchange:
    """The trader's real account: 6,000 USDT (the paper account starts at 10,000)."""
    return SimulatedExchange(
        {BTC: load_instruments("binanceusdm")[BTC]},
        LiveClock(),
        starting_balance=D(6000),
        margin_mode=MarginMode.ISOLATED,
    )


@pytest.fixture
def server(venue: SimulatedExchange, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackBinance]:
    monkeypatch.setenv(ENV_KEY, KEY)
    monkeypatch.setenv(ENV_SECRET, SECRET)
    srv = LoopbackBinance(venue, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, venue)
    with srv:
        yield srv


def my_toml(tmp_path: Path, base_url: str, database: str, direction: str = "long") -> str:
    path = tmp_path / "my.toml"
    path.write_text(
        live_config_text(
            name="me",
            venue="binanceusdm",
            base_url=base_url,
            database=tmp_path / database,
            log_dir=tmp_path / "logs",
            direction=direction,
        )
    )
    return str(path)


def bot(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def database_of(config: str) -> SqlStore:
    return SqlStore.open(load_config(Path(config)).runtime.database_url)


@pytest.mark.parametrize("direction", ["long", "follow"])
def test_a_live_start_on_the_paper_bots_database_is_refused_before_any_request(
    tmp_path: Path, server: LoopbackBinance, venue: SimulatedExchange, direction: str
) -> None:
    if direction == "follow":  # the trader's own long, opened in the venue's app
        hand = OrderRequest(
            "web_1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.05"), False
        )
        venue.place_order(hand)
    config = my_toml(tmp_path, server.base_url, "bot-state.db", direction)
    code, out = bot("run", "--config", config, "--once", "--replay", str(ROOT / "data" / "sample"))
    assert code == 0, out

    code, out = bot("run", "--config", config, "--live", "--yes", "--once")

    assert code == 2, out
    assert "runtime.database_url" in out
    assert str(tmp_path / "bot-state.db") in out
    assert "holds the state of a paper-replay bot" in out
    assert "set another runtime.database_url for this live bot" in out
    assert server.requests == []  # refused before the venue was asked anything
    held = {s: p.qty for s, p in venue.fetch_positions([BTC]).items()}
    assert held == ({BTC: D("0.05")} if direction == "follow" else {})  # the trader's, untouched
    store = database_of(config)
    try:
        assert views.latest_run_mode(store) == "paper-replay"  # no live run recorded
        memory = store.load_risk_memory()
        assert memory is not None
        assert memory.state is TradingState.ACTIVE  # no drawdown halt recorded
    finally:
        store.close()


def test_on_a_database_of_its_own_it_trades_and_another_venue_account_is_refused(
    tmp_path: Path, server: LoopbackBinance, venue: SimulatedExchange
) -> None:
    paper = my_toml(tmp_path, server.base_url, "bot-state.db")
    code, out = bot("run", "--config", paper, "--once", "--replay", str(ROOT / "data" / "sample"))
    assert code == 0, out

    live = my_toml(tmp_path, server.base_url, "bot-state-live.db")  # the fix the message gives
    code, out = bot("run", "--config", live, "--live", "--yes", "--once")
    assert code == 0, out
    store = database_of(live)
    try:
        run = views.latest_run(store)
        assert run is not None
        assert (run.mode, run.venue) == ("live", f"binanceusdm via {server.base_url}")
        memory = store.load_risk_memory()
        assert memory is not None
        assert memory.state is TradingState.ACTIVE
        assert memory.peak_equity == D(6000)  # the real wallet's, not the paper account's
    finally:
        store.close()
    assert venue.fetch_positions([BTC])[BTC].qty > 0  # it traded

    # The same database, live on another venue account (a test server elsewhere): refused
    # before anything is asked of it (nothing listens on port 9: asked, it would fail there).
    other = my_toml(tmp_path, "http://127.0.0.1:9", "bot-state-live.db")
    code, out = bot("run", "--config", other, "--live", "--yes", "--once")
    assert code == 2, out
    assert f"holds the state of a live bot on binanceusdm via {server.base_url}" in out
    assert "this start trades binanceusdm via http://127.0.0.1:9, another account" in out
