"""A live tick for two contracts: reads and protection go out together, each contract in order.

``bot run --live --once`` against the loopback venue with BTC and ETH. One read of ETH's
conditional orders is held by the venue past ccxt's timeout; while it hangs, the other reads of the
tick reach the venue (one after the other, nothing would arrive until the timeout). When the marks
move, each contract's replacement stop is placed before its old stop is cancelled, and no order is
placed twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.e2e import test_live_loopback as live
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.live_setup import hourly_rows
from tests.fakes.loopback_core import Reply

pytestmark = pytest.mark.slow
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
ETH_PER_BTC = D("0.05")


@pytest.fixture
def backend() -> SimulatedExchange:
    known = load_instruments("binanceusdm")
    return SimulatedExchange(
        {BTC: known[BTC], ETH: known[ETH]},
        LiveClock(),
        starting_balance=D(20000),
        margin_mode=MarginMode.ISOLATED,
    )


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        backend, api_key=live.KEY, api_secret=live.SECRET, clock=LiveClock(), symbols=[BTC, ETH]
    )
    srv.timeout_hold_s = 3.0  # beyond the client's 2.5 s
    btc = hourly_rows(400)
    eth_inst = backend.instrument(ETH)

    def eth_px(x: D) -> D:
        return eth_inst.floor_price(x * ETH_PER_BTC)

    eth = [(r[0], eth_px(r[1]), eth_px(r[2]), eth_px(r[3]), eth_px(r[4]), r[5]) for r in btc]
    for sym, rows in ((BTC, btc), (ETH, eth)):
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with srv:
        yield srv


@pytest.fixture
def config_path(tmp_path: Path, server: LoopbackBinance, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOT_API_KEY", live.KEY)
    monkeypatch.setenv("BOT_API_SECRET", live.SECRET)
    contracts = "".join(
        f'[[contracts]]\nsymbol = "{s}"\ndirection = "long"\n\n' for s in (BTC, ETH)
    )
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[account]
name = "e2e"
starting_balance = 20000
margin_mode = "isolated"

{contracts}
[data]
dir = "{live.ROOT / "data" / "sample"}"

[policy]
file = "{live.ROOT / "policies" / "vol_target.toml"}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 10
max_notional_per_contract = 50000
daily_loss_limit = 0.05
max_drawdown = 0.25
stale_data_seconds = 7200
max_orders_per_minute = 60

[simulation]
slippage_bps = 2

[exchange]
name = "binanceusdm"
demo = false
api_url = "{server.base_url}"
ccxt_options = {{ enableRateLimit = false, timeout = 2500 }}
max_parallel_requests = 4

[runtime]
database_url = "sqlite:///{tmp_path / "state.db"}"
log_dir = "{tmp_path / "logs"}"
"""
    )
    return path


def test_reads_and_protection_go_out_together_each_contract_in_order(
    config_path: Path, server: LoopbackBinance, backend: SimulatedExchange, tmp_path: Path
) -> None:
    with (tmp_path / "console.txt").open("w") as out:
        console = Console(file=out, width=200)
        assert live.tick(config_path, console) == 0
        for sym in (BTC, ETH):
            kinds = {o.purpose for o in backend.fetch_open_orders(sym)}
            assert OrderPurpose.STOP_LOSS in kinds, sym

        arrivals = record_arrivals(server)
        server.inject(Fault("/fapi/v1/openAlgoOrders", "GET", kind="timeout"))
        for sym in (BTC, ETH):
            backend.set_mark(
                sym, backend.instrument(sym).floor_price(backend.marks[sym] * D("1.03"))
            )
        first = len(server.requests)
        assert live.tick(config_path, console) == 0

    # while the timed-out read hung, the tick's other reads reached the venue
    # (the venue still holds it when the tick is over: the client gave up after 2.5 s)
    held = next(a for a in arrivals if a["path"] == "/fapi/v1/openAlgoOrders" and a["held"])
    hung_until = held["start"] + 2.5
    during = [a for a in arrivals if a is not held and held["start"] < a["start"] < hung_until]
    assert len(during) >= 3, f"only {len(during)} requests arrived while one hung"

    # each contract: the new stop was placed before the old one was cancelled
    log = server.requests[first:]
    for sym in (BTC, ETH):
        market_id = sym.split("/")[0] + "USDT"
        posts = [
            i
            for i, r in enumerate(log)
            if (r.method, r.path) == ("POST", "/fapi/v1/algoOrder")
            and r.params.get("symbol") == market_id
            and r.params.get("type") == "STOP_MARKET"
        ]
        cancels = [
            i
            for i, r in enumerate(log)
            if (r.method, r.path) == ("DELETE", "/fapi/v1/algoOrder")
            and r.params.get("symbol") == market_id
        ]
        assert posts, f"{sym}: the stop was not replaced"
        assert cancels, f"{sym}: the old stop was not cancelled"
        assert posts[0] < cancels[0], f"{sym}: old stop cancelled before the new one was placed"
        stops = [o for o in backend.fetch_open_orders(sym) if o.purpose is OrderPurpose.STOP_LOSS]
        assert len(stops) == 1
    ids = [o.client_id for o in backend.orders.values()]
    assert len(ids) == len(set(ids))


def record_arrivals(loopback: LoopbackBinance) -> list[dict[str, Any]]:
    """When each request arrived (monotonic seconds), and whether a timeout fault awaited it."""
    arrivals: list[dict[str, Any]] = []
    lock = threading.Lock()
    handle = loopback.handle
    clock = LiveClock()

    def timed(
        method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> Reply | None:
        with lock:
            # the fault this request will meet, if any (faults are served in injection order)
            pending = [p.fault for p in loopback._faults if p.fault.path == path]
            entry = {"path": path, "start": clock.monotonic(), "held": bool(pending)}
            arrivals.append(entry)
        return handle(method, path, query, body, headers)

    loopback.handle = timed  # type: ignore[method-assign]
    return arrivals
