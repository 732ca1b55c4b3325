"""A candle is closed when the venue's clock has passed its close, not the host's: a host
clock ahead of the venue (a VM resumed with a wrong clock, NTP not yet stepped) took the
still-forming candle as closed, and the decision ran on a bar whose close was not final."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from bot.clock import LiveClock
from bot.exchange.ccxt_adapter import CcxtExchange
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
)
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import loopback_adapter

H = 3_600_000
AHEAD_MS = 2 * H  # the host's clock is two hours ahead of the venue's


@pytest.fixture
def server() -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        btc_account(),
        api_key=KEY,
        api_secret=SECRET,
        clock=LiveClock(),
        symbols=[BTC],
        server_time_offset_ms=-AHEAD_MS,
    )
    with srv:
        yield srv


@pytest.fixture
def adapter(server: LoopbackBinance) -> Iterator[CcxtExchange]:
    exchange = loopback_adapter(
        "binanceusdm",
        server.base_url,
        RecordingClock(),
        key=KEY,
        secret=SECRET,
        account=ACCOUNT,
        symbols=[BTC],
    )
    yield exchange
    exchange.exchange.close()


def test_the_forming_candle_is_judged_on_the_venues_clock(
    adapter: CcxtExchange, server: LoopbackBinance
) -> None:
    venue_now = LiveClock().now_ms() - AHEAD_MS
    forming = venue_now - venue_now % H  # still forming on the venue
    rows = [
        (
            forming - k * H,
            Decimal(100 + k),
            Decimal(110 + k),
            Decimal(90 + k),
            Decimal(105 + k),
            Decimal(7),
        )
        for k in (3, 2, 1, 0)
    ]
    server.set_candles(BTC, "trade", rows)
    candles = adapter.fetch_candles(BTC, "1h", 3)
    assert [c.open_ms for c in candles] == [forming - 3 * H, forming - 2 * H, forming - H]
