"""Everything that reads "is this position protected" agrees: the alert conditions, ``bot status``
and the dashboard count the same stops (bot.risk.coverage): a stop smaller than the position
leaves the rest unprotected and each says how much; a close-position stop covers everything."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from rich.console import Console

from bot.alerts import AlertRules, conditions
from bot.bootstrap import open_store
from bot.cli.reports import contract_specs, status_data, status_tables
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.dashboard.account import AccountSource
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.instruments import load_instruments
from bot.store.sql import SqlStore
from tests.conftest import record_book
from tests.runtime.conftest import write_config

BTC = "BTC/USDT:USDT"
T0 = 1_748_822_400_000
HELD = D("0.3")


@pytest.fixture
def config(tmp_path: Path) -> BotConfig:
    return load_config(write_config(tmp_path, contracts=2))


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def _book(store: SqlStore, stop: OrderRequest) -> Order:
    """The bot entered 0.3 BTC and rests ``stop``; the position is 0.3 (say it grew by hand
    after a stop of 0.1 was placed). Returns the stop as the exchange lists it."""
    entry = OrderRequest(
        "t-en-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, HELD, False
    )
    store.save_intent(entry, T0)
    store.update_order(entry.client_id, OrderStatus.FILLED, T0)
    store.save_intent(stop, T0)
    store.update_order(stop.client_id, OrderStatus.OPEN, T0)
    pos = Position(BTC, HELD, D(60000), D(3), MarginMode.ISOLATED)
    record_book(store, T0, [pos])
    return Order(
        stop.client_id,
        "9",
        BTC,
        stop.side,
        stop.type,
        stop.purpose,
        stop.amount,
        D(0),
        OrderStatus.OPEN,
        stop.reduce_only,
        trigger_price=stop.trigger_price,
        close_position=stop.close_position,
    )


def _stop(amount: D | None) -> OrderRequest:
    return OrderRequest(
        "t-sl-1",
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        amount,
        amount is not None,
        trigger_price=D(55000),
        close_position=amount is None,
    )


def _views(config: BotConfig, store: SqlStore, listed: Order) -> tuple[list[str], dict, object]:  # type: ignore[type-arg]
    inst = load_instruments("binanceusdm")[BTC]
    alerts = conditions(
        positions={BTC: Position(BTC, HELD, D(60000), D(3), MarginMode.ISOLATED)},
        resting={BTC: [listed]},
        marks={BTC: D(60000)},
        snapshots={},
        instruments={BTC: inst},
        wallet=D(10000),
        rules=AlertRules(),
    )
    data = status_data(config, store)
    row = next(r for r in data["contracts"] if r["symbol"] == BTC)
    console = Console(width=300, record=True, file=io.StringIO())
    for table in status_tables(data, contract_specs(config)):
        console.print(table)
    row["_text"] = console.export_text()
    [view] = [
        c for c in AccountSource(config, store).overview(T0 + 1000).contracts if c.symbol == BTC
    ]
    return [f"{a.key} {a.message}" for a in alerts], row, view


def test_a_stop_smaller_than_the_position_is_partial_everywhere(
    config: BotConfig, store: SqlStore
) -> None:
    listed = _book(store, _stop(D("0.1")))
    alerts, row, view = _views(config, store, listed)
    assert alerts == [
        f"part_unprotected:{BTC} {BTC}: position 0.3: stops cover 0.1 of 0.3: 0.2 unprotected"
    ]
    assert row["stop_loss"] == "55000"
    assert row["unprotected_qty"] == "0.2"
    assert "0.2 not covered by a stop" in row["_text"]
    assert view.unprotected  # type: ignore[attr-defined]
    assert view.partly_covered  # type: ignore[attr-defined]
    assert view.unprotected_qty == D("0.2")  # type: ignore[attr-defined]


def test_a_close_position_stop_covers_the_whole_position_everywhere(
    config: BotConfig, store: SqlStore
) -> None:
    listed = _book(store, _stop(None))
    alerts, row, view = _views(config, store, listed)
    assert alerts == []
    assert row["unprotected_qty"] == "0"
    assert "not covered" not in row["_text"]
    assert not view.unprotected  # type: ignore[attr-defined]
    assert view.unprotected_qty == 0  # type: ignore[attr-defined]


def test_a_stop_on_the_wrong_side_is_no_protection_anywhere(
    config: BotConfig, store: SqlStore
) -> None:
    wrong = OrderRequest(
        "t-sl-1",
        BTC,
        OrderSide.BUY,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        HELD,
        True,
        trigger_price=D(65000),
    )
    listed = _book(store, wrong)
    alerts, row, view = _views(config, store, listed)
    assert [a.split(" ", 1)[0] for a in alerts] == [f"no_stop:{BTC}"]
    assert row["unprotected_qty"] == "0.3"
    assert view.unprotected  # type: ignore[attr-defined]


def test_the_dashboard_page_says_how_much_is_not_covered(
    config: BotConfig, store: SqlStore
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from bot.clock import SimClock
    from bot.dashboard.app import create_app
    from bot.dashboard.security import Guard

    _book(store, _stop(D("0.1")))
    app = create_app(
        {config.account.name: AccountSource(config, store)},
        store=store,
        guard=Guard(None),
        clock=SimClock(T0 + 1000),
    )
    page = TestClient(app, base_url="http://127.0.0.1").get("/").text
    assert "0.200 not covered" in page
