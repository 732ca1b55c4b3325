"""An exit that happens while the bot is down still starts the re-entry cooldown.

The running engine notices a stop-out by comparing the account with what the last tick left. A
freshly started one compares it with what the last run recorded (positions and its protective
orders) and reads its order records: its own stop-loss found filled is a stop-out; its own
close whose outcome it learns only now is not an exit by the venue. The store is SQLite on a
temporary file, so the rebuilt engine reads what the first one wrote.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import EventKind, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.ports.client_ids import make_client_id
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket


def engine_on(store: SqlStore, ex: SimulatedExchange, clock: SimClock) -> Engine:
    policy = load_policy(ROOT / "policies" / "vol_target.toml")
    assert policy.reentry.cooldown_ms == 24 * 3_600_000
    return Engine(
        clock=clock,
        exchange=ex,
        market=FakeMarket(),
        store=store,
        policy=policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )


def stop_out(ex: SimulatedExchange) -> None:
    (stop,) = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - 100)  # the long position's stop fires
    assert BTC not in ex.fetch_positions([BTC])


def test_a_stop_out_while_down_starts_the_cooldown_at_restart(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()  # opens and protects BTC
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    assert not [e for e in store.recent_events(50) if e.kind is EventKind.COOLDOWN]

    stop_out(ex)  # ... while no process runs
    clock.advance(timedelta(hours=1))
    restarted = engine_on(store, ex, clock)
    result = restarted.tick()

    (cooled,) = [e for e in store.recent_events(50) if e.kind is EventKind.COOLDOWN]
    assert cooled.symbol == BTC
    assert "stop-loss" in cooled.reason
    assert BTC not in ex.fetch_positions([BTC])  # not bought straight back
    (decision,) = result.decisions
    assert decision.target_qty == 0 or not decision.allow_increase
    # The cooldown is the one a running bot would have started: it survives another restart.
    clock.advance(timedelta(hours=1))
    engine_on(store, ex, clock).tick()
    assert BTC not in ex.fetch_positions([BTC])
    held = engine_on(store, ex, clock)
    assert held.cooldowns.active(BTC, clock.now_ms()) is not None
    assert held.cooldowns.active(BTC, T0 + 25 * 3_600_000) is None  # 24 h after the stop-out


def _close_on_the_venue(ex: SimulatedExchange, client_id: str) -> OrderRequest:
    qty = ex.fetch_positions([BTC])[BTC].qty
    request = OrderRequest(
        client_id=client_id,
        symbol=BTC,
        side=OrderSide.SELL,
        type=OrderType.MARKET,
        purpose=OrderPurpose.CLOSE,
        amount=qty,
        reduce_only=True,
    )
    ex.place_order(request)
    assert BTC not in ex.fetch_positions([BTC])
    return request


def test_an_exit_the_bot_did_not_make_while_down_starts_the_cooldown(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The position is closed on the venue by someone else (by hand, or the venue itself) while
    the bot is down, at no loss: the bot's stop still rests. Judged against the positions the
    last run recorded, like an exit between two ticks."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    _close_on_the_venue(ex, "by-hand-1")
    clock.advance(timedelta(hours=1))
    engine_on(store, ex, clock).tick()
    (cooled,) = [e for e in store.recent_events(50) if e.kind is EventKind.COOLDOWN]
    assert cooled.symbol == BTC
    assert BTC not in ex.fetch_positions([BTC])


def test_the_bots_own_close_learnt_at_restart_starts_no_cooldown(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The bot persisted a close, sent it, and died before recording the outcome: at restart
    the reconcile finds its own order filled. That exit is the bot's doing: no cooldown."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    cid = make_client_id("t", OrderPurpose.CLOSE, BTC, clock.now_ms(), 99)
    request = _close_on_the_venue(ex, cid)
    store.save_intent(request, clock.now_ms())  # the intent, as persisted before sending
    clock.advance(timedelta(hours=1))
    engine_on(store, ex, clock).tick()
    record = store.get_order(cid)
    assert record is not None
    assert record.status is OrderStatus.FILLED
    assert not [e for e in store.recent_events(50) if e.kind is EventKind.COOLDOWN]


def test_the_bots_own_reduction_recorded_before_a_kill_is_no_exit_at_restart(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """A later job of the bot's cut part of the position, recorded the order filled with its
    fill, and died before recording its positions (kill -9 in the middle of a tick): the
    restart compares with the positions last recorded, moved by that fill, so the cut is the
    bot's own, as it was to the job that made it: no exit, no cooldown."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    clock.advance(timedelta(hours=1))
    now = clock.now_ms()
    request = OrderRequest(
        client_id=make_client_id("t", OrderPurpose.REDUCE, BTC, now, 1),
        symbol=BTC,
        side=OrderSide.SELL,
        type=OrderType.MARKET,
        purpose=OrderPurpose.REDUCE,
        amount=(held / 2).quantize(D("0.001")),
        reduce_only=True,
    )
    store.save_intent(request, now)
    filled = ex.place_order(request)
    assert filled.status is OrderStatus.FILLED
    fill = engine_on(store, ex, clock).reconciler.fill_of(filled, None, now)
    store.update_order(request.client_id, OrderStatus.FILLED, now, order=filled, fill=fill)
    # ... killed here; started again at the same time
    engine_on(store, ex, clock).tick()
    exits = [e for e in store.recent_events(50) if e.kind in (EventKind.EXIT, EventKind.COOLDOWN)]
    assert exits == []
