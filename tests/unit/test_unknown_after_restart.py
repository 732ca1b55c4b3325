"""An entry on the wire when the process died (its intent ``pending_submit``) is not taken for
absent by the first lookup after a restart seconds later: the venue may still execute it
(Binance -1007 "execution status unknown"; its order query can trail the matching engine), and
a new entry under a new client id would then fill twice. It stays unresolved for
``UNKNOWN_NOT_FOUND_MS`` and holds its contract's increases, as an order of unknown outcome
does; past that, not found means it never reached the book."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal

from bot.clock import SimClock
from bot.domain.enums import OrderPurpose, OrderStatus
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.reconcile import UNKNOWN_NOT_FOUND_MS
from bot.engine.tick import Engine
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, build


class Killed(BaseException):
    """The process dies (SIGKILL, OOM, power) while the request is on the wire."""


class InFlightExchange(SimulatedExchange):
    """Takes the first entry's request and dies before answering; executes it on demand."""

    lost: OrderRequest | None = None

    def lookups_are_final(self) -> bool:
        return False  # a venue: a request may execute after a lookup missed it

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.ENTRY and self.lost is None:
            self.lost = request
            raise Killed
        return super().place_order(request)

    def execute_late(self) -> Order:
        assert self.lost is not None
        return SimulatedExchange.place_order(self, self.lost)


def _entries(store: MemoryStore) -> list[tuple[str, OrderStatus]]:
    return [
        (r.client_id, r.status)
        for r in store.orders.values()
        if r.request.purpose is OrderPurpose.ENTRY
    ]


def _restarted(engine: Engine, exchange: SimulatedExchange, store: MemoryStore) -> Engine:
    return Engine(
        clock=engine.clock,
        exchange=exchange,
        market=engine.market,
        store=store,
        policy=engine.policy,
        contracts=engine.contracts,
        limits=engine.limits,
        account="t",
        margin_mode=engine.margin_mode,
    )


def _clock(engine: Engine) -> SimClock:
    clock = engine.clock
    assert isinstance(clock, SimClock)
    return clock


def _held(exchange: SimulatedExchange) -> Decimal:
    pos = exchange.fetch_positions([BTC]).get(BTC)
    return pos.qty if pos is not None else Decimal(0)


def test_a_restart_seconds_after_a_kill_mid_send_does_not_enter_twice(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    ex.__class__ = InFlightExchange
    assert isinstance(ex, InFlightExchange)
    with contextlib.suppress(Killed):
        engine.tick()
    [(lost, status)] = _entries(store)
    assert status is OrderStatus.PENDING_SUBMIT

    _clock(engine).advance(timedelta(seconds=5))
    _restarted(engine, ex, store).tick()
    # still unresolved, and no second entry while it may execute
    assert _entries(store) == [(lost, OrderStatus.PENDING_SUBMIT)]
    late = ex.execute_late()
    assert _held(ex) == late.filled  # one entry's worth, not two


def test_past_the_wait_an_intent_the_venue_never_saw_is_closed_and_entered_anew(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    ex.__class__ = InFlightExchange
    with contextlib.suppress(Killed):
        engine.tick()
    [(lost, _)] = _entries(store)
    _clock(engine).advance(timedelta(milliseconds=UNKNOWN_NOT_FOUND_MS + 1_000))
    _restarted(engine, ex, store).tick()
    statuses = dict(_entries(store))
    assert statuses[lost] is OrderStatus.CANCELED
    assert [cid for cid in statuses if cid != lost], "no new entry under a new client id"
    assert _held(ex) > 0
