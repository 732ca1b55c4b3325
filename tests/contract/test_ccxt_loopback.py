"""The live adapter (CcxtExchange over real ccxt binanceusdm) against the loopback Binance server.

Real ccxt request building, HMAC signing, HTTP and error mapping on ``127.0.0.1``; the server is
backed by the project's :class:`SimulatedExchange`. Faults are injected on the wire to check the
adapter's retry and idempotency rules. The adapter's clock reads wall time (the server checks
request timestamps) but only records its sleeps, so backoff and ``Retry-After`` cost no time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Bracket, Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import OrderRequest
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.live_setup import loopback_adapter

KEY, SECRET = "contract-key-5b1e", "contract-secret-0c9d44"
BTC = "BTC/USDT:USDT"
ACCOUNT = "acct1"
D = Decimal
H = 3_600_000


class RecordingClock:
    """Wall time for timestamps; ``sleep`` is recorded, not waited (monotonic moves by it)."""

    def __init__(self) -> None:
        self._live = LiveClock()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._live.now()

    def now_ms(self) -> int:
        return self._live.now_ms()

    def monotonic(self) -> float:
        return self._live.monotonic() + sum(self.sleeps)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def btc_instrument() -> Instrument:
    brackets = (
        Bracket(D(0), D(50000), D(125), D("0.004"), D(0)),
        Bracket(D(50000), D(250000), D(100), D("0.005"), D(50)),
        Bracket(D(250000), D(10) ** 9, D(50), D("0.01"), D(1300)),
    )
    return Instrument(
        BTC, "BTC", "USDT", D("0.1"), D("0.001"), D("0.001"), D(100), brackets,
        D("0.0002"), D("0.0005"), D("0.0125"),
    )  # fmt: skip


def btc_account() -> SimulatedExchange:
    """The simulated account behind the loopback servers: BTC at 60,000, funding 0.01 % / 4 h."""
    ex = SimulatedExchange(
        {BTC: btc_instrument()},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.CROSS,
    )
    ex.set_mark(BTC, D(60000))
    ex.set_funding(BTC, FundingInfo(D("0.0001"), D(4), 1_700_000_000_000))
    return ex


@pytest.fixture
def sim() -> SimulatedExchange:
    return btc_account()


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    srv.timeout_hold_s = 2.0  # beyond the client's 1.5 s timeout
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
def adapter(server: LoopbackBinance, clock: RecordingClock) -> Iterator[CcxtExchange]:
    exchange = loopback_adapter(
        "binanceusdm",
        server.base_url,
        clock,
        key=KEY,
        secret=SECRET,
        account=ACCOUNT,
        symbols=[BTC],
    )
    yield exchange
    exchange.exchange.close()


def req(
    purpose: OrderPurpose,
    order_type: OrderType,
    side: OrderSide,
    n: int = 0,
    amount: str | None = "0.01",
    **extra: object,
) -> OrderRequest:
    return OrderRequest(
        client_id=f"{ACCOUNT}-{purpose.value}-BTC-s8xk2-{n}",
        symbol=BTC,
        side=side,
        type=order_type,
        purpose=purpose,
        amount=D(amount) if amount is not None else None,
        reduce_only=purpose is not OrderPurpose.ENTRY and not extra.get("close_position"),
        **extra,  # type: ignore[arg-type]
    )


def entry(n: int = 0, amount: str = "0.01") -> OrderRequest:
    return req(OrderPurpose.ENTRY, OrderType.MARKET, OrderSide.BUY, n, amount)


def stop(trigger: str = "55000", n: int = 0) -> OrderRequest:
    return req(
        OrderPurpose.STOP_LOSS, OrderType.STOP_MARKET, OrderSide.SELL, n, trigger_price=D(trigger)
    )


def take_profit(trigger: str = "70000", n: int = 0) -> OrderRequest:
    return req(
        OrderPurpose.TAKE_PROFIT,
        OrderType.TAKE_PROFIT_MARKET,
        OrderSide.SELL,
        n,
        trigger_price=D(trigger),
    )


def posts(server: LoopbackBinance, path: str) -> list[dict[str, str]]:
    return [r.params for r in server.calls(path, "POST")]


def orders_with(sim: SimulatedExchange, client_id: str) -> list[object]:
    return [o for o in sim.orders.values() if o.client_id == client_id]


# -- reads -----------------------------------------------------------------------------------


def test_instrument_comes_from_exchange_info_and_leverage_brackets(adapter: CcxtExchange) -> None:
    inst = adapter.instrument(BTC)
    expected = btc_instrument()
    assert (inst.tick_size, inst.step_size, inst.min_qty) == (D("0.1"), D("0.001"), D("0.001"))
    assert inst.min_notional == D(100)
    assert inst.brackets == expected.brackets  # including Binance's cum
    assert inst.liquidation_fee == D("0.0125")
    assert inst.max_order_qty == D(10_000_000)  # MARKET_LOT_SIZE.maxQty (ccxt limits.market)
    assert inst.max_position_notional == expected.brackets[-1].notional_cap  # the last tier's


def test_an_order_above_the_largest_market_order_is_refused_before_sending(
    server: LoopbackBinance, sim: SimulatedExchange, clock: RecordingClock
) -> None:
    sim.book.instruments[BTC] = replace(btc_instrument(), max_order_qty=D("0.02"))
    adapter = loopback_adapter(
        "binanceusdm", server.base_url, clock, key=KEY, secret=SECRET, account=ACCOUNT,
        symbols=[BTC],
    )  # fmt: skip
    try:
        assert adapter.instrument(BTC).max_order_qty == D("0.02")
        with pytest.raises(errors.InvalidQuantity, match="above the exchange's largest market"):
            adapter.place_order(entry(amount="0.021"))
        assert posts(server, "/fapi/v1/order") == []
        adapter.place_order(entry(amount="0.02"))
        assert adapter.fetch_positions([BTC])[BTC].qty == D("0.02")
    finally:
        adapter.exchange.close()


def test_the_loopback_venue_refuses_a_market_order_above_its_limit_with_4005(
    server: LoopbackBinance, sim: SimulatedExchange, adapter: CcxtExchange
) -> None:
    """The independent venue enforces MARKET_LOT_SIZE itself, reduce-only orders included,
    whatever the adapter believed when it loaded the markets."""
    adapter.place_order(entry(amount="0.03"))
    sim.book.instruments[BTC] = replace(btc_instrument(), max_order_qty=D("0.02"))
    close = req(OrderPurpose.CLOSE, OrderType.MARKET, OrderSide.SELL, 1, "0.03")
    with pytest.raises(errors.OrderRejected):
        adapter.place_order(close)
    assert [r.code for r in server.calls("/fapi/v1/order", "POST")] == [None, -4005]
    assert adapter.fetch_positions([BTC])[BTC].qty == D("0.03")


def test_balance_mark_funding(adapter: CcxtExchange) -> None:
    balance = adapter.fetch_balance()
    assert (balance.asset, balance.wallet) == ("USDT", D(10000))
    assert adapter.fetch_mark_price(BTC) == D(60000)
    funding = adapter.fetch_funding(BTC)
    assert funding.rate == D("0.0001")
    assert funding.interval_hours == D(4)
    assert funding.next_settlement_ms == 1_700_000_000_000


def test_candles_drop_the_forming_bar(adapter: CcxtExchange, server: LoopbackBinance) -> None:
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
    assert server.calls("/fapi/v1/markPriceKlines", "GET")


# -- orders ----------------------------------------------------------------------------------


def test_entry_stop_and_take_profit_then_cancel(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    filled = adapter.place_order(entry())
    assert (filled.status, filled.filled) == (OrderStatus.FILLED, D("0.01"))
    adapter.place_order(stop())
    adapter.place_order(take_profit())

    algo_posts = posts(server, "/fapi/v1/algoOrder")
    assert [p["type"] for p in algo_posts] == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(p["workingType"] == "MARK_PRICE" and p["reduceOnly"] == "true" for p in algo_posts)
    assert algo_posts[0]["clientAlgoId"] == stop().client_id

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
    assert position.leverage == sim.fetch_leverage(BTC)  # v3 positionRisk has none: symbolConfig
    assert position.margin_mode is MarginMode.CROSS

    adapter.cancel_order(BTC, stop().client_id)
    assert [o.client_id for o in adapter.fetch_open_orders(BTC)] == [take_profit().client_id]
    adapter.cancel_order(BTC, stop().client_id)  # already gone: not an error
    gone = adapter.fetch_order(BTC, stop().client_id)
    assert gone is not None
    assert gone.status is OrderStatus.CANCELED
    assert adapter.fetch_order(BTC, f"{ACCOUNT}-sl-BTC-never-0") is None


def close(n: int = 0, amount: str = "0.01") -> OrderRequest:
    return req(OrderPurpose.CLOSE, OrderType.MARKET, OrderSide.SELL, n, amount)


NOT_FOUND = {"code": -2013, "msg": "Order does not exist."}


def test_timeout_on_an_entry_post_is_unknown_not_resent(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    server.inject(Fault("/fapi/v1/order", "POST", kind="timeout"))
    with pytest.raises(errors.OutcomeUnknown, match="not resent"):
        adapter.place_order(entry())
    assert [p["newClientOrderId"] for p in posts(server, "/fapi/v1/order")] == [entry().client_id]
    assert server.calls("/fapi/v1/order", "GET")  # looked up: not found, yet not resent
    assert orders_with(sim, entry().client_id) == []  # (this venue never got it: next job)


def test_timeout_on_a_reduce_only_post_then_resent_with_the_same_id_once(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    adapter.place_order(entry())
    server.inject(Fault("/fapi/v1/order", "POST", kind="timeout"))
    order = adapter.place_order(close())
    assert order.status is OrderStatus.FILLED
    sent = posts(server, "/fapi/v1/order")[1:]
    assert [p["newClientOrderId"] for p in sent] == [close().client_id] * 2
    assert all(p["reduceOnly"] == "true" for p in sent)
    assert server.calls("/fapi/v1/order", "GET")  # looked up before resending
    assert len(orders_with(sim, close().client_id)) == 1
    assert sim.fetch_positions([BTC]) == {}


def test_a_lost_answer_then_a_lagging_lookup_does_not_double_the_entry(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    """Defect: the entry was processed, its answer lost, and the order query, a moment behind
    the matching engine, answered -2013 once: the entry was resent under the same id, which
    Binance accepts once the first is filled (unique among open orders only), and filled twice.
    """
    server.inject(Fault("/fapi/v1/order", "POST", kind="accept_then_drop"))
    server.inject(Fault("/fapi/v1/order", "GET", kind="edit", edit=lambda _r: NOT_FOUND))
    with pytest.raises(errors.OutcomeUnknown):
        adapter.place_order(entry(1))
    assert len(posts(server, "/fapi/v1/order")) == 1
    assert sim.fetch_positions([BTC])[BTC].qty == D("0.01")
    found = adapter.fetch_order(BTC, entry(1).client_id)  # the next job settles it
    assert found is not None
    assert (found.status, found.filled) == (OrderStatus.FILLED, D("0.01"))


def test_a_timeout_then_a_late_execution_does_not_double_the_entry(
    adapter: CcxtExchange,
    server: LoopbackBinance,
    sim: SimulatedExchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect: the entry's POST timed out (Binance -1007: execution status unknown), the
    lookup truthfully said -2013, then the venue executed the first request: the resend under
    the same id filled a second entry."""
    request = entry(2)
    server.inject(Fault("/fapi/v1/order", "POST", kind="timeout"))
    real = sim.fetch_order
    late: list[object] = []

    def lookup_then_late(symbol: str, client_id: str) -> object:
        found = real(symbol, client_id)  # not there yet: -2013
        if client_id == request.client_id and not late:
            late.append(sim.place_order(request))  # the venue executes the timed-out POST
        return found

    monkeypatch.setattr(sim, "fetch_order", lookup_then_late)
    with pytest.raises(errors.OutcomeUnknown):
        adapter.place_order(request)
    assert late
    assert len(posts(server, "/fapi/v1/order")) == 1
    assert sim.fetch_positions([BTC])[BTC].qty == D("0.01")


def test_accepted_but_dropped_answer_is_found_not_duplicated(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    server.inject(Fault("/fapi/v1/order", "POST", kind="accept_then_drop"))
    order = adapter.place_order(entry())
    assert (order.status, order.client_id) == (OrderStatus.FILLED, entry().client_id)
    assert len(posts(server, "/fapi/v1/order")) == 1
    assert len(orders_with(sim, entry().client_id)) == 1
    assert sim.fetch_positions([BTC])[BTC].qty == D("0.01")


def test_dropped_algo_order_is_found_in_the_algo_book(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    adapter.place_order(entry())
    server.inject(Fault("/fapi/v1/algoOrder", "POST", kind="accept_then_drop"))
    order = adapter.place_order(stop())
    assert (order.status, order.type) == (OrderStatus.OPEN, OrderType.STOP_MARKET)
    assert len(posts(server, "/fapi/v1/algoOrder")) == 1
    assert server.calls("/fapi/v1/algoOrder", "GET")
    assert len(orders_with(sim, stop().client_id)) == 1


def test_rate_limit_waits_retry_after_then_resends(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange, clock: RecordingClock
) -> None:
    server.inject(Fault("/fapi/v1/order", "POST", kind="rate_limit", retry_after=3))
    order = adapter.place_order(entry())
    assert order.status is OrderStatus.FILLED
    assert max(clock.sleeps) >= 3
    assert len(posts(server, "/fapi/v1/order")) == 2
    assert len(orders_with(sim, entry().client_id)) == 1


def test_insufficient_margin_is_not_retried(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    with pytest.raises(errors.InsufficientMargin) as info:
        adapter.place_order(entry(amount="100"))  # 6 M USDT notional on 10 k
    assert info.value.code == -2019
    assert len(posts(server, "/fapi/v1/order")) == 1
    assert orders_with(sim, entry().client_id) == []


def test_off_grid_stop_is_refused_before_sending(
    adapter: CcxtExchange, server: LoopbackBinance
) -> None:
    with pytest.raises(errors.InvalidQuantity, match=r"55000\.05 of BTC/USDT:USDT is not on the"):
        adapter.place_order(stop("55000.05"))
    with pytest.raises(errors.InvalidQuantity, match=r"amount 0\.0105"):
        adapter.place_order(entry(amount="0.0105"))
    assert posts(server, "/fapi/v1/algoOrder") == []
    assert posts(server, "/fapi/v1/order") == []


# -- reads under faults ----------------------------------------------------------------------


def test_5xx_on_a_read_is_retried(adapter: CcxtExchange, server: LoopbackBinance) -> None:
    adapter.place_order(entry())
    server.inject(Fault("/fapi/v3/positionRisk", "GET", kind="http_503"))
    server.inject(Fault("/fapi/v1/openAlgoOrders", "GET", kind="http_500"))
    assert adapter.fetch_positions([BTC])[BTC].qty == D("0.01")
    assert adapter.fetch_open_orders(BTC) == []
    statuses = [r.status for r in server.calls("/fapi/v3/positionRisk", "GET")]
    assert statuses == [503, 200]
    assert [r.status for r in server.calls("/fapi/v1/openAlgoOrders", "GET")] == [500, 200]


def test_invalid_nonce_resyncs_the_clock(adapter: CcxtExchange, server: LoopbackBinance) -> None:
    time_calls = len(server.calls("/fapi/v1/time", "GET"))
    server.server_time_offset_ms = -30_000  # the server's clock is 30 s behind ours
    assert adapter.fetch_balance().wallet == D(10000)
    statuses = [r.status for r in server.calls("/fapi/v3/account", "GET")]
    assert statuses == [400, 200]
    assert len(server.calls("/fapi/v1/time", "GET")) == time_calls + 1


def test_timestamp_rejection_on_an_order_resyncs_and_resends(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    server.inject(Fault("/fapi/v1/order", "POST", kind="timestamp"))
    assert adapter.place_order(entry()).status is OrderStatus.FILLED
    assert len(posts(server, "/fapi/v1/order")) == 2
    assert len(orders_with(sim, entry().client_id)) == 1


# -- settings and preflight ------------------------------------------------------------------


def test_set_margin_mode_twice_is_fine(adapter: CcxtExchange, server: LoopbackBinance) -> None:
    adapter.set_margin_mode(BTC, MarginMode.ISOLATED)
    adapter.set_margin_mode(BTC, MarginMode.ISOLATED)  # -4046 "No need to change margin type."
    assert [r.status for r in server.calls("/fapi/v1/marginType", "POST")] == [200, 400]
    assert adapter.fetch_margin_mode(BTC) is MarginMode.ISOLATED


def test_set_leverage_and_read_it_back(adapter: CcxtExchange, sim: SimulatedExchange) -> None:
    adapter.set_leverage(BTC, 7)
    assert adapter.fetch_leverage(BTC) == D(7)
    assert sim.fetch_leverage(BTC) == D(7)


def test_preflight_reads(adapter: CcxtExchange, server: LoopbackBinance) -> None:
    assert adapter.fetch_position_mode() is False
    adapter.set_position_mode(False)  # -4059 "No need to change position side." then read back
    assert [r.status for r in server.calls("/fapi/v1/positionSide/dual", "POST")] == [400]
    assert adapter.fetch_multi_assets_mode() is False
    permissions = adapter.fetch_key_permissions()
    assert permissions is not None
    assert permissions["enableFutures"] is True
    assert permissions["enableWithdrawals"] is False


# -- venue quirks simulated on the client side -----------------------------------------------


def not_found(code: int) -> ccxt.OrderNotFound:
    return ccxt.OrderNotFound(f'binanceusdm {{"code":{code},"msg":"Order does not exist."}}')


def test_forgotten_fresh_algo_order_is_relisted_not_resent(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    # Binance can briefly answer -2013 for a just-placed algo order (freqtrade/freqtrade#12681).
    client = adapter.exchange
    real_fetch_order = client.fetch_order
    forgets = [not_found(-2013)]

    def forgetful(id: str | None, symbol: str | None = None, params: Any = None) -> Any:
        if forgets:
            raise forgets.pop()
        return real_fetch_order(id, symbol, params or {})

    client.fetch_order = forgetful  # an instance attribute: only this client forgets
    adapter.place_order(entry())
    server.inject(Fault("/fapi/v1/algoOrder", "POST", kind="accept_then_drop"))
    order = adapter.place_order(stop())
    assert (order.client_id, order.status) == (stop().client_id, OrderStatus.OPEN)
    assert forgets == []
    assert len(posts(server, "/fapi/v1/algoOrder")) == 1
    assert server.calls("/fapi/v1/openAlgoOrders", "GET")
    assert len(orders_with(sim, stop().client_id)) == 1


def test_cancel_answered_not_found_is_checked_and_repeated(
    adapter: CcxtExchange, server: LoopbackBinance
) -> None:
    adapter.place_order(entry())
    adapter.place_order(stop())
    client = adapter.exchange
    real_cancel = client.cancel_order
    forgets = [not_found(-2011)]

    def forgetful(id: str | None, symbol: str | None = None, params: Any = None) -> Any:
        if forgets:
            raise forgets.pop()
        return real_cancel(id, symbol, params or {})

    client.cancel_order = forgetful
    adapter.cancel_order(BTC, stop().client_id)
    assert adapter.fetch_open_orders(BTC) == []
    assert len(server.calls("/fapi/v1/algoOrder", "DELETE")) == 1


def test_no_change_answer_that_reads_back_different_is_an_error(adapter: CcxtExchange) -> None:
    def already_set(*args: Any, **kwargs: Any) -> Any:
        raise ccxt.MarginModeAlreadySet('binanceusdm {"code":-4046,"msg":"No need to change."}')

    adapter.exchange.set_margin_mode = already_set
    with pytest.raises(errors.PermanentExchangeError, match=r"but reads back cross$"):
        adapter.set_margin_mode(BTC, MarginMode.ISOLATED)
    adapter.set_margin_mode(BTC, MarginMode.CROSS)  # agrees with the read-back: fine
