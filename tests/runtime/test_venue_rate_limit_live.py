"""A 3-day ban through the real ccxt path (``bot run --live`` against the loopback Binance USD-M):
the account read is answered HTTP 429 with ``Retry-After: 259200``. The adapter holds every
request that long and each job fails with ``RateLimited`` carrying the seconds left; the runner
alerts once, critically, until when nothing can be sent (``venue_rate_limit``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.clock import ms_to_datetime
from bot.domain.enums import TradingState
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.e2e.test_fault_matrix import VENUES, Venue
from tests.e2e.test_limits_in_a_crash_live import BTC, backend, bot, server
from tests.fakes.loopback_core import Fault, LoopbackServer

__all__ = ["backend", "bot", "server"]  # the live bot's fixtures

BAN_S = 259_200  # 3 days, the longest Binance IP ban (shared notes exchange-facts section 7)
_UNTIL = re.compile(r"held until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


@pytest.fixture
def venue() -> Venue:
    return VENUES["binanceusdm"]


def test_a_three_day_ban_is_alerted_with_its_end(
    venue: Venue,
    bot: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
) -> None:
    run, store = bot
    assert run.tick() is not None
    assert backend.fetch_open_orders(BTC), "no stop rests: the test would prove nothing"
    server.inject(Fault(venue.balance, "GET", kind="rate_limit", retry_after=BAN_S, times=1))
    for _ in range(4):
        run.guard()
    records = store.recent_alerts("venue_rate_limit", 0)
    assert records, "the ban was not alerted"
    first = records[-1]
    assert first.severity == "critical"
    found = _UNTIL.search(first.message)
    assert found is not None, first.message
    until = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    expected = ms_to_datetime(first.ts_ms + BAN_S * 1000)
    assert abs((until - expected).total_seconds()) < 5
    assert "resting stops stay on the exchange" in first.message
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert "rate limit" in memory.state_reason
