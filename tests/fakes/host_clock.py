"""The host's clock as a test moves it, read by the whole process: the bot, ccxt (its request
timestamps and the offset it measures against the venue) and the loopback server (whose time is
this clock's plus ``server_time_offset_ms``: a venue ahead of or behind the host).

Real time runs on underneath; :meth:`HostClock.stall` moves the wall and the monotonic time
together (time that passed while the process was stopped or a call hung), and ``sleep`` moves
them instead of blocking, so a bot that waits on the clock waits no real time;
:meth:`HostClock.step` moves the wall clock alone (NTP stepping it, a person setting it).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from ccxt.base.exchange import Exchange

from bot.clock import LiveClock, ms_to_datetime


class HostClock:
    """Real time plus ``shift_ms`` (wall and monotonic alike)."""

    def __init__(self, shift_ms: int = 0) -> None:
        self._live = LiveClock()
        self.shift_ms = shift_ms
        self.stepped_ms = 0  # the wall clock's steps (the monotonic clock takes none)
        self.slept_s = 0.0  # what the bot waited on this clock

    def now_ms(self) -> int:
        return self._live.now_ms() + self.shift_ms + self.stepped_ms

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    def monotonic(self) -> float:
        return self._live.monotonic() + self.shift_ms / 1000

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept_s += seconds
            self.stall(round(seconds * 1000))

    def stall(self, ms: int) -> None:
        """``ms`` pass at once for the host (and the venue, whose clock is this one's)."""
        self.shift_ms += ms

    def step(self, ms: int) -> None:
        """The wall clock steps by ``ms`` (no time passes: the monotonic clock stays)."""
        self.stepped_ms += ms

    def move_to(self, ms: int) -> None:
        """The host's clock reads ``ms`` now (time passes: no step of the wall clock)."""
        self.stall(ms - self.now_ms())


def ccxt_reads(clock: HostClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """ccxt reads ``clock`` as the host's time, as it reads the system clock in production
    (where the bot's ``LiveClock`` is that clock too)."""
    monkeypatch.setattr(Exchange, "milliseconds", staticmethod(clock.now_ms))
