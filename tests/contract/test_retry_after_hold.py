"""The venue's ``Retry-After`` holds every request of the adapter, through real ccxt against the
loopback Binance USD-M.

Binance: ``Retry-After`` is the wait "to prevent a ban" after a 429 and "until the ban is over"
after a 418, and a client that keeps sending after 429s is banned by IP, from 2 minutes to 3
days (exchange-facts section 7). A hedged read (the live default, ``hedge_reads_after_ms``) runs
on a pool thread whose client alone saw the 429: its Retry-After was read from the calling
thread's client, found empty, and the read went out again after 0.02 s. And a wait longer than
the retry budget ended the call with ``RateLimited``, after which the next job (a minute later)
sent again into the same ban window.
"""

from __future__ import annotations

import pytest

from bot import errors
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
    clock,
    entry,
    server,
    sim,
)
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.live_setup import loopback_adapter

__all__ = ["clock", "server", "sim"]  # the loopback fixtures of test_ccxt_loopback

POSITIONS = "/fapi/v3/positionRisk"
ORDER = "/fapi/v1/order"


def _adapter(server: LoopbackBinance, clock: RecordingClock, hedge: float | None) -> CcxtExchange:
    return loopback_adapter(
        "binanceusdm",
        server.base_url,
        clock,
        key=KEY,
        secret=SECRET,
        account=ACCOUNT,
        symbols=[BTC],
        hedge_reads_after=hedge,
    )


@pytest.mark.parametrize("hedge", [None, 1.0], ids=["plain-read", "hedged-read"])
def test_a_read_answered_429_is_asked_again_only_after_the_retry_after(
    server: LoopbackBinance, clock: RecordingClock, hedge: float | None
) -> None:
    adapter = _adapter(server, clock, hedge)
    try:
        adapter.place_order(entry(amount="0.1"))
        server.inject(Fault(POSITIONS, "GET", kind="rate_limit", retry_after=3))
        before = len(server.calls(POSITIONS, "GET"))
        positions = adapter.fetch_positions([BTC])
        assert positions[BTC].qty > 0
        assert len(server.calls(POSITIONS, "GET")) - before == 2  # the 429, then the answer
        assert sum(clock.sleeps) >= 3  # the same read waited the 3 s the venue asked for
    finally:
        adapter.exchange.close()


@pytest.mark.parametrize("hedge", [None, 1.0], ids=["plain-read", "hedged-read"])
def test_no_request_leaves_while_a_long_retry_after_runs(
    server: LoopbackBinance, clock: RecordingClock, sim: SimulatedExchange, hedge: float | None
) -> None:
    """A Retry-After beyond the retry budget (30 s) ends the read with RateLimited saying how
    long; until that time has passed every request of every kind fails at once, unsent; then
    the adapter sends again."""
    adapter = _adapter(server, clock, hedge)
    try:
        server.inject(Fault(POSITIONS, "GET", kind="rate_limit", retry_after=120))
        with pytest.raises(errors.RateLimited) as first:
            adapter.fetch_positions([BTC])
        assert first.value.retry_after == 120
        sent = len(server.requests)
        clock.sleep(60)  # the next guard job, a minute later
        with pytest.raises(errors.RateLimited) as read:
            adapter.fetch_positions([BTC])
        assert read.value.retry_after is not None
        assert 59 <= read.value.retry_after <= 60
        with pytest.raises(errors.RateLimited):
            adapter.fetch_balance()
        with pytest.raises(errors.RateLimited):
            adapter.place_order(entry(amount="0.1"))
        assert len(server.requests) == sent  # nothing reached the venue
        assert all(p.qty == 0 for p in sim.book.positions.values())
        clock.sleep(61)  # the ban window is over
        order = adapter.place_order(entry(amount="0.1"))
        assert order.filled == entry(amount="0.1").amount
        assert len(server.calls(ORDER, "POST")) == 1
    finally:
        adapter.exchange.close()


def test_bybit_s_reset_time_is_read_on_the_venue_s_clock() -> None:
    """Bybit's rate-limit answer (retCode 10006) names the venue's epoch ms at which its limit
    resets (https://bybit-exchange.github.io/docs/v5/rate-limit), here 1 s on. With the host
    clock 2 minutes behind the venue's (measured: signed requests work), the reset was read on
    the host's clock: a 121 s hold, every request of the bot refused unsent for two minutes."""
    from bot.clock import LiveClock
    from tests.fakes.bybit_loopback import Fault as BybitFault
    from tests.fakes.bybit_loopback import LoopbackBybit

    clock = RecordingClock()
    srv = LoopbackBybit(
        btc_account(), api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]
    )
    srv.server_time_offset_ms = 120_000
    with srv:
        adapter = loopback_adapter(
            "bybit", srv.base_url, clock, key=KEY, secret=SECRET, account=ACCOUNT, symbols=[BTC]
        )
        try:
            adapter.measure_clock_offset()
            adapter.fetch_positions([BTC])
            srv.inject(BybitFault("/v5/position/list", "GET", kind="rate_limit", retry_after=1))
            adapter.fetch_positions([BTC])  # waits about the second, then reads
            assert 0 < sum(clock.sleeps) <= 2
            clock.sleep(2)
            adapter.fetch_positions([BTC])  # no hold left
        finally:
            adapter.exchange.close()
