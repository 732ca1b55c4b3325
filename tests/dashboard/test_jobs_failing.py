"""A bot whose every job fails (a venue holding its requests after a 418 ban) is running, not
down, and the hold and its end are shown where the trader looks.

Defect: liveness was judged on the last completed job alone. During a Binance 418 ban the bot
runs its guard every minute, each failing at once (``tick_failed`` and ``venue_hold`` events
recorded), yet ``bot status``, the overview and ``/healthz`` said "the bot process may be
down", and no surface read the recorded end of the hold; the ``BotNotRunning`` rule said
"restart the bot", which the start refuses until that end.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from rich.console import Console

from bot.bootstrap import build_paper, open_store
from bot.cli.reports import contract_specs, status_data, status_tables
from bot.clock import SimClock, utc_text
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.liveness import Failure, jobs_failing
from bot.dashboard.security import Guard
from bot.domain.enums import EventKind
from bot.runtime.events import record_event_now
from bot.runtime.venue_hold import hold_reason
from bot.store.sql import SqlStore
from tests.dashboard.conftest import HOUR, START
from tests.dashboard.test_metrics import scrape
from tests.runtime.conftest import ROOT, write_config
from tests.runtime.test_venue_rate_limit_alert import VenueHold

MINUTE = 60_000
DAY_S = 24 * 3600


@dataclass(frozen=True)
class Held:
    config: BotConfig
    store: SqlStore
    tick_ms: int  # the last job that completed (a tick)
    failed_ms: int  # the last guard, failed under the hold
    until_ms: int  # the hold's end, as the venue gave it


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    """A paper bot on the bundled data; after its ticks a 3-day ban, then its guard every
    minute for ten minutes, each failing (the adapter's hold: nothing reaches the venue)."""
    config = load_config(write_config(tmp_path, contracts=2))
    store = open_store(config, create=True)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        for _ in range(3):
            assert runner.tick() is not None
            clock.advance_to(clock.now_ms() + HOUR)
        tick_ms = clock.now_ms()
        assert runner.tick() is not None
        hold = VenueHold(paper, clock)
        clock.advance_to(tick_ms + MINUTE)
        hold.hold(3 * DAY_S)
        for k in range(2, 12):
            clock.advance_to(tick_ms + k * MINUTE)
            runner.guard()
        heartbeat = store.last_heartbeat()
        assert heartbeat is not None
        assert heartbeat.ts_ms == tick_ms  # no guard completed
        yield Held(config, store, tick_ms, clock.now_ms(), hold.until_ms)
    finally:
        store.close()


def shown(config: BotConfig, data: dict[str, object]) -> str:
    """`bot status` as a terminal shows it."""
    console = Console(width=120, record=True, file=io.StringIO())
    for table in status_tables(data, contract_specs(config)):
        console.print(table)
    return console.export_text()


def client_at(h: Held, now_ms: int) -> TestClient:
    source = AccountSource(h.config, h.store)
    app = create_app(
        {h.config.account.name: source}, store=h.store, guard=Guard(None), clock=SimClock(now_ms)
    )
    return TestClient(app, base_url="http://127.0.0.1")


def test_status_says_the_bot_runs_its_jobs_fail_and_the_venue_holds_until(held: Held) -> None:
    now = held.failed_ms + 5_000
    data = status_data(held.config, held.store, now)
    assert data["bot_down"] is None  # not "the bot process may be down"
    assert data["jobs_failing"].startswith("bot running, its jobs fail: guard: RateLimited")
    assert "(10 failed guard jobs in a row)" in data["jobs_failing"]
    assert data["last_job_failed_at"] == utc_text(held.failed_ms)
    assert data["venue_hold_until"] == utc_text(held.until_ms)
    assert data["venue_hold"].startswith(f"venue holds requests until {utc_text(held.until_ms)}")
    text = shown(held.config, data)
    assert "BOT NOT RUNNING?" not in text
    assert "JOBS FAILING" in text
    assert "VENUE HOLD" in text
    assert f"venue holds requests until {utc_text(held.until_ms)}" in text  # not cut off


def test_overview_healthz_and_metrics_say_the_same(held: Held) -> None:
    now = held.failed_ms + 5_000
    client = client_at(held, now)
    page = client.get("/").text
    assert 'id="not-running"' not in page
    assert 'id="jobs-failing">BOT RUNNING, ITS JOBS FAIL: bot running, its jobs fail:' in page
    assert 'id="venue-hold"' in page
    assert f"venue holds requests until {utc_text(held.until_ms)}" in page
    health = client.get("/healthz")
    assert health.status_code == 503  # no job completes: not healthy, but not "down" either
    detail = health.json()["detail"]
    assert detail.startswith("bot running, its jobs fail: guard: RateLimited")
    assert f"venue holds requests until {utc_text(held.until_ms)}" in detail
    assert "may be down" not in detail
    metrics = scrape(client)
    assert metrics[("bot_venue_hold_until_timestamp_seconds", ())] == held.until_ms / 1000


def test_a_bot_that_stopped_failing_too_may_be_down_and_the_hold_still_shows(
    held: Held,
) -> None:
    """No failure recorded within the limit either: no sign of the process (killed during the
    hold); the recorded hold still runs, and still refuses a start."""
    now = held.failed_ms + 4 * MINUTE
    data = status_data(held.config, held.store, now)
    assert data["jobs_failing"] is None
    assert data["bot_down"].startswith("no job completed for")
    assert data["venue_hold_until"] == utc_text(held.until_ms)
    detail = client_at(held, now).get("/healthz").json()["detail"]
    assert detail.endswith("the bot process may be down; " + str(data["venue_hold"])), detail


def test_after_the_hold_ends_it_is_no_longer_shown(held: Held) -> None:
    now = held.until_ms + MINUTE
    data = status_data(held.config, held.store, now)
    assert data["venue_hold"] is None
    assert data["venue_hold_until"] is None
    client = client_at(held, now)
    assert 'id="venue-hold"' not in client.get("/").text
    assert "venue holds" not in client.get("/healthz").json()["detail"]
    assert ("bot_venue_hold_until_timestamp_seconds", ()) not in scrape(client)


def test_a_ban_that_named_no_end_is_held_at_least_until(held: Held) -> None:
    """Bybit's 403 names no end: the recorded end is the bot's own least hold."""
    at = held.failed_ms + MINUTE
    until = at + 600_000
    record_event_now(
        held.store, at, EventKind.VENUE_HOLD, None, hold_reason(until, 600, named=False)
    )
    data = status_data(held.config, held.store, at + 5_000)
    assert data["venue_hold_until"] == utc_text(until)
    assert data["venue_hold"].startswith(f"venue holds requests until at least {utc_text(until)}")


def test_the_bot_not_running_rule_names_a_venue_hold() -> None:
    """Its advice was "restart the bot": refused during a hold, until its end."""
    rules = yaml.safe_load((ROOT / "docs" / "monitoring" / "alerts.yml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r["alert"] == "BotNotRunning")
    description = rule["annotations"]["description"]
    assert "venue" in description
    assert "bot_venue_hold_until_timestamp_seconds" in description


def test_the_verdict_on_the_heartbeat_and_the_newest_failure() -> None:
    """Running with its jobs failing: a failure newer than the last completed job and within
    the limit (three guard intervals, at least 3 minutes), once no job completed within it."""
    failure = Failure(START, "tick: ExchangeError: the venue is in maintenance (1 failed tick job)")
    guard_ms = MINUTE
    # a job completed within the limit: running, whatever failed since
    assert jobs_failing(failure, START - MINUTE, "guard", guard_ms, START + MINUTE) is None
    # none within it, the failure within it: running, its jobs fail
    late = jobs_failing(failure, START - 10 * MINUTE, "guard", guard_ms, START + 5_000)
    assert late is not None
    assert late.startswith("bot running, its jobs fail: tick: ExchangeError")
    assert late.endswith("the last failed 5 s ago, no job completed for 605 s (last: guard at "
                         "2025-06-01 23:50:00 UTC)")  # fmt: skip
    # none ever completed (a start whose every job fails): running too
    never = jobs_failing(failure, None, None, guard_ms, START + 5_000)
    assert never is not None
    assert never.endswith("no job completed yet")
    # the failures stopped too: no sign of the process (may be down)
    assert jobs_failing(failure, None, None, guard_ms, START + 181_000) is None
    assert jobs_failing(None, START - 10 * MINUTE, "guard", guard_ms, START) is None
