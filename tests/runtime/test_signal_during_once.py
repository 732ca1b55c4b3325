"""Ctrl-C (SIGINT) during ``bot run --once``: the one tick runs on the main thread, where a
``KeyboardInterrupt`` would land between two changes of the paper account (here: the entry
filled, its order not yet on the book), and the exit would then save that half-made account.
The signal must let the tick finish, then stop: every fill on the saved paper account belongs
to an order it knows, and the store knows what became of every order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.config.loader import load_config
from tests.runtime.conftest import write_config
from tests.runtime.test_crash_only import (
    DATA,
    EXIT_TIMEOUT_S,
    START_TIMEOUT_S,
    check_crash_consistent,
    clean_env,
    read_disk,
)

# Runs ``bot run --once`` in a child process whose first market fill is followed, before the
# order is booked, by a SIGINT to itself (as if the user pressed Ctrl-C at that instant).
CHILD = """
import os, signal, sys
from pathlib import Path
from rich.console import Console
from bot.cli.run import run_bot
from bot.sim.exchange import SimulatedExchange

real = SimulatedExchange._fill_market
fired = []

def fill_then_interrupt(self, *args, **kwargs):
    filled = real(self, *args, **kwargs)
    if not fired:
        fired.append(True)
        os.kill(os.getpid(), signal.SIGINT)  # delivered before this function returns
    return filled

SimulatedExchange._fill_market = fill_then_interrupt
code = run_bot(
    Path(sys.argv[1]), live=False, yes=False, once=True, ticks=None,
    replay=Path(sys.argv[2]), speed=1.0, console=Console(),
)
print("fired" if fired else "no fill", "exit", code, flush=True)
sys.exit(code)
"""


def test_ctrl_c_during_a_once_tick_finishes_it_and_saves_a_whole_account(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, contracts=1)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(config_path), str(DATA)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=START_TIMEOUT_S + EXIT_TIMEOUT_S,
        check=False,
    )
    assert "fired exit 0" in done.stdout, done.stdout + done.stderr[-3000:]
    config = load_config(config_path)
    disk = read_disk(config.runtime.database_url, config.account.name)
    check_crash_consistent(disk)
    orders = {o["client_id"] for o in disk.paper["orders"]}
    for fill in disk.paper["fills"]:
        assert fill["client_id"] in orders, f"a fill of an order the account never booked: {fill}"
    # The tick finished: its intents are resolved and its decisions recorded.
    assert all(r.status.value not in ("pending_submit", "unknown") for r in disk.orders.values())
    assert disk.decisions > 0
