"""Bybit's IP ban holds every request of the adapter, through real ccxt against the loopback
Bybit v5 server.

Bybit answers an address that sent more than 600 requests in 5 s with HTTP 403 "access too
frequent": "terminate all HTTP sessions and wait for at least 10 minutes. The ban will be lifted
automatically" (https://bybit-exchange.github.io/docs/v5/rate-limit; older pages: usually 30
minutes, permanent for an address that keeps breaking the limit). The answer names no end: no
``Retry-After``, none of the ``X-Bapi-Limit-*`` headers of the per-UID limit. ccxt maps the 403
to ``RateLimitExceeded``, the adapter found no wait in it and held nothing: every read was
retried five times into the ban (40 answers 403 in one guard and one tick), and every later
job did the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot import errors
from bot.clock import LiveClock
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
    entry,
)
from tests.fakes.bybit_loopback import Fault, LoopbackBybit
from tests.fakes.live_setup import loopback_adapter

POSITIONS, CREATE = "/v5/position/list", "/v5/order/create"
HOLD_S = 600  # "wait for at least 10 minutes"


@pytest.fixture
def sim() -> SimulatedExchange:
    return btc_account()


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture(params=[None, 1.0], ids=["plain-read", "hedged-read"])
def adapter(
    request: pytest.FixtureRequest, server: LoopbackBybit, clock: RecordingClock
) -> Iterator[CcxtExchange]:
    exchange = loopback_adapter(
        "bybit",
        server.base_url,
        clock,
        key=KEY,
        secret=SECRET,
        account=ACCOUNT,
        symbols=[BTC],
        hedge_reads_after=request.param,
    )
    yield exchange
    exchange.exchange.close()


def _banned(server: LoopbackBybit) -> None:
    server.inject(Fault(POSITIONS, "GET", kind="ip_ban", times=1000))


def test_a_403_ban_is_asked_once_then_every_request_is_held_ten_minutes(
    adapter: CcxtExchange, server: LoopbackBybit, clock: RecordingClock, sim: SimulatedExchange
) -> None:
    _banned(server)
    sent = len(server.requests)
    with pytest.raises(errors.RateLimited) as first:
        adapter.fetch_positions([BTC])
    assert (first.value.retry_after, first.value.end_named) == (HOLD_S, False)
    assert [r.status for r in server.requests[sent:]] == [403]  # asked once, not five times
    assert clock.sleeps == []  # no backoff into the ban

    sent = len(server.requests)
    clock.sleep(60)  # the next guard job, a minute later
    with pytest.raises(errors.RateLimited) as read:
        adapter.fetch_positions([BTC])
    assert read.value.end_named is False
    assert read.value.retry_after is not None
    assert 539 <= read.value.retry_after <= 540
    with pytest.raises(errors.RateLimited):
        adapter.fetch_balance()
    with pytest.raises(errors.RateLimited):
        adapter.place_order(entry())
    assert len(server.requests) == sent  # nothing reached the venue
    assert all(p.qty == 0 for p in sim.book.positions.values())


def test_after_the_hold_one_read_probes_the_ban_and_the_bot_trades_once_it_ends(
    adapter: CcxtExchange, server: LoopbackBybit, clock: RecordingClock
) -> None:
    _banned(server)
    with pytest.raises(errors.RateLimited):
        adapter.fetch_positions([BTC])
    clock.sleep(HOLD_S + 1)
    sent = len(server.requests)
    with pytest.raises(errors.RateLimited) as probe:  # still banned: held again
        adapter.fetch_positions([BTC])
    assert (probe.value.retry_after, probe.value.end_named) == (HOLD_S, False)
    assert [r.status for r in server.requests[sent:]] == [403]
    server.clear_faults()  # the venue lifts the ban
    clock.sleep(HOLD_S + 1)
    adapter.place_order(entry())
    assert adapter.fetch_positions([BTC])[BTC].qty == entry().amount
    assert len(server.calls(CREATE, "POST")) == 1


def test_the_per_uid_limit_still_waits_its_reset_only(
    adapter: CcxtExchange, server: LoopbackBybit, clock: RecordingClock
) -> None:
    """retCode 10006 (X-Bapi-Limit-Reset-Timestamp, 1 s on) is not a ban: waited out, read."""
    server.inject(Fault(POSITIONS, "GET", kind="rate_limit", retry_after=1))
    assert adapter.fetch_positions([BTC]) == {}
    assert 0 < sum(clock.sleeps) <= 2
