"""The loss budget holds for the book a tick leaves, not only for its targets.

Defect (found by fuzzing the engine): the budget cut every target by one factor; one contract's
cut fell within the rebalance tolerance and was not traded, while another contract's increase,
sized on the room that cut was to free, was: the book ended the tick over its budget, state
active (5.3 % over in the fuzzer's cross-margin risk-parity case). The cuts below the tolerance
were forced only when the book as held was over its budget. Now the book the tick would leave
is measured too, and when it is over, every cut is made.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.config.policy import Policy
from bot.domain.enums import OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.risk.loss_budget import loss_at_stop
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, FakeMarket

ROOT = Path(__file__).resolve().parents[2]
ETH = "ETH/USDT:USDT"
# Wide limits for the first tick (its budget does not bind); the test then sets the room.
WIDE = replace(LIMITS, daily_loss=D("0.5"), max_drawdown=D("0.25"))


def _two_longs(
    instruments: dict[str, Instrument], *, hysteresis: str = "0.10"
) -> tuple[Engine, SimulatedExchange, MemoryStore, SimClock]:
    """BTC held at the policy's size (0.154), ETH held small under a notional cap (0.042); both
    on the same prices, so without the cap both want the same size."""
    data = load_policy(ROOT / "policies" / "vol_target.toml").model_dump()  # tolerance 0.1
    data["leverage"] = {**data["leverage"], "hysteresis": hysteresis}
    ex, clock = make_exchange(instruments)
    market = FakeMarket()
    px, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, px)
    ex.set_mark(ETH, px)
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=Policy.model_validate(data),
        contracts=[
            ContractSpec(BTC, "long", D(125)),
            ContractSpec(ETH, "long", D(125), max_notional=D(2000)),
        ],
        limits=WIDE,
        account="t",
    )
    engine.tick()
    assert _held(ex) == {BTC: D("0.154"), ETH: D("0.042")}
    engine.contracts = [ContractSpec(BTC, "long", D(125)), ContractSpec(ETH, "long", D(125))]
    return engine, ex, store, clock


def _held(ex: SimulatedExchange) -> dict[str, D]:
    return {s: p.qty for s, p in ex.fetch_positions([BTC, ETH]).items()}


def _loss_if_every_stop_fires(ex: SimulatedExchange, engine: Engine) -> D:
    total = D(0)
    for sym, pos in ex.fetch_positions([BTC, ETH]).items():
        total += _stop_loss(engine, ex, sym, pos.qty)
    return total


def _room(store: MemoryStore, ex: SimulatedExchange, room: D) -> None:
    """Leave ``room`` between the equity and the drawdown floor (the daily one is lower)."""
    memory = store.load_risk_memory()
    assert memory is not None
    peak = (ex.equity() - room) / (1 - WIDE.max_drawdown)
    store.save_risk_memory(replace(memory, peak_equity=peak))


def _stop_loss(engine: Engine, ex: SimulatedExchange, sym: str, qty: D) -> D:
    """What ``qty`` of ``sym`` loses at its resting stop (the stop the next tick keeps)."""
    [stop] = [o for o in ex.fetch_open_orders(sym) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    return loss_at_stop(
        qty,
        ex.fetch_mark_price(sym),
        stop.trigger_price,
        engine.limits.stop_slippage,
        engine.instruments[sym],
    )


def test_an_increase_sized_on_a_cut_within_the_tolerance_makes_that_cut(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, clock = _two_longs(instruments)
    # Both want 0.154 now; the room is 92 % of what that loses: the budget cuts both to about
    # 0.14, BTC's cut (8 %) within the tolerance, ETH's increase (0.042 -> 0.14) beyond it.
    wanted = 2 * _stop_loss(engine, ex, BTC, D("0.154"))
    room = wanted * D("0.92")
    _room(store, ex, room)
    clock.advance(timedelta(hours=1))
    result = engine.tick()
    target = {d.symbol: d.target_qty for d in result.decisions}
    assert 0 < D("0.154") - target[BTC] < D("0.1") * D("0.154")  # a cut within the tolerance
    assert target[ETH] > D("0.042") * D("1.1")  # an increase beyond it
    assert result.state is TradingState.ACTIVE
    # Before: BTC stayed at 0.154 beside ETH's increase, 884.83 if every stop fired > 855.72.
    assert _loss_if_every_stop_fires(ex, engine) <= room
    assert _held(ex) == target


def test_a_policy_cut_within_the_tolerance_is_made_when_the_book_would_end_over_budget(
    instruments: dict[str, Instrument],
) -> None:
    """The same without the budget cutting anything: a lower equity asks a cut of 7 % of BTC
    (within the tolerance; no leverage hysteresis to keep it) and ETH's increase; the targets
    fit the budget, the book that keeps BTC as held beside that increase does not."""
    engine, ex, store, clock = _two_longs(instruments, hysteresis="0")
    ex.book.wallet -= ex.book.wallet * D("0.07")
    target = engine.instruments[BTC].floor_qty(D("0.154") * D("0.93"))
    room = 2 * _stop_loss(engine, ex, BTC, target) + 1  # the targets fit, with 1 to spare
    _room(store, ex, room)
    clock.advance(timedelta(hours=1))
    result = engine.tick()
    assert all("loss budget" not in d.reason for d in result.decisions)  # nothing cut by it
    wanted = {d.symbol: d.target_qty for d in result.decisions}
    assert 0 < D("0.154") - wanted[BTC] < D("0.1") * D("0.154")  # a cut within the tolerance
    assert wanted[ETH] > D("0.042") * D("1.1")  # an increase beyond it
    # Before: BTC stayed at 0.154, ETH increased: over the budget by more than 2 %.
    assert _loss_if_every_stop_fires(ex, engine) <= room
    assert _held(ex) == wanted
