"""A paper bot killed (kill -9) in the middle of a tick, right after one of its own reductions
filled and was recorded (intent filled, fill row) but before the tick recorded its positions,
is restarted: the restart takes that reduction for the bot's own, as the uninterrupted run
does, not for one "outside the bot" (an ``exit`` event and a 24 h re-entry cooldown under
``policies/vol_target.toml``), and the re-run tick decides what the uninterrupted one did (no
second cut of what was already cut).

Two runs of the paper bot on the bundled sample (the simulated exchange, the SQL store on a
SQLite file): one uninterrupted, one killed and restarted the way ``bot run --replay`` restarts
(the clock where the saved paper account stopped). Found by killing the paper runner at random
times: every "outside the bot" exit it recorded was the bot's own filled order of the killed
tick.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.domain.position import Position
from bot.runtime.runner import Runner
from bot.sim.paper_state import processed_ms
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

pytestmark = pytest.mark.slow

HOUR = 3_600_000
START = 1_748_822_400_000  # 2025-06-02T00:00Z, the configured start
# Past the first tick that cuts SOL on this data (2025-06-06 20:00 with fixed slippage), and a
# few ticks after it: the restarted run must go on as the uninterrupted one.
END = START + 122 * HOUR
KILLED_ON = "-rd-SOL"  # the first of the bot's reductions of SOL that fills


class Killed(BaseException):
    """kill -9: nothing after this point of the job runs (not an Exception: the runner records
    a failed job, a dead process records nothing)."""


def config_in(directory: Path) -> Path:
    path = write_config(directory)
    text = path.read_text()
    # (fixed slippage: the run that cuts SOL with positions held on every contract, the case
    # found; the kill itself does not depend on it)
    assert 'slippage_model = "range_impact"' in text
    path.write_text(text.replace('slippage_model = "range_impact"', 'slippage_model = "fixed"'))
    return path


def start(path: Path) -> tuple[SqlStore, SimClock, Runner]:
    """What ``bot run --replay`` does at a start: the clock where the saved account stopped."""
    config = load_config(path)
    store = open_store(config, create=True)
    saved = store.load_paper_state(config.account.name)
    clock = SimClock(max(START, processed_ms(saved)) if saved is not None else START)
    runner, _ = build_paper(config, store, replay=config.data.dir, clock=clock)
    return store, clock, runner


def die_after_recorded_fill(store: SqlStore) -> None:
    """The process dies as soon as the first reduction of SOL is recorded filled."""
    update = store.update_order

    def update_then_die(client_id: str, status: OrderStatus, *args: Any, **kwargs: Any) -> None:
        update(client_id, status, *args, **kwargs)
        if KILLED_ON in client_id and status is OrderStatus.FILLED:
            raise Killed(client_id)

    store.update_order = update_then_die  # type: ignore[method-assign]


Outcome = tuple[
    list[tuple[int, str | None, str]],  # exit and cooldown events
    list[tuple[int, str, OrderPurpose, str, Decimal]],  # the bot's filled orders, not stops
    list[Position],  # positions as last recorded
]


def run(path: Path, *, kill: bool) -> tuple[Outcome, str | None]:
    """Hourly ticks from START to END; with ``kill``, the process dies once (see above) and
    is started again at once, its start-up tick at the time the account stopped."""
    store, clock, runner = start(path)
    if kill:
        die_after_recorded_fill(store)
    killed: str | None = None
    try:
        t = START
        while t <= END:
            clock.advance_to(t)
            try:
                runner.tick()
            except Killed as exc:
                killed = str(exc)
                store.close()  # (the process is gone; its connections with it)
                store, clock, runner = start(path)
                assert clock.now_ms() == t  # the start-up tick re-runs the killed one
                runner.tick()
            t += HOUR
        events = store.recent_events(10_000, kinds=(EventKind.EXIT, EventKind.COOLDOWN))
        orders = store.recent_orders(100_000)
        latest = store.latest_positions()
    finally:
        store.close()
    assert latest is not None
    outcome: Outcome = (
        sorted((e.ts_ms, e.symbol, e.reason) for e in events),
        sorted(
            (r.created_ms, r.request.symbol, r.request.purpose, r.request.side.value, r.filled)
            for r in orders
            if r.filled > 0 and not r.request.purpose.is_protective
        ),
        latest[1],
    )
    return outcome, killed


def test_a_restart_after_a_kill_mid_tick_keeps_the_bots_own_reduction_its_own(
    tmp_path: Path,
) -> None:
    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    (events, orders, positions), _ = run(config_in(tmp_path / "whole"), kill=False)
    (k_events, k_orders, k_positions), killed = run(config_in(tmp_path / "killed"), kill=True)
    assert killed is not None, "no reduction of SOL filled: the data or the policy moved"

    outside = [e for e in k_events if e not in events]
    assert outside == [], f"the bot's own {killed} taken for an exit outside the bot"
    # the same orders from the killed tick on: the re-run tick sends what the killed one did
    # not, and cuts nothing twice; no cooldown holds back the ticks after it
    assert k_orders == orders
    assert k_positions == positions
