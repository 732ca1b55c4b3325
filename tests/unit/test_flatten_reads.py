"""The halt's flatten reads the positions back as every other step does: a position the answer
omits is flat only once the venue confirms it. Engine against the simulated exchange, with a
venue whose close fills in part and whose next positions answer omits the position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.risk.state import set_state
from bot.sim.exchange import SimulatedExchange
from tests.unit.test_engine import BTC, build


class PartialCloses(SimulatedExchange):
    """A venue whose market closes fill half their amount (then expire: Binance EXPIRED with
    a partial fill), and whose positions answer after a close omits the position (garbled);
    the per-contract answer (``confirm_flat``) is right."""

    omit_after_close = False

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.CLOSE and request.amount is not None:
            half = self.instrument(request.symbol).floor_qty(request.amount / 2)
            self.omit_after_close = True
            return super().place_order(replace(request, amount=half))
        return super().place_order(request)

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        if self.omit_after_close:
            self.omit_after_close = False
            return {}
        return super().fetch_positions(symbols)


def test_a_position_the_read_after_a_flatten_omits_keeps_its_stop(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: the halt's flatten read the positions back with the raw positions call. The
    close filled in part, the answer omitted the position, and the protection step that
    follows took the contract for flat: it cancelled the stop of the half still held as an
    orphan (naked until the next job). Now the omission needs the venue's confirmation: not
    given, the job is unreadable and the stop stays."""
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(set_state(memory, TradingState.HALTED, "test", sticky=True))
    ex.__class__ = PartialCloses  # the same account; from now on the venue above answers
    engine.guard()
    left = ex.fetch_positions([BTC])[BTC].qty
    assert 0 < left < held  # the close filled in part
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stops, "the stop of the position still held was cancelled"
    assert all(o.amount is None or o.amount >= left for o in stops)
    assert any(e.kind is EventKind.UNREADABLE for e in store.events)
