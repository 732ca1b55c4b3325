"""The engine's per-tick shortcuts keep what they replace: one shared statistics spec, one id
factory per contract, the memory store's empty answers and one-call tick record, the planner's
single pass over resting orders, and what the engine notes as held."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields, replace
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.config.loader import load_policy
from bot.domain.enums import (
    ForcedKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import ForcedClose, Order, OrderRequest
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.market import build_snapshot, statistics_spec, window_statistics
from bot.engine.planner import plan_protection
from bot.engine.protection import protection_gap
from bot.engine.reentry import Held, exit_kind, held_of
from bot.ports.client_ids import base36
from bot.ports.market import CandleWindow, WindowStatistics
from bot.ports.store import EquitySnapshot, OrderRecord
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, build

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
ETH = "ETH/USDT:USDT"


def test_equal_policies_share_one_statistics_spec() -> None:
    policy = load_policy(ROOT / "policies" / "vol_target.toml")
    again = load_policy(ROOT / "policies" / "vol_target.toml")
    assert statistics_spec(policy) is statistics_spec(again)
    other = policy.model_copy(
        update={"volatility": policy.volatility.model_copy(update={"window": 48})}
    )
    assert statistics_spec(other) != statistics_spec(policy)
    assert statistics_spec(other) is statistics_spec(other)


def _window(stats: WindowStatistics | None) -> CandleWindow:
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    ts = np.arange(200, dtype=np.int64) * HOUR
    return CandleWindow(ts, open_, high, low, close, HOUR, stats)


def test_statistics_computed_ahead_are_used_for_an_equal_spec_not_only_the_same_one() -> None:
    policy = load_policy(ROOT / "policies" / "vol_target.toml")
    spec = statistics_spec(policy)
    funding = FundingInfo(D(0), D(8), None)
    # a copy equal to the engine's spec but another object: still looked up
    copy = replace(spec)
    assert copy is not spec
    assert copy == spec
    looked_up = build_snapshot(
        "X/USDT:USDT", _window(WindowStatistics(copy, 0.5, 2.0)), funding, D(1), D(1), policy
    )
    assert looked_up is not None
    assert (looked_up.volatility, looked_up.atr) == (D("0.500000"), D("2.00000000"))
    # another spec: estimated on the window
    other = replace(spec, window=spec.window + 1)
    window = _window(WindowStatistics(other, 0.5, 2.0))
    estimated = build_snapshot("X/USDT:USDT", window, funding, D(1), D(1), policy, spec=spec)
    vol, _ = window_statistics(window, policy)
    assert estimated is not None
    assert estimated.volatility == D(f"{vol:.6f}")


def test_the_id_factory_is_one_per_contract_and_reads_the_tick(
    instruments: dict[str, Instrument],
) -> None:
    engine, _, _ = build(instruments)
    factory = engine._id_factory(BTC)
    assert engine._id_factory(BTC) is factory
    engine._tick_ms, engine._n = 1_000_000, 0
    first = factory(OrderPurpose.STOP_LOSS)
    second = factory(OrderPurpose.STOP_LOSS)
    engine._tick_ms, engine._n = 2_000_000, 0
    later = factory(OrderPurpose.STOP_LOSS)
    assert len({first, second, later}) == 3
    assert [first[-2:], second[-2:], later[-2:]] == ["-1", "-2", "-1"]
    assert first.split("-")[3] != later.split("-")[3]  # the tick's time, read at each call


def _request(cid: str, purpose: OrderPurpose = OrderPurpose.STOP_LOSS) -> OrderRequest:
    return OrderRequest(
        client_id=cid,
        symbol=BTC,
        side=OrderSide.SELL,
        type=OrderType.STOP_MARKET,
        purpose=purpose,
        amount=D(1),
        reduce_only=True,
        trigger_price=D(100),
    )


def test_memory_store_open_and_unresolved_lists_follow_every_update() -> None:
    store = MemoryStore()
    assert store.unresolved_orders() == []
    assert store.open_orders() == []
    store.save_intent(_request("b"), 1)
    store.save_intent(_request("a"), 1)
    assert [r.client_id for r in store.unresolved_orders()] == ["a", "b"]
    assert store.open_orders() == []
    store.update_order("a", OrderStatus.OPEN, 2)
    store.update_order("b", OrderStatus.OPEN, 2)
    assert store.unresolved_orders() == []
    assert [r.client_id for r in store.open_orders()] == ["a", "b"]
    store.update_order("a", OrderStatus.CANCELED, 3)
    store.update_order("b", OrderStatus.UNKNOWN, 3)
    assert [r.client_id for r in store.unresolved_orders()] == ["b"]
    assert store.open_orders() == []


def test_memory_store_records_a_tick_like_the_three_separate_calls() -> None:
    pos = Position(BTC, D("0.5"), D(100), D(3), MarginMode.ISOLATED)
    snap = EquitySnapshot(
        ts_ms=7, wallet=D(10), unrealized_pnl=D(1), equity=D(11), state=TradingState.ACTIVE
    )
    one, three = MemoryStore(), MemoryStore()
    one.record_tick([], [pos], snap)
    three.record_decisions([])
    three.record_positions(7, [pos])
    three.record_equity(snap)
    assert (one.decisions, one.positions, one.equity) == (
        three.decisions,
        three.positions,
        three.equity,
    )
    assert one.latest_positions() == (7, [pos])


def _order(cid: str, purpose: OrderPurpose | None, trigger: str = "90") -> Order:
    return Order(
        client_id=cid,
        exchange_id=cid,
        symbol=BTC,
        side=OrderSide.SELL,
        type=OrderType.STOP_MARKET,
        purpose=purpose,
        amount=D(1),
        filled=D(0),
        status=OrderStatus.OPEN,
        reduce_only=True,
        trigger_price=D(trigger),
    )


def _ids(purpose: OrderPurpose) -> str:
    return f"new-{purpose.value}"


def test_protection_plan_keeps_one_of_each_purpose_in_the_order_listed() -> None:
    resting = [
        _order("s1", OrderPurpose.STOP_LOSS, "80"),
        _order("t1", OrderPurpose.TAKE_PROFIT, "120"),
        _order("x", None),
        _order("s2", OrderPurpose.STOP_LOSS, "90"),
        _order("t2", OrderPurpose.TAKE_PROFIT, "120"),
    ]
    plan = plan_protection(BTC, D(1), D(90), D(120), resting, D(0), _ids)
    assert plan.place == []
    assert plan.cancel == ["s1", "t2"]  # the stop that matches and the first take-profit stay
    assert plan.notes == [
        "2 resting stop_loss orders: reduced to one",
        "2 resting take_profit orders: reduced to one",
    ]
    flat = plan_protection(BTC, D(0), None, None, resting, D(0), _ids)
    assert flat.cancel == ["s1", "t1", "s2", "t2"]  # the foreign order is left alone
    assert len(flat.notes) == 4


def test_held_of_notes_quantity_and_protective_ids() -> None:
    acct = AccountView(
        wallet=D(1000),
        positions={
            BTC: Position(BTC, D("-2"), D(100), D(3), MarginMode.ISOLATED),
            ETH: Position(ETH, D(0), D(100), D(3), MarginMode.ISOLATED),
        },
        resting={
            BTC: [
                _order("s", OrderPurpose.STOP_LOSS),
                _order("t", OrderPurpose.TAKE_PROFIT),
                _order("f", None),
            ]
        },
        marks={BTC: D(100)},
    )
    held = held_of(acct, [BTC, ETH, "SOL/USDT:USDT"])
    assert held == {BTC: Held(D("-2"), frozenset({"s"}), frozenset({"t"}))}


def _base36_by_division(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = digits[n % 36]
    while n >= 36:
        n //= 36
        out = digits[n % 36] + out
    return out


def test_base36_two_digits_at_a_time_equals_one_at_a_time() -> None:
    edges = [36**k + d for k in range(1, 14) for d in (-1, 0, 1)]
    for n in [*range(5000), *edges, 1_733_330_000, 2**63 - 1]:
        assert base36(n) == _base36_by_division(n), n
    assert int(base36(1_733_330_000), 36) == 1_733_330_000
    with pytest.raises(ValueError, match="negative"):
        base36(-1)


def test_memory_store_update_keeps_every_field_of_the_record() -> None:
    # update_order builds the record field by field: a field added to OrderRecord and not
    # carried over would fail here (the expectation is dataclasses.replace of the old record).
    store = MemoryStore()
    store.save_intent(_request("a"), 1)
    store.update_order("a", OrderStatus.UNKNOWN, 2, error="timeout")
    before = store.orders["a"]
    filled = replace(
        _order("a", OrderPurpose.STOP_LOSS),
        exchange_id="x-1",
        filled=D(1),
        average_price=D("89.5"),
        status=OrderStatus.FILLED,
    )
    store.update_order("a", OrderStatus.FILLED, 3, order=filled)
    assert store.orders["a"] == replace(
        before,
        status=OrderStatus.FILLED,
        updated_ms=3,
        exchange_id="x-1",
        filled=D(1),
        average_price=D("89.5"),
    )
    assert {f.name for f in fields(OrderRecord)} == {
        "client_id",
        "request",
        "status",
        "created_ms",
        "updated_ms",
        "exchange_id",
        "filled",
        "average_price",
        "error",
    }
    store.update_order("a", OrderStatus.FILLED, 4)  # no order, no error: the rest is kept
    assert store.orders["a"] == replace(store.orders["a"], updated_ms=4)
    assert store.orders["a"].error == "timeout"


def test_exit_kinds_name_what_the_venue_did() -> None:
    """The bot's stop filled: stop-loss; its take-profit filled: no exit; a close the venue
    records as a liquidation or an ADL: named so; a position reversed: not a liquidation;
    anything else: reduced (or closed) outside the bot, never "liquidation" by default. The
    venue's record is read only when the bot's own orders do not explain the shrink."""

    def acct(qty: str, resting: list[str]) -> AccountView:
        purposes = {"s": OrderPurpose.STOP_LOSS, "t": OrderPurpose.TAKE_PROFIT}
        positions = {BTC: Position(BTC, D(qty), D(100), D(3), MarginMode.ISOLATED)}
        return AccountView(
            wallet=D(1000),
            positions=positions if D(qty) != 0 else {},
            resting={BTC: [_order(cid, purposes[cid]) for cid in resting]},
            marks={BTC: D(100)},
        )

    asked: list[str] = []

    def venue(*closes: ForcedKind) -> Callable[[], list[ForcedClose] | None]:
        def read() -> list[ForcedClose] | None:
            asked.append("read")
            return [ForcedClose(BTC, k, D(2), 1) for k in closes]

        return read

    def unreadable() -> list[ForcedClose] | None:
        return None

    before = Held(D("-2"), frozenset({"s"}), frozenset({"t"}))

    def kind(
        qty: str,
        resting: list[str],
        *,
        stop: bool = False,
        take: bool = False,
        forced: Callable[[], list[ForcedClose] | None] | None = None,
    ) -> str | None:
        return exit_kind(
            before,
            acct(qty, resting),
            BTC,
            stop_filled=stop,
            take_filled=take,
            forced=forced or venue(),
        )

    assert kind("0", ["t"], stop=True) == "stop-loss"
    assert kind("0", ["s"], take=True) is None
    assert asked == []  # the bot's own orders explained both: the venue was not asked
    assert kind("0", ["s", "t"], forced=venue(ForcedKind.LIQUIDATION)) == "liquidation"
    assert kind("0", ["s", "t"], forced=venue(ForcedKind.ADL)) == "auto-deleveraging"
    closed = kind("0", ["s", "t"]) or ""
    assert closed.startswith("closed outside the bot")
    assert "records no liquidation or ADL" in closed
    # a manual partial reduction: the stop and take-profit still rest, the venue forced nothing
    reduced = kind("-1", ["s", "t"]) or ""
    assert reduced.startswith("reduced outside the bot")
    assert "could not be read" in (kind("-1", ["s", "t"], forced=unreadable) or "")
    # a stop gone from the list but not filled (cancelled by hand) is no stop-loss
    assert (kind("0", ["t"]) or "").startswith("closed outside the bot")
    assert kind("1", ["s", "t"]) == "a reversal the bot did not make"
    assert kind("-2", ["s", "t"]) is None


def test_a_protection_gap_reads_in_the_contracts_own_figures(
    instruments: dict[str, Instrument],
) -> None:
    # what the trader reads in the incident (event, alert): the computed liquidation price on
    # the contract's tick, toward the mark, never a 28-digit Decimal
    inst = instruments[BTC]
    pos = Position(BTC, D("0.010"), D("60000"), D(10), MarginMode.ISOLATED, D("60.5"))
    half = Order(
        "s1",
        "x1",
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        D("0.005"),
        D(0),
        OrderStatus.OPEN,
        reduce_only=True,
        trigger_price=D("57000.0"),
    )
    acct = AccountView(
        wallet=D(1000), positions={BTC: pos}, resting={BTC: [half]}, marks={BTC: D("60000.00")}
    )
    gap = protection_gap(inst, pos, acct, instruments, [half])
    assert gap is not None
    m = re.fullmatch(
        r"stop s1 \(0\.005 at 57000\) does not protect 0\.01 at mark 60000 \(liquidation "
        r"(\d+(?:\.\d+)?)\): stops cover 0\.005 of 0\.01: 0\.005 unprotected",
        gap,
    )
    assert m is not None, gap
    liq = D(m[1])
    assert liq == inst.ceil_price(liq)  # on the tick
    assert liq < D(60000)
