"""The SQL store on SQLite (always) and PostgreSQL (when configured): exact round trips,
lifecycle, single-row tables, operator commands and a concurrency smoke test."""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import StatementError

from bot.domain.decision import Decision
from bot.domain.enums import (
    EventKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
from bot.domain.market import VenueRestriction
from bot.domain.orders import Fill, Order, OrderRequest
from bot.domain.position import Position
from bot.errors import ConfigError
from bot.ports.store import (
    DecisionRecord,
    EquitySnapshot,
    Heartbeat,
    ListingReport,
    RiskEvent,
    RiskMemory,
)
from bot.store.memory import MemoryStore
from bot.store.sql import DuplicateIntent, SqlStore, UnknownOrder, make_engine
from bot.store.types import UTCDateTime

SYMBOL = "BTC/USDT:USDT"
# (value, its text when read back): the same on both backends, PostgreSQL would otherwise pad
# to 18 decimals and SQLite would return a float.
EXACT = [
    ("55000.1", "55000.1"),
    ("0.000000000000000001", "0.000000000000000001"),  # smallest step NUMERIC(38, 18) holds
    ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
    ("-12345.678901234567", "-12345.678901234567"),
    ("0", "0"),
    ("1E+19", "10000000000000000000"),
    ("2.50000", "2.5"),
]


def request(client_id: str, price: Decimal = Decimal("55000.1")) -> OrderRequest:
    return OrderRequest(
        client_id=client_id,
        symbol=SYMBOL,
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        purpose=OrderPurpose.ENTRY,
        amount=Decimal("0.003"),
        reduce_only=False,
        price=price,
    )


def exchange_order(client_id: str, status: OrderStatus, filled: str, avg: str | None) -> Order:
    return Order(
        client_id=client_id,
        exchange_id=f"ex-{client_id}",
        symbol=SYMBOL,
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        purpose=OrderPurpose.ENTRY,
        amount=Decimal("0.003"),
        filled=Decimal(filled),
        status=status,
        reduce_only=False,
        price=Decimal("55000.1"),
        average_price=Decimal(avg) if avg is not None else None,
    )


def equity(ts_ms: int, value: Decimal) -> EquitySnapshot:
    return EquitySnapshot(
        ts_ms=ts_ms,
        wallet=value,
        unrealized_pnl=Decimal("-1.5"),
        equity=value - Decimal("1.5"),
        state=TradingState.ACTIVE,
    )


# --- exact values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text_in", "text_out"), EXACT, ids=[e[0] for e in EXACT])
def test_decimals_come_back_exactly(store: SqlStore, text_in: str, text_out: str) -> None:
    value = Decimal(text_in)
    negated = value.copy_negate()  # exact; unary minus would round to the 28-digit context
    store.record_equity(
        EquitySnapshot(
            ts_ms=1, wallet=value, unrealized_pnl=negated, equity=value, state=TradingState.ACTIVE
        )
    )
    snap = store.latest_equity()
    assert snap is not None
    assert snap.wallet == value
    assert snap.unrealized_pnl == negated
    assert format(snap.wallet, "f") == text_out


def test_price_55000_1_is_not_a_float(store: SqlStore) -> None:
    store.save_intent(request("c1", Decimal("55000.1")), 1)
    record = store.get_order("c1")
    assert record is not None
    assert str(record.request.price) == "55000.1"
    assert record.request.amount == Decimal("0.003")


def test_trailing_zeros_are_canonical_on_every_backend(store: SqlStore) -> None:
    store.save_intent(request("c1", Decimal("55000.100")), 1)
    record = store.get_order("c1")
    assert record is not None
    assert str(record.request.price) == "55000.1"
    assert str(record.filled) == "0"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (Decimal("0.0000000000000000001"), "fractional"),  # 19 decimals: PostgreSQL would round
        (Decimal("123456789012345678901"), "integer"),  # 21 integer digits: overflow
        (Decimal("NaN"), "non-finite"),
    ],
    ids=["19-decimals", "21-digits", "nan"],
)
def test_values_a_backend_cannot_hold_exactly_are_refused(
    store: SqlStore, value: Decimal, problem: str
) -> None:
    with pytest.raises(ValueError, match="cannot store equity snapshot") as info:
        store.record_equity(
            EquitySnapshot(
                ts_ms=7,
                wallet=value,
                unrealized_pnl=Decimal(0),
                equity=Decimal(0),
                state=TradingState.ACTIVE,
            )
        )
    assert problem in str(info.value)
    assert store.latest_equity() is None


PEPE = "1000PEPE/USDT:USDT"


def test_a_tiny_price_and_fee_round_trip_exactly(store: SqlStore) -> None:
    # A 1000PEPE-like contract: a fill at 1.234567e-7 with a fee to 1e-10, its realised PnL
    # with 18 decimals (the finest NUMERIC(38, 18) holds), written with the order's fill.
    store.save_intent(replace(request("pepe"), symbol=PEPE, amount=Decimal(37_000_000)), 1)
    pnl = Decimal("-0.000000000000000001")
    fill = Fill("pepe", PEPE, OrderSide.BUY, Decimal(37_000_000), Decimal("0.0000001234567"),
                Decimal("0.0022839490"), 2, OrderPurpose.ENTRY, pnl)  # fmt: skip
    store.update_order("pepe", OrderStatus.FILLED, 2, order=filled("pepe", fill.price), fill=fill)
    assert store.recent_fills(1) == [fill]
    record = store.get_order("pepe")
    assert record is not None
    assert record.average_price == Decimal("1.234567E-7")


def filled(client_id: str, average: Decimal) -> Order:
    return Order(client_id, "x-1", PEPE, OrderSide.BUY, OrderType.LIMIT, OrderPurpose.ENTRY,
                 Decimal(37_000_000), Decimal(37_000_000), OrderStatus.FILLED, False,
                 average_price=average)  # fmt: skip


def test_a_venue_answer_that_does_not_fit_names_the_column_and_writes_nothing(
    store: SqlStore,
) -> None:
    store.save_intent(replace(request("pepe"), symbol=PEPE, amount=Decimal(37_000_000)), 1)
    too_fine = Decimal("1.2345678901234567E-7")  # 23 decimals (a float's digits)
    with pytest.raises(ValueError, match=r"order 'pepe': orders\.average_price: decimal 1\.23"):
        store.update_order("pepe", OrderStatus.FILLED, 2, order=filled("pepe", too_fine))
    fill = Fill("pepe", PEPE, OrderSide.BUY, Decimal(37_000_000), Decimal("0.0000001234567"),
                Decimal("1.2345678901234567E-12"), 2, OrderPurpose.ENTRY, Decimal(0))  # fmt: skip
    good = filled("pepe", fill.price)
    with pytest.raises(ValueError, match=r"order 'pepe': fills\.fee: decimal 1\.23"):
        store.update_order("pepe", OrderStatus.FILLED, 2, order=good, fill=fill)
    record = store.get_order("pepe")
    assert record is not None
    assert record.status is OrderStatus.PENDING_SUBMIT  # all or nothing
    assert store.recent_fills(1) == []


def test_an_intent_that_does_not_fit_names_the_column(store: SqlStore) -> None:
    with pytest.raises(ValueError, match=r"intent 'big': orders\.amount: decimal 1E\+21"):
        store.save_intent(replace(request("big"), amount=Decimal("1E+21")), 1)
    assert store.get_order("big") is None


def test_risk_memory_that_does_not_fit_names_the_column(store: SqlStore) -> None:
    memory = RiskMemory(TradingState.ACTIVE, "", Decimal("1E-19"), 0, Decimal(1), sticky=False)
    with pytest.raises(ValueError, match=r"risk_memory\.peak_equity: decimal 1E-19"):
        store.save_risk_memory(memory)
    assert store.load_risk_memory() is None


def test_float_is_refused(store: SqlStore) -> None:
    snap = EquitySnapshot(
        ts_ms=7,
        wallet=1.5,  # type: ignore[arg-type]
        unrealized_pnl=Decimal(0),
        equity=Decimal(0),
        state=TradingState.ACTIVE,
    )
    with pytest.raises(ValueError, match="expected Decimal or int"):
        store.record_equity(snap)


def test_utc_datetime_round_trips_timezone_aware(store_url: str) -> None:
    meta = MetaData()
    probe = Table(
        "tz_probe", meta, Column("id", Integer, primary_key=True), Column("at", UTCDateTime)
    )
    engine = make_engine(store_url)
    try:
        meta.create_all(engine)
        plus_two = datetime(2024, 3, 1, 12, 30, 15, 123000, tzinfo=timezone(timedelta(hours=2)))
        with engine.begin() as conn:
            conn.execute(insert(probe).values(id=1, at=plus_two))
        with engine.connect() as conn:
            back = conn.execute(select(probe.c.at)).scalar_one()
            assert back == plus_two
            assert back.tzinfo is not None
            assert back.utcoffset() == timedelta(0)
            assert back.hour == 10
            with pytest.raises(StatementError, match="naive datetime"):
                conn.execute(insert(probe).values(id=2, at=datetime(2024, 3, 1)))  # noqa: DTZ001
    finally:
        engine.dispose()


# --- store port behaviour shared with MemoryStore ----------------------------------------------


def test_sequences_increase_per_name(port_store: MemoryStore | SqlStore) -> None:
    assert [port_store.next_sequence("cid") for _ in range(3)] == [1, 2, 3]
    assert port_store.next_sequence("other") == 1
    assert port_store.next_sequence("cid") == 4


def test_intent_update_and_unresolved(port_store: MemoryStore | SqlStore) -> None:
    for i in (1, 2, 3):
        saved = port_store.save_intent(request(f"c{i}"), 1000 + i)
        assert saved.status is OrderStatus.PENDING_SUBMIT
    port_store.update_order(
        "c1", OrderStatus.OPEN, 2000, order=exchange_order("c1", OrderStatus.OPEN, "0.001", "55000")
    )
    port_store.update_order("c2", OrderStatus.UNKNOWN, 2001, error="timeout after send")

    unresolved = port_store.unresolved_orders()
    assert [r.client_id for r in unresolved] == ["c2", "c3"]
    assert unresolved[0].error == "timeout after send"

    c1 = port_store.get_order("c1")
    assert c1 is not None
    assert (c1.status, c1.exchange_id, c1.filled, c1.average_price) == (
        OrderStatus.OPEN,
        "ex-c1",
        Decimal("0.001"),
        Decimal("55000"),
    )
    assert (c1.created_ms, c1.updated_ms) == (1001, 2000)
    assert c1.request == request("c1")

    port_store.update_order("c2", OrderStatus.REJECTED, 3000)
    c2 = port_store.get_order("c2")
    assert c2 is not None
    assert c2.status is OrderStatus.REJECTED
    assert c2.error == "timeout after send"  # kept when the update brings none
    assert port_store.get_order("nope") is None


def test_filled_since_is_what_the_bot_sent_after_a_time_and_filled(
    port_store: MemoryStore | SqlStore,
) -> None:
    """What a start counts as the bot's own change after its last recorded positions: orders
    sent after that time with something filled (a market order's part too), never one of
    unknown outcome (the reconcile looks it up first) nor one sent before it."""
    port_store.save_intent(request("before"), 1000)
    port_store.update_order(
        "before",
        OrderStatus.FILLED,
        2000,
        order=exchange_order("before", OrderStatus.FILLED, "0.003", "1"),
    )
    for cid in ("whole", "part", "none", "unknown", "pending"):
        port_store.save_intent(request(cid), 1001)
    port_store.update_order(
        "whole",
        OrderStatus.FILLED,
        1001,
        order=exchange_order("whole", OrderStatus.FILLED, "0.003", "1"),
    )
    port_store.update_order(
        "part",
        OrderStatus.CANCELED,
        1002,
        order=exchange_order("part", OrderStatus.CANCELED, "0.001", "1"),
    )
    port_store.update_order(
        "none",
        OrderStatus.CANCELED,
        1002,
        order=exchange_order("none", OrderStatus.CANCELED, "0", None),
    )
    port_store.update_order(
        "unknown",
        OrderStatus.UNKNOWN,
        1002,
        order=exchange_order("unknown", OrderStatus.UNKNOWN, "0.002", "1"),
    )
    got = port_store.filled_since(1000)
    assert [(r.client_id, r.filled) for r in got] == [
        ("whole", Decimal("0.003")),
        ("part", Decimal("0.001")),
    ]
    assert port_store.filled_since(1001) == []


def test_duplicate_intent_is_refused(port_store: MemoryStore | SqlStore) -> None:
    port_store.save_intent(request("dup"), 1)
    port_store.update_order("dup", OrderStatus.OPEN, 2)
    with pytest.raises(ValueError, match="dup"):
        port_store.save_intent(request("dup", Decimal("1")), 3)
    kept = port_store.get_order("dup")
    assert kept is not None
    assert (kept.status, kept.request.price) == (OrderStatus.OPEN, Decimal("55000.1"))


def test_update_of_unknown_order_is_refused(port_store: MemoryStore | SqlStore) -> None:
    with pytest.raises(KeyError):
        port_store.update_order("ghost", OrderStatus.OPEN, 1)


def test_risk_memory_is_one_row(port_store: MemoryStore | SqlStore) -> None:
    assert port_store.load_risk_memory() is None
    first = RiskMemory(TradingState.ACTIVE, "", Decimal("10000.5"), 0, Decimal("10000"), False)
    second = RiskMemory(
        TradingState.HALTED,
        "drawdown 25% ≥ 20%",
        Decimal("12000"),
        86_400_000,
        Decimal("9000"),
        True,
    )
    port_store.save_risk_memory(first)
    assert port_store.load_risk_memory() == first
    port_store.save_risk_memory(second)
    assert port_store.load_risk_memory() == second


def test_heartbeat_is_one_row(port_store: MemoryStore | SqlStore) -> None:
    assert port_store.last_heartbeat() is None
    port_store.record_heartbeat(Heartbeat(ts_ms=1_748_822_400_000, job="tick"))
    assert port_store.last_heartbeat() == Heartbeat(ts_ms=1_748_822_400_000, job="tick")
    port_store.record_heartbeat(Heartbeat(ts_ms=1_748_822_460_000, job="guard"))
    assert port_store.last_heartbeat() == Heartbeat(ts_ms=1_748_822_460_000, job="guard")


def test_listing_reports_are_one_per_contract_and_trading_is_no_row(
    port_store: MemoryStore | SqlStore,
) -> None:
    eth = "ETH/USDT:USDT"
    assert port_store.listing_reports() == {}
    withdrawn = ListingReport(SYMBOL, withdrawn="status SETTLING")
    settles = ListingReport(eth, settles_ms=1_798_761_600_000)
    port_store.record_listing_report(withdrawn, 1)
    port_store.record_listing_report(settles, 1)
    assert port_store.listing_reports() == {SYMBOL: withdrawn, eth: settles}
    both = ListingReport(SYMBOL, withdrawn="the venue lists no such market", settles_ms=5)
    port_store.record_listing_report(both, 2)  # replaced
    port_store.record_listing_report(ListingReport(eth), 3)  # trades, nothing scheduled
    assert port_store.listing_reports() == {SYMBOL: both}


def test_a_venue_refusal_is_kept_with_its_restriction_until_forgotten(
    port_store: MemoryStore | SqlStore,
) -> None:
    assert port_store.venue_refusals() == {}
    listed = VenueRestriction(f"{SYMBOL}: withdrawn by the venue (status SETTLING)")
    unlisted = VenueRestriction(f"{SYMBOL}: withdrawn by the venue (gone)", listed=False)
    port_store.record_venue_refusal(SYMBOL, listed, 1)
    assert port_store.venue_refusals() == {SYMBOL: listed}
    port_store.record_venue_refusal(SYMBOL, unlisted, 2)
    assert port_store.venue_refusals() == {SYMBOL: unlisted}
    port_store.forget_venue_refusal(SYMBOL)
    port_store.forget_venue_refusal(SYMBOL)  # (none: nothing to forget)
    assert port_store.venue_refusals() == {}


def test_the_heartbeat_never_grows(store: SqlStore) -> None:
    for n in range(5):
        store.record_heartbeat(Heartbeat(ts_ms=n, job="guard"))
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM heartbeat")).scalar_one() == 1


# --- SQL specifics ---------------------------------------------------------------------------


def test_duplicate_intent_error_type(store: SqlStore) -> None:
    store.save_intent(request("dup"), 1)
    with pytest.raises(DuplicateIntent, match="already recorded"):
        store.save_intent(request("dup"), 2)


def test_unknown_order_error_names_it(store: SqlStore) -> None:
    with pytest.raises(UnknownOrder, match="'ghost' was never recorded"):
        store.update_order("ghost", OrderStatus.OPEN, 1)


def test_raw_payload_of_last_exchange_view_is_kept(store: SqlStore) -> None:
    store.save_intent(request("c1"), 1)
    store.update_order(
        "c1", OrderStatus.FILLED, 2, order=exchange_order("c1", OrderStatus.FILLED, "0.003", "1.5")
    )
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT raw FROM orders WHERE client_id = 'c1'")).scalar_one()
    assert '"average_price": "1.5"' in raw
    assert '"exchange_id": "ex-c1"' in raw


def test_writes_are_durable_across_store_instances(store: SqlStore, store_url: str) -> None:
    store.save_intent(request("c1"), 1)
    store.record_event(
        RiskEvent(
            ts_ms=5,
            kind=EventKind.STATE,
            symbol=None,
            state=TradingState.REDUCING,
            reason="margin ratio 0.8",
        )
    )
    other = SqlStore.open(store_url)
    try:
        assert other.get_order("c1") is not None
        assert other.recent_events(10) == [
            RiskEvent(
                ts_ms=5,
                kind=EventKind.STATE,
                symbol=None,
                state=TradingState.REDUCING,
                reason="margin ratio 0.8",
            )
        ]
    finally:
        other.close()


def test_history_views_are_newest_first(store: SqlStore) -> None:
    decision = Decision(
        symbol=SYMBOL,
        direction=1,
        target_leverage=Decimal("2.5"),
        target_qty=Decimal("0.12"),
        stop_loss=Decimal("50000"),
        take_profit=None,
        reason="trend",
    )
    records = [
        DecisionRecord(
            f"t{i}", i, decision, Decimal(i), Decimal("1.1"), Decimal("55000.1"), Decimal("0.45")
        )
        for i in range(1, 4)
    ]
    store.record_decisions(records)
    store.record_decisions([])
    assert store.recent_decisions(2) == [records[2], records[1]]

    for i in range(1, 4):
        store.record_event(
            RiskEvent(
                ts_ms=i,
                kind=EventKind.DENIED,
                symbol=SYMBOL,
                state=TradingState.ACTIVE,
                reason=f"reason {i}",
            )
        )
    assert [e.reason for e in store.recent_events(5)] == ["reason 3", "reason 2", "reason 1"]

    store.save_intent(request("a"), 1)
    store.save_intent(request("b"), 2)
    store.update_order("a", OrderStatus.CANCELED, 3)
    assert [o.client_id for o in store.recent_orders(10)] == ["a", "b"]
    assert [o.client_id for o in store.recent_orders(1)] == ["a"]

    assert store.latest_equity() is None
    store.record_equity(equity(10, Decimal("100")))
    store.record_equity(equity(20, Decimal("90.25")))
    assert store.latest_equity() == equity(20, Decimal("90.25"))


def test_fills_round_trip(store: SqlStore) -> None:
    fills = [
        Fill("c1", SYMBOL, OrderSide.BUY, Decimal("0.003"), Decimal("55000.1"),
             Decimal("0.0660001"), 10, OrderPurpose.ENTRY, Decimal(0)),
        Fill("liq", SYMBOL, OrderSide.SELL, Decimal("0.003"), Decimal("40000"), Decimal("12"), 20,
             None, Decimal("-45.0003"), liquidation=True),
    ]  # fmt: skip
    for fill in fills:
        store.record_fill(fill)
    assert store.recent_fills(10) == list(reversed(fills))


def test_position_snapshots_include_flat(store: SqlStore) -> None:
    assert store.latest_positions() is None
    long = Position(SYMBOL, Decimal("0.5"), Decimal("50000"), Decimal("3"), MarginMode.ISOLATED,
                    Decimal("8333.33"), Decimal("33500.5"))  # fmt: skip
    short = Position(
        "ETH/USDT:USDT", Decimal("-2"), Decimal("3000"), Decimal("2"), MarginMode.CROSS
    )
    store.record_positions(10, [long, short])
    assert store.latest_positions() == (10, [long, short])
    store.record_positions(20, [])
    assert store.latest_positions() == (20, [])


def test_paper_state_single_document_per_name(store: SqlStore) -> None:
    assert store.load_paper_state("paper") is None
    store.save_paper_state("paper", '{"wallet": "1000"}', 1)
    store.save_paper_state("other", "{}", 1)
    store.save_paper_state("paper", '{"wallet": "990.5"}', 2)
    assert store.load_paper_state("paper") == '{"wallet": "990.5"}'
    assert store.load_paper_state("other") == "{}"


def test_commands_are_taken_exactly_once(store: SqlStore) -> None:
    assert store.take_commands() == []
    halt = store.post_command("halt", '{"reason": "manual"}', 1)
    resume = store.post_command("resume", "", 2)
    assert store.take_commands() == [(halt, "halt", '{"reason": "manual"}'), (resume, "resume", "")]
    assert store.take_commands() == []
    later = store.post_command("halt", "", 3)
    assert store.take_commands() == [(later, "halt", "")]


def test_concurrent_takers_never_share_a_command(store: SqlStore) -> None:
    posted = {store.post_command("halt", str(i), i) for i in range(60)}
    taken: list[list[tuple[int, str, str]]] = [[], []]
    start = threading.Barrier(2)

    def take(slot: int) -> None:
        start.wait()
        for _ in range(20):
            taken[slot].extend(store.take_commands())

    threads = [threading.Thread(target=take, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [c[0] for c in taken[0] + taken[1]]
    assert sorted(ids) == sorted(posted)


def test_alerts_by_key_and_time(store: SqlStore) -> None:
    first = store.record_alert(100, "drawdown", "warning", "dd 10%")
    store.record_alert(200, "stale", "error", "no data", delivered=True)
    third = store.record_alert(300, "drawdown", "critical", "dd 20%")
    assert [a.id for a in store.recent_alerts("drawdown", 0)] == [third, first]
    recent = store.recent_alerts("drawdown", 150)
    assert [(a.message, a.delivered) for a in recent] == [("dd 20%", False)]
    store.mark_alert_delivered(third)
    assert store.recent_alerts("drawdown", 150)[0].delivered is True
    assert store.recent_alerts("stale", 0)[0].severity == "error"


def test_an_alert_is_owed_and_delivered_per_destination(store: SqlStore) -> None:
    """Each destination an alert is queued for owes it until it arrives there; ``delivered``
    once it arrived everywhere. A newer alert of the same key that arrived settles an older
    one there (the incident reached it); whatever its age, nothing else does."""
    from bot.store import views

    first = store.record_alert(100, "k", "critical", "m1", destinations=["d1", "d2"])
    [rec] = store.recent_alerts("k", 0)
    assert (rec.owed, rec.delivered_to, rec.delivered) == (
        frozenset({"d1", "d2"}),
        frozenset(),
        False,
    )
    store.mark_alert_delivered(first, "d1", ts_ms=150)
    [rec] = store.recent_alerts("k", 0)
    assert (rec.delivered_to, rec.delivered) == (frozenset({"d1"}), False)
    store.mark_alert_delivered(first, "d2", ts_ms=160)
    assert store.recent_alerts("k", 0)[0].delivered is True
    older = store.record_alert(200, "k", "critical", "m2", destinations=["d1", "d2"])
    newer = store.record_alert(300, "k", "critical", "m3", destinations=["d1", "d2"])
    store.record_alert(400, "w", "warning", "a warning", destinations=["d1"])  # not counted
    other = store.record_alert(500, "x", "critical", "delivered", destinations=["d1", "d2"])
    store.mark_alert_delivered(other)  # (everywhere)
    store.mark_alert_delivered(newer, "d1", ts_ms=350)
    owed = views.owed_critical(store, ["d1", "d2"], dedup_ms=3_600_000)
    assert [(o.id, o.owed_to) for o in owed] == [
        (newer, frozenset({"d2"})),
        (older, frozenset({"d2"})),  # d1 received the newer one of its key
    ]
    assert views.owed_critical(store, ["d1"], dedup_ms=3_600_000) == []
    assert views.owed_critical(store, [], dedup_ms=3_600_000) == []


def test_runs_get_increasing_ids(store: SqlStore) -> None:
    first = store.open_run("paper", "/etc/bot/paper.toml", "voltarget", 1)
    second = store.open_run("live", "/etc/bot/live.toml", "voltarget", 2)
    assert second > first
    with store.engine.connect() as conn:
        query = text("SELECT mode, config_path, version FROM runs WHERE id = :id")
        row = conn.execute(query, {"id": second})
        installed = importlib.metadata.version("perp-risk-bot")
        assert tuple(row.one()) == ("live", "/etc/bot/live.toml", installed)


def test_two_writers_and_a_reader(store: SqlStore) -> None:
    """2 threads × 100 committed writes each, plus a reader: no "database is locked"."""
    values: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(3)

    def write(slot: int) -> None:
        try:
            start.wait()
            for i in range(50):  # 2 writes each: 100 commits per thread
                values[slot].append(store.next_sequence("cid"))
                store.record_event(
                    RiskEvent(
                        ts_ms=i,
                        kind=EventKind.STATE,
                        symbol=None,
                        state=TradingState.ACTIVE,
                        reason=f"w{slot}-{i}",
                    )
                )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def read() -> None:
        try:
            start.wait()
            # Paced like a status view: a reader spinning flat out in the same process stalls
            # writes for up to ~1-2 s through WAL checkpoints (measured), close to busy_timeout.
            while not done.wait(0.001):
                store.recent_events(5)
                store.latest_equity()
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(slot,)) for slot in (0, 1)]
    reader = threading.Thread(target=read)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == []
    assert sorted(values[0] + values[1]) == list(range(1, 101))
    assert len(store.recent_events(1000)) == 100


# --- engine ------------------------------------------------------------------------------------


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    try:
        with engine.connect() as conn:
            got = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        engine.dispose()
    assert got == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000, "foreign_keys": 1}


def test_unsupported_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'mysql' is not supported"):
        make_engine("mysql://user:secret@db/bot")


def _tick_parts(ts: int) -> tuple[list[DecisionRecord], list[Position]]:
    decision = Decision(
        symbol=SYMBOL,
        direction=1,
        target_leverage=Decimal("2"),
        target_qty=Decimal("0.1"),
        stop_loss=Decimal("50000"),
        take_profit=None,
        reason="tick",
    )
    records = [
        DecisionRecord(
            f"t{ts}", ts, decision, Decimal("0.1"), Decimal(2), Decimal(55000), Decimal(0)
        )
    ]
    position = Position(SYMBOL, Decimal("0.1"), Decimal(55000), Decimal(2), MarginMode.ISOLATED)
    return records, [position]


def test_a_tick_is_recorded_in_one_transaction(store: SqlStore) -> None:
    records, positions = _tick_parts(10)
    store.record_tick(records, positions, equity(10, Decimal("100")))
    assert store.recent_decisions(5) == records
    assert store.latest_positions() == (10, positions)
    assert store.latest_equity() == equity(10, Decimal("100"))

    # An equity row the store refuses (a float) takes the tick's decisions and positions with it.
    later, _ = _tick_parts(20)
    bad = EquitySnapshot(
        ts_ms=20,
        wallet=1.5,  # type: ignore[arg-type]
        unrealized_pnl=Decimal(0),
        equity=Decimal(0),
        state=TradingState.ACTIVE,
    )
    with pytest.raises(ValueError, match="expected Decimal or int"):
        store.record_tick(later, [], bad)
    assert store.recent_decisions(5) == records
    assert store.latest_positions() == (10, positions)
    assert store.latest_equity() == equity(10, Decimal("100"))


def test_a_venue_answer_of_double_digits_is_stored(store: SqlStore) -> None:
    """ccxt hands numbers over as doubles and computes some itself (an average as cost /
    filled): 17 significant digits run past the 18 decimals a store keeps below 0.1. Such an
    answer was refused, the order stayed unsettled and every job failed on it before its stop;
    the adapter now reads it to 18 decimals (a double's error is far larger)."""
    from bot.exchange.ccxt_orders import order_from_ccxt
    from bot.exchange.mapping import position_from_ccxt

    store.save_intent(replace(request("sats"), symbol=PEPE, amount=Decimal(37_000_000)), 1)
    raw = {
        "id": "9",
        "clientOrderId": "sats",
        "symbol": PEPE,
        "side": "buy",
        "type": "market",
        "status": "closed",
        "amount": 37000000.0,
        "filled": 37000000.0,
        "average": 3.1234567890123457e-05,  # cost / filled, as ccxt computes it
        "info": {},
    }
    order = order_from_ccxt(raw)
    assert order.average_price == Decimal("0.000031234567890123")
    store.update_order("sats", OrderStatus.FILLED, 2, order=order)
    record = store.get_order("sats")
    assert record is not None
    assert record.average_price == order.average_price
    row = {
        "symbol": PEPE,
        "contracts": 37000000.0,
        "side": "long",
        "entryPrice": 3.1234567890123457e-05,
        "leverage": 3.0,
        "marginMode": "cross",
        "info": {},
    }
    position = position_from_ccxt(row)
    assert position.entry_price == Decimal("0.000031234567890123")
    store.record_positions(3, [position])
    snap = store.latest_positions()
    assert snap is not None
    assert snap[1][0].entry_price == position.entry_price
