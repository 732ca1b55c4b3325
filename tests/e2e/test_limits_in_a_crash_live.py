"""The drawdown halt inside a crash through the real ccxt path (``bot run --live`` against the
loopback Binance USD-M and Bybit v5 servers): in each guard the venue answers the first balance
read and rate-limits the ones after it (Binance HTTP 429 ``-1003``, Bybit ``10006``), so the
read that confirms a reading past the limit, which follows it at once, is the one refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import LiveClock
from bot.domain.enums import TradingState
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.e2e.test_fault_matrix import VENUES, Venue
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import Fault, LoopbackServer

BTC = "BTC/USDT:USDT"
KEY, SECRET = "crash-key-5d17", "crash-secret-90ab3e"


@pytest.fixture(params=sorted(VENUES))
def venue(request: pytest.FixtureRequest) -> Venue:
    return VENUES[request.param]


@pytest.fixture
def backend(venue: Venue) -> SimulatedExchange:
    return venue_account(venue.name)


@pytest.fixture
def server(venue: Venue, backend: SimulatedExchange) -> Iterator[LoopbackServer]:
    srv = venue.server(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def bot(tmp_path: Path, venue: Venue, server: LoopbackServer) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="crash",
            venue=venue.name,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    run, store = start_live(path, KEY, SECRET)
    yield run, store
    stop_live(run, store)


def _unchanged(reply: Any) -> Any:
    return reply


def test_the_drawdown_halt_acts_when_each_confirming_balance_read_is_rate_limited(
    venue: Venue,
    bot: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
) -> None:
    """Defect: each guard read the account past the drawdown limit, read it again at once to
    confirm, met the rate limit and failed; the next guard did the same, and the halt never
    came. Now the next guard's reading confirms the first one: halted, the position closed."""
    run, store = bot
    assert run.tick() is not None
    position = backend.fetch_positions([BTC]).get(BTC)
    assert position is not None
    assert position.qty > 0
    with server.lock:
        backend.book.wallet -= backend.book.wallet / 2  # the crash: past the 25 % drawdown
    for _ in range(2):
        # each guard: its first balance read is answered, every later one rate-limited (the
        # read that confirms, with its retries, and the read after the closes)
        server.clear_faults()
        server.inject(Fault(venue.balance, "GET", kind="edit", edit=_unchanged))
        # (Retry-After 1 s: the bot holds every request that long, so the next guard, a
        # minute later live, reads again; within a longer wait the venue would refuse it too)
        server.inject(Fault(venue.balance, "GET", kind="rate_limit", retry_after=1, times=1000))
        run.guard()
    server.clear_faults()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED, memory.state_reason
    assert "drawdown" in memory.state_reason
    assert backend.fetch_positions([BTC]).get(BTC) is None
