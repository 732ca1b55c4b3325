"""Cells of the fault matrix at the adapter (real ccxt, loopback venues) that no other test held:
reads whose answer is garbled or impossible must raise a bot error that names the field and the
contract, never answer a guessed value or leak a raw ``AttributeError``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from bot import errors
from bot.clock import LiveClock
from bot.exchange.ccxt_adapter import CcxtExchange
from tests.contract.test_ccxt_loopback import BTC, entry
from tests.contract.test_reply_mutations import QTY, Account, replaced
from tests.fakes.loopback_core import Fault

Edit = Callable[[Any], Any]


@pytest.fixture(params=["binanceusdm", "bybit"])
def acct(request: pytest.FixtureRequest) -> Iterator[Account]:
    account = Account(request.param)
    yield account
    account.close()
    assert account.server.errors == []


def _venue(acct: Account) -> str:
    return str(acct.adapter.exchange.id)


def _garbled(acct: Account, path: str, edit: Edit) -> None:
    acct.server.inject(Fault(path, "GET", kind="edit", edit=edit, times=100))


LEVERAGE = {"binanceusdm": "/fapi/v1/symbolConfig", "bybit": "/v5/position/list"}
LEVERAGE_FIELD: dict[str, tuple[str | int, ...]] = {
    "binanceusdm": (0, "leverage"),
    "bybit": ("result", "list", 0, "leverage"),
}


def _no_rows(reply: Any) -> Any:
    if isinstance(reply, list):
        return []
    reply["result"]["list"] = []
    return reply


@pytest.mark.parametrize(
    "edit",
    [
        _no_rows,
        lambda r: {"a": 1} if isinstance(r, list) else r | {"result": {"list": {"a": 1}}},
    ],
    ids=["no row", "not a list"],
)
def test_a_leverage_setting_without_its_row_is_an_error_naming_it(
    acct: Account, edit: Edit
) -> None:
    """Defect: Binance's symbolConfig answered without the contract's row (``[]``, another
    contract's row) made ccxt return ``None`` and the adapter raised a bare ``AttributeError``
    ("'NoneType' object has no attribute 'get'"), which named neither the read nor the
    contract."""
    assert acct.adapter.fetch_leverage(BTC) > 0  # readable as served
    _garbled(acct, LEVERAGE[_venue(acct)], edit)
    with pytest.raises(errors.ExchangeError, match="leverage setting"):
        acct.adapter.fetch_leverage(BTC)


@pytest.mark.parametrize("value", ["0", "-3", 0, -3])
def test_a_leverage_setting_of_zero_or_below_is_an_error(acct: Account, value: object) -> None:
    """Defect: a leverage setting of 0 or below was answered as read (ccxt keeps the sign);
    the engine sizes a flat contract's first order and its leverage change on it."""
    venue = _venue(acct)
    _garbled(acct, LEVERAGE[venue], lambda r: replaced_json(r, LEVERAGE_FIELD[venue], value))
    with pytest.raises(errors.ExchangeError, match="leverage setting"):
        acct.adapter.fetch_leverage(BTC)


def replaced_json(reply: Any, field: tuple[str | int, ...], value: object) -> Any:
    """``replaced`` (bytes) as the JSON object an ``edit`` fault may also return."""
    import json

    return json.loads(replaced(reply, field, value))


def test_fetch_leverage_reads_as_served(acct: Account) -> None:
    adapter: CcxtExchange = acct.adapter
    assert adapter.fetch_leverage(BTC) == acct.sim.fetch_positions([BTC])[BTC].leverage


TICKER: dict[str, tuple[str, tuple[str | int, ...]]] = {
    "binanceusdm": ("/fapi/v1/ticker/24hr", ("lastPrice",)),
    "bybit": ("/v5/market/tickers", ("result", "list", 0, "lastPrice")),
}


@pytest.mark.parametrize("value", ["-1", "600", "600000"])
def test_an_impossible_last_price_is_an_error_naming_it(acct: Account, value: str) -> None:
    """Defect: the ticker's last price was taken as it came: a negative price, or one 99 %
    away from the day's range in the same answer. The engine sizes orders and the risk gate
    measures leverage and notional at the last price (a price of 600 for a contract at 60,000
    passes any notional cap), and decided on it without a word in the events."""
    path, field = TICKER[_venue(acct)]
    assert acct.adapter.fetch_last_price(BTC)[0] > 0  # readable as served
    _garbled(acct, path, lambda r: replaced_json(r, field, value))
    with pytest.raises(errors.ExchangeError, match="last"):
        acct.adapter.fetch_last_price(BTC)


# Errors a venue answers when its own server failed: the request may have been carried out
# ("execution status unknown"). https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
# https://bybit-exchange.github.io/docs/v5/error
SERVER_FAILED = {
    "binanceusdm": [
        (-1000, "An unknown error occured while processing the request."),
        (-1001, "Internal error; unable to process your request. Please try again."),
        (-1006, "An unexpected response was received from the message bus. Execution status"),
        (-1007, "Timeout waiting for response from backend server. Send status unknown"),
        (-1008, "Server is currently overloaded with other requests."),
    ],
    "bybit": [(10000, "Server Timeout"), (10016, "Server error.")],
}  # fmt: skip
ORDER_POST = {"binanceusdm": "/fapi/v1/order", "bybit": "/v5/order/create"}


def _answer(body: object) -> Edit:
    """An ``edit`` fault that answers ``body`` (after the venue processed the request)."""
    return lambda _reply: body


def _error_body(venue: str, code: int, msg: str) -> dict[str, object]:
    if venue == "bybit":
        return {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": 1}
    return {"code": code, "msg": msg}


def test_a_server_failure_after_the_venue_took_the_order_is_never_a_rejection(
    acct: Account,
) -> None:
    """Defect (Bybit): the venue took the entry and answered retCode 10000 "Server Timeout"
    or 10016 "Server error"; ccxt raises a plain ExchangeError for them, which the adapter read
    as a refusal: the filled entry was recorded "rejected", its position taken for one the bot
    did not open (left alone, never protected). Both mean the outcome is unknown: the order
    is looked up by client id."""
    venue = _venue(acct)
    for n, (code, msg) in enumerate(SERVER_FAILED[venue], start=700):
        request = entry(n, "0.002")
        acct.server.inject(
            Fault(
                ORDER_POST[venue], "POST", kind="edit", edit=_answer(_error_body(venue, code, msg))
            )
        )
        try:
            order = acct.adapter.place_order(request)
        except errors.OutcomeUnknown:
            order = None
        finally:
            acct.server.clear_faults()
        on_venue = [o.status for o in acct.sim.orders.values() if o.client_id == request.client_id]
        assert len(on_venue) == 1, f"{code}: {len(on_venue)} orders on the venue"
        assert order is not None, f"{code}: the lookup by client id should have settled it"
        assert order.client_id == request.client_id
        assert order.status.value == "filled", f"{code}: read as {order.status}"


@pytest.mark.parametrize("thread", [False, True], ids=["same thread", "job thread"])
def test_a_refresh_of_the_specifications_reads_the_venues_markets_again(
    acct: Account, thread: bool
) -> None:
    """Defect: the live bot's daily refresh of the contract specifications (and its start)
    called ccxt's ``load_markets()``, which answers the markets it loaded first without asking
    the venue again: only the leverage tiers were read afresh. A tick size, step or minimum
    the venue changed was never seen (the refresh said "refreshed, 0 changed"), and ccxt kept
    rounding on the old grid. The refresh runs on the scheduler's job thread: every client
    of the adapter must round on the new grid."""
    import dataclasses
    import threading

    adapter = acct.adapter
    before = adapter.load_instruments()[BTC]
    coarser = before.tick_size * 10
    book = acct.sim.book
    book.instruments[BTC] = dataclasses.replace(book.instruments[BTC], tick_size=coarser)
    got: list[Any] = []
    if thread:
        worker = threading.Thread(target=lambda: got.append(adapter.load_instruments()))
        worker.start()
        worker.join()
    else:
        got.append(adapter.load_instruments())
    assert got[0][BTC].tick_size == coarser, "the venue's new tick size was not read"
    assert adapter.instrument(BTC).tick_size == coarser
    # ccxt rounds on the new grid on this thread's client too (the adapter checks prices
    # against it before sending)
    price = adapter.exchange.price_to_precision(BTC, "60000.37")
    assert Decimal(price) % coarser == 0, price


@pytest.mark.parametrize("status", ["Rejected", "Cancelled", "New"])
def test_a_lookup_listing_the_order_twice_in_two_states_is_unknown(status: str) -> None:
    """Defect (Bybit, whose lookup by client id is a list): the entry's answer was lost and
    the lookup listed the order twice, a copy in another state first. The adapter took the
    first row: a filled entry read "rejected" (its position then taken for one the bot did not
    open, left alone and unprotected). One client id in two states is unknown, settled by
    client id later."""
    import copy

    def twice(reply: Any) -> Any:
        rows = reply["result"]["list"]
        if rows:
            rows.insert(0, {**copy.deepcopy(rows[0]), "orderStatus": status, "cumExecQty": "0"})
        return reply

    acct = Account("bybit")
    try:
        request = entry(950, "0.002")
        acct.server.inject(Fault("/v5/order/create", "POST", kind="accept_then_drop"))
        _garbled(acct, "/v5/order/realtime", twice)
        with pytest.raises(errors.OutcomeUnknown, match="different states"):
            acct.adapter.place_order(request)
        acct.server.clear_faults()
        on_venue = [o for o in acct.sim.orders.values() if o.client_id == request.client_id]
        assert [o.status.value for o in on_venue] == ["filled"]
        found = acct.adapter.fetch_order(BTC, request.client_id)  # the next tick settles it
        assert found is not None
        assert found.status.value == "filled"
    finally:
        acct.close()
    assert acct.server.errors == []


MARKETS = {
    "binanceusdm": ("/fapi/v1/exchangeInfo", ("symbols", 0, "filters", 0, "tickSize")),
    "bybit": ("/v5/market/instruments-info", ("result", "list", 0, "priceFilter", "tickSize")),
}


def test_a_garbled_refresh_of_the_markets_changes_nothing(acct: Account) -> None:
    """The refresh reads the venue's markets again (above). An answer whose tick size is
    garbled is refused (the catalogue keeper records it and keeps the specifications it has);
    ccxt must not keep it either: rounding on a grid the domain does not share, the adapter
    would refuse every order, protective ones included, as off the grid."""
    venue = _venue(acct)
    path, field = MARKETS[venue]
    adapter = acct.adapter
    tick = adapter.instrument(BTC).tick_size
    price = adapter.exchange.price_to_precision(BTC, "60000.37")
    garbled: list[object] = []

    def zero_tick(reply: Any) -> Any:
        node = reply
        try:
            for key in field[:-1]:
                node = node[key]
        except (IndexError, KeyError):
            return reply  # (Bybit answers its other categories empty)
        garbled.append(node[field[-1]])
        node[field[-1]] = "0"
        return reply

    _garbled(acct, path, zero_tick)
    with pytest.raises(errors.BotError):
        adapter.load_instruments()
    acct.server.clear_faults()
    assert garbled, "the tick size was not garbled"
    assert adapter.instrument(BTC).tick_size == tick
    assert adapter.exchange.price_to_precision(BTC, "60000.37") == price


def test_a_triggered_algo_order_still_working_keeps_the_list_readable() -> None:
    """Binance lists an algo order whose own order still works (a stop-limit placed by hand)
    as TRIGGERED, which ccxt reads "closed": the check that an open-order list lists only open
    orders must not make the whole list unreadable for it."""
    acct = Account("binanceusdm")
    try:

        def triggered(reply: Any) -> Any:
            for row in reply:
                if "-tp-" in str(row.get("clientAlgoId")):
                    row["algoStatus"] = "TRIGGERED"
            return reply

        _garbled(acct, "/fapi/v1/openAlgoOrders", triggered)
        listed = acct.adapter.fetch_open_orders(BTC)
        assert len(listed) == 2
        acct.server.clear_faults()
        _garbled(acct, "/fapi/v1/openAlgoOrders", replaced_edit((0, "algoStatus"), "EXPIRED"))
        with pytest.raises(errors.AccountUnreadable, match="EXPIRED"):
            acct.adapter.fetch_open_orders(BTC)
    finally:
        acct.close()


def replaced_edit(field: tuple[str | int, ...], value: object) -> Edit:
    return lambda reply: replaced_json(reply, field, value)


# Where the funding rate is in the venue's answer (Binance premiumIndex asked for one symbol
# answers one object; Bybit's comes from the ticker), and the cap each loopback venue publishes
# for BTC (Binance /fapi/v1/fundingInfo adjustedFundingRateCap, Bybit instruments-info
# upperFundingRate).
FUNDING: dict[str, tuple[str, tuple[str | int, ...]]] = {
    "binanceusdm": ("/fapi/v1/premiumIndex", ("lastFundingRate",)),
    "bybit": ("/v5/market/tickers", ("result", "list", 0, "fundingRate")),
}
FUNDING_CAP = {"binanceusdm": Decimal("0.02"), "bybit": Decimal("0.005")}


def _funding_at(acct: Account, rate: object) -> None:
    path, field = FUNDING[_venue(acct)]
    _garbled(acct, path, replaced_edit(field, rate))


@pytest.mark.parametrize("sign", [1, -1], ids=["cap", "floor"])
def test_a_funding_rate_at_the_venues_cap_is_read(acct: Account, sign: int) -> None:
    cap = FUNDING_CAP[_venue(acct)] * sign
    _funding_at(acct, str(cap))
    assert acct.adapter.fetch_funding(BTC).rate == cap


@pytest.mark.parametrize("rate", ["5.0", "-5.0", "above the cap", "below the floor"])
def test_a_funding_rate_beyond_the_venues_cap_is_an_error_naming_it(
    acct: Account, rate: str
) -> None:
    """Defect: any decimal fundingRate was taken: a garbled 5.0 (500 % per interval) reached
    the funding-aware policy (leverage cap) and the hedge leg choice. The venue clamps its rate
    to the contract's cap: a rate beyond it is unreadable, named with contract, rate and bound."""
    cap = FUNDING_CAP[_venue(acct)]
    value = {"above the cap": str(cap + Decimal("0.0001")), "below the floor": str(-cap - 1)}
    sent = value.get(rate, rate)
    _funding_at(acct, sent)
    with pytest.raises(errors.ExchangeError) as caught:
        acct.adapter.fetch_funding(BTC)
    text = str(caught.value)
    assert BTC in text
    assert f"fundingRate {Decimal(sent)}" in text
    assert str(cap) in text, text  # the bound it is outside of


# Where each venue publishes the cap (Binance's fundingInfo is a list of rows, Bybit's
# instruments-info has its rows in result.list) and its keys.
CAP_SOURCE: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "binanceusdm": (
        "/fapi/v1/fundingInfo",
        (),
        "adjustedFundingRateCap",
        "adjustedFundingRateFloor",
    ),
    "bybit": (
        "/v5/market/instruments-info",
        ("result", "list"),
        "upperFundingRate",
        "lowerFundingRate",
    ),
}


def test_a_cap_the_venue_widened_since_it_was_read_is_asked_again(acct: Account) -> None:
    """The venue may widen a contract's cap at any time (Bybit: without notice); the adapter
    knows the cap it read (Bybit: with the markets, refreshed daily; Binance: hourly). A rate
    beyond that cap is asked again before it is refused: a real rate must not cost the
    contract its decisions (and the funding-aware cut of its leverage) for a day."""
    path, at, cap_key, floor_key = CAP_SOURCE[_venue(acct)]
    acct.adapter.fetch_funding(BTC)  # the cap as read (0.02 / 0.005 on the loopback venues)

    def wider(reply: Any) -> Any:
        rows = reply
        for key in at:
            rows = rows[key]
        for row in rows:
            row[cap_key], row[floor_key] = "0.05", "-0.05"
        return reply

    _garbled(acct, path, wider)
    _funding_at(acct, "0.03")
    assert acct.adapter.fetch_funding(BTC).rate == Decimal("0.03")
    asked = len(acct.server.calls(path))
    assert acct.adapter.fetch_funding(BTC).rate == Decimal("0.03")
    assert len(acct.server.calls(path)) == asked, "the wider cap was not kept"
    acct.server.clear_faults()
    _garbled(acct, path, wider)
    _funding_at(acct, "0.06")  # beyond the wider cap too: refused after asking again
    with pytest.raises(errors.ExchangeError) as caught:
        acct.adapter.fetch_funding(BTC)
    assert "fundingRate 0.06 is outside -0.05..0.05" in str(caught.value)


def test_a_rate_that_stays_beyond_the_cap_asks_for_the_cap_once_in_five_minutes(
    acct: Account,
) -> None:
    """A garbled rate that stays garbled was refused after asking for the cap again at every
    read: one more request each tick and guard job, for as long as the fault lasted. The cap
    is asked again once in five minutes (monotonic time); the reads between are refused on the
    cap just read, with the same message."""
    path = CAP_SOURCE[_venue(acct)][0]
    acct.adapter.fetch_funding(BTC)
    _funding_at(acct, "0.5")
    asked = len(acct.server.calls(path))
    for _ in range(3):
        with pytest.raises(errors.ExchangeError, match=r"fundingRate 0\.5 is outside"):
            acct.adapter.fetch_funding(BTC)
    assert len(acct.server.calls(path)) == asked + 1  # the first refusal asked, once
    acct.clock.sleep(301)
    with pytest.raises(errors.ExchangeError, match=r"fundingRate 0\.5 is outside"):
        acct.adapter.fetch_funding(BTC)
    assert len(acct.server.calls(path)) == asked + 2  # five minutes on: asked again


def test_a_contract_without_a_published_cap_has_the_hard_bound() -> None:
    """Binance lists in /fapi/v1/fundingInfo only the contracts whose cap was adjusted: for
    the others a rate up to the plausible bound is read, beyond it refused."""
    from bot.exchange.mapping import FUNDING_RATE_LIMIT

    acct = Account("binanceusdm")
    try:
        _garbled(acct, "/fapi/v1/fundingInfo", lambda reply: [])
        _funding_at(acct, "0.05")  # beyond the loopback's adjusted cap, a real extreme rate
        assert acct.adapter.fetch_funding(BTC).rate == Decimal("0.05")
        acct.server.clear_faults()
        _garbled(acct, "/fapi/v1/fundingInfo", lambda reply: [])  # (asked again: still none)
        _funding_at(acct, "0.5")
        with pytest.raises(errors.ExchangeError, match=f"plausible bound \\+-{FUNDING_RATE_LIMIT}"):
            acct.adapter.fetch_funding(BTC)
    finally:
        acct.close()
    assert acct.server.errors == []


def _ticker_time(acct: Account, ms: int | None) -> Edit:
    """The ticker answer with the venue's time of it set to ``ms`` (None: removed): Binance's
    24 h ticker carries ``closeTime``; Bybit's rows carry none, its envelope ``time``."""
    key = "closeTime" if _venue(acct) == "binanceusdm" else "time"

    def edit(reply: Any) -> Any:
        reply.pop(key, None)
        if ms is not None:
            reply[key] = ms
        return reply

    return edit


def test_the_last_price_carries_the_venues_time(acct: Account) -> None:
    """Defect (Bybit): ccxt's bybit ticker has no timestamp (v5 ticker rows carry no time; the
    answer's envelope does, which ccxt drops) and the adapter put the local clock's time in its
    place: a price the venue answered hours ago read as fresh, and the stale-data check (a
    contract whose price is old takes no new exposure) could never fire."""
    old = LiveClock().now_ms() - 3 * 3_600_000
    _garbled(acct, TICKER[_venue(acct)][0], _ticker_time(acct, old))
    price, ts = acct.adapter.fetch_last_price(BTC)
    assert price > 0
    assert ts == old


def test_a_ticker_without_a_time_is_an_error_not_fresh(acct: Account) -> None:
    """A ticker answer with no time at all is unreadable (the contract gets no decision), never
    a price of now."""
    _garbled(acct, TICKER[_venue(acct)][0], _ticker_time(acct, None))
    with pytest.raises(errors.ExchangeError, match="ticker time"):
        acct.adapter.fetch_last_price(BTC)


LOOKUP = {"binanceusdm": "/fapi/v1/order", "bybit": "/v5/order/realtime"}


def test_a_lookup_that_cannot_be_read_is_an_unreadable_account(acct: Account) -> None:
    """Defect: the reconcile settles an order whose outcome is unknown (or that left the open
    list) by a lookup by client id; a garbled answer to it was a TransientExchangeError, which
    the engine does not take for an unreadable account: the job failed, tick after tick, and
    the unreadable-reads streak (which moves the account to reducing) never counted."""
    cid = entry(amount=QTY).client_id
    _garbled(acct, LOOKUP[_venue(acct)], lambda reply: "OK")
    with pytest.raises(errors.AccountUnreadable, match=cid):
        acct.adapter.fetch_order(BTC, cid)
    acct.server.clear_faults()
    found = acct.adapter.fetch_order(BTC, cid)
    assert found is not None
    assert found.status.value == "filled"
