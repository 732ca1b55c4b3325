"""A contract the venue withdrew (listed, not trading): the bot stops sending orders on it once
the venue REFUSES one, not when a request fails for a reason of the moment (a rate limit, the
clock out of the receive window, a timeout): such a failure is retried as on any contract, or
the position stays without its stop until the venue settles it."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.domain.enums import OrderPurpose
from bot.domain.instrument import Instrument
from bot.domain.market import VenueRestriction
from bot.domain.orders import Order, OrderRequest
from bot.engine.tick import Engine
from bot.errors import ClockDrift, ExchangeError, OrderRejected, RateLimited
from bot.sim.exchange import SimulatedExchange
from tests.unit.test_engine import BTC, build, protective

WITHDRAWN = {BTC: VenueRestriction(f"{BTC}: withdrawn by the venue (status SETTLING)")}


class FailingOnceExchange(SimulatedExchange):
    """Fails the next stop-loss placement with ``failure``, then takes them again."""

    failure: ExchangeError | None = None

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.STOP_LOSS and self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        return super().place_order(request)


def _held_without_stop(
    instruments: dict[str, Instrument], failure: ExchangeError
) -> tuple[Engine, FailingOnceExchange]:
    engine, ex, _ = build(instruments)
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    engine.restrict(WITHDRAWN)
    for order in ex.fetch_open_orders(BTC):
        ex.cancel_order(BTC, order.client_id)
    ex.__class__ = FailingOnceExchange
    failing = ex
    assert isinstance(failing, FailingOnceExchange)
    failing.failure = failure
    return engine, failing


@pytest.mark.parametrize(
    "failure",
    [RateLimited("429 Too Many Requests"), ClockDrift("-1021 Timestamp outside recvWindow")],
)
def test_a_failure_of_the_moment_is_not_a_refusal(
    instruments: dict[str, Instrument], failure: ExchangeError
) -> None:
    engine, ex = _held_without_stop(instruments, failure)
    engine.guard()  # the stop fails once: not a refusal by the venue, so it is sent again
    engine.guard()
    [stop] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert stop.amount == abs(ex.fetch_positions([BTC])[BTC].qty)


def test_a_refusal_stops_the_orders_on_a_withdrawn_contract(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex = _held_without_stop(instruments, OrderRejected("Invalid symbol status", -1122))
    engine.guard()
    placed = len(ex.orders)
    engine.guard()
    assert len(ex.orders) == placed  # refused once: nothing more is sent on it
    assert OrderPurpose.STOP_LOSS not in protective(ex)
    assert D(0) < ex.fetch_positions([BTC])[BTC].qty


def _restarted(engine: Engine) -> Engine:
    """The same bot started again (a crash loop, a redeploy): a new engine on the same store,
    venue and clock, given the venue's restrictions by the start's catalogue check."""
    again = Engine(
        clock=engine.clock,
        exchange=engine.exchange,
        market=engine.market,
        store=engine.store,
        policy=engine.policy,
        contracts=engine.contracts,
        limits=engine.limits,
        account=engine.account,
        margin_mode=engine.margin_mode,
    )
    return again


def test_a_refusal_outlives_a_restart_while_the_restriction_holds(
    instruments: dict[str, Instrument],
) -> None:
    """The refusal was kept in memory only: each restart sent one more order the venue
    refused (a crash loop: one a minute)."""
    engine, ex = _held_without_stop(instruments, OrderRejected("Invalid symbol status", -1122))
    engine.guard()  # refused: nothing more is sent on it
    placed = len(ex.orders)
    for _ in range(3):
        engine = _restarted(engine)
        engine.restrict(WITHDRAWN)  # the same withdrawal, read at the start
        engine.guard()
        assert len(ex.orders) == placed
    assert OrderPurpose.STOP_LOSS not in protective(ex)
    # Withdrawn for another reason after a restart: the venue is asked again (its stop placed).
    engine = _restarted(engine)
    other = VenueRestriction(f"{BTC}: withdrawn by the venue (status PRE_SETTLE)")
    engine.restrict({BTC: other})
    engine.guard()
    [stop] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert stop.amount == abs(ex.fetch_positions([BTC])[BTC].qty)
    assert engine.store.venue_refusals() == {}


def test_a_refusal_is_forgotten_when_the_contract_trades_again_before_a_restart(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex = _held_without_stop(instruments, OrderRejected("Invalid symbol status", -1122))
    engine.guard()
    assert engine.store.venue_refusals() == WITHDRAWN
    engine.restrict({})  # the venue trades it again
    assert engine.store.venue_refusals() == {}
    engine = _restarted(engine)
    engine.restrict(WITHDRAWN)  # withdrawn again, after the restart: a new withdrawal
    engine.guard()
    [stop] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert stop.amount == abs(ex.fetch_positions([BTC])[BTC].qty)
