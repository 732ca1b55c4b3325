"""The account a job leaves for the runner's alert conditions (``Engine.job_account``).

The runner read the whole account again after every guard for its alert conditions (a second
reconcile each minute: every contract's open orders and mark, the positions, the balance). A
guard's own reading, kept in step with its orders as a tick's is, serves them; the runner
reads again only when the job leaves none to rely on: its reading failed, or an order that
may have moved a position went out after its last reading of the wallet.
"""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import OrderPurpose
from bot.domain.instrument import Instrument
from bot.engine.account import AccountView
from bot.engine.tick import Engine
from bot.sim.exchange import SimulatedExchange
from tests.unit.test_engine import BTC, build, protective
from tests.unit.test_fail_safe import OmittingExchange, StopRefusingExchange, _swap


def _as_read(acct: AccountView, ex: SimulatedExchange) -> tuple[object, ...]:
    """What the alert conditions look at, as the view holds it and as the venue does now."""
    return (
        acct.wallet,
        {s: (p.qty, p.liquidation_price) for s, p in acct.positions.items() if p.is_open},
        {s: sorted(o.client_id for o in orders) for s, orders in acct.resting.items() if orders},
    )


def _venue(ex: SimulatedExchange) -> tuple[object, ...]:
    positions = ex.fetch_positions([BTC])
    resting = sorted(o.client_id for o in ex.fetch_open_orders(BTC))
    return (
        ex.fetch_balance().wallet,
        {s: (p.qty, p.liquidation_price) for s, p in positions.items() if p.is_open},
        {BTC: resting} if resting else {},
    )


def _guarded(engine: Engine, minutes: int = 1) -> None:
    engine.clock.advance_to(engine.clock.now_ms() + minutes * 60_000)  # type: ignore[attr-defined]
    engine.guard()


def test_a_guard_leaves_its_reading_as_the_venue_holds_the_account(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _ = build(instruments)
    engine.tick()
    [stop] = protective(ex)[OrderPurpose.STOP_LOSS]
    ex.cancel_order(BTC, stop.client_id)  # gone (by hand): the guard places it again
    _guarded(engine)
    acct = engine.job_account
    assert acct is not None
    assert engine.last_account is acct
    assert _as_read(acct, ex) == _venue(ex)  # the stop the guard placed included
    assert protective(ex)[OrderPurpose.STOP_LOSS]


def test_a_guard_that_closed_a_position_for_want_of_a_stop_leaves_none(
    instruments: dict[str, Instrument],
) -> None:
    """The close's fee and loss are not in the wallet the guard read before it: the alert
    conditions (the margin ratio on the wallet) need the account read again."""
    engine, ex, _ = build(instruments)
    engine.tick()
    [stop] = protective(ex)[OrderPurpose.STOP_LOSS]
    _swap(ex, StopRefusingExchange)
    ex.cancel_order(BTC, stop.client_id)
    wallet = ex.fetch_balance().wallet
    _guarded(engine)
    assert ex.fetch_positions([BTC]) == {}  # closed: no stop could be placed
    assert ex.fetch_balance().wallet < wallet
    assert engine.job_account is None


def test_a_guard_that_cannot_read_the_account_leaves_none(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _ = build(instruments)
    engine.tick()
    assert engine.job_account is not None
    _swap(ex, OmittingExchange)
    ex.omit = True  # type: ignore[attr-defined]
    _guarded(engine)
    assert engine.job_account is None  # not the tick's, a minute older


def test_a_tick_leaves_its_reading_after_its_orders(instruments: dict[str, Instrument]) -> None:
    engine, ex, _ = build(instruments)
    engine.tick()  # the entry, then the positions and the wallet read again: its stop
    acct = engine.job_account
    assert acct is not None
    assert acct.qty(BTC) > D(0)
    assert _as_read(acct, ex) == _venue(ex)
