"""Orders of unknown outcome through the engine: an entry whose send was uncertain and that a
lookup by client id does not find is never sent twice (not resent, no new entry while it may
still execute, settled by client id); a stop of unknown outcome that the open-orders list does
not show yet is looked up, not placed again; the protection-failure streak; a positions answer
that holds more than the fills give. Engine against the simulated exchange with hand-written
faults."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.engine.tick import Engine
from bot.errors import OrderRejected, OutcomeUnknown, TransientExchangeError
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, build

# -- hand-written faulty exchanges ---------------------------------------------------------------


class LostEntryExchange(SimulatedExchange):
    """The first entry's send is uncertain and the venue does not have it when asked (the
    adapter's answer for an order that can add exposure: outcome unknown, never resent);
    :meth:`execute_late` makes the venue execute it after all."""

    lost: OrderRequest | None = None

    def lookups_are_final(self) -> bool:
        return False  # a venue: a request may execute after a lookup missed it

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.ENTRY and self.lost is None:
            self.lost = request
            raise OutcomeUnknown(f"{request.client_id}: sent (read timed out); not found yet")
        return super().place_order(request)

    def execute_late(self) -> Order:
        assert self.lost is not None
        return super().place_order(self.lost)


class StopRefusingExchange(SimulatedExchange):
    """Refuses every stop-loss (Binance -4045: the account's cap of conditional orders)."""

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.STOP_LOSS:
            raise OrderRejected("Reach max stop order limit.", code=-4045)
        return super().place_order(request)


class LostStopExchange(SimulatedExchange):
    """The first stop rests, its answer is lost (outcome unknown); the open-orders list does
    not show it for ``lag`` reads after (Binance forgets a fresh algo order for a moment,
    freqtrade#12681); ``blind``: its lookup by client id fails."""

    lost: str | None = None
    lag = 1
    blind = False

    def lookups_are_final(self) -> bool:
        return False  # a venue: a request may execute after a lookup missed it

    def place_order(self, request: OrderRequest) -> Order:
        order = super().place_order(request)
        if request.purpose is OrderPurpose.STOP_LOSS and self.lost is None:
            self.lost = request.client_id
            raise OutcomeUnknown(f"{request.client_id}: sent; lookup by client id failed")
        return order

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        listed = super().fetch_open_orders(symbol)
        if self.lost is not None and self.lag > 0:
            self.lag -= 1
            return [o for o in listed if o.client_id != self.lost]
        return listed

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        if self.blind and client_id == self.lost:
            raise TransientExchangeError(f"lookup {client_id}: read timed out")
        return super().fetch_order(symbol, client_id)


class HoldsMoreExchange(SimulatedExchange):
    """After the first entry fills, the positions answer holds ``extra`` more than the venue
    filled for the bot (a fill the bot's answers do not explain)."""

    extra = D(0)

    def place_order(self, request: OrderRequest) -> Order:
        order = super().place_order(request)
        if request.purpose is OrderPurpose.ENTRY and not self.extra:
            self.extra = order.filled
        return order

    def fetch_positions(self, symbols: list[str]) -> dict[str, Position]:  # type: ignore[override]
        out = super().fetch_positions(symbols)
        pos = out.get(BTC)
        if pos is not None and self.extra:
            out[BTC] = Position(
                BTC,
                pos.qty + self.extra,
                pos.entry_price,
                pos.leverage,
                pos.margin_mode,
                pos.isolated_margin * 2,
                pos.liquidation_price,
            )
        return out


def _swap(ex: SimulatedExchange, cls: type[SimulatedExchange]) -> None:
    ex.__class__ = cls


def _clock(engine: Engine) -> SimClock:
    clock = engine.clock
    assert isinstance(clock, SimClock)
    return clock


def _entries(store: MemoryStore) -> list[tuple[str, OrderStatus, D]]:
    return [
        (r.client_id, r.status, r.filled)
        for r in store.orders.values()
        if r.request.purpose is OrderPurpose.ENTRY
    ]


def _stops(ex: SimulatedExchange) -> list[Order]:
    return [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]


def _qty(ex: SimulatedExchange) -> D:
    pos = ex.fetch_positions([BTC]).get(BTC)
    return pos.qty if pos is not None else D(0)


# -- an entry of unknown outcome ----------------------------------------------------------------


def test_an_entry_not_found_is_not_sent_again_while_it_may_still_execute(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: a market entry whose send timed out and whose one lookup answered "not found"
    was resent under its client id (Binance keeps it unique among open orders only); the venue
    executed the first late, and the account held two entries. Now the outcome stays unknown,
    a tick within a minute of the send (``UNKNOWN_NOT_FOUND_MS``) sends no new entry, and
    once that has passed with the lookup still saying "not found", the order is settled as
    never placed and the engine enters from the position it reads, under a new client id."""
    engine, ex, store = build(instruments)
    _swap(ex, LostEntryExchange)
    clock = _clock(engine)
    result = engine.tick()
    assert result.unknown == 1
    [(lost, status, _)] = _entries(store)
    assert status is OrderStatus.UNKNOWN
    assert _qty(ex) == 0

    clock.advance(timedelta(seconds=20))
    result = engine.tick()
    assert _entries(store) == [(lost, OrderStatus.UNKNOWN, D(0))]  # no second entry
    assert "outcome is still unknown" in result.decisions[0].reason
    assert any("not found on the exchange yet" in e.reason for e in store.events)

    clock.advance(timedelta(minutes=1))  # (bot.engine.reconcile.UNKNOWN_NOT_FOUND_MS)
    engine.guard()
    assert _entries(store) == [(lost, OrderStatus.CANCELED, D(0))]
    engine.tick()
    [(first, canceled, _), (again, filled, qty)] = _entries(store)
    assert (first, canceled) == (lost, OrderStatus.CANCELED)
    assert again != lost
    assert filled is OrderStatus.FILLED
    assert _qty(ex) == qty
    [stop] = _stops(ex)
    assert stop.amount == qty


def test_an_entry_executed_late_is_settled_and_not_entered_twice(
    instruments: dict[str, Instrument],
) -> None:
    """The venue executes the unknown entry after the tick's lookup: the next job finds it by
    client id (its fill recorded, the position protected); no job enters again."""
    engine, ex, store = build(instruments)
    _swap(ex, LostEntryExchange)
    clock = _clock(engine)
    engine.tick()
    late = ex.execute_late()  # type: ignore[attr-defined]
    clock.advance(timedelta(seconds=20))
    engine.guard()
    [(cid, status, filled)] = _entries(store)
    assert (cid, status, filled) == (late.client_id, OrderStatus.FILLED, late.filled)
    [stop] = _stops(ex)
    assert stop.amount == _qty(ex) == late.filled
    clock.advance(timedelta(minutes=1))
    engine.tick()
    assert len(_entries(store)) == 1
    assert _qty(ex) == late.filled


def test_a_position_an_unknown_entry_may_have_opened_is_protected_not_left_foreign(
    instruments: dict[str, Instrument],
) -> None:
    """The unknown entry executed, but the lookup of the next job still says "not found" (the
    venue's order query trails its matching engine): the position is not taken for one the
    bot did not open (left alone, no stop); it is protected."""
    engine, ex, store = build(instruments)
    _swap(ex, LostEntryExchange)
    clock = _clock(engine)
    engine.tick()
    late = ex.execute_late()  # type: ignore[attr-defined]
    del ex.orders[late.client_id]  # the order query does not show it yet
    clock.advance(timedelta(seconds=20))
    engine.guard()
    assert BTC not in engine.foreign
    [stop] = _stops(ex)
    assert stop.amount == late.filled
    assert not any("not opened by this bot" in e.reason for e in store.events)


# -- a stop of unknown outcome ----------------------------------------------------------------


def test_a_stop_of_unknown_outcome_the_list_omits_is_looked_up_not_placed_twice(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: the stop's answer was lost (recorded unknown) and the open-orders list read
    right after did not show it yet: the verification looked up only the stops recorded open,
    took the position for naked and placed a second stop beside the first."""
    engine, ex, store = build(instruments)
    _swap(ex, LostStopExchange)
    engine.tick()
    [stop] = _stops(ex)
    assert stop.client_id == ex.lost  # type: ignore[attr-defined]
    assert stop.amount == _qty(ex) > 0
    assert store.orders[stop.client_id].status is OrderStatus.UNKNOWN
    assert not [e for e in store.events if e.kind == EventKind.UNPROTECTED]


def test_a_stop_of_unknown_outcome_whose_lookup_fails_makes_the_orders_unreadable(
    instruments: dict[str, Instrument],
) -> None:
    """Its lookup fails too: whether it rests is not known, which is not "no stop": the tick
    ends unreadable and places no second stop."""
    engine, ex, _store = build(instruments)
    _swap(ex, LostStopExchange)
    ex.blind = True  # type: ignore[attr-defined]
    result = engine.tick()
    assert result.unreadable is not None
    assert "unknown outcome" in result.unreadable
    assert [o.client_id for o in _stops(ex)] == [ex.lost]  # type: ignore[attr-defined]


# -- the protection-failure streak ------------------------------------------------------------


def test_guards_that_find_the_account_flat_do_not_end_the_protection_failure_streak(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: every stop refused, each tick opened, failed to protect and closed at market;
    the minute guard in between found the account flat and reset the count, so the account
    never reached ``reducing`` (``risk.max_protection_failures``, default 2) and paid the
    round trip every decision."""
    engine, ex, store = build(instruments)
    _swap(ex, StopRefusingExchange)
    clock = _clock(engine)
    for job in ("tick", "guard", "tick", "guard", "tick"):
        clock.advance(timedelta(minutes=1))
        getattr(engine, job)()
    entries = _entries(store)
    assert len(entries) == 2, entries
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert "2 checks in a row" in memory.state_reason
    assert _qty(ex) == 0


def test_a_check_that_finds_a_position_protected_ends_the_streak(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _store = build(instruments)
    _swap(ex, StopRefusingExchange)
    engine.tick()
    assert engine.protection_failures == 1
    engine.guard()  # flat: neither counted nor reset
    assert engine.protection_failures == 1
    _swap(ex, SimulatedExchange)  # the venue takes stops again
    _clock(engine).advance(timedelta(minutes=1))
    engine.tick()
    assert _qty(ex) > 0
    assert engine.protection_failures == 0


# -- a positions answer that holds more than the fills give -----------------------------------


def test_a_position_larger_than_the_fills_give_gets_a_stop_covering_it(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: the positions answer after the entry held neither the position before nor the
    one the fills give but more on the same side; the stop was sized to the fills, the rest of
    the position naked until the next job. A reduce-only stop cannot open anything: it now
    covers the larger, and the event says the venue holds more than the fills give."""
    engine, ex, store = build(instruments)
    _swap(ex, HoldsMoreExchange)
    result = engine.tick()
    assert result.unreadable is not None
    filled = ex.extra  # type: ignore[attr-defined]
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held == 2 * filled
    [stop] = _stops(ex)
    assert stop.reduce_only
    assert stop.amount == held
    assert any(
        "the venue holds more than the fills give" in e.reason and f"({filled})" in e.reason
        for e in store.events
    )
