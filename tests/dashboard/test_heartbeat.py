"""A dead bot reads as dead within minutes, whatever its policy's timeframe: ``/healthz``, the
overview, ``/metrics`` and the alert rules judge it on the last job it completed (its guard runs
every minute), not only on the last tick (a 1d policy ticks once a day)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from bot.bootstrap import open_store
from bot.clock import ReplayClock, SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.security import Guard
from bot.dashboard.server import account_source, metrics_app
from bot.ports.store import Heartbeat
from bot.store.sql import SqlStore
from tests.dashboard.conftest import HOUR
from tests.dashboard.test_metrics import scrape
from tests.runtime.conftest import ROOT

MINUTE = 60_000


@pytest.fixture
def daily(paper_account: Path) -> BotConfig:
    """The replayed account's configuration with a 1d policy (a tick a day)."""
    policy = (ROOT / "policies" / "vol_target.toml").read_text()
    assert 'timeframe = "1h"' in policy
    daily_policy = paper_account.parent / "daily.toml"
    daily_policy.write_text(policy.replace('timeframe = "1h"', 'timeframe = "1d"'))
    text_ = paper_account.read_text()
    paper_account.write_text(
        text_.replace(str(ROOT / "policies" / "vol_target.toml"), str(daily_policy))
    )
    config = load_config(paper_account)
    assert config.policies[0].timeframe == "1d"
    assert config.runtime.guard_seconds == 60
    return config


@pytest.fixture
def store(daily: BotConfig) -> Iterator[SqlStore]:
    s = open_store(daily, create=True)
    yield s
    s.close()


def last_tick(store: SqlStore) -> int:
    equity = store.latest_equity()
    assert equity is not None
    return equity.ts_ms


def client_at(config: BotConfig, store: SqlStore, now_ms: int) -> TestClient:
    source = AccountSource(config, store)
    app = create_app(
        {config.account.name: source}, store=store, guard=Guard(None), clock=SimClock(now_ms)
    )
    return TestClient(app, base_url="http://127.0.0.1")


def test_a_daily_bot_whose_jobs_stopped_is_not_healthy(daily: BotConfig, store: SqlStore) -> None:
    """The bug: a 1d bot killed 10 minutes ago answered 200 for up to two days."""
    now = last_tick(store) + 3 * HOUR
    guard_at = now - 10 * MINUTE
    store.record_heartbeat(Heartbeat(ts_ms=guard_at, job="guard"))
    client = client_at(daily, store, now)
    health = client.get("/healthz")
    assert health.status_code == 503, health.json()
    body = health.json()
    assert body["ok"] is False
    assert body["last_job_ms"] == guard_at
    assert body["last_job"] == "guard"
    assert body["detail"].startswith("no job completed for 600 s (last: guard at 2025-06-02 ")
    assert body["detail"].endswith("the bot process may be down")
    page = client.get("/").text
    assert 'id="not-running"' in page
    assert "no job completed for 600 s" in page
    # the bot's own --metrics-port says the same
    own = TestClient(
        metrics_app(daily, store, SimClock(now), CollectorRegistry()), base_url="http://127.0.0.1"
    )
    assert own.get("/healthz").status_code == 503
    assert own.get("/healthz").json()["last_job"] == "guard"


def test_a_daily_bot_whose_guard_ran_a_minute_ago_is_healthy(
    daily: BotConfig, store: SqlStore
) -> None:
    now = last_tick(store) + 3 * HOUR
    store.record_heartbeat(Heartbeat(ts_ms=now - MINUTE, job="guard"))
    client = client_at(daily, store, now)
    health = client.get("/healthz")
    assert health.status_code == 200, health.json()
    assert health.json()["last_job"] == "guard"
    assert health.json()["last_job_ms"] == now - MINUTE
    assert "last job (guard) 60 s ago" in health.json()["detail"]
    page = client.get("/").text
    assert 'id="not-running"' not in page
    # (the age counts on in the open tab: static/live.js)
    assert '<span id="last-job">guard <span class="age" data-age-s="60.000">60 s</span> ago' in page


def test_the_limit_is_three_guard_intervals_and_at_least_three_minutes(
    daily: BotConfig, store: SqlStore
) -> None:
    now = last_tick(store) + 3 * HOUR
    store.record_heartbeat(Heartbeat(ts_ms=now - 3 * MINUTE, job="guard"))
    assert client_at(daily, store, now).get("/healthz").status_code == 200  # 180 s: the floor
    assert client_at(daily, store, now + 1000).get("/healthz").status_code == 503
    slow = daily.model_copy(
        update={"runtime": daily.runtime.model_copy(update={"guard_seconds": 300})}
    )
    # a guard every 5 minutes: 15 minutes
    assert client_at(slow, store, now + 12 * MINUTE).get("/healthz").status_code == 200
    assert client_at(slow, store, now + 12 * MINUTE + 1000).get("/healthz").status_code == 503


def test_without_a_heartbeat_the_tick_alone_judges_and_says_so(
    daily: BotConfig, store: SqlStore
) -> None:
    """A database of a bot older than the heartbeat (or one that never completed a job)."""
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM heartbeat"))
    assert store.last_heartbeat() is None
    now = last_tick(store) + 3 * HOUR
    health = client_at(daily, store, now).get("/healthz")
    assert health.status_code == 200, health.json()  # 3 h: within two days
    body = health.json()
    assert body["last_job_ms"] is None
    assert body["last_job"] is None
    assert "judged on the last tick only" in body["detail"]
    late = client_at(daily, store, last_tick(store) + 49 * HOUR).get("/healthz")
    assert late.status_code == 503
    assert "more than two intervals" in late.json()["detail"]
    assert "judged on the last tick only" in late.json()["detail"]
    assert "none recorded" in client_at(daily, store, now).get("/").text


def test_the_heartbeat_is_exported_and_alerted(daily: BotConfig, store: SqlStore) -> None:
    now = last_tick(store) + 3 * HOUR
    store.record_heartbeat(Heartbeat(ts_ms=now - 10 * MINUTE, job="guard"))
    m = scrape(client_at(daily, store, now))
    assert m[("bot_last_job_timestamp_seconds", ())] == (now - 10 * MINUTE) / 1000
    assert m[("bot_last_job_age_seconds", ())] == 600
    assert m[("bot_guard_interval_seconds", ())] == 60
    rules = yaml.safe_load((ROOT / "docs" / "monitoring" / "alerts.yml").read_text())
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    # the rule /healthz follows: older than three guard intervals, at least three minutes
    assert exprs["BotNotRunning"] == (
        "bot_last_job_age_seconds > clamp_min(3 * bot_guard_interval_seconds, 180)"
    )


def test_a_replay_too_fast_for_guards_is_judged_on_its_ticks(
    daily: BotConfig, store: SqlStore
) -> None:
    """At --speed 3600 the scheduler runs no guard job (bot.runtime.scheduler): the ticks, a
    decision interval of replayed time apart, are its only jobs."""
    start = last_tick(store)
    assert account_source(daily, store, ReplayClock(start, 3600)).guard_ms == 86_400_000
    assert account_source(daily, store, ReplayClock(start, 60)).guard_ms == MINUTE
    assert account_source(daily, store, SimClock(start)).guard_ms == MINUTE
