"""``bot.clock.wait_for_news``: a thread's wait for another's news, bounded by the bot's clock
where that clock's time passes by itself (a LiveClock), by real time for what happens outside
it (a network request), and ended by a notify whatever the clock."""

from __future__ import annotations

import threading

from bot.clock import LiveClock, SimClock, wait_for_news


def test_a_sim_clock_time_does_not_end_a_wait_a_notify_does() -> None:
    cond = threading.Condition()
    woke = threading.Event()

    def waiter() -> None:
        with cond:
            wait_for_news(cond, SimClock(0), clock_s=0.001)  # its time passes only when moved
        woke.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert not woke.wait(0.3)  # (had the 1 ms ended it, it would have woken by now)
    with cond:
        cond.notify_all()
    assert woke.wait(10)
    thread.join(10)


def test_real_time_ends_a_wait_on_any_clock_and_a_live_clock_s_time_does() -> None:
    cond = threading.Condition()
    with cond:
        wait_for_news(cond, SimClock(0), real_s=0.01)  # returns
        wait_for_news(cond, LiveClock(), clock_s=0.01)  # returns
        wait_for_news(cond, LiveClock(), clock_s=-1.0)  # a bound already passed: at once
        wait_for_news(cond, SimClock(0), clock_s=5.0, real_s=0.0)
