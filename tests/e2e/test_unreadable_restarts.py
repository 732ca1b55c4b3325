"""A bot restarted in a loop on a venue that answers garbage still reaches ``reducing``.

Through the real ccxt path (loopback Binance USD-M): each run builds the live bot anew over one
SQLite store, as a supervisor restarting it would, and meets a garbled positions answer. The
count of unreadable reads in a row carries over from run to run, so the limit
(``risk.max_unreadable_reads``) is reached across the restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.domain.enums import EventKind, TradingState
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.e2e.test_garbled_account import (  # noqa: F401 (fixtures)
    BTC,
    KEY,
    SECRET,
    backend,
    server,
)
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.live_setup import live_config_text, start_live, stop_live

LIMIT = 3
Run = Callable[[], tuple[Runner, SqlStore]]


@pytest.fixture
def start_bot(tmp_path: Path, server: LoopbackBinance) -> Iterator[Run]:  # noqa: F811
    """Build the live bot over the same store, as each start of the process does."""
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="loop",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            max_unreadable_reads=LIMIT,
        )
    )
    started: list[tuple[Runner, SqlStore]] = []

    def start() -> tuple[Runner, SqlStore]:
        if started:  # the previous process is gone
            stop_live(*started[-1])
        started.append(start_live(path, KEY, SECRET))
        return started[-1]

    yield start
    if started:
        stop_live(*started[-1])


def test_each_restart_meets_garbage_and_the_limit_is_still_reached(
    start_bot: Run,
    server: LoopbackBinance,  # noqa: F811
    backend: SimulatedExchange,  # noqa: F811
) -> None:
    run, _ = start_bot()
    assert run.tick() is not None  # a protected position
    qty = backend.fetch_positions([BTC])[BTC].qty
    server.inject(Fault("/fapi/v3/positionRisk", "GET", kind="garbled_json", times=1000))

    for n in range(1, LIMIT + 1):  # one garbled read per run, then the supervisor restarts it
        run, store = start_bot()
        result = run.tick()
        assert result is not None
        assert result.unreadable is not None
        memory = store.load_risk_memory()
        assert memory is not None
        expected = TradingState.REDUCING if n == LIMIT else TradingState.ACTIVE
        assert memory.state is expected, f"run {n}"
    assert memory is not None
    assert memory.state_reason.startswith(f"account unreadable: {LIMIT} reads in a row")
    assert backend.fetch_positions([BTC])[BTC].qty == qty  # nothing was traded meanwhile

    server.clear_faults()
    run, store = start_bot()  # the venue answers properly again
    result = run.tick()
    assert result is not None
    assert result.unreadable is None
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE
    kinds = [e.kind for e in store.recent_events(100)]
    assert kinds.count(EventKind.READABLE) == 1
