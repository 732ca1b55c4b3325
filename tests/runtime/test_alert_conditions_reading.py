"""The runner's alert conditions are judged on the account as the job left it, and what a
reading of the runner's own records is alerted with the job's events.

* A tick job that decides nothing (``AlreadyDecided``: the close a tick was already for) runs
  no engine job: its conditions come from a reading of its own, not from the last job's (a
  stop cancelled by hand since then went unalerted).
* A job that left no reading to rely on (its positions read failed once) has the runner read
  the account; what that reading records (a position grown outside the bot, one not the
  bot's) is alerted then. The events were collected before the reading, and the next job
  collects only its own: each, recorded once, was never sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.domain.position import Position
from bot.errors import AccountUnreadable
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import Outbox
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02 00:00 UTC, inside the bundled sample
HOUR = 3_600_000
SETTLE_MS = 5_000


@pytest.fixture
def paper(tmp_path: Path) -> Iterator[tuple[Runner, SimulatedExchange, SqlStore, SimClock, Outbox]]:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    clock = SimClock(START + 30 * 24 * HOUR + SETTLE_MS)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    out = Outbox().serve(runner.notifier)
    try:
        yield runner, paper.sim, store, clock, out
    finally:
        runner.notifier.close()
        store.close()


def _holding(runner: Runner, sim: SimulatedExchange, clock: SimClock) -> Position:
    """Scheduled ticks, an hour apart, until the bot holds a position."""
    sym = runner.engine.symbols[0]
    for _ in range(200):
        assert runner.tick_after_close(HOUR, SETTLE_MS) is not None
        pos = sim.fetch_positions([sym]).get(sym)
        if pos is not None and pos.is_open:
            return pos
        clock.advance_to(clock.now_ms() + HOUR)
    raise AssertionError("setup: the policy never took a position on the bundled sample")


def _read_fails_once(sim: SimulatedExchange) -> None:
    """The next positions read fails (as the adapter fails one whose settings answer lacks a
    held contract's row); the one after it reads."""
    original = sim.fetch_positions
    calls = 0

    def flaky(symbols: Sequence[str]) -> dict[str, Position]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AccountUnreadable("positions: leverage setting: no row of this contract")
        return original(symbols)

    sim.fetch_positions = flaky  # type: ignore[method-assign]


def test_a_tick_job_that_decides_nothing_judges_the_account_now(
    paper: tuple[Runner, SimulatedExchange, SqlStore, SimClock, Outbox],
) -> None:
    runner, sim, _store, clock, out = paper
    sym = runner.engine.symbols[0]
    _holding(runner, sim, clock)
    stops = [o for o in sim.fetch_open_orders(sym) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stops
    for o in stops:
        sim.cancel_order(sym, o.client_id)  # cancelled by hand on the venue
    clock.advance_to(clock.now_ms() + 20 * 60_000)
    before = out.count(f"no_stop:{sym}")
    assert runner.tick_after_close(HOUR, SETTLE_MS) is None  # the same close: nothing decided
    assert out.count(f"no_stop:{sym}") == before + 1


@pytest.mark.parametrize("kind", ["added", "foreign"])
def test_what_the_runners_own_reading_records_is_alerted(
    paper: tuple[Runner, SimulatedExchange, SqlStore, SimClock, Outbox], kind: str
) -> None:
    runner, sim, store, clock, out = paper
    sym = runner.engine.symbols[0]
    pos = _holding(runner, sim, clock)
    side = OrderSide.BUY if pos.qty > 0 else OrderSide.SELL
    if kind == "foreign":
        # closed by hand, read flat by a guard, then opened by hand: not the bot's
        against = OrderSide.SELL if side is OrderSide.BUY else OrderSide.BUY
        sim.place_order(
            OrderRequest(
                "hand-close-1",
                sym,
                against,
                OrderType.MARKET,
                OrderPurpose.CLOSE,
                abs(pos.qty),
                True,
            )
        )
        clock.advance_to(clock.now_ms() + 60_000)
        runner.guard()
    sim.place_order(
        OrderRequest(
            f"hand-{kind}-1", sym, side, OrderType.MARKET, OrderPurpose.ENTRY, abs(pos.qty), False
        )
    )
    _read_fails_once(sim)
    clock.advance_to(clock.now_ms() + 60_000)
    runner.guard()  # its reading fails; the runner's own finds the position
    recorded = store.recent_events(50, kinds=(EventKind(kind),))
    assert recorded, f"setup: the runner's reading records the {kind} position"
    titles = out.titles
    assert any(f": {kind}:{sym}" in t for t in titles), titles
