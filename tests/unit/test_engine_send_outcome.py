"""What the venue's answer to a sent order says became of it (Engine._outcome_of): refused,
unknown, or sent."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.domain.enums import EventKind, OrderStatus, TradingState
from bot.domain.instrument import Instrument
from bot.engine.tick import SendOutcome
from tests.unit.test_engine import build


def test_an_order_ended_in_part_filled_traded_and_one_ended_unfilled_did_not(
    instruments: dict[str, Instrument],
) -> None:
    """A market order whose rest the venue expired after a partial fill (Binance EXPIRED,
    Bybit PartiallyFilledCanceled) traded: it is sent, not a refusal recorded as one. The
    same answer with nothing filled, or a rejection, is a refusal."""
    engine, ex, store = build(instruments)
    engine.tick()
    entry = next(o for o in ex.orders.values() if o.filled > 0)
    record = store.get_order(entry.client_id)
    assert record is not None
    request, now = record.request, 1
    ended = replace(entry, status=OrderStatus.CANCELED, filled=entry.filled / 2)
    before = len(store.recent_events(100, kinds=(EventKind.REJECTED,)))
    assert engine._outcome_of(request, ended, now, TradingState.ACTIVE) is SendOutcome.SENT
    assert len(store.recent_events(100, kinds=(EventKind.REJECTED,))) == before
    unfilled = replace(ended, filled=D(0))
    assert engine._outcome_of(request, unfilled, now, TradingState.ACTIVE) is SendOutcome.REJECTED
    refused = replace(ended, status=OrderStatus.REJECTED, filled=D(0))
    assert engine._outcome_of(request, refused, now, TradingState.ACTIVE) is SendOutcome.REJECTED
    assert len(store.recent_events(100, kinds=(EventKind.REJECTED,))) == before + 2
