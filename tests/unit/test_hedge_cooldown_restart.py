"""The hedge cooldown (``[hedge] cooldown_minutes`` since the last hedge change) survives a
restart: a bot rebuilt right after a hedge stop-out does not re-open the hedge before it ends.

The store is SQLite on a temporary file, so the rebuilt engine reads what the first one wrote.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import EventKind, OrderPurpose
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine_hedge import BTC, ETH, LIMITS, ROOT, TwoContracts

COOLDOWN_MIN = 60


def engine_on(store: SqlStore, ex: SimulatedExchange, clock: SimClock) -> Engine:
    policy = load_policy(ROOT / "policies" / "vol_target_hedged.toml")
    assert policy.hedge is not None
    assert policy.reentry.cooldown_ms == 0  # only the hedge's own cooldown is at work here
    hedge = policy.hedge.model_copy(
        update={"target_net_exposure": D(0), "band": D("0.1"), "cooldown_minutes": COOLDOWN_MIN}
    )
    return Engine(
        clock=clock,
        exchange=ex,
        market=TwoContracts(),
        store=store,
        policy=policy.model_copy(update={"hedge": hedge}),
        contracts=[ContractSpec(ETH, "long", D(125)), ContractSpec(BTC, "hedge", D(125))],
        limits=LIMITS,
        account="t",
    )


def stop_out_the_hedge(ex: SimulatedExchange) -> None:
    (stop,) = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price + 100)  # the short hedge's stop fires
    assert BTC not in ex.fetch_positions([BTC])


def test_a_rebuilt_engine_keeps_the_hedge_cooldown(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = make_exchange(instruments)
    market = TwoContracts()
    for sym in (BTC, ETH):
        px, _ = market.last_price(sym, T0) or (D(0), 0)
        ex.set_mark(sym, px)
    first = engine_on(store, ex, clock)
    first.tick()
    assert ex.fetch_positions([BTC])[BTC].qty < 0  # the hedge is open, its cooldown runs
    (noted,) = [e for e in store.recent_events(50) if e.kind is EventKind.COOLDOWN]
    assert noted.symbol == BTC
    assert f"[hedge_change_ms={T0}]" in noted.reason

    clock.advance(timedelta(minutes=10))
    stop_out_the_hedge(ex)
    clock.advance(timedelta(minutes=10))

    rebuilt = engine_on(store, ex, clock)  # a restart right after the stop-out
    assert rebuilt.hedge is not None
    assert rebuilt.hedge.last_change_ms == T0
    result = rebuilt.tick()
    assert BTC not in ex.fetch_positions([BTC])  # not re-opened inside the cooldown
    (held,) = [d for d in result.decisions if d.symbol == BTC]
    assert "cooldown 40 min left" in held.reason

    clock.advance_to(T0 + COOLDOWN_MIN * 60_000)  # the cooldown is over: the hedge comes back
    rebuilt.tick()
    assert ex.fetch_positions([BTC])[BTC].qty < 0
