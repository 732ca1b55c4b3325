"""End to end: a hedge leg live against the loopback Binance USD-M server, and on paper.

Live (the real ccxt code path on 127.0.0.1): ETH long under the hedged policy, the BTC perpetual
as the hedge, spot BTC read from the venue's spot wallet. The hedge leg must be opened short,
protected by a reduce-only mark-price stop sized to it, reconciled, and left untouched by a
restart. Paper (recorded data): the same policy; the hedge leg survives a restart with its stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from rich.console import Console

from bot.bootstrap import build_paper, open_store
from bot.cli.reports import status_data
from bot.cli.run import run_bot
from bot.clock import LiveClock, SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.domain.enums import MarginMode, OrderPurpose
from bot.errors import ConfigError
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import hourly_rows

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "e2e-key-hedge-41c7", "e2e-secret-hedge-9a03d2"
HOUR = 3_600_000


def hedged_policy(tmp: Path) -> Path:
    """The shipped hedged policy, market-neutral with a tight band so the first tick hedges."""
    text = (ROOT / "policies" / "vol_target_hedged.toml").read_text()
    text = text.replace("target_net_exposure = 0.5", "target_net_exposure = 0")
    text = text.replace("band = 0.5", "band = 0.1")
    text = text.replace("cooldown_minutes = 240", "cooldown_minutes = 0")
    # Wide loss limits: the loss budget in the stops does not resize the book between ticks.
    text = text.replace("daily_loss = 0.05", "daily_loss = 0.5")
    text = text.replace("max_drawdown = 0.25", "max_drawdown = 0.5")
    path = tmp / "hedged.toml"
    path.write_text(text)
    return path


CONFIG = """
[account]
name = "{name}"
starting_balance = 10000
margin_mode = "isolated"

[[contracts]]
symbol = "{eth}"
direction = "long"

[spot]
source = "{source}"
[[spot.holdings]]
asset = "BTC"
{quantity}

[data]
dir = "{data}"

[policy]
file = "{policy}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 8
max_notional_per_contract = 50000
daily_loss_limit = 0.5
max_drawdown = 0.5
stale_data_seconds = 7200
max_orders_per_minute = 30

[simulation]
start = 2025-06-02
slippage_bps = 2

{exchange}

[runtime]
database_url = "sqlite:///{db}"
log_dir = "{logs}"
"""


def write_config(tmp: Path, *, name: str, source: str, quantity: str, exchange: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(
        CONFIG.format(
            name=name,
            eth=ETH,
            source=source,
            quantity=quantity,
            data=ROOT / "data" / "sample",
            policy=hedged_policy(tmp),
            exchange=exchange,
            db=tmp / "state.db",
            logs=tmp / "logs",
        )
    )
    return path


@pytest.fixture
def backend() -> SimulatedExchange:
    known = load_instruments("binanceusdm")
    return SimulatedExchange(
        {s: known[s] for s in (ETH, BTC)},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.ISOLATED,
    )


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[ETH, BTC]
    )
    for sym in (ETH, BTC):
        rows = hourly_rows(400, sym)
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    srv.spot_balances = {"BTC": (D("0.03"), D("0.01"))}  # 0.04 BTC held in the spot wallet
    with srv:
        yield srv


def assert_hedge_protected(ex: SimulatedExchange) -> D:
    """The hedge is short, with exactly one reduce-only stop above the mark, sized to it."""
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty < 0
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert len(stops) == 1
    assert stops[0].reduce_only
    assert stops[0].amount == -pos.qty
    assert stops[0].trigger_price is not None
    assert stops[0].trigger_price > ex.marks[BTC]
    return pos.qty


def test_live_hedge_leg_is_protected_reconciled_and_survives_a_restart(
    tmp_path: Path,
    server: LoopbackBinance,
    backend: SimulatedExchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_API_KEY", KEY)
    monkeypatch.setenv("BOT_API_SECRET", SECRET)
    exchange = (
        f'[exchange]\nname = "binanceusdm"\ndemo = false\napi_url = "{server.base_url}"\n'
        "ccxt_options = { enableRateLimit = false, timeout = 2500 }"
    )
    cfg = write_config(tmp_path, name="e2eh", source="exchange", quantity="", exchange=exchange)
    with (tmp_path / "console.txt").open("w") as out:
        console = Console(file=out, width=200)

        def run_once() -> int:
            return run_bot(
                cfg, live=True, yes=True, once=True, ticks=None, replay=None, speed=1.0,
                console=console,
            )  # fmt: skip

        assert run_once() == 0
        eth = backend.fetch_positions([ETH])[ETH]
        assert eth.qty > 0
        hedge = assert_hedge_protected(backend)
        assert server.calls("/api/v3/account", "GET")  # spot read from the spot wallet
        # The hedge covers the ETH book and the 0.04 spot BTC: market-neutral within the band.
        config = load_config(cfg)
        store = open_store(config, create=True)
        btc_decision = next(
            r.decision for r in store.recent_decisions(10) if r.decision.symbol == BTC
        )
        assert "book beta-delta" in btc_decision.reason
        assert "-> hedge" in btc_decision.reason
        store.close()
        assert abs(hedge) > D("0.04")  # more than the spot alone: the ETH long too
        # A restart with nothing changed reconciles and touches nothing.
        before = dict(backend.orders)
        assert run_once() == 0
        assert backend.orders.keys() == before.keys()
        assert assert_hedge_protected(backend) == hedge
        store = open_store(config, create=True)
        assert store.unresolved_orders() == []
        kinds = {e.kind for e in store.recent_events(100)}
        assert "denied" not in kinds
        store.close()
    assert server.errors == []


def test_paper_hedge_leg_survives_a_restart(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, name="paperh", source="config", quantity="quantity = 0.04", exchange=""
    )
    config = load_config(cfg)
    start = 1_748_822_400_000  # 2025-06-02T00:00Z

    def run(start_ms: int, n: int) -> tuple[int, D]:
        store = open_store(config, create=True)
        clock = SimClock(start_ms)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        try:
            for _ in range(n):
                assert runner.tick() is not None
                clock.advance_to(clock.now_ms() + HOUR)
            return clock.now_ms(), assert_hedge_protected(paper.sim)
        finally:
            paper.save()
            store.close()

    end, hedge = run(start, 3)
    _, hedge_after = run(end, 2)  # restarted from the saved paper account
    assert hedge_after < 0
    store = open_store(config, create=True)
    assert store.unresolved_orders() == []
    btc_orders = [o for o in store.recent_orders(1000) if o.request.symbol == BTC]
    entries = [o for o in btc_orders if o.request.purpose is OrderPurpose.ENTRY]
    assert entries  # the hedge was opened by the bot, so it is the bot's after the restart
    row = next(r for r in status_data(config, store)["contracts"] if r["symbol"] == BTC)
    assert row["direction"] == "hedge"  # `bot status` shows the hedge leg with its stop
    assert row["stop_loss"]
    assert D(row["position"]) == hedge_after
    # The dashboard shows it too, its leverage on the whole equity.
    (leg,) = [c for c in AccountSource(config, store).overview(end).contracts if c.symbol == BTC]
    assert leg.direction == "hedge"
    assert leg.qty == hedge_after
    assert leg.stop_loss is not None
    assert not any(
        e.kind == "reconcile" and "not opened by this bot" in e.reason
        for e in store.recent_events(1000)
    )
    store.close()
    assert abs(hedge_after - hedge) <= abs(hedge)  # held or rebalanced, never flipped


def test_live_start_names_the_policy_key_of_a_hedge_instrument_the_venue_does_not_list(
    tmp_path: Path, server: LoopbackBinance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue lists ETH and BTC only; the policy hedges with SOL. The bot refuses to start
    and says which key of which file names the symbol (it said only that the specifications
    were never read, or that the venue has no market 'SOL/USDT:USDT')."""
    monkeypatch.setenv("BOT_API_KEY", KEY)
    monkeypatch.setenv("BOT_API_SECRET", SECRET)
    exchange = (
        f'[exchange]\nname = "binanceusdm"\ndemo = false\napi_url = "{server.base_url}"\n'
        "ccxt_options = { enableRateLimit = false, timeout = 2500 }"
    )
    cfg = write_config(tmp_path, name="e2eu", source="config", quantity="", exchange=exchange)
    text = cfg.read_text()
    spot = text[text.index("[spot]") : text.index("[data]")]
    cfg.write_text(text.replace(spot, ""))
    policy = tmp_path / "hedged.toml"
    policy.write_text(policy.read_text().replace('["BTC/USDT:USDT"]', '["SOL/USDT:USDT"]'))
    with (tmp_path / "console.txt").open("w") as out, pytest.raises(ConfigError) as info:
        run_bot(
            cfg, live=True, yes=True, once=True, ticks=None, replay=None, speed=1.0,
            console=Console(file=out, width=200),
        )  # fmt: skip
    message = str(info.value)
    assert "hedge.instruments[0] = 'SOL/USDT:USDT'" in message
    assert "binanceusdm lists no such market" in message
    assert not server.calls("/fapi/v1/order", "POST")  # nothing was sent
