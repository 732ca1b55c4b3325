"""A position the trader opened by hand on a contract the bot once traded and has dropped from
the configuration does not refuse the start.

The start's check of dropped contracts (``preflight.positions_left_behind``) took any contract
the bot ever filled an entry on for the bot's, while the start's reconcile judges a position by
what the last run held (``reconcile.held_by_last_run``): after the bot's ETH position ended and
the last run recorded ETH flat, a short the trader opened there by hand refused every start
until they closed their own position, and the bot could not protect its other positions
meanwhile. Real ccxt against the loopback Binance USD-M; the trader acts on the venue's side."""

from __future__ import annotations

import io
from decimal import Decimal as D
from pathlib import Path

import pytest
from rich.console import Console

from bot.bootstrap import ENV_KEY, ENV_SECRET
from bot.cli.run import run_bot
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import hourly_rows, live_config_text

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "drop-key-7f3a9c1d5b", "drop-secret-2b8e6f4a0c9d71"


def _run_once(config: Path) -> tuple[int, str]:
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


def _market(cid: str, side: OrderSide, qty: D, purpose: OrderPurpose, reduce: bool) -> OrderRequest:
    return OrderRequest(cid, ETH, side, OrderType.MARKET, purpose, qty, reduce)


def test_a_hand_position_on_a_dropped_contract_the_bot_once_traded_is_left_alone(
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
        with_eth = btc_only.replace(
            "[data]", f'[[contracts]]\nsymbol = "{ETH}"\ndirection = "long"\n\n[data]', 1
        )
        config = tmp_path / "config.toml"
        config.write_text(with_eth)
        assert _run_once(config)[0] == 0
        held = backend.fetch_positions([ETH])[ETH].qty
        assert held > 0, "the bot did not enter ETH: the test would prove nothing"
        # the bot's ETH position ends (by hand here; a stop-out is the same), its orders gone,
        # and the bot runs once more with ETH configured: the last run records it flat
        backend.place_order(_market("hand-close-1", OrderSide.SELL, held, OrderPurpose.CLOSE, True))
        for o in backend.fetch_open_orders(ETH):
            backend.cancel_order(ETH, o.client_id)
        assert _run_once(config)[0] == 0
        assert ETH not in backend.fetch_positions([ETH])
        # later the trader shorts ETH by hand, and drops ETH from the bot's configuration
        backend.place_order(
            _market("myhand-1", OrderSide.SELL, D("0.5"), OrderPurpose.ENTRY, False)
        )
        config.write_text(btc_only)
        rc, out = _run_once(config)
        assert rc == 0, out
        assert "not opened by this bot" in out
    assert backend.fetch_positions([ETH])[ETH].qty == D("-0.5")  # left alone
