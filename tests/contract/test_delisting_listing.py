"""The adapter's reading of a delisting, through real ccxt against both loopback venues.

Binance USD-M keeps a contract it stops trading in exchangeInfo with its ``status`` (ccxt
``active`` False) and announces a perpetual's settlement in ``deliveryDate``; Bybit lists only
trading contracts when asked without a status (so a settling one is absent from ccxt's markets:
the adapter asks instruments-info for the statuses of contracts no longer traded, and reads it
withdrawn with its status, as on Binance) and announces the delisting time of a perpetual in
``deliveryTime``, which ccxt reads as an expiry for futures only. A contract loaded before that
the venue no longer lists is withdrawn with its last specification; one never loaded is still
an unknown market.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D

import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.enums import MarginMode
from bot.exchange.ccxt_adapter import ABSENT, CcxtExchange
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter
from tests.fakes.loopback_core import LoopbackServer

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "listing-key-3c7d", "listing-secret-9e1f02"
SETTLES = 1_798_761_600_000  # 2027-01-01 00:00 UTC


def _server(venue: str) -> LoopbackServer:
    specs = load_instruments(venue)
    backend = SimulatedExchange(
        {BTC: specs[BTC], ETH: specs[ETH]},
        LiveClock(),
        starting_balance=D(1000),
        margin_mode=MarginMode.ISOLATED,
    )
    kind = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    return kind(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH])


@pytest.fixture(params=["binanceusdm", "bybit"])
def venue(request: pytest.FixtureRequest) -> Iterator[tuple[str, LoopbackServer, CcxtExchange]]:
    server = _server(request.param)
    with server:
        adapter = loopback_adapter(
            request.param,
            server.base_url,
            LiveClock(),
            key=KEY,
            secret=SECRET,
            account="acct",
            symbols=[BTC, ETH],
        )
        yield request.param, server, adapter
        adapter.exchange.close()


def test_a_trading_venue_withdraws_nothing(
    venue: tuple[str, LoopbackServer, CcxtExchange],
) -> None:
    _, _, adapter = venue
    listing = adapter.read_listing()
    assert listing.withdrawn == {}
    assert listing.settles == {}
    assert set(listing.instruments) == {BTC, ETH}


def test_a_settling_contract_is_withdrawn_with_its_last_specification(
    venue: tuple[str, LoopbackServer, CcxtExchange],
) -> None:
    name, server, adapter = venue
    before = adapter.instrument(ETH)
    if name == "binanceusdm":
        server.market_status[ETH] = "SETTLING"  # type: ignore[attr-defined]
        why = "status SETTLING"
    else:
        server.market_status[ETH] = "Delivering"  # type: ignore[attr-defined]
        why = "status Delivering"  # asked for by status (Bybit lists trading contracts only)
    listing = adapter.read_listing()
    assert listing.withdrawn == {ETH: why}
    assert listing.instruments[ETH] == before
    assert listing.instruments[BTC] == adapter.instrument(BTC)
    # the reads of the other contract go on (ccxt still knows it)
    assert adapter.fetch_positions([BTC]) == {}


def test_a_scheduled_settlement_of_a_perpetual_is_read(
    venue: tuple[str, LoopbackServer, CcxtExchange],
) -> None:
    name, server, adapter = venue
    if name == "binanceusdm":
        server.delivery_dates[ETH] = SETTLES  # type: ignore[attr-defined]
    else:
        server.delivery_times[ETH] = SETTLES  # type: ignore[attr-defined]
    listing = adapter.read_listing()
    assert listing.settles == {ETH: SETTLES}
    assert listing.withdrawn == {}


def test_binance_no_longer_listing_a_contract_withdraws_it_and_a_new_one_is_unknown() -> None:
    server = _server("binanceusdm")
    assert isinstance(server, LoopbackBinance)
    with server:
        adapter = loopback_adapter(
            "binanceusdm",
            server.base_url,
            LiveClock(),
            key=KEY,
            secret=SECRET,
            account="acct",
            symbols=[BTC],
        )
        try:
            adapter.load_instruments([ETH])
            server.delisted.add(ETH)
            listing = adapter.read_listing([ETH])
            assert listing.withdrawn == {ETH: ABSENT}
            assert ETH in listing.instruments
            with pytest.raises(errors.UnknownMarket, match="SOL/USDT:USDT"):
                adapter.read_listing(["SOL/USDT:USDT"])
        finally:
            adapter.exchange.close()


def test_a_market_list_that_lost_every_contract_is_not_believed(
    venue: tuple[str, LoopbackServer, CcxtExchange],
) -> None:
    """An answer listing none of the venue's markets (truncated, garbled) withdrew every
    contract at once: no order and no read of any of them. A list that lost more than half of
    its markets in one read is refused, the markets read before are kept, and the next read
    that lists them is believed again."""
    name, server, adapter = venue
    adapter.read_listing()
    if name == "binanceusdm":
        server.delisted.update({BTC, ETH})  # type: ignore[attr-defined]
    else:
        server.market_status.update({BTC: "Delivering", ETH: "Delivering"})  # type: ignore[attr-defined]
    with pytest.raises(errors.PermanentExchangeError, match="shrank from 2 to 0 markets"):
        adapter.read_listing()
    assert {BTC, ETH} <= set(adapter.exchange.markets)
    assert adapter.fetch_positions([BTC, ETH]) == {}
    if name == "binanceusdm":
        server.delisted.clear()  # type: ignore[attr-defined]
    else:
        server.market_status.clear()  # type: ignore[attr-defined]
    assert adapter.read_listing().withdrawn == {}


@pytest.mark.parametrize("venue", ["binanceusdm"], indirect=True)
def test_a_settling_contract_without_leverage_tiers_does_not_fail_the_refresh(
    venue: tuple[str, LoopbackServer, CcxtExchange],
) -> None:
    """Binance keeps a contract it stopped trading in exchangeInfo, but need not serve its
    leverage brackets any more: the missing tiers ("no leverage tiers") failed the whole
    refresh, and after catalogue_max_age_hours every other contract stopped trading too."""
    _, server, adapter = venue
    before = adapter.instrument(ETH)
    client = adapter._ex
    served = client.fetch_leverage_tiers

    def without_eth(symbols: list[str] | None = None, params: object = None) -> object:
        return {s: t for s, t in served(symbols).items() if s != ETH}

    client.fetch_leverage_tiers = without_eth
    server.market_status[ETH] = "SETTLING"  # type: ignore[attr-defined]
    listing = adapter.read_listing()
    assert listing.withdrawn == {ETH: "status SETTLING"}
    assert listing.instruments[ETH] == before
    assert listing.instruments[BTC] == adapter.instrument(BTC)


@pytest.mark.parametrize("status", ["Delivering", "Closed"])
def test_bybit_a_contract_not_traded_when_the_bot_starts_is_withdrawn_not_unknown(
    status: str,
) -> None:
    """Bybit's instruments-info, asked without a status, lists Trading contracts only: a start
    (a restart) during a contract's settlement found it absent from ccxt's markets and refused
    to start, as for a typo. The venue still knows it when asked for its status: it is loaded
    and read withdrawn with that status, as Binance's SETTLING. A symbol the venue does not
    know at all is still an unknown market."""
    server = _server("bybit")
    assert isinstance(server, LoopbackBybit)
    server.market_status[ETH] = status
    with server:
        adapter = loopback_adapter(
            "bybit",
            server.base_url,
            LiveClock(),
            key=KEY,
            secret=SECRET,
            account="acct",
            symbols=[BTC, ETH],
        )
        try:
            assert adapter.instrument(ETH).symbol == ETH
            asked = [r.params.get("status") for r in server.calls("/v5/market/instruments-info")]
            assert status in asked
            listing = adapter.read_listing()
            assert listing.withdrawn == {ETH: f"status {status}"}
            assert adapter.fetch_positions([BTC, ETH]) == {}  # its reads go on
            with pytest.raises(errors.UnknownMarket, match="SOL/USDT:USDT"):
                adapter.load_instruments(["SOL/USDT:USDT"])
            server.market_status.clear()  # trading again
            assert adapter.read_listing().withdrawn == {}
        finally:
            adapter.exchange.close()


def test_bybit_asks_for_no_untraded_contract_while_every_one_trades() -> None:
    server = _server("bybit")
    with server:
        adapter = loopback_adapter(
            "bybit",
            server.base_url,
            LiveClock(),
            key=KEY,
            secret=SECRET,
            account="acct",
            symbols=[BTC, ETH],
        )
        try:
            adapter.read_listing()
            statuses = {r.params.get("status") for r in server.calls("/v5/market/instruments-info")}
            assert statuses <= {None, "PreLaunch"}  # what ccxt's load_markets asks
        finally:
            adapter.exchange.close()


def test_a_read_naming_a_contract_the_venue_no_longer_lists_is_no_such_symbol(
    venue: tuple[str, LoopbackServer, CcxtExchange],
) -> None:
    """Binance -1121, Bybit 10001 "params error: symbol invalid": NoSuchSymbol (the engine
    asks the venue's market list whether the contract is withdrawn), not a bare permanent
    error like any other refusal."""
    _, server, adapter = venue
    adapter.read_listing()
    server.delisted.add(ETH)  # type: ignore[attr-defined]
    with pytest.raises(errors.NoSuchSymbol):
        adapter.fetch_open_orders(ETH)
    with pytest.raises(errors.NoSuchSymbol):
        adapter.fetch_mark_price(ETH)
    assert adapter.fetch_open_orders(BTC) == []
