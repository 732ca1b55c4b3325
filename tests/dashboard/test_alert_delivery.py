"""Whether an alert reached the trader is on the dashboard: each alert says if it was sent, a
critical one that reached no one puts a banner on the overview, and ``bot_alerts_not_sent``
lets Prometheus page through its own path (the ``AlertsNotDelivered`` rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from rich.console import Console

from bot.bootstrap import open_store
from bot.cli.reports import status_data, status_tables
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.security import Guard
from bot.store.sql import SqlStore
from tests.dashboard.test_metrics import scrape
from tests.runtime.conftest import ROOT
from tests.runtime.test_alerts import set_runtime

MINUTE = 60_000


def _client(config_path: Path) -> tuple[TestClient, SqlStore, int]:
    """The dashboard of the replayed account a minute after its last tick, its store, and now."""
    config = load_config(config_path)
    store = open_store(config, create=True)
    equity = store.latest_equity()
    assert equity is not None
    now = equity.ts_ms + MINUTE
    app = create_app(
        {config.account.name: AccountSource(config, store)},
        store=store,
        guard=Guard(None),
        clock=SimClock(now),
    )
    return TestClient(app, base_url="http://127.0.0.1"), store, now


def test_a_critical_alert_that_reached_no_one_is_shown_and_exported(paper_account: Path) -> None:
    set_runtime(paper_account, alert_urls='["json://127.0.0.1:9/hook"]')
    client, store, now = _client(paper_account)
    try:
        sent = store.record_alert(now - 30 * MINUTE, "stop:BTC", "critical", "no stop (1st)")
        store.mark_alert_delivered(sent)
        store.record_alert(now - 20 * MINUTE, "stop:BTC", "critical", "no stop (again)")
        store.record_alert(now - 5 * MINUTE, "state", "critical", "halted: daily loss")
        store.record_alert(now - 4 * MINUTE, "margin", "warning", "margin ratio 0.6")
        page = client.get("/").text
        assert 'id="alerts-not-sent"' in page
        assert "ALERTS NOT DELIVERED: 1 critical alert(s)" in page
        cells = [c.split("<")[0] for c in page.split('<td class="delivery">')[1:]]
        # newest first: the warning, the halt, the repeat, the one sent
        assert cells == ["NOT SENT", "NOT SENT", "repeat", "sent"]
        m = scrape(client)
        assert m[("bot_alerts_not_sent", ())] == 1  # the critical one; a warning pages no one
    finally:
        store.close()


def test_a_missed_critical_alert_stays_shown_behind_newer_alerts(paper_account: Path) -> None:
    """Defect: the banner and the gauge looked at the newest eight alerts only: a halt that
    reached no one was hidden by eight warnings after it, which the failing destination did
    not carry either. Every critical alert since the path last delivered one counts now."""
    set_runtime(paper_account, alert_urls='["json://127.0.0.1:9/hook"]')
    client, store, now = _client(paper_account)
    try:
        store.record_alert(now - 50 * MINUTE, "state", "critical", "halted: daily loss")
        for k in range(9):
            store.record_alert(now - (40 - k) * MINUTE, f"funding:{k}", "warning", "funding")
        page = client.get("/").text
        assert "halted: daily loss" not in page  # no longer among the newest lines
        assert "ALERTS NOT DELIVERED: 1 critical alert(s)" in page
        assert scrape(client)[("bot_alerts_not_sent", ())] == 1
    finally:
        store.close()


def test_a_critical_alert_missed_before_the_path_worked_again_is_history(
    paper_account: Path,
) -> None:
    set_runtime(paper_account, alert_urls='["json://127.0.0.1:9/hook"]')
    client, store, now = _client(paper_account)
    try:
        store.record_alert(now - 50 * MINUTE, "state", "critical", "halted: daily loss")
        later = store.record_alert(now - 10 * MINUTE, "margin", "warning", "margin ratio 0.6")
        store.mark_alert_delivered(later)  # the destination carries alerts again
        page = client.get("/").text
        assert 'id="alerts-not-sent"' not in page
        assert '<td class="delivery">NOT SENT</td>' in page  # still said in the table
        assert scrape(client)[("bot_alerts_not_sent", ())] == 0
    finally:
        store.close()


def test_bot_status_says_when_alerts_reach_no_one(paper_account: Path) -> None:
    """Defect: only the dashboard said so; a trader checking ``bot status`` over ssh saw a
    healthy bot while its halt alert had paged no one."""
    set_runtime(paper_account, alert_urls='["json://127.0.0.1:9/hook"]')
    _, store, now = _client(paper_account)
    try:
        config = load_config(paper_account)
        assert status_data(config, store, now)["alerts_not_delivered"] == 0
        store.record_alert(now - 5 * MINUTE, "state", "critical", "halted: daily loss")
        data = status_data(config, store, now)
        assert data["alerts_not_delivered"] == 1
        assert data["alerts_not_delivered_since"] is not None
        console = Console(width=200, record=True)
        for table in status_tables(data):
            console.print(table)
        assert "ALERTS NOT DELIVERED" in console.export_text()
    finally:
        store.close()


def test_without_a_destination_nothing_is_missed(paper_account: Path) -> None:
    # runtime.alert_urls = [] (the example's): alerts are recorded for the dashboard only
    client, store, now = _client(paper_account)
    try:
        store.record_alert(now - 5 * MINUTE, "state", "critical", "halted: daily loss")
        page = client.get("/").text
        assert 'id="alerts-not-sent"' not in page
        assert '<td class="delivery">no destination</td>' in page
        assert scrape(client)[("bot_alerts_not_sent", ())] == 0
    finally:
        store.close()


@pytest.mark.parametrize("name", ["AlertsNotDelivered"])
def test_the_rule_pages_on_the_gauge(name: str) -> None:
    rules = yaml.safe_load((ROOT / "docs" / "monitoring" / "alerts.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert exprs[name] == "max by (instance) (bot_alerts_not_sent) > 0"
