"""Incidents read back from events keep the order they were recorded in within one millisecond.

A ``foreign`` and its ``foreign_gone`` (or a ``flatten_pending`` and its ``flatten_ended``) can
carry the same millisecond (the second account reading of one job). The readers sorted the
newest-first events by time with a stable sort, which left such a pair newest first: a restart
kept the contract foreign (the bot's own position disowned) or the incident open. The memory
store also listed same-millisecond events oldest first, unlike the SQL store."""

from __future__ import annotations

import pytest

from bot.domain.enums import EventKind, TradingState
from bot.engine.reconcile import open_foreign
from bot.engine.unflattened import open_incidents
from bot.ports.store import RiskEvent, StorePort
from bot.store.memory import MemoryStore
from bot.store.sql import SqlStore

BTC = "BTC/USDT:USDT"
T = 1_750_000_000_000


def _event(kind: EventKind) -> RiskEvent:
    return RiskEvent(ts_ms=T, kind=kind, symbol=BTC, state=TradingState.ACTIVE, reason="x")


@pytest.fixture(params=["memory", "sql"])
def any_store(request: pytest.FixtureRequest, store: SqlStore) -> StorePort:
    return MemoryStore() if request.param == "memory" else store


def test_an_incident_ended_in_the_millisecond_it_began_is_over(any_store: StorePort) -> None:
    for kind in (EventKind.FOREIGN, EventKind.FOREIGN_GONE):
        any_store.record_event(_event(kind))
    kinds = (EventKind.FOREIGN, EventKind.FOREIGN_GONE)
    assert [e.kind for e in any_store.recent_events(10, kinds=kinds)] == [
        EventKind.FOREIGN_GONE,
        EventKind.FOREIGN,
    ]
    assert open_foreign(any_store.recent_events(10, kinds=kinds)) == set()


def test_a_flatten_incident_ended_in_its_millisecond_is_over(any_store: StorePort) -> None:
    for kind in (EventKind.FLATTEN_PENDING, EventKind.FLATTEN_ENDED):
        any_store.record_event(_event(kind))
    kinds = (EventKind.FLATTEN_PENDING, EventKind.FLATTEN_ENDED)
    assert open_incidents(any_store.recent_events(10, kinds=kinds)) == set()
