"""The dashboard's read-only queries (bot/store/views.py) on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.enums import EventKind, OrderStatus, TradingState
from bot.ports.store import DecisionRecord, EquitySnapshot, RiskEvent
from bot.store import views
from bot.store.sql import SqlStore
from bot.store.views import TimeWindow
from tests.store.test_sql_store import request

ACTIVE = TradingState.ACTIVE


def decision(sym: str, ts: int) -> DecisionRecord:
    d = Decision(
        symbol=sym,
        direction=1,
        target_leverage=Decimal("1.5"),
        target_qty=Decimal("0.01"),
        stop_loss=None,
        take_profit=None,
        reason=f"{sym} at {ts}",
    )
    return DecisionRecord(f"t{ts}", ts, d, Decimal(0), Decimal(1), Decimal(100), Decimal("0.5"))


def test_equity_series_reads_only_what_is_new(store: SqlStore) -> None:
    for ts, value in ((1000, "100.5"), (2000, "101.25")):
        store.record_equity(
            EquitySnapshot(
                ts_ms=ts,
                wallet=Decimal(value),
                unrealized_pnl=Decimal(0),
                equity=Decimal(value),
                state=ACTIVE,
            )
        )
    first = views.equity_series(store)
    assert [(p.ts_ms, p.equity) for p in first] == [
        (1000, Decimal("100.5")),
        (2000, Decimal("101.25")),
    ]
    store.record_equity(
        EquitySnapshot(
            ts_ms=3000,
            wallet=Decimal(99),
            unrealized_pnl=Decimal(0),
            equity=Decimal(99),
            state=ACTIVE,
        )
    )
    new = views.equity_series(store, first[-1].id)
    assert [(p.ts_ms, p.equity) for p in new] == [(3000, Decimal(99))]


def test_journal_filters(store: SqlStore) -> None:
    store.record_decisions([decision("BTC/USDT:USDT", t) for t in (1000, 2000, 3000)])
    store.record_decisions([decision("ETH/USDT:USDT", t) for t in (1000, 2000)])
    btc = views.decisions(store, TimeWindow("BTC/USDT:USDT", 1500, None), 10)
    assert [r.ts_ms for r in btc] == [3000, 2000]
    assert len(views.decisions(store, TimeWindow(None, None, 2000), 10)) == 4
    assert len(views.decisions(store, TimeWindow(), 2)) == 2
    last = views.latest_decisions(store, ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"])
    assert {s: r.ts_ms for s, r in last.items()} == {"BTC/USDT:USDT": 3000, "ETH/USDT:USDT": 2000}

    store.record_event(
        RiskEvent(
            ts_ms=1000, kind=EventKind.STATE, symbol=None, state=TradingState.HALTED, reason="halt"
        )
    )
    store.record_event(
        RiskEvent(
            ts_ms=2000, kind=EventKind.DENIED, symbol="ETH/USDT:USDT", state=ACTIVE, reason="cap"
        )
    )
    store.record_event(
        RiskEvent(
            ts_ms=3000,
            kind=EventKind.UNPROTECTED,
            symbol="BTC/USDT:USDT",
            state=ACTIVE,
            reason="refused",
        )
    )
    btc_events = views.events(store, TimeWindow("BTC/USDT:USDT"), 10)
    assert [e.kind for e in btc_events] == ["unprotected", "state"]  # account-wide ones too
    assert [e.kind for e in views.events_of_kinds(store, ("unprotected", "protected"), 10)] == [
        "unprotected"
    ]
    change = views.last_state_change(store)
    assert change is not None
    assert change.state is TradingState.HALTED
    assert views.event_counts(store) == {"state": 1, "denied": 1, "unprotected": 1}


def test_orders_counts_and_commands(store: SqlStore) -> None:
    store.save_intent(request("a-1"), 1000)
    store.save_intent(request("a-2"), 1000)
    store.update_order("a-2", OrderStatus.REJECTED, 2000, error="-2019 margin is insufficient")
    assert views.order_counts(store) == {"pending_submit": 1, "rejected": 1}
    assert views.orders_with_errors(store) == 1
    assert [o.client_id for o in views.orders(store, TimeWindow(since_ms=1500), 10)] == ["a-2"]
    assert views.open_orders(store) == []
    store.post_command("halt", '{"flatten": false}', 5000)
    assert [(c.kind, c.ts_ms) for c in views.pending_commands(store)] == [("halt", 5000)]
    store.take_commands()
    assert views.pending_commands(store) == []
    store.record_alert(6000, "state:halted", "critical", "halted")
    assert [a.message for a in views.recent_alerts(store, 5)] == ["halted"]


def test_a_guard_reading_is_the_newest_account_and_not_the_last_tick(store: SqlStore) -> None:
    """What the status surfaces read: the newest positions (with the mark each was valued at)
    and equity, a guard's reading after a tick included; "last tick" is the decision's."""
    from bot.domain.enums import MarginMode
    from bot.domain.position import Position

    btc = Position("BTC/USDT:USDT", Decimal("0.1"), Decimal(100), Decimal(2), MarginMode.ISOLATED)

    def snapshot(ts: int, wallet: str, *, decision: bool) -> EquitySnapshot:
        w = Decimal(wallet)
        return EquitySnapshot(
            ts_ms=ts, wallet=w, unrealized_pnl=Decimal(0), equity=w, state=ACTIVE, decision=decision
        )

    store.record_tick([decision(btc.symbol, 1000)], [btc], snapshot(1000, "100", decision=True))
    first = views.recorded_positions(store)
    assert first is not None
    assert (first.ts_ms, first.positions, first.marks) == (1000, {btc.symbol: btc}, {})
    store.record_tick(
        [], [btc], snapshot(2000, "100", decision=False), {btc.symbol: Decimal("101.5")}
    )
    second = views.recorded_positions(store)
    assert second is not None
    assert (second.ts_ms, second.marks) == (2000, {btc.symbol: Decimal("101.5")})
    store.record_tick([], [], snapshot(3000, "95", decision=False))  # its stop filled
    assert store.latest_equity() == snapshot(3000, "95", decision=False)
    assert store.latest_equity(decision=True) == snapshot(1000, "100", decision=True)
    assert store.latest_positions() == (3000, [])
    assert views.recorded_positions(store) == views.RecordedPositions(3000, {}, {})
    assert [p.ts_ms for p in views.equity_series(store)] == [1000, 2000, 3000]
    assert len(store.recent_decisions(10)) == 1
