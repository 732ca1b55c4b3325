"""An account whose newest reads failed (``unreadable`` events after the last tick) is not shown
as current: the dashboard, ``/healthz``, ``/metrics`` and ``bot status`` say since when it
cannot be read, and a stop the bot has not seen since is not reported as resting; a trading
state never recorded is not exported as 0 for every state."""

from __future__ import annotations

import io
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from rich.console import Console

from bot.bootstrap import open_store
from bot.cli.reports import status_data, status_tables
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.metrics import build_registry
from bot.dashboard.security import Guard
from bot.domain.enums import EventKind, TradingState
from bot.engine.read_streak import readable_reason, unreadable_reason
from bot.ports.store import Heartbeat, RiskEvent
from bot.store.sql import SqlStore
from tests.dashboard.test_metrics import scrape

MINUTE = 60_000


def _event(store: SqlStore, ts_ms: int, kind: EventKind, reason: str) -> None:
    store.record_event(
        RiskEvent(ts_ms=ts_ms, kind=kind, symbol=None, state=TradingState.ACTIVE, reason=reason)
    )


def test_an_unreadable_account_is_not_shown_as_current(paper_account: Path) -> None:
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        equity = store.latest_equity()
        assert equity is not None
        last_tick = equity.ts_ms
        # Three guards after the last tick could not read the account (the hourly tick is not
        # due yet: the last tick is well within two intervals).
        # Each guard completed (its failure to read is an event, not a raise): a heartbeat.
        for n in (1, 2, 3):
            _event(store, last_tick + n * MINUTE, EventKind.UNREADABLE, unreadable_reason(n, "x"))
            store.record_heartbeat(Heartbeat(ts_ms=last_tick + n * MINUTE, job="guard"))
        now = last_tick + 4 * MINUTE
        source = AccountSource(config, store)
        app = create_app(
            {config.account.name: source}, store=store, guard=Guard(None), clock=SimClock(now)
        )
        client = TestClient(app, base_url="http://127.0.0.1")

        health = client.get("/healthz")
        assert health.status_code == 503, health.json()
        assert "unreadable" in health.json()["detail"]

        page = client.get("/")
        assert page.status_code == 200
        assert "ACCOUNT UNREADABLE" in page.text
        assert "3 reads in a row" in page.text
        assert "unverified since" in page.text  # the stops shown are as last read

        m = scrape(client)
        assert m[("bot_account_unreadable", ())] == 1
        # the positions are open: whether their stops still rest is not known now
        held = [c for c in source.overview(now).contracts if c.qty]
        assert held
        for c in held:
            assert c.unverified_since_ms == last_tick + MINUTE
            assert ("bot_position_without_stop", (("symbol", c.symbol),)) not in m

        data = status_data(config, store)
        assert data["unreadable_reads"] == 3
        assert data["unreadable_since"] is not None
        terminal = Console(file=io.StringIO(), width=200)
        terminal.print(status_tables(data)[0])
        assert "ACCOUNT UNREADABLE" in terminal.file.getvalue()  # type: ignore[attr-defined]

        # The account is read again: current, healthy, protected as recorded.
        _event(store, now + MINUTE, EventKind.READABLE, readable_reason(3))
        store.record_heartbeat(Heartbeat(ts_ms=now + MINUTE, job="guard"))
        client = TestClient(
            create_app(
                {config.account.name: AccountSource(config, store)},
                store=store,
                guard=Guard(None),
                clock=SimClock(now + 2 * MINUTE),
            ),
            base_url="http://127.0.0.1",
        )
        assert client.get("/healthz").status_code == 200
        assert "ACCOUNT UNREADABLE" not in client.get("/").text
        m = scrape(client)
        assert m[("bot_account_unreadable", ())] == 0
        for c in held:
            assert m[("bot_position_without_stop", (("symbol", c.symbol),))] == 0
        assert status_data(config, store)["unreadable_since"] is None
    finally:
        store.close()


def test_a_state_never_recorded_is_not_exported_as_zero(tmp_path: Path) -> None:
    from tests.runtime.conftest import write_config

    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    try:
        clock = SimClock(0)
        registry, _ = build_registry(AccountSource(config, store), store, clock)
        text = generate_latest(registry).decode()
        assert "bot_trading_state{" not in text  # unknown, not "0 for active"
        assert "bot_account_unreadable " not in text  # never read: neither
    finally:
        store.close()


def test_yesterdays_loss_is_not_todays(paper_account: Path) -> None:
    """Past midnight UTC, before the bot records the new day's start (its first job after
    midnight, or a bot that is down), the day's loss is unknown, not yesterday's figure."""
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        equity = store.latest_equity()
        memory = store.load_risk_memory()
        assert equity is not None
        assert memory is not None
        # a loss on the recorded day
        start = (equity.equity * D("1.03")).quantize(D("0.01"))
        store.save_risk_memory(replace(memory, day_start_equity=start))
        source = AccountSource(config, store)
        same_day = source.overview(equity.ts_ms + MINUTE)
        assert same_day.daily_loss is not None
        assert same_day.daily_loss == (start - equity.equity) / start
        next_day = memory.day_start_ms + 86_400_000 + MINUTE
        assert source.overview(next_day).daily_loss is None
        registry, _ = build_registry(source, store, SimClock(next_day))
        assert "bot_daily_loss_ratio " not in generate_latest(registry).decode()
    finally:
        store.close()


def test_a_bot_that_never_ticked_is_alerted(tmp_path: Path) -> None:
    """StaleTick compares the last tick's age: with no tick recorded there is none, so a rule
    fires on the interval without a last tick (what the exporter gives then)."""
    import yaml

    from tests.runtime.conftest import ROOT, write_config

    rules = yaml.safe_load((ROOT / "docs" / "monitoring" / "alerts.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert exprs["NoTickRecorded"].split() == [
        "bot_tick_interval_seconds",
        "unless",
        "on",
        "(instance)",
        "bot_last_tick_timestamp_seconds",
    ]
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    try:
        registry, _ = build_registry(AccountSource(config, store), store, SimClock(0))
        text = generate_latest(registry).decode()
    finally:
        store.close()
    assert "\nbot_tick_interval_seconds " in text
    assert "\nbot_last_tick_timestamp_seconds " not in text
