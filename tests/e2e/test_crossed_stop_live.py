"""No exposure is added on a resting stop or a leverage setting that contradicts the mark, through
the real ccxt path: the live bot against the loopback Binance USD-M and Bybit v5 servers.

Found by the venue-fuzzing review. The live bot holds 0.117 BTC (the loss budget sized it below
its target) with its stop at 109901.6, the mark at 113988.8. Then one field of one answer reads
wrong, the rest of that answer and every other one as the venue sends them:

* the open-orders answer lists the bot's sell stop at ten times its trigger, above the mark. The
  trailing rule took it as the stop to trail from, the risk layer moved it to one tick under the
  mark, the loss budget measured almost no loss there: the bot bought 0.087 and raised its
  leverage setting 3 -> 4 (Binance, one answer); on Bybit, whose job reads the list twice, it
  then closed the whole position at market;
* Binance's leverage setting (``/fapi/v1/symbolConfig``) reads 30 instead of 3: the increase's
  liquidation price, margined at 30x, put its stop 40 USDT under the mark, and the bot bought
  0.087 on it.

The unit-level properties: tests/unit/test_crossed_stop.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from bot.clock import LiveClock
from bot.domain.enums import OrderPurpose
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    BTC,
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import Fault, LoopbackServer

KEY, SECRET = "crossed-key-51c2", "crossed-secret-90ad7e"
SERVERS: dict[str, type[LoopbackServer]] = {"binanceusdm": LoopbackBinance, "bybit": LoopbackBybit}
# Where each venue lists the bot's resting stops, and how many times one job reads the list
# (Bybit's tick reads it again after the protection step).
STOP_LIST = {"binanceusdm": ("/fapi/v1/openAlgoOrders", 1), "bybit": ("/v5/order/realtime", 2)}


@pytest.fixture(params=sorted(SERVERS))
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(venue: str) -> SimulatedExchange:
    return venue_account(venue)


@pytest.fixture
def server(venue: str, backend: SimulatedExchange) -> Iterator[LoopbackServer]:
    srv = SERVERS[venue](backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def bot(tmp_path: Path, venue: str, server: LoopbackServer) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="crossed",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            max_unreadable_reads=3,
        )
    )
    run, store = start_live(path, KEY, SECRET)
    yield run, store
    stop_live(run, store)


def _held(run: Runner, backend: SimulatedExchange) -> tuple[D, D, D | None]:
    """Open the position (the loss budget sizes it below its target) and protect it: its size,
    its leverage setting and its stop's trigger."""
    run.tick()
    run.guard()
    pos = backend.fetch_positions([BTC])[BTC]
    [stop] = _stops(backend)
    assert pos.qty > 0
    return pos.qty, pos.leverage, stop


def _stops(backend: SimulatedExchange) -> list[D | None]:
    return [
        o.trigger_price
        for o in backend.fetch_open_orders(BTC)
        if o.purpose is OrderPurpose.STOP_LOSS
    ]


def _buys(server: LoopbackServer, start: int) -> list[dict[str, Any]]:
    return [
        r.params
        for r in server.requests[start:]
        if r.method == "POST"
        and "order" in r.path.lower()
        and str(r.params.get("side", "")).upper() == "BUY"
    ]


def _rows(reply: Any) -> Any:
    return reply if isinstance(reply, list) else reply["result"]["list"]


def test_a_stop_listed_past_the_mark_adds_no_exposure(
    venue: str,
    bot: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
) -> None:
    run, _ = bot
    qty, setting, trigger = _held(run, backend)
    assert trigger is not None
    assert trigger < backend.marks[BTC]

    def tenfold(reply: Any) -> Any:
        for row in _rows(reply):
            if "-sl-" in str(row.get("clientAlgoId") or row.get("orderLinkId")):
                row["triggerPrice"] = str(D(str(row["triggerPrice"])) * 10)
        return reply

    path, reads = STOP_LIST[venue]
    start = len(server.requests)
    server.inject(Fault(path, "GET", kind="edit", edit=tenfold, times=reads))
    result = run.tick()
    assert result is not None
    assert _buys(server, start) == [], "an increase sent on a stop listed past the mark"
    pos = backend.fetch_positions([BTC]).get(BTC)
    assert pos is not None, "the position was closed on one garbled answer"
    assert (pos.qty, pos.leverage) == (qty, setting)
    # The stop the policy puts around the mark replaced the one that read wrong (here at the
    # same trigger): never one next to the mark.
    assert _stops(backend) == [trigger]
    assert [d.stop_loss for d in result.decisions] == [trigger]


@pytest.mark.parametrize("venue", ["binanceusdm"])
def test_a_leverage_setting_read_tenfold_adds_no_exposure(
    bot: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
) -> None:
    run, _ = bot
    qty, setting, trigger = _held(run, backend)

    def tenfold(reply: Any) -> Any:
        for row in reply:
            row["leverage"] = int(row["leverage"]) * 10
        return reply

    start = len(server.requests)
    server.inject(Fault("/fapi/v1/symbolConfig", "GET", kind="edit", edit=tenfold))
    result = run.tick()
    assert result is not None
    assert _buys(server, start) == [], "an increase sent on a leverage setting read tenfold"
    pos = backend.fetch_positions([BTC])[BTC]
    assert (pos.qty, pos.leverage) == (qty, setting)
    assert _stops(backend) == [trigger]
    [d] = result.decisions
    assert "nearer the mark than the policy's stop distance: no increase on it" in d.reason
