"""The paper bot's guard jobs inside a crash, on a venue that rate-limits account reads: the
drawdown halt acts within two guard jobs and closes the position, and the trader gets the
critical state alert (and a warning for each failed job), also when the job that halted failed
after its closes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from bot.alerts import Alert
from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import TradingState
from bot.domain.position import Balance
from bot.errors import RateLimited
from bot.runtime.runner import Runner
from bot.sim.paper import PaperExchange
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000


class Delivered:
    """The runner's notifier: what it was asked to send."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def notify(self, alerts: Sequence[Alert]) -> int:
        self.alerts.extend(alerts)
        return len(alerts)

    def resolved(self, keys: Iterable[str]) -> None:
        list(keys)


class RateLimitedBalance:
    """The paper venue's balance read, rate-limited (Binance -1003) on the calls ``limited``
    says (counted from 1)."""

    def __init__(self, paper: PaperExchange, limited: Callable[[int], bool]) -> None:
        self.true_read = paper.fetch_balance
        self.limited = limited
        self.reads = 0
        paper.fetch_balance = self.read  # type: ignore[method-assign]

    def read(self) -> Balance:
        self.reads += 1
        if self.limited(self.reads):
            raise RateLimited("binance 429 {-1003: Too many requests; current limit is 2400}")
        return self.true_read()


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[tuple[Runner, PaperExchange, SqlStore, SimClock]]:
    config = load_config(write_config(tmp_path, contracts=1))
    clock = SimClock(START)
    store = open_store(config)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        yield runner, paper, store, clock
    finally:
        store.close()


@pytest.mark.parametrize(
    "limited",
    [
        # Defect (see tests/unit/test_limits_in_a_crash.py): each guard read the account, saw
        # the drawdown, read it again at once for confirmation, met the rate limit and failed;
        # after `max_failures` such jobs the account went to `reducing` and kept its
        # position, the halt never came. Now the second job's reading confirms the first's.
        pytest.param(lambda n: n % 2 == 0, id="every-second-read"),
        # Defect: the halt and its closes went through, the balance read after the closes met
        # the rate limit and failed the job, and a failed job alerted its failure only: the
        # halt recorded in it was never sent (the next job alerts only its own events).
        pytest.param(lambda n: n == 3, id="the-read-after-the-closes"),
    ],
)
def test_guard_jobs_halt_and_alert_when_reads_are_rate_limited(
    bot: tuple[Runner, PaperExchange, SqlStore, SimClock], limited: Callable[[int], bool]
) -> None:
    runner, paper, store, clock = bot
    delivered = Delivered()
    runner.notifier = delivered  # type: ignore[assignment]
    assert runner.tick() is not None
    [symbol] = runner.engine.symbols
    assert paper.fetch_positions([symbol])[symbol].qty != 0
    paper.sim.book.wallet *= Decimal("0.5")  # the crash: past the drawdown limit
    RateLimitedBalance(paper, limited)
    for _ in range(2):
        clock.advance_to(clock.now_ms() + MINUTE)
        runner.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED
    assert "drawdown" in memory.state_reason
    assert paper.sim.fetch_positions([symbol]).get(symbol) is None
    keys = [a.key for a in delivered.alerts]
    assert "tick_failed" in keys  # a failed guard, at once
    [halt] = [a for a in delivered.alerts if a.key.startswith("state:halted@")]
    assert halt.severity == "critical"
