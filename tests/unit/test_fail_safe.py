"""Fail safe: unknown is not zero, every stop is placeable and before liquidation, escalation,
foreign positions untouched. Engine against the simulated exchange with hand-written faults;
hypothesis properties of the stop placement over prices, volatilities, brackets and ticks."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config.loader import load_policy
from bot.domain.enums import (
    EventKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
from bot.domain.instrument import Bracket, Instrument
from bot.domain.margin import liquidation_price_cross, liquidation_price_isolated
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.engine.protection import position_after_fills
from bot.errors import AccountUnreadable, OrderRejected, OutcomeUnknown
from bot.instruments import load_instruments
from bot.policy.decide import decide
from bot.policy.inputs import ContractView
from bot.policy.leverage import liquidation_cap
from bot.ports.store import RiskEvent
from bot.risk.stop_placement import fit_size, is_valid_stop, placeable_stop, stop_range
from bot.sim.exchange import SimulatedExchange
from bot.store.incidents import unprotected_since
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, LIMITS, ROOT, build, protective

VOL_TARGET_POLICY = load_policy(ROOT / "policies" / "vol_target.toml")
BINANCE = load_instruments("binanceusdm")

# -- hand-written faulty exchanges ---------------------------------------------------------------


class OmittingExchange(SimulatedExchange):
    """Answers the positions list without any position (a garbled "empty list" that parsed)."""

    omit = False

    def fetch_positions(self, symbols: list[str]) -> dict[str, Position]:  # type: ignore[override]
        return {} if self.omit else super().fetch_positions(symbols)


class StopRefusingExchange(SimulatedExchange):
    """Refuses every stop-loss with the venue's error, as in a market the venue has frozen."""

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.STOP_LOSS:
            raise OrderRejected("Order would immediately trigger.", code=-2021)
        return super().place_order(request)


def _swap(ex: SimulatedExchange, cls: type[SimulatedExchange]) -> None:
    ex.__class__ = cls


def test_omitted_position_is_unreadable_not_flat(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    qty = ex.fetch_positions([BTC])[BTC].qty
    orders = dict(ex.orders)
    resting = {o.client_id for o in ex.fetch_open_orders(BTC)}
    _swap(ex, OmittingExchange)
    ex.omit = True  # type: ignore[attr-defined]
    for _ in range(3):
        result = engine.tick()
        assert result.unreadable is not None
        assert "omits a position" in result.unreadable
    assert ex.orders.keys() == orders.keys()  # nothing sent, nothing cancelled
    assert {o.client_id for o in ex.fetch_open_orders(BTC)} == resting
    ex.omit = False  # type: ignore[attr-defined]
    assert ex.book.positions[BTC].qty == qty
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert [e.kind for e in store.events].count(EventKind.UNREADABLE) == 3


def test_foreign_position_keeps_its_orders_through_a_garbled_answer(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    ex.set_leverage(BTC, 3)
    mark = ex.marks[BTC]
    for cid, purpose, otype, amount, trig in (
        ("trader-1", OrderPurpose.ENTRY, OrderType.MARKET, D("0.05"), None),
        ("trader-sl", OrderPurpose.STOP_LOSS, OrderType.STOP_MARKET, D("0.05"), mark * D("0.9")),
        ("trader-tp", OrderPurpose.TAKE_PROFIT, OrderType.TAKE_PROFIT_MARKET, D("0.05"), mark * 2),
    ):
        side = OrderSide.BUY if purpose is OrderPurpose.ENTRY else OrderSide.SELL
        price = ex.instrument(BTC).stop_price(trig, 1) if trig is not None else None
        ex.place_order(
            OrderRequest(
                cid,
                BTC,
                side,
                otype,
                purpose,
                amount,
                purpose is not OrderPurpose.ENTRY,
                trigger_price=price,
            )
        )
    engine.tick()  # a foreign position: left alone
    _swap(ex, OmittingExchange)
    ex.omit = True  # type: ignore[attr-defined]
    engine.tick()
    engine.guard()
    ex.omit = False  # type: ignore[attr-defined]
    engine.tick()
    assert {o.client_id for o in ex.fetch_open_orders(BTC)} == {"trader-sl", "trader-tp"}
    assert ex.fetch_positions([BTC])[BTC].qty == D("0.05")
    assert store.orders == {}


def test_a_stop_the_venue_refuses_escalates_to_closing_then_reducing(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    _swap(ex, StopRefusingExchange)
    first = engine.tick()
    # the entry filled, its stop was refused twice (once with a fresh mark): closed at once
    assert first.unprotected == [BTC]
    assert ex.fetch_positions([BTC]) == {}
    incident = next(e for e in store.events if e.kind == "unprotected")
    assert "-2021" in incident.reason or "immediately trigger" in incident.reason
    assert "closing the position" in incident.reason
    assert engine.protection_failures == 1
    engine.tick()  # again: the second failure in a row moves the account to reducing
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert "protection failed" in memory.state_reason
    engine.tick()  # reducing: no new exposure, nothing naked
    assert ex.fetch_positions([BTC]) == {}


def test_stop_beyond_liquidation_is_replaced(instruments: dict[str, Instrument]) -> None:
    engine, ex, _ = build(instruments)
    engine.tick()
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.liquidation_price is not None
    [sl] = protective(ex)[OrderPurpose.STOP_LOSS]
    beyond = ex.instrument(BTC).stop_price(pos.liquidation_price * D("0.9"), 1)
    ex.cancel_order(BTC, sl.client_id)
    ex.place_order(
        OrderRequest(
            sl.client_id + "x",
            BTC,
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            OrderPurpose.STOP_LOSS,
            pos.qty,
            True,
            trigger_price=beyond,
        )
    )
    engine.guard()
    [sl] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert sl.trigger_price is not None
    assert sl.trigger_price > pos.liquidation_price


def test_unprotected_since_from_events() -> None:
    st_ = TradingState.ACTIVE
    events = [
        RiskEvent(ts_ms=10, kind=EventKind.UNPROTECTED, symbol=BTC, state=st_, reason="x"),
        RiskEvent(ts_ms=20, kind=EventKind.UNPROTECTED, symbol=BTC, state=st_, reason="x"),
        RiskEvent(
            ts_ms=30, kind=EventKind.UNPROTECTED, symbol="ETH/USDT:USDT", state=st_, reason="x"
        ),
        RiskEvent(
            ts_ms=40, kind=EventKind.PROTECTED, symbol="ETH/USDT:USDT", state=st_, reason="x"
        ),
    ]
    assert unprotected_since(events) == {BTC: 10}


# -- the leverage cap ------------------------------------------------------------------------


def test_liquidation_cap_is_zero_when_stop_and_buffer_reach_the_price(
    instruments: dict[str, Instrument],
) -> None:
    inst = instruments[BTC]
    price = D(60000)
    assert liquidation_cap(inst, 1, price, D(10000), D(40000), D(20000)) == 0
    assert liquidation_cap(inst, 1, price, D(10000), D(70000), D(0)) == 0
    assert liquidation_cap(inst, 1, price, D(10000), D(3000), D(2000)) > 0


# -- properties ------------------------------------------------------------------------------

ticks = st.sampled_from([D("0.0001"), D("0.001"), D("0.01"), D("0.1"), D(1)])
marks = st.decimals(min_value=D("0.01"), max_value=D(100000), places=4)
fractions = st.decimals(min_value=D("0.0001"), max_value=D(3), places=4)


def instrument(tick: D, mmr: D = D("0.005"), min_ticks: int = 1) -> Instrument:
    brackets = (
        Bracket(D(0), D(50000), D(75), mmr, D(0)),
        Bracket(D(50000), D(10) ** 12, D(20), mmr * 4, D(50000) * mmr * 3),
    )
    return Instrument(
        "X/USDT:USDT", "X", "USDT", tick, D("0.001"), D("0.001"), D(0), brackets,
        D("0.0002"), D("0.0005"), D("0.0125"), min_price=tick * min_ticks,
    )  # fmt: skip


@settings(max_examples=400)
@given(
    tick=ticks,
    mark=marks,
    wanted_frac=st.decimals(min_value=D(-2), max_value=D(2), places=4),
    liq_frac=st.one_of(st.none(), st.decimals(min_value=D(0), max_value=D(3), places=4)),
    buffer_frac=st.decimals(min_value=D(0), max_value=D(1), places=4),
    sign=st.sampled_from([1, -1]),
    min_ticks=st.integers(min_value=1, max_value=500),
)
def test_placeable_stop_is_positive_on_grid_and_strictly_before_liquidation(
    tick: D,
    mark: D,
    wanted_frac: D,
    liq_frac: D | None,
    buffer_frac: D,
    sign: int,
    min_ticks: int,
) -> None:
    inst = instrument(tick, min_ticks=min_ticks)
    mark = inst.floor_price(mark) if inst.floor_price(mark) > 0 else tick
    liq = None if liq_frac is None else mark * liq_frac
    buffer = mark * buffer_frac
    stop = placeable_stop(
        inst, sign=sign, mark=mark, wanted=mark * (1 - sign * wanted_frac), liquidation=liq,
        buffer=buffer,
    )  # fmt: skip
    rng = stop_range(inst, sign=sign, mark=mark, liquidation=liq, buffer=buffer)
    if stop is None:
        assert rng.empty
        return
    assert stop > 0
    assert stop % tick == 0
    assert stop >= inst.min_price if inst.min_price is not None else True
    assert is_valid_stop(inst, sign=sign, mark=mark, trigger=stop, liquidation=liq)
    if liq is not None:
        assert (stop - (liq + sign * buffer)) * sign >= 0


@settings(max_examples=300)
@given(
    tick=ticks,
    mark=st.decimals(min_value=D(1), max_value=D(100000), places=2),
    qty_notional=st.decimals(min_value=D(10), max_value=D(2000000), places=0),
    stop_frac=st.decimals(min_value=D("0.001"), max_value=D("1.5"), places=4),
    buffer_frac=st.decimals(min_value=D(0), max_value=D("0.8"), places=4),
    setting=st.integers(min_value=1, max_value=75),
    sign=st.sampled_from([1, -1]),
)
def test_fit_size_never_leaves_a_position_without_a_placeable_stop(
    tick: D, mark: D, qty_notional: D, stop_frac: D, buffer_frac: D, setting: int, sign: int
) -> None:
    inst = instrument(tick)
    mark = inst.floor_price(mark)
    if mark <= 0:
        return

    def liquidation_of(q: D) -> D | None:
        return liquidation_price_isolated(inst, sign * q, mark, q * mark / setting)

    fitted = fit_size(
        inst,
        qty=qty_notional / mark,
        sign=sign,
        mark=mark,
        wanted=mark * (1 - sign * stop_frac),
        buffer=mark * buffer_frac,
        liquidation_of=liquidation_of,
    )
    if fitted.qty == 0:
        assert fitted.stop is None
        return
    assert fitted.stop is not None
    assert fitted.stop > 0
    liq = liquidation_of(fitted.qty)
    assert is_valid_stop(inst, sign=sign, mark=mark, trigger=fitted.stop, liquidation=liq)


VOLS = st.decimals(min_value=D("0.05"), max_value=D(40), places=2)


@settings(max_examples=200)
@given(
    vol=VOLS,
    price=st.decimals(min_value=D("0.05"), max_value=D(100000), places=2),
    direction=st.sampled_from([1, -1]),
    equity=st.decimals(min_value=D(100), max_value=D(10**6), places=0),
)
def test_decide_then_secure_never_targets_a_position_without_a_stop_before_liquidation(
    vol: D, price: D, direction: int, equity: D
) -> None:
    """The policy's decision, secured by the risk layer the engine applies, at any volatility:
    a non-zero target always has a positive stop strictly between the mark and the
    liquidation price of the position it would hold (isolated, fresh)."""
    from bot.engine.account import AccountView
    from bot.engine.planner import exchange_setting
    from bot.engine.protection import secure_decision
    from bot.policy.protection import daily_vol_unit

    inst = replace(BINANCE[BTC], tick_size=D("0.01"), min_price=D("0.01"))
    snap = MarketSnapshot(
        symbol=BTC, asof_ms=0, last_price=price, mark_price=price, volatility=vol,
        atr=price * vol / D(94), funding=FundingInfo(D(0), D(8), None), bar_hours=D(1),
    )  # fmt: skip
    v = ContractView(BTC, direction, True, D(125), inst, snap, None, None, equity)
    [d] = decide([v], VOL_TARGET_POLICY)
    acct = AccountView(equity, {}, {}, {BTC: price})
    buffer = VOL_TARGET_POLICY.liquidation.buffer_vol_units * daily_vol_unit(snap, price)
    s = secure_decision(
        d, acct, {BTC: inst}, mark=price, buffer=buffer, margin_mode=MarginMode.ISOLATED
    )
    if s.target_qty == 0:
        return
    assert s.stop_loss is not None
    assert s.stop_loss > 0
    q = abs(s.target_qty)
    setting = exchange_setting(s.target_leverage, inst, q * price)
    liq = liquidation_price_isolated(inst, s.target_qty, price, q * price / setting)
    assert is_valid_stop(inst, sign=direction, mark=price, trigger=s.stop_loss, liquidation=liq)


def test_cross_liquidation_for_a_new_position_uses_the_whole_account(
    instruments: dict[str, Instrument],
) -> None:
    from bot.engine.account import AccountView
    from bot.engine.protection import liquidation_after

    inst = instruments[BTC]
    acct = AccountView(D(1000), {}, {}, {BTC: D(60000)})
    liq = liquidation_after(
        inst, acct, instruments, sign=1, qty=D("0.1"), mark=D(60000), setting=D(10),
        margin_mode=MarginMode.CROSS,
    )  # fmt: skip
    # The wallet less the entry's taker fee; on the tick grid toward the mark, as the venue
    # reports the liquidation price once the position is held.
    wallet = D(1000) - D("0.1") * D(60000) * inst.taker_fee
    exact = liquidation_price_cross(inst, D("0.1"), D(60000), wallet, D(0), D(0))
    assert exact is not None
    assert liq == inst.ceil_price(exact)


def test_engine_never_places_a_stop_outside_the_valid_range(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _ = build(instruments)
    engine.tick()
    for o in ex.fetch_open_orders(BTC):
        if o.purpose is OrderPurpose.STOP_LOSS:
            pos = ex.fetch_positions([BTC])[BTC]
            assert o.trigger_price is not None
            assert is_valid_stop(
                ex.instrument(BTC), sign=pos.sign, mark=ex.marks[BTC],
                trigger=o.trigger_price, liquidation=pos.liquidation_price,
            )  # fmt: skip


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_each_venue_has_its_flat_probe_endpoint(venue: str) -> None:
    import ccxt

    from bot.exchange.capabilities import venue_profile

    probe = venue_profile(venue).flat_probe
    assert callable(getattr(getattr(ccxt, venue)(), probe.method))


@settings(max_examples=200)
@given(
    mmr=st.decimals(min_value=D("0.002"), max_value=D("0.2"), places=4),
    setting=st.integers(min_value=1, max_value=100),
    stop_frac=st.decimals(min_value=D("0.001"), max_value=D("0.99"), places=4),
    sign=st.sampled_from([1, -1]),
)
def test_fit_size_over_bracket_tables(mmr: D, setting: int, stop_frac: D, sign: int) -> None:
    inst = instrument(D("0.01"), mmr=mmr)
    mark = D(100)

    def liquidation_of(q: D) -> D | None:
        try:
            return liquidation_price_isolated(inst, sign * q, mark, q * mark / setting)
        except ValueError:
            return mark

    fitted = fit_size(
        inst, qty=D(5000), sign=sign, mark=mark, wanted=mark * (1 - sign * stop_frac),
        buffer=D(0), liquidation_of=liquidation_of,
    )  # fmt: skip
    if fitted.qty > 0:
        assert fitted.stop is not None
        liq = liquidation_of(fitted.qty)
        assert is_valid_stop(inst, sign=sign, mark=mark, trigger=fitted.stop, liquidation=liq)


def test_a_cooldown_survives_a_restart_through_its_event() -> None:
    from bot.engine.reentry import COOLDOWN_EVENT, Cooldowns

    day = 86_400_000
    running = Cooldowns(day)
    end = running.start(BTC, 1_000, "stop-loss")
    assert end == 1_000 + day
    assert running.start(BTC, 500, "stop-loss") is None  # never shortened
    store = MemoryStore()
    store.record_event(
        RiskEvent(
            ts_ms=1_000,
            kind=COOLDOWN_EVENT,
            symbol=BTC,
            state=TradingState.ACTIVE,
            reason=Cooldowns.describe(BTC, end, "stop-loss"),
        )
    )
    restarted = Cooldowns(day)
    restarted.restore(store.recent_events(100), now_ms=2_000)
    assert restarted.active(BTC, 2_000) == (end, "stop-loss")
    assert restarted.reason(BTC, 2_000) is not None
    assert "after stop-loss" in (restarted.reason(BTC, 2_000) or "")
    expired = Cooldowns(day)
    expired.restore(store.recent_events(100), now_ms=end + 1)
    assert expired.active(BTC, end + 1) is None


# -- positions unreadable right after the orders ------------------------------------------------


class BlindAfterEntryExchange(SimulatedExchange):
    """Fills orders, then cannot answer the positions list once an entry has gone out (a venue
    whose position endpoint times out right after the fill). ``entry_unknown``: the entry's
    answer is lost as well (sent, outcome unknown)."""

    blind = False
    entry_unknown = False

    def place_order(self, request: OrderRequest) -> Order:
        order = super().place_order(request)
        if request.purpose is OrderPurpose.ENTRY:
            self.blind = True
            if self.entry_unknown:
                raise OutcomeUnknown(f"{request.client_id}: read timed out")
        return order

    def fetch_positions(self, symbols: list[str]) -> dict[str, Position]:  # type: ignore[override]
        if self.blind:
            raise AccountUnreadable("positions: read timed out")
        return super().fetch_positions(symbols)


def _stops(ex: SimulatedExchange) -> list[Order]:
    return [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]


def test_an_entry_is_protected_when_the_positions_cannot_be_read_after_it(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    _swap(ex, BlindAfterEntryExchange)
    result = engine.tick()
    assert result.unreadable is not None  # the tick still fails: the account was not read
    ex.blind = False  # type: ignore[attr-defined]
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty > 0
    [stop] = _stops(ex)  # resting now, not after the next guard
    assert stop.reduce_only
    assert stop.side is OrderSide.SELL
    assert stop.amount == pos.qty
    assert stop.trigger_price is not None
    assert pos.liquidation_price is not None
    assert pos.liquidation_price < stop.trigger_price < ex.marks[BTC]
    assert any("their fills give" in e.reason for e in store.events)
    # The estimate was the venue's position: the next reading keeps the stop as it is.
    engine.guard()
    assert [o.client_id for o in _stops(ex)] == [stop.client_id]


def test_a_cross_entry_is_protected_when_the_positions_cannot_be_read_after_it(
    instruments: dict[str, Instrument],
) -> None:
    """Cross margin: the estimated liquidation comes from the whole wallet (Binance's cross
    formula); the stop must still be valid against the venue's own liquidation price."""
    engine, ex, _store = build(
        instruments,
        limits=replace(LIMITS, daily_loss=D("0.5")),
        mode=MarginMode.CROSS,
        balance="2000",
    )
    _swap(ex, BlindAfterEntryExchange)
    assert engine.tick().unreadable is not None
    ex.blind = False  # type: ignore[attr-defined]
    pos = ex.fetch_positions([BTC])[BTC]
    [stop] = _stops(ex)
    assert stop.amount == pos.qty
    assert pos.liquidation_price is not None
    assert stop.trigger_price is not None
    assert pos.liquidation_price < stop.trigger_price < ex.marks[BTC]
    engine.guard()
    assert [o.client_id for o in _stops(ex)] == [stop.client_id]


def test_an_increase_gets_its_stop_resized_when_the_positions_cannot_be_read_after_it(
    instruments: dict[str, Instrument],
) -> None:
    # Loss limits wide enough that the loss budget does not cut the increase.
    engine, ex, _store = build(instruments, limits=replace(LIMITS, daily_loss=D("0.5")))
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    [old] = _stops(ex)
    # A volatility target twice as high: the next decision adds to the position.
    target = engine.policy.leverage.target_volatility
    assert target is not None
    engine.policy = engine.policy.model_copy(
        update={
            "leverage": engine.policy.leverage.model_copy(update={"target_volatility": target * 2})
        }
    )
    _swap(ex, BlindAfterEntryExchange)
    engine.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    assert engine.tick().unreadable is not None
    ex.blind = False  # type: ignore[attr-defined]
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty > held
    [stop] = _stops(ex)
    assert stop.client_id != old.client_id
    assert stop.amount == pos.qty
    assert pos.liquidation_price is not None
    assert stop.trigger_price is not None
    assert pos.liquidation_price < stop.trigger_price < ex.marks[BTC]


def test_an_entry_of_unknown_outcome_is_looked_up_and_protected_at_once(
    instruments: dict[str, Instrument],
) -> None:
    """The entry's answer and the positions are both lost; the order lookup by client id
    answers: its fill sizes the stop in this tick (it waited for the next guard before)."""
    engine, ex, store = build(instruments)
    _swap(ex, BlindAfterEntryExchange)
    ex.entry_unknown = True  # type: ignore[attr-defined]
    assert engine.tick().unreadable is not None
    ex.blind = False  # type: ignore[attr-defined]
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty > 0
    [stop] = _stops(ex)
    assert stop.reduce_only
    assert stop.amount == pos.qty
    assert stop.trigger_price is not None
    assert pos.liquidation_price is not None
    assert pos.liquidation_price < stop.trigger_price < ex.marks[BTC]
    [entry] = [o for o in store.orders.values() if o.request.purpose is OrderPurpose.ENTRY]
    assert entry.status is OrderStatus.FILLED  # settled by the lookup, not left unknown
    engine.guard()  # the next reading keeps the stop
    assert [o.client_id for o in _stops(ex)] == [stop.client_id]


class BlindLookupExchange(BlindAfterEntryExchange):
    """The order lookup fails as well while the positions cannot be read."""

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        if self.blind:
            raise AccountUnreadable("order lookup: read timed out")
        return super().fetch_order(symbol, client_id)


def test_an_entry_of_unknown_outcome_waits_for_the_next_reading_when_its_lookup_fails(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    _swap(ex, BlindLookupExchange)
    ex.entry_unknown = True  # type: ignore[attr-defined]
    assert engine.tick().unreadable is not None
    ex.blind = False  # type: ignore[attr-defined]
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    assert _stops(ex) == []  # no size to put on a stop: the guard protects it once read
    assert any(
        "fill is not known" in e.reason and "lookup failed" in e.reason for e in store.events
    )
    engine.guard()
    [stop] = _stops(ex)
    assert stop.amount == ex.fetch_positions([BTC])[BTC].qty


class TrailingPositionsExchange(SimulatedExchange):
    """Answers the positions list once more as it was before an entry filled (a positions
    endpoint that trails the order's own answer by a moment)."""

    trail: dict[str, Position] | None = None  # the answer before the entry
    times = 2  # how many answers after the entry are the old one

    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.ENTRY and self.trail is None:
            self.trail = super().fetch_positions(list(self.book.positions))
        return super().place_order(request)

    def fetch_positions(self, symbols: list[str]) -> dict[str, Position]:  # type: ignore[override]
        if self.trail is not None and self.times > 0:
            self.times -= 1
            return {s: p for s, p in self.trail.items() if s in symbols}
        return super().fetch_positions(symbols)


def test_an_entry_is_protected_when_the_positions_answer_trails_its_fill(
    instruments: dict[str, Instrument],
) -> None:
    """Defect: the positions read right after the entry still showed the account flat; the
    tick protected "nothing" and ended, the new position without a stop until the next guard.
    The fills just confirmed are the newer answer: protect on them, read again next job."""
    engine, ex, store = build(instruments)
    _swap(ex, TrailingPositionsExchange)
    result = engine.tick()
    assert result.unreadable is not None
    assert "fills" in result.unreadable
    pos = ex.fetch_positions([BTC])[BTC]
    assert pos.qty > 0
    [stop] = _stops(ex)
    assert stop.amount == pos.qty
    assert pos.liquidation_price is not None
    assert stop.trigger_price is not None
    assert pos.liquidation_price < stop.trigger_price < ex.marks[BTC]
    assert any("the fills give" in e.reason for e in store.events)
    engine.guard()  # the next reading agrees: the stop stays
    assert [o.client_id for o in _stops(ex)] == [stop.client_id]
    assert store.load_risk_memory().state is TradingState.ACTIVE  # type: ignore[union-attr]


def test_a_positions_answer_a_moment_behind_its_fill_is_read_again(
    instruments: dict[str, Instrument],
) -> None:
    """One answer older than the fills: read once more after a pause, then the tick goes on
    as usual (no unreadable tick for a venue a moment behind)."""
    engine, ex, store = build(instruments)
    _swap(ex, TrailingPositionsExchange)
    ex.times = 1  # type: ignore[attr-defined]
    result = engine.tick()
    assert result.unreadable is None
    pos = ex.fetch_positions([BTC])[BTC]
    [stop] = _stops(ex)
    assert stop.amount == pos.qty
    assert not any("the fills give" in e.reason for e in store.events)


def test_position_after_fills_blends_adds_keeps_reductions_and_flips() -> None:
    long = Position(BTC, D("2"), D("100"), D(3), MarginMode.ISOLATED)
    assert position_after_fills(None, [(D("1"), D("10"))]) == (D("1"), D("10"))
    assert position_after_fills(long, [(D("2"), D("110"))]) == (D("4"), D("105"))
    assert position_after_fills(long, [(D("-1"), D("90"))]) == (D("1"), D("100"))
    assert position_after_fills(long, [(D("-2"), D("90"))]) == (D("0"), D("0"))
    assert position_after_fills(long, [(D("-3"), D("90"))]) == (D("-1"), D("90"))
    assert position_after_fills(long, [(D("-2"), D("90")), (D("-1"), D("80"))]) == (
        D("-1"),
        D("80"),
    )
