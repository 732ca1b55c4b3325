"""Prometheus metrics of the account and of the running bot.

:class:`AccountCollector` reads the store at each scrape (so ``bot serve`` in its own process
exports the same figures as the bot); :class:`RuntimeMetrics` adds what only the bot's process
knows (tick durations, exchange retries). Names follow Prometheus conventions: base units
(``_seconds``, ``_ratio`` for fractions), ``_total`` counters, and labels of low cardinality
(``symbol`` from the configuration, ``state``/``status``/``kind`` from fixed sets).

Money is in the account's quote currency (USDT), named in the help texts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.clock import Clock, LiveClock, ms_to_datetime
from bot.dashboard.liveness import Failure, job_silence_ms
from bot.dashboard.liveness import jobs_failing as liveness_jobs_failing
from bot.dashboard.model import Overview, Source
from bot.domain.enums import OrderStatus, TradingState
from bot.store import views
from bot.store.sql import SqlStore

TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class AccountCollector(Collector):
    """The account's state from the store, computed at every scrape."""

    def __init__(self, source: Source, store: SqlStore | None, clock: Clock) -> None:
        self.source = source
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now_ms = self.clock.now_ms()
        ov = self.source.overview(now_ms)
        yield from _account_metrics(ov, now_ms)
        yield from _contract_metrics(ov)
        if self.store is not None:
            yield from _store_counters(self.store)


def age_seconds(ov: Overview, now_ms: int, ms: int) -> float | None:
    """Seconds since ``ms``; none for a replay's times, which are replayed time."""
    return None if ov.replayed else max(0, now_ms - ms) / 1000


def _one(name: str, doc: str, value: Any) -> Iterator[Metric]:
    """One unlabelled gauge; none when ``value`` is unknown (never a zero)."""
    if value is not None:
        g = _gauge(name, doc)
        g.add_metric([], float(value))
        yield g


def _account_metrics(ov: Overview, now_ms: int) -> Iterator[Metric]:
    one = _one
    yield from one("bot_equity", f"account equity, {ov.quote} (wallet + unrealised PnL)", ov.equity)
    yield from one("bot_wallet_balance", f"wallet balance, {ov.quote}", ov.wallet)
    yield from one(
        "bot_peak_equity", f"equity peak the drawdown is measured from, {ov.quote}", ov.peak_equity
    )
    yield from one("bot_drawdown_ratio", "drawdown from the equity peak (fraction)", ov.drawdown)
    yield from one(
        "bot_drawdown_limit_ratio",
        "drawdown at which trading halts (fraction)",
        ov.max_drawdown_limit or None,
    )
    yield from one(
        "bot_daily_loss_ratio", "loss since the UTC day's start (fraction of it)", ov.daily_loss
    )
    yield from one(
        "bot_daily_loss_limit_ratio", "daily loss limit (fraction)", ov.daily_loss_limit or None
    )
    # Infinity (positions with no equity left) is exported as +Inf: the worst case must still
    # trip `bot_margin_ratio > 0.8`, not vanish from the series.
    yield from one(
        "bot_margin_ratio",
        "maintenance / margin balance of the cross positions or the worst isolated one "
        "(1: liquidation)",
        ov.margin_ratio,
    )
    state = _gauge("bot_trading_state", "1 for the current trading state", ["state"])
    if ov.state in {s.value for s in TradingState}:
        # (no risk memory recorded yet: the state is unknown, no series, not 0 for every state)
        for s in TradingState:
            state.add_metric([s.value], 1.0 if ov.state == s.value else 0.0)
    yield state
    if ov.kind == "account":
        yield from one(
            "bot_alerts_not_sent",
            "critical alerts that reached none of the alert destinations and are still owed to "
            "them (destination failing, or held by the hourly limit); the bot retries them",
            len(ov.missed_alerts),
        )
    if ov.last_tick_ms is not None or ov.unreadable_since_ms is not None:
        # (an account never read is neither readable nor not: no series)
        yield from one(
            "bot_account_unreadable",
            "1: the newest reads of the account failed; its figures are as of the last reading",
            1 if ov.unreadable_since_ms is not None else 0,
        )
    if ov.last_tick_ms is not None:
        yield from one(
            "bot_last_tick_timestamp_seconds",
            "time of the last tick (Unix seconds)",
            ov.last_tick_ms / 1000,
        )
        yield from one(
            "bot_last_tick_age_seconds",
            "seconds since the last tick",
            age_seconds(ov, now_ms, ov.last_tick_ms),
        )
    yield from _job_metrics(ov, now_ms)
    decided = [c.decided_ms for c in ov.contracts if c.decided_ms is not None]
    if decided:
        yield from one(
            "bot_data_age_seconds",
            "seconds since the last decision on market data",
            age_seconds(ov, now_ms, max(decided)),
        )
    if ov.interval_ms:
        yield from one(
            "bot_tick_interval_seconds", "the policy's decision interval", ov.interval_ms / 1000
        )
    yield from one(
        "bot_pending_commands", "operator commands not yet applied by the bot", len(ov.pending)
    )


CONTRACT_GAUGES = {
    "notional": ("bot_position_notional", "position notional in the quote currency"),
    "leverage": ("bot_position_leverage", "notional / the contract's share of equity"),
    "target": ("bot_target_leverage", "the policy's target leverage"),
    "liq": ("bot_liquidation_distance_ratio", "|mark - liquidation price| / mark"),
    "liq_vol": ("bot_liquidation_distance_vol_units", "liquidation distance in daily vols"),
    "funding": ("bot_funding_rate_ratio", "funding rate per interval (> 0: longs pay)"),
    "nostop": (
        "bot_position_without_stop",
        "1: an open position has no resting stop-loss, or part of it none covers",
    ),
}


def _job_metrics(ov: Overview, now_ms: int) -> Iterator[Metric]:
    """The bot's liveness: its last completed job, its guard interval, a venue's hold."""
    if ov.last_job_ms is not None:
        yield from _one(
            "bot_last_job_timestamp_seconds",
            "time the bot last completed a job: tick, guard, funding or rollover (Unix seconds)",
            ov.last_job_ms / 1000,
        )
        yield from _one(
            "bot_last_job_age_seconds",
            "seconds since the bot last completed a job",
            age_seconds(ov, now_ms, ov.last_job_ms),
        )
    if ov.venue_hold_until_ms is not None:
        yield from _one(
            "bot_venue_hold_until_timestamp_seconds",
            "end of the venue's recorded hold on every request (a 429/418 Retry-After, an IP "
            "ban), while it is in force (Unix seconds): jobs fail and a start is refused until",
            ov.venue_hold_until_ms / 1000,
        )
    if ov.kind == "account":
        yield from _one(
            "bot_guard_interval_seconds",
            "the bot's guard interval: a running bot completes a job at least this often",
            ov.guard_ms / 1000,
        )


def _contract_metrics(ov: Overview) -> Iterator[Metric]:
    families = {k: _gauge(name, doc, ["symbol"]) for k, (name, doc) in CONTRACT_GAUGES.items()}
    for c in ov.contracts:
        lbl = [c.symbol]
        values = {
            "notional": c.notional,
            "leverage": c.leverage,
            "target": c.target_leverage,
            "liq": c.liq_distance,
            "liq_vol": c.liq_distance_vol,
            "funding": c.funding_rate,
            # a position not known (none recorded yet), or one the bot does not manage (its stop
            # is not the bot's order), is not reported as protected
            # nor is one whose stop the bot could not see since the account became unreadable
            "nostop": 1
            if c.unprotected
            else None
            if c.qty is None or c.foreign or c.unverified_since_ms is not None
            else 0,
        }
        for key, value in values.items():
            if value is not None:
                families[key].add_metric(lbl, float(value))
    yield from families.values()


def _store_counters(store: SqlStore) -> Iterator[Metric]:
    orders = CounterMetricFamily("bot_orders", "orders by outcome", labels=["status"])
    counts = views.order_counts(store)
    for status in OrderStatus:
        orders.add_metric([status.value], float(counts.get(status.value, 0)))
    yield orders
    errors = CounterMetricFamily(
        "bot_exchange_errors", "orders the exchange answered with an error"
    )
    errors.add_metric([], float(views.orders_with_errors(store)))
    yield errors
    kinds = views.event_counts(store)
    failed = CounterMetricFamily("bot_tick_failures", "jobs (ticks, guards) that failed")
    failed.add_metric([], float(kinds.get("tick_failed", 0)))
    yield failed
    denied = CounterMetricFamily("bot_risk_denials", "orders the risk gate refused")
    denied.add_metric([], float(kinds.get("denied", 0)))
    yield denied


@dataclass
class RuntimeMetrics:
    """What the bot's own process measures; registered next to the account collector."""

    tick_seconds: Histogram
    retries: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RuntimeMetrics:
        metrics = cls(
            Histogram(
                "bot_tick_duration_seconds",
                "wall time of one decision tick",
                buckets=TICK_BUCKETS,
                registry=registry,
            ),
            Counter(
                "bot_exchange_retries",
                "exchange calls retried after a transient error",
                registry=registry,
                labelnames=["call"],
            ),
        )
        for call in ("read", "order"):  # exported at 0 from the start, so rate() works
            metrics.retries.labels(call)
        return metrics

    def time_ticks(self, engine: Any, wall: Clock | None = None) -> None:
        """Measure every ``engine.tick()`` in wall time (replays run on a simulated clock)."""
        clock = wall or LiveClock()
        original: Callable[[], Any] = engine.tick

        def timed() -> Any:
            started = clock.monotonic()
            try:
                return original()
            finally:
                self.tick_seconds.observe(clock.monotonic() - started)

        # An instance attribute shadows the method: the runner calls engine.tick() unchanged.
        engine.tick = timed

    def count_retries(self) -> int:
        """Count the retry module's retry lines (one per retried call); returns the sink id."""

        def sink(message: Any) -> None:
            text = message.record["message"]
            self.retries.labels("order" if text.startswith("order ") else "read").inc()

        def wanted(record: Any) -> bool:
            msg: str = record["message"]
            return record["name"] == "bot.exchange.retry" and (
                msg.startswith("retry ") or (msg.startswith("order ") and " attempt " in msg)
            )

        return logger.add(sink, level="WARNING", filter=wanted, format="{message}")


def build_registry(
    source: Source, store: SqlStore | None, clock: Clock
) -> tuple[CollectorRegistry, AccountCollector]:
    registry = CollectorRegistry(auto_describe=False)
    collector = AccountCollector(source, store, clock)
    registry.register(collector)
    return registry, collector


def not_running(ov: Overview, now_ms: int) -> str | None:
    """Why the bot seems down, in words (:func:`job_silence_ms`); None when it does not, and
    when it runs but its jobs fail (:func:`jobs_failing`: its failures are recorded)."""
    if ov.kind != "account" or ov.last_job_ms is None or ov.replayed:
        return None
    silent = job_silence_ms(ov.last_job_ms, ov.guard_ms, now_ms)
    if silent is None or jobs_failing(ov, now_ms) is not None:
        return None
    return (
        f"no job completed for {silent / 1000:.0f} s (last: {ov.last_job} at "
        f"{ms_to_datetime(ov.last_job_ms):%Y-%m-%d %H:%M:%S} UTC); the bot process may be down"
    )


def jobs_failing(ov: Overview, now_ms: int) -> str | None:
    """The words "bot running, its jobs fail: <reason>" of bot.dashboard.liveness, or None."""
    if ov.kind != "account" or ov.replayed or ov.failed_ms is None or ov.failed is None:
        return None
    failure = Failure(ov.failed_ms, ov.failed)
    return liveness_jobs_failing(failure, ov.last_job_ms, ov.last_job, ov.guard_ms, now_ms)


def health(ov: Overview, now_ms: int) -> tuple[bool, str]:
    """Healthy while the bot completes its jobs (guards included: a 1d policy ticks once a
    day), its last tick is at most two decision intervals old and the newest read of the
    account succeeded. With no heartbeat recorded (a bot that predates it), on the tick alone."""
    if ov.kind != "account":
        return True, "simulation output (no running bot)"
    if ov.replayed:
        return True, (
            "a replay's state database (bot run --replay): its jobs are stamped in replayed "
            "time, which this dashboard, on the wall clock, does not judge"
        )
    # (a hold of the venue's in force is named whatever else is said: every job fails until
    # its end, and a start is refused before it)
    hold = f"; {ov.venue_hold}" if ov.venue_hold else ""
    down = not_running(ov, now_ms) or jobs_failing(ov, now_ms)
    if down is not None:
        return False, down + hold
    ok, detail = _tick_health(ov, now_ms)
    if ov.last_job_ms is None:
        return ok, (
            f"{detail}; no job heartbeat recorded (the bot predates it, or has completed no "
            f"job yet): judged on the last tick only{hold}"
        )
    silent = max(0, now_ms - ov.last_job_ms)
    return ok, f"{detail}; last job ({ov.last_job}) {silent / 1000:.0f} s ago{hold}"


def _tick_health(ov: Overview, now_ms: int) -> tuple[bool, str]:
    """The last tick at most two decision intervals old, and the newest read of the account
    succeeded (a bot whose guards run but whose ticks fail is not healthy)."""
    if ov.last_tick_ms is None:
        return False, "no tick recorded yet"
    age = now_ms - ov.last_tick_ms
    limit = 2 * ov.interval_ms
    if age > limit:
        return (
            False,
            f"last tick {age / 1000:.0f} s ago, more than two intervals ({limit / 1000:.0f} s)",
        )
    if ov.unreadable_since_ms is not None:
        # The bot runs, but what the account holds now is not known: not healthy.
        return (
            False,
            f"account unreadable since {max(0, now_ms - ov.unreadable_since_ms) / 1000:.0f} s "
            f"({ov.unreadable_reads} reads in a row); figures as of the last tick, "
            f"{age / 1000:.0f} s ago",
        )
    return True, f"last tick {age / 1000:.0f} s ago"
