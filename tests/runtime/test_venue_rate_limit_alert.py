"""A long rate-limit hold (a Binance IP ban of up to 3 days) is one critical alert saying until
when nothing can be sent, and what still holds.

Binance answers a client that keeps sending after 429s with a 418 ban of 2 minutes to 3 days,
its ``Retry-After`` the wait (shared notes exchange-facts section 7). The adapter then holds
every request that long (``SharedPacer.hold``): each job fails at once with ``RateLimited``
carrying the seconds left. Defect: the owner heard one ``warning: tick_failed:guard`` an hour
and, after ``runtime.max_failures`` guards, ``reducing`` whose reason said only
``RateLimited``; nothing said that no order can be placed or cancelled for three days, nor
that the resting stops still hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, TradingState
from bot.errors import RateLimited
from bot.runtime.runner import Runner
from bot.runtime.venue_hold import VenueHoldRunning, check_no_venue_hold
from bot.sim.paper import PaperExchange
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts import Receiver, receiver, set_runtime

__all__ = ["receiver"]  # the webhook receiver fixture

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

START = 1_748_822_400_000  # 2025-06-02T00:00Z
MIN = 60_000
DAY_S = 24 * 3600
# Every request the engine makes of the venue, reads and orders.
REQUESTS = (
    "fetch_balance",
    "fetch_positions",
    "fetch_open_orders",
    "fetch_order",
    "fetch_forced_closes",
    "fetch_mark_price",
    "fetch_funding",
    "fetch_leverage",
    "place_order",
    "cancel_order",
)


class VenueHold:
    """The paper venue behind the adapter's hold: from ``hold(seconds)`` on, every request
    fails at once with ``RateLimited`` carrying the seconds left (the adapter's
    ``VenueAskedToWait``, raised as the engine sees it), and none reaches the venue."""

    def __init__(self, paper: PaperExchange, clock: SimClock) -> None:
        self.clock = clock
        self.until_ms = 0
        for name in REQUESTS:
            setattr(paper, name, self._held(getattr(paper, name)))

    def hold(self, seconds: int) -> None:
        self.until_ms = self.clock.now_ms() + seconds * 1000

    def _held(self, request: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            left = (self.until_ms - self.clock.now_ms()) / 1000
            if left > 0:
                raise RateLimited(
                    f"VenueAskedToWait: not sent: the venue asked for no request for {left:.1f} "
                    "s more (Retry-After of an earlier 429/418)",
                    retry_after=left,
                )
            return request(*args, **kwargs)

        return call


class IpBan:
    """The adapter over a venue that bans the IP address and names no end (Bybit's HTTP 403,
    capabilities.IpBan): a request during the venue's ban is answered 403 (kept in
    ``probes``) and the adapter then holds every request ``BAN_HOLD_S``, each failing at once
    with ``RateLimited(end_named=False)`` carrying the seconds left; after the venue lifts the
    ban the next request goes through."""

    def __init__(self, paper: PaperExchange, clock: SimClock) -> None:
        self.clock = clock
        self.banned_until_ms = 0  # the venue's ban, which it does not tell
        self.held_until_ms = 0  # the adapter's hold
        self.probes: list[int] = []
        for name in REQUESTS:
            setattr(paper, name, self._held(getattr(paper, name)))

    def ban(self, seconds: int) -> None:
        self.banned_until_ms = self.clock.now_ms() + seconds * 1000

    def _held(self, request: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            now = self.clock.now_ms()
            left = (self.held_until_ms - now) / 1000
            if left > 0:
                raise RateLimited(
                    f"VenueAskedToWait: not sent: no request to the venue for {left:.1f} s more",
                    retry_after=left,
                    end_named=False,
                )
            if now < self.banned_until_ms:
                self.probes.append(now)
                self.held_until_ms = now + BAN_HOLD_S * 1000
                raise RateLimited(
                    "RateLimitExceeded: bybit GET /v5/position/list 403 Forbidden 403, access "
                    "too frequent",
                    retry_after=BAN_HOLD_S,
                    end_named=False,
                )
            return request(*args, **kwargs)

        return call


BAN_HOLD_S = 600  # Bybit: "wait for at least 10 minutes"


@dataclass
class Bot:
    runner: Runner
    paper: PaperExchange
    store: SqlStore
    clock: SimClock
    venue: VenueHold


@pytest.fixture
def bot(tmp_path: Path, receiver: Receiver) -> Iterator[Bot]:
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        yield Bot(runner, paper, store, clock, VenueHold(paper, clock))
    finally:
        store.close()


def guards(bot: Bot, minutes: int) -> None:
    for _ in range(minutes):
        bot.clock.advance_to(bot.clock.now_ms() + MIN)
        bot.runner.guard()


def sent(receiver: Receiver, key: str) -> list[str]:
    return [body["message"] for _, body in receiver.posts if body["title"].endswith(key)]


def test_a_three_day_ban_is_one_critical_alert_naming_its_end(bot: Bot, receiver: Receiver) -> None:
    assert bot.runner.tick() is not None
    [symbol] = bot.runner.engine.symbols
    resting = bot.paper.sim.fetch_open_orders(symbol)
    assert resting, "no stop rests: the test would prove nothing"
    bot.clock.advance_to(START + MIN)
    bot.venue.hold(3 * DAY_S)  # Retry-After 259200: until 2025-06-05T00:01Z
    guards(bot, 5)
    [alert] = sent(receiver, "critical: venue_rate_limit")
    assert "held until 2025-06-05 00:01:00 UTC" in alert
    assert "the bot can place and cancel nothing" in alert
    assert "resting stops stay on the exchange" in alert
    assert "other programs or bots on the same IP or key" in alert
    # the documented failed-jobs rule still applies, and its reason names the rate limit
    memory = bot.store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert "rate limit" in memory.state_reason
    assert "2025-06-05 00:01:00 UTC" in memory.state_reason
    assert bot.paper.sim.fetch_open_orders(symbol) == resting  # nothing cancelled


def test_the_hold_ends_at_the_first_job_that_succeeds(bot: Bot, receiver: Receiver) -> None:
    """A hold that ended is over: a second one within the dedup window is news again."""
    assert bot.runner.tick() is not None
    bot.venue.hold(10 * 60)  # a 10-minute ban
    guards(bot, 10)
    assert len(sent(receiver, "critical: venue_rate_limit")) == 1
    guards(bot, 1)  # the ban is over: the guard reads the account
    assert bot.runner.failures_of("guard") == 0
    bot.venue.hold(5 * 60)  # banned again, 11 minutes after the first
    guards(bot, 2)
    assert len(sent(receiver, "critical: venue_rate_limit")) == 2, receiver.titles()


def test_a_short_retry_after_is_a_failed_job_only(bot: Bot, receiver: Receiver) -> None:
    """A wait within a guard interval is over by the next job: the failed job's warning."""
    assert bot.runner.tick() is not None
    bot.clock.advance_to(bot.clock.now_ms() + MIN)
    bot.venue.hold(30)
    bot.runner.guard()
    assert bot.runner.failures_of("guard") == 1
    assert sent(receiver, "warning: tick_failed:guard")
    assert not sent(receiver, "venue_rate_limit")


def test_a_renewed_longer_ban_is_alerted_again(bot: Bot, receiver: Receiver) -> None:
    """Binance lengthens a repeated ban (2 minutes, then up to 3 days). A ban renewed before
    any job completed was the same incident within the dedup window: the owner read "held
    until 00:04" and never heard of the 3 days."""
    assert bot.runner.tick() is not None
    bot.clock.advance_to(START + MIN)
    bot.venue.hold(180)
    guards(bot, 2)
    assert len(sent(receiver, "critical: venue_rate_limit")) == 1
    bot.venue.hold(3 * DAY_S)
    guards(bot, 30)
    alerts = sent(receiver, "critical: venue_rate_limit")
    assert len(alerts) == 2  # the renewal once, not once a minute
    assert "2025-06-05" in alerts[-1]


def test_the_hold_alerted_is_one_longer_than_the_configured_guard_interval(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The threshold is the guard interval the configuration sets (it was 60 s whatever
    ``runtime.guard_seconds`` said): with guards every 20 s, a 55 s hold spans three of them."""
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]', guard_seconds="20")
    config = load_config(config_path)
    store = open_store(config, create=True)
    try:
        clock = SimClock(START)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        assert runner.long_hold_s == 20
        bot = Bot(runner, paper, store, clock, VenueHold(paper, clock))
        assert bot.runner.tick() is not None
        bot.clock.advance_to(START + MIN)
        bot.venue.hold(55)
        bot.runner.guard()
        assert sent(receiver, "critical: venue_rate_limit")
    finally:
        store.close()


def test_an_ip_ban_without_an_end_is_one_alert_probed_once_a_hold(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Bybit's IP ban names no end. The adapter holds every request the 10 minutes Bybit
    documents as the least; the next job after that probes it once. A 25-minute ban is one
    critical alert saying the venue gave no end (its probes, which find it still on, are the
    same incident), each hold's end recorded for a restart, and the first job that completes
    ends it."""
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    store = open_store(config, create=True)
    try:
        clock = SimClock(START)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        venue = IpBan(paper, clock)
        bot = Bot(runner, paper, store, clock, VenueHold(paper, clock))
        assert bot.runner.tick() is not None
        [symbol] = bot.runner.engine.symbols
        resting = bot.paper.sim.fetch_open_orders(symbol)
        assert resting, "no stop rests: the test would prove nothing"
        bot.clock.advance_to(START + MIN)
        venue.ban(25 * 60)  # lifted at 00:26
        guards(bot, 6)  # 00:02 .. 00:07
        with pytest.raises(VenueHoldRunning, match="gave no end"):
            check_no_venue_hold(store, clock.now_ms(), "db")
        guards(bot, 29)  # .. 00:36
        assert venue.probes == [START + k * MIN for k in (2, 12, 22)]  # one a hold
        [alert] = sent(receiver, "critical: venue_rate_limit")
        assert "gave no end" in alert
        assert "held until 2025-06-02 00:12:00 UTC" in alert
        assert "resting stops stay on the exchange" in alert
        holds = store.recent_events(10, kinds=(EventKind.VENUE_HOLD,))
        ends = sorted(int(e.reason.split("until_ms=")[1].split(")")[0]) for e in holds)
        assert ends == [START + k * MIN for k in (12, 22, 32)]
        assert all("gave no end" in e.reason for e in holds)
        assert bot.runner.failures_of("guard") == 0  # 00:32: answered
        check_no_venue_hold(store, clock.now_ms(), "db")
        memory = store.load_risk_memory()
        assert memory is not None
        assert "IP ban" in memory.state_reason
        assert bot.paper.sim.fetch_open_orders(symbol) == resting  # nothing cancelled
        venue.ban(5 * 60)  # banned again: a new incident, alerted at once
        guards(bot, 1)
        assert len(sent(receiver, "critical: venue_rate_limit")) == 2
    finally:
        store.close()


def test_an_ip_ban_without_an_end_is_alerted_under_a_guard_interval_longer_than_its_hold(
    tmp_path: Path, receiver: Receiver
) -> None:
    """With guards every 15 minutes the 10-minute hold is shorter than a guard interval, yet
    the ban is alerted (it may last far longer), and each probe that finds it on records the
    new hold's end."""
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]', guard_seconds="900")
    config = load_config(config_path)
    store = open_store(config, create=True)
    try:
        clock = SimClock(START)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        venue = IpBan(paper, clock)
        assert runner.tick() is not None
        clock.advance_to(START + MIN)
        venue.ban(40 * 60)  # lifted at 00:41
        for minute in (16, 31, 46):
            clock.advance_to(START + minute * MIN)
            runner.guard()
        assert venue.probes == [START + 16 * MIN, START + 31 * MIN]
        [alert] = sent(receiver, "critical: venue_rate_limit")
        assert "gave no end" in alert
        holds = store.recent_events(10, kinds=(EventKind.VENUE_HOLD,))
        ends = sorted(int(e.reason.split("until_ms=")[1].split(")")[0]) for e in holds)
        assert ends == [START + 26 * MIN, START + 41 * MIN]
        assert runner.failures_of("guard") == 0
    finally:
        store.close()
