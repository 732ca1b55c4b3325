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

from bot.bootstrap import Secrets, build_live, open_store
from bot.config.loader import load_config
from bot.domain.enums import EventKind, TradingState
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.e2e.test_garbled_account import (  # noqa: F401 (fixtures)
    BTC,
    KEY,
    ROOT,
    SECRET,
    backend,
    server,
)
from tests.fakes.binance_loopback import Fault, LoopbackBinance

LIMIT = 3
Run = Callable[[], tuple[Runner, SqlStore]]


@pytest.fixture
def start_bot(tmp_path: Path, server: LoopbackBinance) -> Iterator[Run]:  # noqa: F811
    """Build the live bot over the same store, as each start of the process does."""
    text = f"""
[account]
name = "loop"
starting_balance = 10000
margin_mode = "isolated"

[[contracts]]
symbol = "{BTC}"
direction = "long"

[data]
dir = "{ROOT / "data" / "sample"}"

[policy]
file = "{ROOT / "policies" / "vol_target.toml"}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 6
max_notional_per_contract = 50000
daily_loss_limit = 0.05
max_drawdown = 0.25
stale_data_seconds = 7200
max_orders_per_minute = 60
max_unreadable_reads = {LIMIT}

[simulation]
slippage_bps = 2

[exchange]
name = "binanceusdm"
demo = false
api_url = "{server.base_url}"
ccxt_options = {{ enableRateLimit = false, timeout = 2500 }}

[runtime]
database_url = "sqlite:///{tmp_path / "state.db"}"
log_dir = "{tmp_path / "logs"}"
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    started: list[tuple[Runner, SqlStore]] = []

    def start() -> tuple[Runner, SqlStore]:
        if started:  # the previous process is gone
            old, old_store = started[-1]
            old.engine.exchange.exchange.close()  # type: ignore[attr-defined]
            old_store.close()
        config = load_config(path)
        store = open_store(config)
        started.append((build_live(config, store, Secrets(KEY, SECRET, None)), store))
        return started[-1]

    yield start
    if started:
        run, store = started[-1]
        run.engine.exchange.exchange.close()  # type: ignore[attr-defined]
        store.close()


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
