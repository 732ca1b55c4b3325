"""A contract without a decision for lack of a full window of candles (a gap in them) says so
on the dashboard: the overview's "why" and the contract's page name the gap and since when,
instead of the last decision's reason alone as if it were current."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from bot.bootstrap import open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.model import slug
from bot.dashboard.security import Guard
from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent

GAP = "gap in the 1h candles from 2025-06-02 05:00 UTC to 2025-06-02 08:00 UTC: a window never"


def test_a_contract_without_a_decision_says_why(paper_account: Path) -> None:
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        equity = store.latest_equity()
        assert equity is not None
        sym = config.contracts[0].symbol
        store.record_event(
            RiskEvent(
                ts_ms=equity.ts_ms,
                kind=EventKind.NO_DECISION,
                symbol=sym,
                state=TradingState.ACTIVE,
                reason=GAP,
            )
        )
        now = equity.ts_ms + 60_000
        source = AccountSource(config, store)
        [shown] = [c for c in source.overview(now).contracts if c.symbol == sym]
        assert shown.no_decision == GAP
        assert shown.no_decision_since_ms == equity.ts_ms
        app = create_app(
            {config.account.name: source}, store=store, guard=Guard(None), clock=SimClock(now)
        )
        client = TestClient(app, base_url="http://127.0.0.1")
        assert GAP in client.get("/").text
        page = client.get(f"/contracts/{slug(sym)}")
        assert page.status_code == 200
        assert "no decision since" in page.text
        assert GAP in page.text
    finally:
        store.close()
