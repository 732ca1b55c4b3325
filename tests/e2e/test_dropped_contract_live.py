"""A contract dropped from the configuration while the bot's position and stop still sit on it
(``bot run --live --once`` against loopback Binance USD-M). The start read the configured
contracts' positions only: it said nothing of ETH, the equity its loss limits measured left
ETH's unrealised PnL out (a gain in the day's start read as a loss: a halt, and a flatten of
the rest of the book), and the loss budget and gross cap no longer counted ETH's stop risk.
Now the start refuses, naming ETH, and sends nothing."""

from __future__ import annotations

import io
from decimal import Decimal as D
from pathlib import Path

import pytest
from rich.console import Console

from bot.bootstrap import ENV_KEY, ENV_SECRET
from bot.cli.run import run_bot
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose
from bot.errors import ConfigError
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import hourly_rows, live_config_text

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "drop-key-7f3a9c1d5b", "drop-secret-2b8e6f4a0c9d71"


def run_once(config: Path) -> tuple[int, str]:
    out = io.StringIO()
    rc = run_bot(
        config,
        live=True,
        yes=True,
        once=True,
        ticks=None,
        replay=None,
        speed=1.0,
        console=Console(file=out, width=250),
    )
    return rc, out.getvalue()


def test_a_start_without_a_contract_the_bot_holds_refuses_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, KEY)
    monkeypatch.setenv(ENV_SECRET, SECRET)
    inst = load_instruments("binanceusdm")
    backend = SimulatedExchange(
        {s: inst[s] for s in (BTC, ETH)},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.ISOLATED,
    )
    server = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH]
    )
    for sym in (BTC, ETH):
        rows = hourly_rows(400, sym)
        server.set_candles(sym, "trade", rows)
        server.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with server:
        btc_only = live_config_text(
            name="drop",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
        eth = f'[[contracts]]\nsymbol = "{ETH}"\ndirection = "long"\n\n'
        config = tmp_path / "config.toml"
        config.write_text(btc_only.replace("[data]", eth + "[data]", 1))
        rc, out = run_once(config)
        assert rc == 0, out
        held = backend.fetch_positions([BTC, ETH])
        assert held[ETH].qty > 0
        resting = sorted(o.client_id for o in backend.fetch_open_orders(ETH))
        assert any(o.purpose is OrderPurpose.STOP_LOSS for o in backend.fetch_open_orders(ETH))
        backend.set_mark(ETH, backend.marks[ETH] * D("1.10"))

        config.write_text(btc_only)  # the trader drops ETH and starts again
        sent_before = [r for r in server.requests if r.method in ("POST", "DELETE", "PUT")]
        with pytest.raises(ConfigError, match="preflight failed") as refused:
            run_once(config)

        said = " ".join(str(refused.value).split())
        assert f"the bot's position on {ETH} (position {held[ETH].qty}" in said  # (as the venue)
        assert "is on a contract no longer in the configuration" in said
        assert "List the contract in the configuration again" in said
        assert [r for r in server.requests if r.method in ("POST", "DELETE", "PUT")] == sent_before
        assert backend.fetch_positions([BTC, ETH]) == held
        assert sorted(o.client_id for o in backend.fetch_open_orders(ETH)) == resting
        assert server.errors == []
