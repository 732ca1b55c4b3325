"""One contract's failed read inside its protection holds back no other contract's stop.

Each contract's protective step is independent of the others (the engine runs them together on
a thread pool, live). A read that failed inside one contract's step (its open orders read again
after the stop was placed) used to end the whole batch there: the contracts after it in the list
kept no stop until the next job, a minute later, in the minute a crash needs them most. Now every
contract's step is tried, then the first error ends the job as before (nothing is sized on an
account read halfway).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.domain.enums import OrderPurpose
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.errors import OrderRejected, TransientExchangeError
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0
from tests.unit.test_engine import BTC, LIMITS, FakeMarket, build

ETH = "ETH/USDT:USDT"


class ReadFailsAfterPlacing(SimulatedExchange):
    """The open-order list of ``failing`` cannot be read right after an order was placed on it
    (a timeout on the read that follows a placement), until ``failing`` is emptied."""

    failing: frozenset[str] = frozenset()
    _placed: set[str]

    def place_order(self, request: OrderRequest) -> Order:
        self.__dict__.setdefault("_placed", set()).add(request.symbol)
        return super().place_order(request)

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        if symbol in self.failing and symbol in self.__dict__.get("_placed", set()):
            raise TransientExchangeError(f"{symbol}: open orders: read timed out")
        return super().fetch_open_orders(symbol)


def _two_contracts(instruments: dict[str, Instrument]) -> tuple[Engine, ReadFailsAfterPlacing]:
    engine, ex, _ = build(instruments)
    ex.set_mark(ETH, D("3000"))
    two = Engine(
        clock=engine.clock,
        exchange=ex,
        market=FakeMarket(),
        store=MemoryStore(),
        policy=engine.policy,
        contracts=[ContractSpec(BTC, "long", D(125)), ContractSpec(ETH, "long", D(125))],
        limits=LIMITS,
        account="t",
        margin_mode=engine.margin_mode,
    )
    ex.__class__ = ReadFailsAfterPlacing
    return two, ex  # type: ignore[return-value]


def _stops(ex: SimulatedExchange, symbol: str) -> list[Order]:
    return [o for o in ex.fetch_open_orders(symbol) if o.purpose is OrderPurpose.STOP_LOSS]


def _open_both_then_strip_their_stops(engine: Engine, ex: ReadFailsAfterPlacing) -> None:
    engine.tick()
    for sym in (BTC, ETH):
        assert ex.fetch_positions([sym])[sym].qty > 0
        stops = _stops(ex, sym)
        assert stops
        for order in stops:  # gone by hand, or expired: both naked now
            ex.cancel_order(sym, order.client_id)
    ex.__dict__["_placed"] = set()
    ex.failing = frozenset({BTC})


@pytest.mark.parametrize("job", ["guard", "tick"])
def test_a_failed_read_in_the_first_contracts_protection_still_protects_the_second(
    instruments: dict[str, Instrument], job: str
) -> None:
    engine, ex = _two_contracts(instruments)
    clock = engine.clock
    assert isinstance(clock, SimClock)
    assert clock.now_ms() == T0
    _open_both_then_strip_their_stops(engine, ex)
    clock.advance(timedelta(minutes=1))
    # BTC's read fails after its stop was placed; ETH's step runs all the same, then the
    # job fails with BTC's error, as it did.
    with pytest.raises(TransientExchangeError, match="BTC"):
        engine.guard() if job == "guard" else engine.tick()
    ex.failing = frozenset()
    # Before: ETH's step never started; ETH held its position without any stop.
    assert len(_stops(ex, ETH)) == 1
    assert _stops(ex, ETH)[0].amount == ex.fetch_positions([ETH])[ETH].qty
    assert len(_stops(ex, BTC)) == 1  # BTC's own stop was placed before its read failed


class RefusesFirstStopThenMarkFails(SimulatedExchange):
    """Each contract's first stop is refused (a price that moved through it); then the fresh
    mark of ``failing`` cannot be read (the verification's own read times out)."""

    failing: frozenset[str] = frozenset()

    def place_order(self, request: OrderRequest) -> Order:
        refused = self.__dict__.setdefault("_refused", set())
        if request.purpose is OrderPurpose.STOP_LOSS and request.symbol not in refused:
            refused.add(request.symbol)
            raise OrderRejected("Order would immediately trigger.", code=-2021)
        return super().place_order(request)

    def fetch_mark_price(self, symbol: str) -> D:
        if symbol in self.failing and symbol in self.__dict__.get("_refused", set()):
            raise TransientExchangeError(f"{symbol}: mark price: read timed out")
        return super().fetch_mark_price(symbol)


def test_a_failed_read_in_one_contracts_verification_still_verifies_the_next(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex = _two_contracts(instruments)
    clock = engine.clock
    assert isinstance(clock, SimClock)
    engine.tick()
    for sym in (BTC, ETH):
        for order in _stops(ex, sym):
            ex.cancel_order(sym, order.client_id)
    ex.__class__ = RefusesFirstStopThenMarkFails  # type: ignore[assignment]
    ex.failing = frozenset({BTC})
    clock.advance(timedelta(minutes=1))
    with pytest.raises(TransientExchangeError, match="BTC"):
        engine.guard()  # both stops refused; the verification: BTC's mark fails, ETH next
    ex.failing = frozenset()
    # Before: ETH's verification never ran; ETH stayed naked until the next job.
    assert [o.amount for o in _stops(ex, ETH)] == [ex.fetch_positions([ETH])[ETH].qty]
    assert _stops(ex, BTC) == []  # BTC's is retried by the next job
    assert engine.protection_failures == 0  # nothing was closed: no streak counted
