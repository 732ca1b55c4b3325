"""Crash-only operation: ``kill -9`` the running paper bot at random points of its ticks, restart.

The real ``bot run --replay`` runs as a subprocess and is killed with SIGKILL at seeded random
moments while its ticks run back to back; after each kill the state on disk must already be
consistent (an order intent is committed before the order is sent), and after the restart that
follows (a start is a recovery) every order is resolved, the store and the paper exchange agree
on every order, every position has its one stop-loss, and each run left its decisions.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.bootstrap import build_paper, open_store
from bot.clock import LiveClock, SimClock
from bot.config.loader import load_config
from bot.domain.enums import OrderStatus
from bot.store.sql import SqlStore
from bot.store.tables import RunRow
from tests.runtime.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample"
# 100 replay hours per wall second: ticks run back to back (each one covers several hours), so
# stops trigger, positions re-open and a kill lands in the middle of a tick most of the time.
SPEED = "360000"
ROUNDS = 6  # kills; a clean --once recovery follows every second one
START_TIMEOUT_S = 60.0  # interpreter start and migrations on a loaded 2-core CI machine
EXIT_TIMEOUT_S = 30.0
WALL = LiveClock()
HOUR = 3_600_000
START_MS = 1_748_822_400_000  # 2025-06-02T00:00Z, the configured simulation start


def bot_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bot", "run", "--config", str(config), *args]


def clean_env() -> dict[str, str]:
    """The environment without live-trading keys (paper mode warns about them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BOT_API_")}


@contextmanager
def bot_process(config: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``bot run`` as a subprocess with its stderr in ``log``; killed on the way out, always."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            bot_command(config, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
            env=clean_env(),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=EXIT_TIMEOUT_S)


def wait_for_text(
    proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float = START_TIMEOUT_S
) -> None:
    """Wait until ``text`` appears in the process's stderr; fail if it exits or times out."""
    deadline = WALL.monotonic() + timeout
    while True:
        seen = log.read_text(errors="replace")
        if text in seen:
            return
        if proc.poll() is not None:
            pytest.fail(f"bot exited ({proc.returncode}) before {text!r}:\n{seen[-3000:]}")
        if WALL.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {timeout} s:\n{seen[-3000:]}")
        WALL.sleep(0.02)


def run_to_completion(config: Path, log: Path, *args: str) -> int:
    """Run ``bot run ... args`` and return its exit code (fails the test on a hang)."""
    with log.open("wb") as err:
        done = subprocess.run(
            bot_command(config, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
            env=clean_env(),
            timeout=START_TIMEOUT_S + EXIT_TIMEOUT_S,
            check=False,
        )
    return done.returncode


# --- what is on disk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    """The store's orders and the paper exchange's saved state, read after the bot stopped."""

    orders: dict[str, Any]  # client id -> OrderRecord
    paper: dict[str, Any]  # the JSON document of bot/sim/paper_state.py
    order_ids: list[str]  # every client id in the store, duplicates included
    fills: list[tuple[str, Decimal, Decimal]]  # the store's fills: (client id, qty, price)
    decisions: int
    runs: int

    @property
    def paper_orders(self) -> list[dict[str, Any]]:
        """Orders on the paper exchange that the bot sent (purpose read from the client id)."""
        return [o for o in self.paper["orders"] if o["purpose"] is not None]


def read_disk(url: str, account: str) -> Disk:
    store = SqlStore.open(url)
    try:
        records = store.recent_orders(1_000_000)
        payload = store.load_paper_state(account)
        assert payload is not None, "no paper account saved"
        with Session(store.engine) as session:
            runs = len(session.exec(select(RunRow)).all())
        return Disk(
            orders={r.client_id: r for r in records},
            paper=json.loads(payload),
            order_ids=[r.client_id for r in records],
            fills=[(f.client_id, f.qty, f.price) for f in store.recent_fills(1_000_000)],
            decisions=len(store.recent_decisions(1_000_000)),
            runs=runs,
        )
    finally:
        store.close()


def check_crash_consistent(disk: Disk) -> None:
    """What holds at any instant, even right after a kill -9 (before any recovery)."""
    dupes = [cid for cid, n in Counter(disk.order_ids).items() if n > 1]
    assert dupes == [], f"client ids recorded twice in the store: {dupes}"
    paper_ids = [o["client_id"] for o in disk.paper["orders"]]
    dupes = [cid for cid, n in Counter(paper_ids).items() if n > 1]
    assert dupes == [], f"client ids twice on the paper exchange: {dupes}"
    # The intent is committed before the order is sent: the exchange never knows an order the
    # store does not.
    missing = [o["client_id"] for o in disk.paper_orders if o["client_id"] not in disk.orders]
    assert missing == [], f"orders on the paper exchange with no intent in the store: {missing}"
    resting = [cid for ids in disk.paper["resting"].values() for cid in ids]
    known = {o["client_id"] for o in disk.paper["orders"]}
    assert set(resting) <= known, "a resting order the paper exchange has no record of"
    # Never filled beyond its size: an order is not executed twice.
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for f in disk.paper["fills"]:
        filled[f["client_id"]] += Decimal(f["qty"])
    for o in disk.paper_orders:
        if o["amount"] is not None:
            assert filled[o["client_id"]] <= Decimal(o["amount"]), o["client_id"]
    # A fill in the history happened on the exchange, and is recorded once.
    happened = {
        (f["client_id"], Decimal(f["qty"]), Decimal(f["price"])) for f in disk.paper["fills"]
    }
    twice = [f for f, n in Counter(disk.fills).items() if n > 1]
    assert twice == [], f"fills recorded twice: {twice}"
    phantom = [f for f in disk.fills if f not in happened]
    assert phantom == [], f"fills in the store that the exchange never made: {phantom}"


def check_recovered(disk: Disk, max_leverage: Decimal) -> None:
    """What must hold after a start (a recovery tick) following a crash."""
    check_crash_consistent(disk)
    unresolved = [
        cid
        for cid, r in disk.orders.items()
        if r.status in (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN)
    ]
    assert unresolved == [], f"orders left unresolved after the recovery: {unresolved}"
    # The store knows what became of every order the exchange has (its lifecycle is complete).
    for o in disk.paper_orders:
        record = disk.orders[o["client_id"]]
        assert record.status.value == o["status"], (o["client_id"], record.status, o["status"])
        assert record.filled == Decimal(o["filled"]), o["client_id"]
    # An intent the exchange never received is closed as such, never left open or filled.
    on_exchange = {o["client_id"] for o in disk.paper["orders"]}
    for cid, record in disk.orders.items():
        if cid not in on_exchange:
            assert record.status in (OrderStatus.CANCELED, OrderStatus.REJECTED), (cid, record)
    check_protected(disk.paper, max_leverage)


def check_protected(paper: dict[str, Any], max_leverage: Decimal) -> None:
    """Every open position has exactly one resting reduce-only stop-loss sized to it."""
    by_id = {o["client_id"]: o for o in paper["orders"]}
    equity = Decimal(paper["wallet"])
    for sym, pos in paper["positions"].items():
        qty = Decimal(pos["qty"])
        if qty == 0:
            continue
        stops = [by_id[c] for c in paper["resting"].get(sym, []) if by_id[c]["purpose"] == "sl"]
        assert len(stops) == 1, f"{sym}: position {qty} has {len(stops)} resting stops"
        [stop] = stops
        assert stop["reduce_only"], sym
        assert Decimal(stop["amount"]) == abs(qty), (sym, stop["amount"], qty)
        assert stop["side"] == ("sell" if qty > 0 else "buy"), sym
        assert stop["status"] == "open", sym
        # An entry sent twice would double the position: far beyond the policy's ~1x.
        notional = abs(qty) * Decimal(paper["marks"][sym])
        assert notional <= max_leverage * equity, f"{sym}: notional {notional} on {equity}"


# --- the test ----------------------------------------------------------------------------------


def busy_config(directory: Path) -> Path:
    """The example config with a policy that trades on every tick (no hysteresis, no tolerance):
    each tick resizes positions and replaces stops, so most of a tick is spent between an intent
    and its acknowledgement, where a kill hurts most."""
    config = write_config(directory)
    policy = (ROOT / "policies" / "vol_target.toml").read_text()
    for key, value in (
        ("hysteresis = 0.10", "hysteresis = 0"),
        ("rebalance_tolerance = 0.1", "rebalance_tolerance = 0"),
        ("protective_tolerance = 0.002", "protective_tolerance = 0"),
    ):
        assert key in policy, key
        policy = policy.replace(key, value)
    (directory / "busy.toml").write_text(policy)
    text = config.read_text().replace(
        str(ROOT / "policies" / "vol_target.toml"), str(directory / "busy.toml")
    )
    config.write_text(text)
    return config


def test_kill_9_at_random_points_then_restart(tmp_path: Path) -> None:
    config_path = busy_config(tmp_path)
    config = load_config(config_path)
    url, account = config.runtime.database_url, config.account.name
    max_lev = config.risk.max_leverage_per_contract
    rng = random.Random(20250602)
    decisions = starts = recoveries = 0
    for round_ in range(ROUNDS):
        log = tmp_path / f"run{round_}.log"
        with bot_process(config_path, log, "--replay", str(DATA), "--speed", SPEED) as proc:
            starts += 1
            # The startup tick (a recovery when the last run was killed) runs at once; the kill
            # lands in it or in one of the ticks that follow.
            wait_for_text(proc, log, "scheduler started")
            WALL.sleep(rng.uniform(0.05, 1.2))
            assert proc.poll() is None, "the bot stopped before it was killed"
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=EXIT_TIMEOUT_S) == -signal.SIGKILL
        disk = read_disk(url, account)
        check_crash_consistent(disk)
        if "tick done" in log.read_text(errors="replace"):
            assert disk.decisions > decisions, f"run {round_} finished a tick but left no decision"
        decisions = disk.decisions
        if round_ % 2 == 0:
            continue  # the next run's startup tick recovers (and may itself be killed)
        # A clean start is a recovery: one tick, then everything is resolved and protected.
        once_log = tmp_path / f"once{round_}.log"
        code = run_to_completion(config_path, once_log, "--replay", str(DATA), "--once")
        starts += 1
        recoveries += 1
        assert code == 0, once_log.read_text(errors="replace")[-3000:]
        disk = read_disk(url, account)
        check_recovered(disk, max_lev)
        assert disk.decisions > decisions, f"the recovery after kill {round_} decided nothing"
        decisions = disk.decisions
    assert recoveries == ROUNDS // 2
    assert disk.runs == starts  # every start is recorded as a run
    # The rounds traded: orders were placed, filled and replaced along the way.
    statuses = Counter(r.status for r in disk.orders.values())
    assert statuses[OrderStatus.FILLED] > 0
    assert statuses[OrderStatus.CANCELED] > 0


# --- history completeness: fills ---------------------------------------------------------------


def test_every_fill_of_the_paper_exchange_is_in_the_store(tmp_path: Path) -> None:
    """The fills table holds every fill of the bot's orders (liquidations excepted)."""
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(START_MS)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        for _ in range(24):
            assert runner.tick() is not None
            clock.advance_to(clock.now_ms() + 4 * HOUR)
        paper.save()
        exchange_fills = sorted(
            (f.client_id, f.qty, f.price) for f in paper.sim.fills if not f.liquidation
        )
        assert exchange_fills, "the replay made no fill; the test would prove nothing"
        stored = sorted((f.client_id, f.qty, f.price) for f in store.recent_fills(100_000))
        assert stored == exchange_fills
    finally:
        store.close()


class Killed(BaseException):
    """Stands for ``kill -9`` at one chosen point: not an ``Exception``, so nothing in the bot
    catches it, and nothing after it runs."""


class DiesBeforeTheFill(SqlStore):
    """A store whose process dies when the first fill is about to be written. The order's
    status and its fill are one transaction, so the kill leaves both unwritten: the intent is
    still ``pending_submit`` while the paper exchange has filled the order."""

    def update_order(self, client_id: str, status: OrderStatus, ts_ms: int, **kw: Any) -> None:
        if kw.get("fill") is not None:
            raise Killed(client_id)
        super().update_order(client_id, status, ts_ms, **kw)


def test_a_crash_between_an_orders_status_and_its_fill_loses_no_fill(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, contracts=1)
    config = load_config(config_path)
    open_store(config, create=True).close()  # creates the database at the current schema
    store = DiesBeforeTheFill.open(config.runtime.database_url)
    runner, _ = build_paper(config, store, replay=config.data.dir, clock=SimClock(START_MS))
    with pytest.raises(Killed):
        runner.tick()  # the first entry fills on the paper exchange, then the process dies
    store.close()
    store = open_store(config, create=True)  # the restart: its first tick is the recovery
    runner, paper = build_paper(
        config, store, replay=config.data.dir, clock=SimClock(START_MS + HOUR)
    )
    try:
        assert runner.tick() is not None
        made = sorted((f.client_id, f.qty) for f in paper.sim.fills if not f.liquidation)
        assert made, "nothing filled; the test would prove nothing"
        recorded = sorted((f.client_id, f.qty) for f in store.recent_fills(10_000))
        assert recorded == made
    finally:
        store.close()
