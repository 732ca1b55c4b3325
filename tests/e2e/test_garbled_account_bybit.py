"""Unknown is not zero on Bybit too: the engine on answers with one field garbled.

The Binance scenario of ``test_garbled_account.py`` on the loopback Bybit v5 server: a live
engine holds a protected BTC position; ticks and guards then read answers of the account
endpoints with one field garbled, each followed by a clean tick. The position keeps its side
and exactly one stop-loss of the bot, sized to it; no client id is ever sent twice; the
position is never taken for one the bot did not open.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import EventKind
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.e2e.test_garbled_account import _set, keeps_one_stop_through_garbled_reads
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import Fault

BTC = "BTC/USDT:USDT"
KEY, SECRET = "garble-bybit-key-2e71", "garble-bybit-secret-c04f19"
READS = (
    "/v5/position/list",
    "/v5/account/wallet-balance",
    "/v5/order/realtime",
    "/v5/market/tickers",
)


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("bybit")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackBybit) -> Iterator[Runner]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="garble",
            venue="bybit",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            max_unreadable_reads=3,
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built
    stop_live(built, store)


def _store(run: Runner) -> SqlStore:
    store = run.store
    assert isinstance(store, SqlStore)
    return store


@pytest.mark.slow
def test_the_engine_keeps_one_stop_sized_to_the_position_through_garbled_reads(
    runner: Runner, server: LoopbackBybit, backend: SimulatedExchange
) -> None:
    # the envelope's retCode is left alone: ccxt reads a non-zero one as the venue's refusal
    keeps_one_stop_through_garbled_reads(
        runner,
        server,
        backend,
        READS,
        {"/v5/position/list", "/v5/account/wallet-balance"},
        untouched=(("retCode",),),
    )


POSITION = ("result", "list", 0)
COIN = ("result", "list", 0, "coin", 0)


@pytest.mark.parametrize(
    ("path", "field", "value", "named"),
    [
        # an entry price its own row's unrealised PnL contradicts: the equity measured from it
        # made a phantom gain, an increase on it, then a drawdown halt that sold the position
        ("/v5/position/list", (*POSITION, "avgPrice"), "1000", "row's unrealisedPnl"),
        # a size its own row's positionValue (size x avgPrice) contradicts
        ("/v5/position/list", (*POSITION, "size"), "5", "row's positionValue"),
        # a wallet its own coin row contradicts (equity = walletBalance + unrealisedPnl): a
        # 50 % drawdown halt sold the position (Binance's twin was refused already)
        ("/v5/account/wallet-balance", (*COIN, "walletBalance"), "5000", "is not its equity"),
        # more than the store holds (20 integer digits)
        ("/v5/position/list", (*POSITION, "positionBalance"), "1e30", "isolated margin: expec"),
    ],
)
def test_garbled_fields_are_unreadable_not_acted_on(
    path: str,
    field: tuple[str | int, ...],
    value: object,
    named: str,
    runner: Runner,
    server: LoopbackBybit,
    backend: SimulatedExchange,
) -> None:
    run = runner
    assert run.tick() is not None
    qty = backend.fetch_positions([BTC])[BTC].qty
    resting = {o.client_id for o in backend.fetch_open_orders(BTC)}
    server.inject(Fault(path, "GET", kind="edit", edit=_set(field, value), times=1000))
    start = len(server.requests)
    for _ in range(2):
        result = run.tick()
        assert result is not None
        assert result.unreadable is not None, f"acted on {field}={value!r} from {path}"
        run.guard()
    sent = [(r.method, r.path) for r in server.requests[start:] if r.method == "POST"]
    assert sent == []  # Bybit's writes are all POSTs: orders, cancels, settings
    assert backend.fetch_positions([BTC])[BTC].qty == qty
    assert {o.client_id for o in backend.fetch_open_orders(BTC)} == resting
    reasons = [e.reason for e in _store(run).recent_events(20) if e.kind is EventKind.UNREADABLE]
    assert any(named in r for r in reasons), reasons
