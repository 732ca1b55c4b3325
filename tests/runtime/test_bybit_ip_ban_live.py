"""A Bybit IP ban through the real ccxt path (``bot run --live`` against the loopback Bybit v5
server): every read is answered HTTP 403 "access too frequent", Bybit's answer to an address
that sent more than 600 requests in 5 s, which names no end ("wait for at least 10 minutes",
https://bybit-exchange.github.io/docs/v5/rate-limit).

Before, it was a generic failed job: one guard and one tick sent 44 requests in 5 s (each read
retried five times, 40 answered 403), no ``venue_rate_limit`` alert, no hold, and every later
job did the same into the ban. Now the first 403 holds every request for the 10 minutes Bybit
documents as the least, the jobs meanwhile send nothing, the critical alert says the venue gave
no end, and the hold is recorded for a restart."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.clock import LiveClock, ms_to_datetime
from bot.domain.enums import EventKind, TradingState
from bot.runtime.runner import Runner
from bot.runtime.venue_hold import VenueHoldRunning, check_no_venue_hold, recorded_hold_end
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.e2e.test_fault_matrix import VENUES, Venue
from tests.e2e.test_limits_in_a_crash_live import BTC, backend, bot, server
from tests.fakes.loopback_core import LoopbackServer

__all__ = ["backend", "bot", "server"]  # the live bot's fixtures

HOLD_S = 600
_UNTIL = re.compile(r"held until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


@pytest.fixture
def venue() -> Venue:
    return VENUES["bybit"]


def test_a_403_ban_holds_every_request_and_is_alerted_with_no_end_named(
    bot: tuple[Runner, SqlStore], server: LoopbackServer, backend: SimulatedExchange
) -> None:
    run, store = bot
    assert run.tick() is not None
    resting = backend.fetch_open_orders(BTC)
    assert resting, "no stop rests: the test would prove nothing"
    server.ban_ip()
    start = len(server.requests)
    told = LiveClock().now_ms()
    run.guard()
    first_job = len(server.requests)
    for job in (run.tick, run.guard, run.guard, run.guard):
        job()
    banned = server.requests[start:]
    assert banned, "the guard sent nothing: the test would prove nothing"
    assert all(r.status == 403 for r in banned), [(r.path, r.status) for r in banned]
    # the first guard's reads that went out together (exchange.max_parallel_requests, 4),
    # each once, not retried; nothing after them
    assert len(banned) <= 4, [r.path for r in banned]
    assert len(server.requests) == first_job

    records = store.recent_alerts("venue_rate_limit", 0)
    assert records, "the ban was not alerted"
    first = records[-1]
    assert first.severity == "critical"
    assert "gave no end" in first.message
    assert "resting stops stay on the exchange" in first.message
    found = _UNTIL.search(first.message)
    assert found is not None, first.message
    until = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((until - ms_to_datetime(told + HOLD_S * 1000)).total_seconds()) < 5

    # recorded: a restart within the hold is refused, saying the venue gave no end
    recorded = recorded_hold_end(store)
    assert recorded is not None
    assert abs(recorded[0] - (told + HOLD_S * 1000)) < 5_000
    [event] = store.recent_events(1, kinds=(EventKind.VENUE_HOLD,))
    assert "gave no end" in event.reason
    with pytest.raises(VenueHoldRunning, match="gave no end"):
        check_no_venue_hold(store, LiveClock().now_ms(), "db")
    check_no_venue_hold(store, recorded[0] + 1, "db")

    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert "IP ban" in memory.state_reason
    assert backend.fetch_open_orders(BTC) == resting  # nothing cancelled
