"""Two live bots with the same ``account.name`` on one exchange account but separate state
databases (the instance lock cannot see that) would fight: each takes the other's stops for its
own duplicates and cancels them. The live preflight names the orders that carry this bot's
client ids but that its database never recorded."""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.errors import TransientExchangeError
from bot.runtime.preflight import unknown_own_orders
from bot.store.sql import SqlStore
from tests.conftest import make_exchange

BTC = "BTC/USDT:USDT"


def stop(client_id: str) -> OrderRequest:
    return OrderRequest(
        client_id,
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        D("0.01"),
        True,
        trigger_price=D(50000),
    )


def test_orders_with_this_bots_ids_that_its_database_never_recorded_are_named(
    store: SqlStore, instruments: dict[str, Instrument]
) -> None:
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 5)
    ex.place_order(
        OrderRequest(
            "x", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.01"), False
        )
    )
    mine = stop("main-sl-BTC-sx7c00-1")
    store.save_intent(mine, clock.now_ms())  # this bot's: recorded before it was sent
    ex.place_order(mine)
    assert unknown_own_orders(ex, store, [BTC], "main") == []
    # another bot named "main", with its own database, places its stop on the same account
    ex.place_order(stop("main-sl-BTC-sx7c3k-1"))
    [warning] = unknown_own_orders(ex, store, [BTC], "main")
    assert "1 open order(s) carry this bot's client ids (main-sl-BTC-sx7c3k-1)" in warning
    assert "another bot with account.name 'main'" in warning


def test_a_failing_read_only_says_the_check_was_not_made(
    store: SqlStore, instruments: dict[str, Instrument]
) -> None:
    ex, _ = make_exchange(instruments)

    def down(symbol: str) -> list[Order]:
        raise TransientExchangeError("503 Service Unavailable")

    ex.fetch_open_orders = down  # type: ignore[method-assign]
    [warning] = unknown_own_orders(ex, store, [BTC], "main")
    assert warning.startswith("open orders not checked for another bot's: TransientExchangeError")
