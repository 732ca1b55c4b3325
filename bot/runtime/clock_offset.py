"""The host clock against the venue's, for live trading.

Binance refuses a signed request whose ``timestamp`` is more than 1 s ahead of its own clock or
older than the receive window (``recvWindow``, 10 s by default), with -1021 (ccxt/ccxt#2281;
"Timing security" in https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info);
Bybit the same with its own window (https://bybit-exchange.github.io/docs/v5/guide). ccxt
signs with the host's time minus the offset it measured (``adjustForTimeDifference``), which
the bot re-measures after a -1021 and every hour (the ``clock-resync`` job of the scheduler,
:data:`bot.runtime.scheduler.CLOCK_RESYNC_SECONDS`: ccxt measures it once, at load_markets),
and before the next job when the wall clock stepped since the last one (the runner's
:class:`bot.clock.WallSteps`: the offset measured before a step is wrong by the step). The
scheduler runs the jobs planned at the venue's times (candle closes, funding settlements)
through the same offset, and moves them when a measurement moves it
(:class:`bot.runtime.scheduler.VenueSchedule`).

A measured offset is corrected for, but it is a symptom: a host clock that is off by more than
a second keeps drifting (no NTP, a VM resumed with a wrong clock), and between two measurements
the drift lands signed requests, protective stops included, outside the window. So an offset
beyond :data:`WARN_OFFSET_MS` (Binance's 1 s "ahead" tolerance) is a ``clock`` event and a
warning alert naming it, at start and at every resync; one at or beyond the receive window is
critical (every signed request depends on the correction being fresh). A measurement that
fails is a ``clock`` event too, never a crash: the next one comes an hour later, and a -1021
re-measures at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from loguru import logger

from bot.alerts import Alert, Notifier
from bot.clock import Clock
from bot.domain.enums import EventKind
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.ports.store import StorePort
from bot.runtime.events import record_event_now

WARN_OFFSET_MS = 1000  # Binance refuses a request stamped more than 1 s ahead of its clock
ALERT_KEY = "clock_offset"
# Past the receive window: a key of its own. A warning of the same key delivered within the
# dedup window (an hour, the resync's own period) made the escalation a duplicate, never sent.
CRITICAL_KEY = "clock_offset_critical"


@dataclass(slots=True)
class ClockOffsetCheck:
    """Measures the offset (at start, then as the hourly ``clock-resync`` job) and reports one
    too large or one that cannot be measured. Never raises."""

    exchange: CcxtExchange
    store: StorePort
    notifier: Notifier
    clock: Clock
    venue: str

    def at_start(self) -> int | None:
        """Measure at the live start; the offset in ms (host ahead > 0), None if unmeasured."""
        offset, report = self._measure("at start")
        report()
        return offset

    def resync(
        self, when: str = "hourly resync", *, deferred: bool = False
    ) -> tuple[bool, Callable[[], None]]:
        """Re-measure, sign with the new offset, report as at start: the scheduled job, or
        ``when`` the runner saw the wall clock step between two jobs. Whether the offset was
        measured, and the report: made already, or with ``deferred`` left to the caller (the
        ``clock`` event and the alert are written to the state database: after a wall-clock
        step the runner measures before the checks every job makes first, and reports once
        they have passed, never into a database another bot took or one replaced)."""
        offset, report = self._measure(when)
        if not deferred:
            report()
            return offset is not None, _reported
        return offset is not None, report

    def _measure(self, when: str) -> tuple[int | None, Callable[[], None]]:
        """Measure now (no database); the offset and what reports it."""
        try:
            offset = self.exchange.measure_clock_offset()
        except Exception as exc:
            reason = (
                f"clock offset to {self.venue} not measured ({when}): "
                f"{type(exc).__name__}: {exc}; signing goes on with the last offset measured"
            )
            logger.warning("{}", reason)
            return None, partial(self._record, reason, self.clock.now_ms())
        if abs(offset) <= WARN_OFFSET_MS:
            logger.info("clock offset to {} ({}): {:+d} ms", self.venue, when, offset)
            return offset, self._resolved
        window = self.exchange.recv_window_ms
        critical = abs(offset) >= window
        reason = (
            f"the host clock is {abs(offset) / 1000:.1f} s "
            f"{'ahead of' if offset > 0 else 'behind'} {self.venue}'s ({when}: offset "
            f"{offset:+d} ms, warned above {WARN_OFFSET_MS / 1000:g} s): signed requests, "
            "stops included, are refused when stamped more than 1 s ahead of the venue or "
            f"{window / 1000:g} s behind it (recvWindow); the bot corrects by the offset "
            "measured, but a clock this far off drifts between measurements. Sync the host "
            "clock (NTP: chrony or systemd-timesyncd)"
        )
        logger.log("CRITICAL" if critical else "WARNING", "{}", reason)
        return offset, partial(self._report_off, reason, self.clock.now_ms(), critical=critical)

    def _report_off(self, reason: str, at_ms: int, *, critical: bool) -> None:
        self._record(reason, at_ms)
        if critical:
            self._alert(Alert(CRITICAL_KEY, "critical", reason))
        else:
            self.notifier.resolved([CRITICAL_KEY])  # within the window again: that one is over
            self._alert(Alert(ALERT_KEY, "warning", reason))

    def _record(self, reason: str, at_ms: int) -> None:
        """The ``clock`` event, at the measurement's time (reported after it, deferred)."""
        try:
            record_event_now(self.store, at_ms, EventKind.CLOCK, None, reason)
        except Exception as exc:  # the alert still goes out; the next job reports the store
            logger.error("the clock event cannot be recorded: {}: {}", type(exc).__name__, exc)

    def _alert(self, alert: Alert) -> None:
        try:
            self.notifier.notify([alert])
        except Exception as exc:
            logger.error("the clock alert cannot be sent: {}: {}", type(exc).__name__, exc)

    def _resolved(self) -> None:
        # back within the threshold: a clock that drifts off again is a new incident
        self.notifier.resolved([ALERT_KEY, CRITICAL_KEY])


def _reported() -> None:
    """The report of a measurement already reported."""
