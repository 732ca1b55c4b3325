"""Alerts when the host clock steps back (NTP after a drift, a VM resumed with a wrong clock):
the hourly limit and the dedup window count real time elapsed, so a critical alert is neither
held nor swallowed for as long as the clock went back."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

from bot.alerts import Alert, AlertRules, Notifier
from bot.clock import ms_to_datetime
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import Outbox, sent

T0 = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR_MS = 3_600_000


class SteppingClock:
    """Wall time a test can step back; monotonic seconds only go forward (a hand-written fake)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.mono = 1000.0

    def now(self) -> datetime:
        return ms_to_datetime(self.ms)

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.run(seconds)

    def run(self, seconds: float, *, wall_step_ms: int = 0) -> None:
        self.mono += seconds
        self.ms += int(seconds * 1000) + wall_step_ms


def test_the_hourly_limit_frees_up_after_an_hour_even_if_the_clock_went_back(
    store: SqlStore,
) -> None:
    clock = SteppingClock(T0)
    rules = AlertRules(D("0.8"), D(3), dedup_seconds=3600, max_per_hour=2)
    n = Notifier(store, clock, None, rules, account="acct")
    out = Outbox().serve(n)
    sent(n, [Alert("a", "warning", "a"), Alert("b", "warning", "b")])
    assert len(out.sent) == 2
    # Two hours later, after the clock was stepped back three hours: the hour is long over.
    clock.run(2 * 3600, wall_step_ms=-3 * HOUR_MS)
    naked = Alert("no_stop:BTC/USDT:USDT", "critical", "BTC has no stop")
    sent(n, [naked])
    assert out.count(naked.key) == 1


def test_an_incident_going_on_is_reminded_after_the_window_even_if_the_clock_went_back(
    store: SqlStore,
) -> None:
    clock = SteppingClock(T0)
    n = Notifier(store, clock, None, AlertRules(dedup_seconds=3600), account="acct")
    out = Outbox().serve(n)
    naked = Alert("no_stop:BTC/USDT:USDT", "critical", "BTC has no stop")
    assert sent(n, [naked]) == 1
    clock.run(60)
    assert sent(n, [naked]) == 0  # within the window: once
    # Two hours on, the clock stepped back three: the delivery is stamped "in the future".
    clock.run(2 * 3600, wall_step_ms=-3 * HOUR_MS)
    assert sent(n, [naked]) == 1
    assert out.count(naked.key) == 2
