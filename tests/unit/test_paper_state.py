"""A paper account written and read back is the same account."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from bot.domain.enums import OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.errors import DataError
from bot.sim import paper_state
from bot.sim.exchange import SimulatedExchange
from bot.sim.paper_state import StateEncoder, dump, processed_ms, restore
from bot.sim.triggers import process_bar, settle_funding
from tests.conftest import make_exchange

BTC = "BTC/USDT:USDT"


def test_round_trip_keeps_everything(instruments: dict[str, Instrument]) -> None:
    ex, _ = make_exchange(instruments, slippage_bps="3")
    ex.set_mark(BTC, D("60000.1"))
    ex.set_leverage(BTC, 4)
    ex.place_order(
        OrderRequest(
            "e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.123"), False
        )
    )
    ex.place_order(
        OrderRequest(
            "sl",
            BTC,
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            OrderPurpose.STOP_LOSS,
            D("0.123"),
            True,
            trigger_price=D(55000),
        )
    )
    settle_funding(ex, BTC, 1, D("0.0001"), D("60000.1"))
    payload = dump(ex)
    copy, _ = make_exchange(instruments, slippage_bps="3")  # costs are configuration, not state
    restore(copy, payload)
    assert dump(copy) == payload
    assert copy.book.wallet == ex.book.wallet
    assert copy.fetch_open_orders(BTC) == ex.fetch_open_orders(BTC)
    assert copy.fetch_order(BTC, "e") == ex.fetch_order(BTC, "e")
    # and it keeps working: the restored stop triggers like the original
    for x in (ex, copy):
        process_bar(x, BTC, 2, D(56000), D(56000), D(54000), D(54500))
    assert dump(copy) == dump(ex)


def test_unreadable_state_is_a_clear_error(instruments: dict[str, Instrument]) -> None:
    ex, _ = make_exchange(instruments)
    with pytest.raises(DataError, match="unreadable"):
        restore(ex, '{"version": 1}')
    with pytest.raises(DataError, match="version"):
        restore(ex, '{"version": 99}')


def test_a_truncated_or_newer_state_is_a_clear_error(instruments: dict[str, Instrument]) -> None:
    ex, _ = make_exchange(instruments)
    payload = dump(ex)
    with pytest.raises(DataError, match="unreadable: JSONDecodeError"):
        processed_ms(payload[: len(payload) // 2])  # a write cut short
    with pytest.raises(DataError, match="unreadable: a JSON list"):
        restore(ex, "[]")
    newer = payload.replace('"version":1', '"version":2')
    assert newer != payload
    with pytest.raises(DataError, match="written by a newer version of the bot"):
        restore(ex, newer)
    assert processed_ms(payload) == ex.processed_ms


def test_the_saving_encoder_writes_what_dump_writes_after_every_change(
    instruments: dict[str, Instrument], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reused texts must follow every change: a stop cancelled, triggered, replaced; history
    # cut at KEEP_HISTORY (made small here so records fall out of the kept window).
    monkeypatch.setattr(paper_state, "KEEP_HISTORY", 3)
    ex, _ = make_exchange(instruments, slippage_bps="3")
    encoder = StateEncoder()
    ex.set_mark(BTC, D("60000"))
    ex.set_leverage(BTC, 3)
    assert encoder.dump(ex) == dump(ex)
    for k in range(6):
        ex.place_order(
            OrderRequest(
                f"e{k}", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.01"), False
            )
        )
        assert encoder.dump(ex) == dump(ex)
        stop = OrderRequest(
            f"sl{k}",
            BTC,
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            OrderPurpose.STOP_LOSS,
            D("0.01"),
            True,
            trigger_price=D(59000 - k),
        )
        ex.place_order(stop)
        assert encoder.dump(ex) == dump(ex)
        if k % 2:
            ex.cancel_order(BTC, f"sl{k}")  # the same client id, now a cancelled order
            assert encoder.dump(ex) == dump(ex)
        settle_funding(ex, BTC, 10 + k, D("0.0001"), D("60000"))
        assert encoder.dump(ex) == dump(ex)
    process_bar(ex, BTC, 100, D(60000), D(60000), D(58000), D(58500))  # the stops fire
    assert ex.orders["sl0"].status is OrderStatus.FILLED
    assert encoder.dump(ex) == dump(ex)
    copy, _ = make_exchange(instruments, slippage_bps="3")
    restore(copy, encoder.dump(ex))
    assert StateEncoder().dump(copy) == dump(ex)
    # written key by key, it is still json.dumps's canonical text (sorted keys, no spaces)
    text = dump(ex)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _liquidated_past_bankruptcy(instruments: dict[str, Instrument]) -> SimulatedExchange:
    """A paper account whose isolated long was liquidated on a gap past its bankruptcy price:
    it has paid fees and slippage, and the insurance fund took part of the loss."""
    ex, _ = make_exchange(instruments, slippage_bps="3")
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.1"), False)
    )
    settle_funding(ex, BTC, 1, D("0.0001"), D(60000))
    process_bar(ex, BTC, 2, D(50000), D(50500), D(49500), D(50000))  # the gap liquidates
    assert ex.insurance_shortfall > 0
    assert ex.slippage_paid > 0
    return ex


def _totals(ex: SimulatedExchange) -> tuple[D, ...]:
    return (
        ex.book.wallet,
        ex.fees_paid,
        ex.funding_paid,
        ex.slippage_paid,
        ex.insurance_shortfall,
    )


def test_a_restart_keeps_the_insurance_and_slippage_totals(
    instruments: dict[str, Instrument],
) -> None:
    # Before, a restarted paper account had lost both: loss_beyond_wallet and slippage_paid
    # counted from zero again, and the money no longer added up after a liquidation.
    ex = _liquidated_past_bankruptcy(instruments)
    payload = dump(ex)
    copy, _ = make_exchange(instruments, slippage_bps="3")
    restore(copy, payload)
    assert _totals(copy) == _totals(ex)
    assert copy.slippage_by_symbol == ex.slippage_by_symbol == {BTC: ex.slippage_paid}
    assert dump(copy) == payload
    realized = sum((f.realized_pnl for f in copy.fills), D(0))
    fees = sum((f.fee for f in copy.fills), D(0))
    assert copy.book.wallet == (
        D(10000) + realized - fees - copy.funding_paid + copy.insurance_shortfall
    )


def test_a_state_written_before_the_insurance_and_slippage_totals_loads_with_zero(
    instruments: dict[str, Instrument],
) -> None:
    ex = _liquidated_past_bankruptcy(instruments)
    state = json.loads(dump(ex))
    # what the older bot wrote
    del state["insurance_shortfall"], state["slippage_paid"], state["slippage_by_symbol"]
    copy, _ = make_exchange(instruments, slippage_bps="3")
    restore(copy, json.dumps(state))
    assert (copy.insurance_shortfall, copy.slippage_paid) == (D(0), D(0))
    assert copy.slippage_by_symbol == {}
    assert (copy.book.wallet, copy.fees_paid, copy.funding_paid) == (
        ex.book.wallet,
        ex.fees_paid,
        ex.funding_paid,
    )
    assert copy.fills == ex.fills
    assert copy.events == ex.events


ETH, SOL = "ETH/USDT:USDT", "SOL/USDT:USDT"


def _paper(instruments: dict[str, Instrument], *symbols: str) -> SimulatedExchange:
    ex, _ = make_exchange({s: instruments[s] for s in symbols})
    for sym in symbols:
        ex.set_mark(sym, D(100) if sym == SOL else D(2000) if sym == ETH else D(60000))
    return ex


def test_a_flat_contract_without_orders_may_leave_the_configuration(
    instruments: dict[str, Instrument],
) -> None:
    three = _paper(instruments, BTC, ETH, SOL)
    three.set_leverage(SOL, 3)  # a row for SOL in the saved account, flat and without orders
    two = _paper(instruments, BTC, ETH)
    restore(two, dump(three))
    assert set(two.book.positions) | set(two.book.leverage) | set(two.marks) <= {BTC, ETH}
    assert two.fetch_positions([BTC, ETH]) == {}
    assert two.book.wallet == three.book.wallet
    restore(_paper(instruments, BTC, ETH), dump(two))  # and it saves and loads again


@pytest.mark.parametrize("held", ["position", "order"])
def test_a_contract_holding_a_position_or_an_order_cannot_leave_the_configuration(
    instruments: dict[str, Instrument], held: str
) -> None:
    three = _paper(instruments, BTC, ETH, SOL)
    if held == "position":
        three.place_order(
            OrderRequest("e", SOL, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(5), False)
        )
    else:
        three.place_order(
            OrderRequest(
                "stop",
                SOL,
                OrderSide.BUY,
                OrderType.STOP_MARKET,
                OrderPurpose.ENTRY,
                D(5),
                False,
                trigger_price=D(110),
            )
        )
    with pytest.raises(DataError, match=r"SOL/USDT:USDT \(.*List them in the configuration again"):
        restore(_paper(instruments, BTC, ETH), dump(three))
