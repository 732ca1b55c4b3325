"""A read the venue answers "no such symbol" (bot/engine/reconcile.py, Reconciler._withdrawn).

The venue's answer alone withdraws nothing: the engine asks the venue's market list
(``Engine.listing_check``, live: the catalogue keeper) and only a contract the list confirms
withdrawn is read no more, kept as last read (never flat). The end-to-end cases, one contract
of two delisted on each loopback venue, are in tests/e2e/test_delisting_guard_live.py.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.domain.enums import EventKind
from bot.domain.instrument import Instrument
from bot.domain.market import VenueRestriction
from bot.domain.orders import Order
from bot.engine.tick import Engine
from bot.errors import NoSuchSymbol
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, build


class DelistedExchange(SimulatedExchange):
    """The venue no longer knows the contracts of ``gone``: a read naming one answers "no such
    symbol" (Binance -1121) while the simulated book still holds what it held."""

    gone: frozenset[str] = frozenset()

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        if symbol in self.gone:
            raise NoSuchSymbol('binanceusdm {"code":-1121,"msg":"Invalid symbol."}')
        return super().fetch_open_orders(symbol)

    def fetch_mark_price(self, symbol: str) -> D:
        if symbol in self.gone:
            raise NoSuchSymbol('binanceusdm {"code":-1121,"msg":"Invalid symbol."}')
        return super().fetch_mark_price(symbol)


def _delisted(ex: SimulatedExchange) -> DelistedExchange:
    ex.__class__ = DelistedExchange
    assert isinstance(ex, DelistedExchange)
    ex.gone = frozenset({BTC})
    return ex


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


def _withdrawing(engine: Engine, asked: list[str]) -> None:
    """The market list confirms every contract asked about withdrawn, no longer listed."""

    def check(symbol: str) -> None:
        asked.append(symbol)
        engine.restrict({symbol: VenueRestriction(f"{symbol}: withdrawn", listed=False)})

    engine.listing_check = check


def test_without_a_market_list_to_ask_the_answer_fails_the_reading(
    instruments: dict[str, Instrument],
) -> None:
    """Simulation and paper have no market list: the answer is an error, as before, and the
    contract is not dropped (nothing taken for flat, no order)."""
    engine, ex, store = build(instruments)
    engine.tick()
    orders = len(store.orders)
    _delisted(ex)
    with pytest.raises(NoSuchSymbol):
        engine.guard()
    assert engine.reconciler.unlisted == frozenset()
    assert len(store.orders) == orders


def test_a_market_list_that_does_not_confirm_it_withdraws_nothing(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    orders = len(store.orders)
    _delisted(ex)
    asked: list[str] = []
    engine.listing_check = asked.append  # the list still has BTC trading
    with pytest.raises(NoSuchSymbol, match="does not confirm it withdrawn"):
        engine.guard()
    assert asked == [BTC]
    assert engine.reconciler.unlisted == frozenset()
    assert len(store.orders) == orders


def test_confirmed_at_a_restarts_first_reading_the_last_runs_position_is_kept(
    instruments: dict[str, Instrument],
) -> None:
    """The venue stopped answering for BTC before this process read it once: no reading of
    its own to keep, the position the last run recorded is kept (valued at its entry price:
    no mark can be read), never taken for flat, and no order is sent on it."""
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC]
    assert held.qty > 0
    _delisted(ex)
    again = _restarted(engine, ex, store)
    asked: list[str] = []
    _withdrawing(again, asked)
    orders = len(store.orders)
    again.guard()
    assert asked == [BTC]
    assert again.reconciler.unlisted == {BTC}
    acct = again.reconcile(engine.clock.now_ms())
    assert acct.positions[BTC].qty == held.qty
    assert acct.marks[BTC] == held.entry_price
    assert len(store.orders) == orders
    assert any(
        e.kind is EventKind.RECONCILE and "confirms it withdrawn" in e.reason for e in store.events
    )
