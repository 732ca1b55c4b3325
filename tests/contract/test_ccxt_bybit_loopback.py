"""The live adapter (CcxtExchange over real ccxt ``bybit``) against the loopback Bybit v5 server.

The same scenarios as ``test_ccxt_loopback.py`` (Binance), on Bybit's wire: real request
building, ``X-BAPI-*`` signing, HTTP and error mapping on ``127.0.0.1``, a SimulatedExchange
behind the server, faults injected on the wire. The adapter's clock reads wall time but only
records its sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderStatus, OrderType
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
    btc_instrument,
    close,
    entry,
    orders_with,
    stop,
    take_profit,
)
from tests.fakes.bybit_loopback import Fault, LoopbackBybit
from tests.fakes.live_setup import loopback_adapter

D = Decimal
H = 3_600_000
ETH = "ETH/USDT:USDT"
CREATE, REALTIME, CANCEL = "/v5/order/create", "/v5/order/realtime", "/v5/order/cancel"


@pytest.fixture
def sim() -> SimulatedExchange:
    return btc_account()


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    srv.timeout_hold_s = 2.0  # beyond the client's 1.5 s timeout
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
def adapter(server: LoopbackBybit, clock: RecordingClock) -> Iterator[CcxtExchange]:
    exchange = loopback_adapter(
        "bybit",
        server.base_url,
        clock,
        key=KEY,
        secret=SECRET,
        account=ACCOUNT,
        symbols=[BTC],
    )
    yield exchange
    exchange.exchange.close()


def creates(server: LoopbackBybit) -> list[dict[str, str]]:
    return [r.params for r in server.calls(CREATE, "POST")]


# -- reads -----------------------------------------------------------------------------------


def test_instrument_comes_from_instruments_info_and_risk_limits(adapter: CcxtExchange) -> None:
    inst = adapter.instrument(BTC)
    expected = btc_instrument()
    assert (inst.tick_size, inst.step_size, inst.min_qty) == (D("0.1"), D("0.001"), D("0.001"))
    assert inst.min_notional == D(100)  # lotSizeFilter.minNotionalValue
    assert inst.brackets == expected.brackets  # including Bybit's mmDeduction
    assert inst.liquidation_fee == D("0.00055")  # the Bybit profile's closing cost
    assert inst.max_order_qty == D(500)  # lotSizeFilter.maxMktOrderQty (not in ccxt's limits)
    assert inst.max_position_notional == expected.brackets[-1].notional_cap  # the last tier's


def test_balance_mark_funding(adapter: CcxtExchange) -> None:
    balance = adapter.fetch_balance()
    assert (balance.asset, balance.wallet, balance.available) == ("USDT", D(10000), D(10000))
    assert adapter.fetch_mark_price(BTC) == D(60000)
    funding = adapter.fetch_funding(BTC)
    assert funding.rate == D("0.0001")
    assert funding.interval_hours == D(4)  # instruments-info fundingInterval (minutes)
    assert funding.next_settlement_ms == 1_700_000_000_000


def test_candles_drop_the_forming_bar(adapter: CcxtExchange, server: LoopbackBybit) -> None:
    now = LiveClock().now_ms()
    current = now - now % H
    rows = [
        (current - k * H, D(100 + k), D(110 + k), D(90 + k), D(105 + k), D(7)) for k in (3, 2, 1, 0)
    ]
    server.set_candles(BTC, "trade", rows)
    server.set_candles(BTC, "mark", rows)
    candles = adapter.fetch_candles(BTC, "1h", 3)
    assert [c.open_ms for c in candles] == [current - 3 * H, current - 2 * H, current - H]
    assert candles[-1].close == 106.0
    assert [c.open_ms for c in adapter.fetch_candles(BTC, "1h", 2, mark=True)] == [
        current - 2 * H,
        current - H,
    ]
    assert [r.params["interval"] for r in server.calls("/v5/market/mark-price-kline")] == ["60"]


# -- orders ----------------------------------------------------------------------------------


def test_entry_stop_and_take_profit_then_cancel(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    filled = adapter.place_order(entry())
    assert (filled.status, filled.filled) == (OrderStatus.FILLED, D("0.01"))
    adapter.place_order(stop())
    adapter.place_order(take_profit())

    conditional = creates(server)[1:]
    assert [p["triggerDirection"] for p in conditional] == ["2", "1"]  # falls to / rises to
    assert all(p["triggerBy"] == "MarkPrice" and p["reduceOnly"] == "true" for p in conditional)
    assert conditional[0]["orderLinkId"] == stop().client_id

    open_orders = {o.client_id: o for o in adapter.fetch_open_orders(BTC)}
    assert set(open_orders) == {stop().client_id, take_profit().client_id}
    sl = open_orders[stop().client_id]
    assert (sl.type, sl.purpose, sl.trigger_price) == (
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        D(55000),
    )
    assert open_orders[take_profit().client_id].type is OrderType.TAKE_PROFIT_MARKET

    position = adapter.fetch_positions([BTC])[BTC]
    assert position.qty == D("0.01")
    assert position.leverage == sim.fetch_leverage(BTC)  # in the position row on Bybit
    assert position.margin_mode is MarginMode.CROSS  # account info: REGULAR_MARGIN

    adapter.cancel_order(BTC, stop().client_id)
    assert [o.client_id for o in adapter.fetch_open_orders(BTC)] == [take_profit().client_id]
    adapter.cancel_order(BTC, stop().client_id)  # already gone (110001): not an error
    gone = adapter.fetch_order(BTC, stop().client_id)
    assert gone is not None
    assert gone.status is OrderStatus.CANCELED
    assert adapter.fetch_order(BTC, f"{ACCOUNT}-sl-BTC-never-0") is None


def test_timeout_on_an_entry_post_is_unknown_not_resent(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    # (Bybit documents orderLinkId as unique whatever the status; not relied on: the same rule
    # as on Binance, see ccxt_adapter._resend_when_absent)
    server.inject(Fault(CREATE, "POST", kind="timeout"))
    with pytest.raises(errors.OutcomeUnknown, match="not resent"):
        adapter.place_order(entry())
    assert [p["orderLinkId"] for p in creates(server)] == [entry().client_id]
    assert server.calls(REALTIME, "GET")  # looked up: not found, yet not resent
    assert orders_with(sim, entry().client_id) == []


def test_timeout_on_a_reduce_only_post_then_resent_with_the_same_id_once(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    adapter.place_order(entry())
    server.inject(Fault(CREATE, "POST", kind="timeout"))
    order = adapter.place_order(close())
    assert order.status is OrderStatus.FILLED
    assert [p["orderLinkId"] for p in creates(server)[1:]] == [close().client_id] * 2
    assert server.calls(REALTIME, "GET")  # looked up before resending
    assert len(orders_with(sim, close().client_id)) == 1
    assert sim.fetch_positions([BTC]) == {}


def test_accepted_but_dropped_answer_is_found_not_duplicated(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    server.inject(Fault(CREATE, "POST", kind="accept_then_drop"))
    order = adapter.place_order(entry())
    assert (order.status, order.client_id) == (OrderStatus.FILLED, entry().client_id)
    assert len(creates(server)) == 1
    assert len(orders_with(sim, entry().client_id)) == 1
    assert sim.fetch_positions([BTC])[BTC].qty == D("0.01")


def test_dropped_conditional_order_is_found_by_order_link_id(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    adapter.place_order(entry())
    server.inject(Fault(CREATE, "POST", kind="accept_then_drop"))
    order = adapter.place_order(stop())
    assert (order.status, order.type) == (OrderStatus.OPEN, OrderType.STOP_MARKET)
    assert len(creates(server)) == 2
    lookups = [r.params for r in server.calls(REALTIME, "GET")]
    assert {"orderLinkId": stop().client_id, "orderFilter": "StopOrder"}.items() <= lookups[
        -1
    ].items()
    assert len(orders_with(sim, stop().client_id)) == 1


def test_rate_limit_waits_for_the_reset_then_resends(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange, clock: RecordingClock
) -> None:
    server.inject(Fault(CREATE, "POST", kind="rate_limit", retry_after=3))
    order = adapter.place_order(entry())
    assert order.status is OrderStatus.FILLED
    assert max(clock.sleeps) >= 2.5  # from X-Bapi-Limit-Reset-Timestamp (reset in 3 s)
    assert len(creates(server)) == 2
    assert len(orders_with(sim, entry().client_id)) == 1


def test_insufficient_margin_is_not_retried(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    with pytest.raises(errors.InsufficientMargin) as info:
        adapter.place_order(entry(amount="100"))  # 6 M USDT notional on 10 k
    assert info.value.code == 110007
    assert len(creates(server)) == 1
    assert orders_with(sim, entry().client_id) == []


def test_duplicate_order_link_id_is_refused_even_after_a_fill(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    adapter.place_order(entry())
    client = adapter.exchange
    params = {"clientOrderId": entry().client_id}
    with pytest.raises(Exception, match="110072"):
        client.create_order(BTC, "market", "buy", 0.01, None, params)
    assert len(orders_with(sim, entry().client_id)) == 1


def test_off_grid_stop_is_refused_before_sending(
    adapter: CcxtExchange, server: LoopbackBybit
) -> None:
    with pytest.raises(errors.InvalidQuantity, match=r"55000\.05 of BTC/USDT:USDT is not on the"):
        adapter.place_order(stop("55000.05"))
    with pytest.raises(errors.InvalidQuantity, match=r"amount 0\.0105"):
        adapter.place_order(entry(amount="0.0105"))
    assert creates(server) == []


# -- reads under faults ----------------------------------------------------------------------


def test_5xx_on_a_read_is_retried(adapter: CcxtExchange, server: LoopbackBybit) -> None:
    adapter.place_order(entry())
    server.inject(Fault("/v5/position/list", "GET", kind="http_503"))
    server.inject(Fault(REALTIME, "GET", kind="http_500"))
    assert adapter.fetch_positions([BTC])[BTC].qty == D("0.01")
    assert adapter.fetch_open_orders(BTC) == []
    assert [r.status for r in server.calls("/v5/position/list", "GET")] == [503, 200]
    statuses = [r.status for r in server.calls(REALTIME, "GET")]
    assert statuses[statuses.index(500) + 1] == 200


def test_invalid_nonce_resyncs_the_clock(adapter: CcxtExchange, server: LoopbackBybit) -> None:
    seen = len(server.requests)
    server.server_time_offset_ms = -30_000  # the server's clock is 30 s behind ours
    assert adapter.fetch_balance().wallet == D(10000)
    after = server.requests[seen:]
    # the first signed request is refused (10002, HTTP 200), the clock is re-measured, the
    # call is repeated and every later request is accepted
    assert [(r.path, r.code) for r in after[:2]] == [
        ("/v5/user/query-api", 10002),
        ("/v5/market/time", None),
    ]
    assert [r.code for r in after[2:]] == [None] * (len(after) - 2)
    assert after[-1].path == "/v5/account/wallet-balance"


def test_timestamp_rejection_on_an_order_resyncs_and_resends(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    server.inject(Fault(CREATE, "POST", kind="timestamp"))
    assert adapter.place_order(entry()).status is OrderStatus.FILLED
    assert len(creates(server)) == 2
    assert len(orders_with(sim, entry().client_id)) == 1


# -- settings and preflight ------------------------------------------------------------------


def test_margin_mode_is_account_wide_and_idempotent(
    adapter: CcxtExchange, server: LoopbackBybit
) -> None:
    adapter.set_margin_mode(BTC, MarginMode.ISOLATED)
    adapter.set_margin_mode(BTC, MarginMode.ISOLATED)
    sent = [r.params for r in server.calls("/v5/account/set-margin-mode", "POST")]
    assert sent == [{"setMarginMode": "ISOLATED_MARGIN"}] * 2
    assert adapter.fetch_margin_mode(BTC) is MarginMode.ISOLATED


def test_leverage_not_modified_is_confirmed_by_a_read_back(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    adapter.set_leverage(BTC, 7)
    adapter.set_leverage(BTC, 7)  # 110043 "leverage not modified", then read back
    assert adapter.fetch_leverage(BTC) == D(7)
    assert sim.fetch_leverage(BTC) == D(7)
    assert [r.code for r in server.calls("/v5/position/set-leverage", "POST")] == [None, 110043]


def test_position_mode_not_modified_is_fine(adapter: CcxtExchange, server: LoopbackBybit) -> None:
    assert adapter.fetch_position_mode() is False  # positionIdx 0 on the position row
    adapter.set_position_mode(False)  # 110025 "Position mode is not modified"
    switches = server.calls("/v5/position/switch-mode", "POST")
    assert [(r.params["mode"], r.code) for r in switches] == [("0", 110025)]
    assert adapter.fetch_multi_assets_mode() is None
    assert adapter.fetch_key_permissions() is None


def test_a_second_contract_in_hedge_mode_is_seen(clock: RecordingClock) -> None:
    """Bybit keeps a position mode per symbol as well as per coin: the first contract's rows
    said one-way while the second, switched by symbol in the app, was in hedge mode (the venue
    then refuses every order there, its stops included). Each contract's rows are read."""
    eth = replace(btc_instrument(), symbol=ETH, base="ETH", tick_size=D("0.01"))
    sim = SimulatedExchange(
        {BTC: btc_instrument(), ETH: eth},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.CROSS,
    )
    sim.set_mark(BTC, D(60000))
    sim.set_mark(ETH, D(3000))
    srv = LoopbackBybit(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH])
    with srv:
        adapter = loopback_adapter(
            "bybit",
            srv.base_url,
            clock,
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC, ETH],
        )
        assert adapter.fetch_position_mode() is False
        srv.hedged_symbols.add(ETH)  # switched by hand, by symbol
        assert adapter.fetch_position_mode() is True
        assert srv.errors == []


def test_several_contracts_are_read_in_one_position_call(clock: RecordingClock) -> None:
    # ccxt's bybit.fetch_positions refuses a list of more than one symbol (ArgumentsRequired):
    # the adapter reads the account's open positions by settle coin and picks its contracts.
    eth = replace(btc_instrument(), symbol=ETH, base="ETH", tick_size=D("0.01"))
    sim = SimulatedExchange(
        {BTC: btc_instrument(), ETH: eth},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.CROSS,
    )
    sim.set_mark(BTC, D(60000))
    sim.set_mark(ETH, D(3000))
    srv = LoopbackBybit(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH])
    with srv:
        adapter = loopback_adapter(
            "bybit",
            srv.base_url,
            clock,
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC, ETH],
        )
        assert adapter.fetch_positions([BTC, ETH]) == {}
        assert adapter.fetch_position_mode() is False
        adapter.place_order(entry())
        positions = adapter.fetch_positions([BTC, ETH])
        assert {s: p.qty for s, p in positions.items()} == {BTC: D("0.01")}
        reads = [r.params for r in srv.calls("/v5/position/list", "GET")]
        assert {"settleCoin": "USDT"}.items() <= reads[0].items()
        assert srv.errors == []


def test_confirm_flat_reads_the_raw_position_row(
    adapter: CcxtExchange, server: LoopbackBybit
) -> None:
    assert adapter.confirm_flat(BTC) is True  # the row of a flat contract: size "0"
    adapter.place_order(entry())
    assert adapter.confirm_flat(BTC) is False
    probe = server.calls("/v5/position/list", "GET")[-1].params
    assert (probe["category"], probe["symbol"]) == ("linear", "BTCUSDT")


GARBLED = ["garbled_json", "html_200", "json_string", "missing_fields", "null_fields", "empty_list"]


@pytest.mark.parametrize("conditional", [False, True], ids=["market", "stop"])
@pytest.mark.parametrize("kind", GARBLED)
def test_a_garbled_answer_is_settled_by_order_link_id(
    adapter: CcxtExchange,
    server: LoopbackBybit,
    sim: SimulatedExchange,
    kind: str,
    conditional: bool,
) -> None:
    # the venue took the order whatever its answer looks like: settled by a lookup, never resent
    if conditional:
        adapter.place_order(entry(99))  # a stop needs a position
    request = stop() if conditional else entry()
    server.inject(Fault(CREATE, "POST", kind=kind))  # type: ignore[arg-type]
    order = adapter.place_order(request)
    assert order.client_id == request.client_id
    assert order.status is (OrderStatus.OPEN if conditional else OrderStatus.FILLED)
    sent = [r for r in server.calls(CREATE, "POST") if r.params["orderLinkId"] == request.client_id]
    assert [r.fault for r in sent] == [kind]
    assert len(orders_with(sim, request.client_id)) == 1
