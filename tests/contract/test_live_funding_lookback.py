"""Live (and paper on live prices) decide on the mean of the last ``funding.lookback`` settled
rates, as the simulation does (bot/ports/market.py ``MarketDataPort.funding``), never on the
venue's current (predicted) rate: same settlements, same rate, interval and leverage in every
mode. Through real ccxt on the loopback Binance and Bybit servers.

Before the fix the live reading was the premium index's rate: three settlements of 0.01 % and a
squeeze print of 0.30 % gave 2.00x in simulation and 0.08x live.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D

import numpy as np
import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.market import FundingInfo
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.exchange.ccxt_market import CcxtMarketData
from bot.marketdata.candles import FundingSeries
from bot.policy.leverage import funding_cap
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import HistoricalMarket
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import BTC, loopback_adapter, venue_account
from tests.fakes.loopback_core import Fault, LoopbackServer

H = 3_600_000
KEY, SECRET = "k", "s"
HISTORY_PATH = {"binanceusdm": "/fapi/v1/fundingRate", "bybit": "/v5/market/funding/history"}
SQUEEZE = D("0.003")  # what the venue announces now for the next settlement


class Venue:
    def __init__(
        self, name: str, server: LoopbackServer, adapter: CcxtExchange, account: SimulatedExchange
    ) -> None:
        self.name, self.server, self.adapter, self.account = name, server, adapter, account

    def announce(self, rate: D, interval_hours: int, next_ms: int) -> None:
        self.account.set_funding(BTC, FundingInfo(rate, D(interval_hours), next_ms))

    def history_reads(self) -> int:
        return len(self.server.calls(HISTORY_PATH[self.name], "GET"))


@pytest.fixture(params=["binanceusdm", "bybit"])
def venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    name = str(request.param)
    account = venue_account(name)
    account.set_mark(BTC, D(60000))
    server_class = LoopbackBinance if name == "binanceusdm" else LoopbackBybit
    clock = LiveClock()
    with server_class(account, api_key=KEY, api_secret=SECRET, clock=clock, symbols=[BTC]) as srv:
        adapter = loopback_adapter(
            name, srv.base_url, clock, key=KEY, secret=SECRET, account="main", symbols=[BTC]
        )
        yield Venue(name, srv, adapter, account)
        adapter.exchange.close()


def simulated(settled: list[tuple[int, D]], next_ms: int, lookback: int) -> FundingInfo:
    """What the simulation reads on the same settlements: its funding file holds them and the
    next settlement after now (bot/sim/history.py ``HistoricalMarket.funding``)."""
    ts = [t for t, _ in settled] + [next_ms]
    rates = [float(r) for _, r in settled] + [0.0001]
    series = FundingSeries(np.array(ts, dtype=np.int64), np.array(rates), BTC, "test")
    return HistoricalMarket._funding_at(series, len(settled), lookback)


def _last_settlement(step_h: int) -> int:
    now = LiveClock().now_ms()
    return now - now % (step_h * H)


def _scenarios() -> dict[str, tuple[list[tuple[int, D]], int, int]]:
    """name: (settled rows relative to the last settlement in hours, interval now, lookback)."""
    return {
        # the reviewer's case: three equal settlements, a squeeze print announced now
        "steady": ([(-16, D("0.0001")), (-8, D("0.0001")), (0, D("0.0001"))], 8, 3),
        # fewer settlements than the lookback: the mean of those there are
        "short history": ([(-8, D("0.0002")), (0, D("0.0004"))], 8, 5),
        # the venue moved the contract from 8 h to 1 h in the lookback: per-hour mean
        "interval change": (
            [
                (-18, D("0.0001")),
                (-10, D("0.0003")),
                (-2, D("0.0005")),
                (-1, D("0.002")),
                (0, D("0.003")),
            ],
            1,
            4,
        ),
    }


@pytest.mark.parametrize("scenario", list(_scenarios()))
def test_live_decides_on_the_settled_mean_as_the_simulation_does(
    venue: Venue, scenario: str
) -> None:
    offsets, interval, lookback = _scenarios()[scenario]
    last = _last_settlement(8)
    settled = [(last + h * H, rate) for h, rate in offsets]
    next_ms = last + interval * H
    venue.server.set_funding_history(BTC, settled)
    venue.announce(SQUEEZE, interval, next_ms)

    live = CcxtMarketData(venue.adapter).funding(BTC, LiveClock().now_ms(), lookback)
    sim = simulated(settled, next_ms, lookback)

    assert live == sim
    assert live.next_settlement_ms == next_ms
    assert funding_cap(D(2), 1, live.annualized, D("0.25")) == funding_cap(
        D(2), 1, sim.annualized, D("0.25")
    )
    if scenario == "steady":
        assert (live.rate, funding_cap(D(2), 1, live.annualized, D("0.25"))[0]) == (
            D("0.0001"),
            D(2),
        )


def test_settled_rates_are_read_once_per_settlement(venue: Venue) -> None:
    last = _last_settlement(8)
    settled = [(last - 16 * H, D("0.0001")), (last - 8 * H, D("0.0002")), (last, D("0.0003"))]
    venue.server.set_funding_history(BTC, settled)
    venue.announce(SQUEEZE, 8, last + 8 * H)
    market = CcxtMarketData(venue.adapter)
    now = LiveClock().now_ms()

    first = market.funding(BTC, now, 2)
    again = market.funding(BTC, now + 60_000, 2)  # the next tick, same settlement pending
    assert first == again == simulated(settled, last + 8 * H, 2)
    assert venue.history_reads() == 1

    # the settlement passed: the venue lists it and announces the next one
    settled.append((last + 8 * H, D("0.0009")))
    venue.server.set_funding_history(BTC, [r for r in settled if r[0] <= now])
    venue.announce(SQUEEZE, 8, last + 16 * H)
    moved = market.funding(BTC, now + 120_000, 2)
    assert venue.history_reads() == 2
    # the loopback lists only settlements before its clock: the one at last + 8 h is not yet,
    # so the read is not kept (the venue publishes a settlement a moment after it)
    assert moved == simulated(settled[:3], last + 16 * H, 2)
    market.funding(BTC, now + 180_000, 2)
    assert venue.history_reads() == 3


def test_a_lookback_longer_than_one_read_is_paged(venue: Venue) -> None:
    per = venue.adapter.funding_history_rows
    lookback = per + 3
    last = _last_settlement(1)
    settled = [(last - k * H, D(k % 7) / 10_000) for k in reversed(range(lookback + 10))]
    venue.server.set_funding_history(BTC, settled)
    venue.announce(SQUEEZE, 1, last + H)

    live = CcxtMarketData(venue.adapter).funding(BTC, LiveClock().now_ms(), lookback)

    assert live == simulated(settled, last + H, lookback)
    assert venue.history_reads() == 2


def test_an_unreadable_history_is_no_reading_not_zero(venue: Venue) -> None:
    last = _last_settlement(8)
    venue.server.set_funding_history(BTC, [(last - 8 * H, D("0.0001")), (last, D("0.0001"))])
    venue.announce(SQUEEZE, 8, last + 8 * H)
    venue.server.inject(
        Fault(HISTORY_PATH[venue.name], method="GET", kind="missing_fields", times=20)
    )
    with pytest.raises(errors.ExchangeError):
        CcxtMarketData(venue.adapter).funding(BTC, LiveClock().now_ms(), 3)


def test_a_contract_without_a_settlement_reads_the_announced_rate(venue: Venue) -> None:
    last = _last_settlement(8)
    venue.announce(D("0.0002"), 8, last + 8 * H)  # a new listing: no settled rate yet
    live = CcxtMarketData(venue.adapter).funding(BTC, LiveClock().now_ms(), 3)
    assert (live.rate, live.next_settlement_ms) == (D("0.0002"), last + 8 * H)
