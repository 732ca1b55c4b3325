"""Whether the bot runs, as its state database tells it (shared by ``/healthz``, the dashboard's
overview and ``bot status``; no web package needed, so ``bot status`` runs without the
``dashboard`` extra).

Every job that completes replaces the heartbeat; every job that fails records a
``tick_failed`` event (``bot.runtime.runner``). No heartbeat for longer than a running bot
allows says only that no job completed: a bot whose process died, and a bot whose every job
fails (a venue holding its requests after a 418 ban, an answer it cannot read), look the same
on the heartbeat alone. A failure recorded since the last completed job, itself within that
limit, tells them apart: the process runs and records its failures. The advice differs: a dead
bot is restarted, while a start during a venue's hold is refused (``bot.runtime.venue_hold``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.clock import utc_text
from bot.domain.enums import EventKind
from bot.ports.store import StorePort

# No job for this long, whatever the guard interval: a guard of 60 s may run late by a slow
# tick (one worker runs every job) without reading as a dead bot.
MIN_JOB_SILENCE_MS = 180_000


def job_silence_limit_ms(guard_ms: int) -> int:
    """Longest a running bot goes without completing a job: three guard intervals, at least
    three minutes (the ``BotNotRunning`` rule in docs/monitoring/alerts.yml says the same)."""
    return max(3 * guard_ms, MIN_JOB_SILENCE_MS)


def job_silence_ms(last_job_ms: int | None, guard_ms: int, now_ms: int) -> int | None:
    """How long no job (tick, guard...) has completed, when longer than a running bot allows
    (:func:`job_silence_limit_ms`); None when one did, or when no heartbeat is recorded."""
    if last_job_ms is None:
        return None
    silent = now_ms - last_job_ms
    return silent if silent > job_silence_limit_ms(guard_ms) else None


@dataclass(frozen=True, slots=True)
class Failure:
    """The newest job that failed (its ``tick_failed`` event) with no job completed since."""

    ts_ms: int
    reason: str  # as recorded: "guard: RateLimited: ... (10 failed guard jobs in a row)"


def failure_since(store: StorePort, last_job_ms: int | None) -> Failure | None:
    """The newest failed job when it is newer than the last completed one (``last_job_ms``,
    the heartbeat; None: none completed); None when none failed since."""
    newest = store.recent_events(1, kinds=(EventKind.TICK_FAILED,))
    if not newest or (last_job_ms is not None and newest[0].ts_ms <= last_job_ms):
        return None
    return Failure(newest[0].ts_ms, newest[0].reason)


def jobs_failing(
    failure: Failure | None,
    last_job_ms: int | None,
    last_job: str | None,
    guard_ms: int,
    now_ms: int,
) -> str | None:
    """The words "bot running, its jobs fail: <the last failure>" when no job completed for
    longer than a running bot allows (or none ever did) but one failed within that time: the
    process runs, its jobs do not complete. None otherwise: jobs complete, or the failures
    stopped too (the process may be down: :func:`job_silence_ms`)."""
    if failure is None:
        return None
    limit = job_silence_limit_ms(guard_ms)
    if last_job_ms is not None and job_silence_ms(last_job_ms, guard_ms, now_ms) is None:
        return None  # a job completed within the limit: running, whatever failed since
    if now_ms - failure.ts_ms > limit:
        return None  # nothing failed within the limit either: no sign of the process
    since = (
        f"no job completed for {(now_ms - last_job_ms) // 1000} s (last: {last_job} at "
        f"{utc_text(last_job_ms)})"
        if last_job_ms is not None
        else "no job completed yet"
    )
    return (
        f"bot running, its jobs fail: {failure.reason}; the last failed "
        f"{max(0, now_ms - failure.ts_ms) // 1000} s ago, {since}"
    )
