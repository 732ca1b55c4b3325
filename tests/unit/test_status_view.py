"""``bot status`` read from the state database: unknown shows as unknown, never as zero, and
what is still true (a stop resting, an open incident, a contract's last decision) is shown
however many other orders, events or decisions were recorded since."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.bootstrap import open_store
from bot.cli.reports import contract_specs, status_data, status_tables
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.decision import Decision
from bot.domain.enums import (
    EventKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
from bot.domain.orders import OrderRequest
from bot.domain.position import Position
from bot.ports.store import DecisionRecord, EquitySnapshot, Heartbeat, RiskEvent
from bot.store.sql import SqlStore
from bot.store.views import REPLAY_RUN_MODE
from tests.runtime.conftest import write_config

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
T0 = 1_748_822_400_000


@pytest.fixture
def config(tmp_path: Path) -> BotConfig:
    return load_config(write_config(tmp_path, contracts=2))


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def _row(data: dict[str, object], symbol: str) -> dict[str, object]:
    rows = data["contracts"]
    assert isinstance(rows, list)
    return next(r for r in rows if r["symbol"] == symbol)


def _text(config: BotConfig, data: dict[str, object]) -> str:
    import io

    from rich.console import Console

    console = Console(width=300, record=True, file=io.StringIO())
    for table in status_tables(data, contract_specs(config)):
        console.print(table)
    return console.export_text()


def _decision(symbol: str, ts: int, mark: str = "60000") -> DecisionRecord:
    d = Decision(
        symbol=symbol,
        direction=1,
        target_leverage=Decimal(2),
        target_qty=Decimal("0.3"),
        stop_loss=Decimal(55000),
        take_profit=None,
        reason="why",
        allow_increase=True,
    )
    return DecisionRecord("t", ts, d, Decimal(0), Decimal(0), Decimal(mark), Decimal("0.5"))


def _equity(store: SqlStore, ts: int, equity: str = "10000") -> None:
    store.record_equity(
        EquitySnapshot(
            ts_ms=ts,
            wallet=Decimal(equity),
            unrealized_pnl=Decimal(0),
            equity=Decimal(equity),
            state=TradingState.ACTIVE,
        )
    )


def _open(store: SqlStore, cid: str, purpose: OrderPurpose, ts: int, trigger: str | None) -> None:
    kind = OrderType.STOP_MARKET if purpose is OrderPurpose.STOP_LOSS else OrderType.MARKET
    req = OrderRequest(
        cid,
        BTC,
        OrderSide.SELL if purpose is OrderPurpose.STOP_LOSS else OrderSide.BUY,
        kind,
        purpose,
        Decimal("0.1"),
        purpose is OrderPurpose.STOP_LOSS,
        trigger_price=Decimal(trigger) if trigger else None,
    )
    store.save_intent(req, ts)
    status = OrderStatus.OPEN if purpose is OrderPurpose.STOP_LOSS else OrderStatus.FILLED
    store.update_order(cid, status, ts)


def test_an_empty_database_shows_positions_and_state_unknown(
    config: BotConfig, store: SqlStore
) -> None:
    data = status_data(config, store)
    btc = _row(data, BTC)
    assert btc["position"] is None  # no positions recorded: unknown, not flat
    assert btc["current_leverage"] is None
    assert data["state"] is None  # the bot never ran here: not "active"
    text = _text(config, data)
    assert "0.000" not in text
    assert "0.00 " not in text
    assert "unknown" in text
    assert "None" not in text


def test_a_position_with_no_mark_has_an_unknown_leverage(
    config: BotConfig, store: SqlStore
) -> None:
    _equity(store, T0)
    btc = Position(BTC, Decimal("0.5"), Decimal(60000), Decimal(3), MarginMode.ISOLATED)
    store.record_positions(T0, [btc])
    data = status_data(config, store)
    assert _row(data, BTC)["position"] == "0.5"
    assert _row(data, BTC)["current_leverage"] is None  # held, no decision: no mark known
    assert _row(data, ETH)["position"] == "0"  # recorded and absent: flat
    assert _row(data, ETH)["current_leverage"] == "0"


def test_an_old_resting_stop_is_shown_after_many_newer_orders(
    config: BotConfig, store: SqlStore
) -> None:
    _open(store, "sl-old", OrderPurpose.STOP_LOSS, T0, "55000")
    for k in range(600):  # a busy account: entries and reductions of the other contract
        _open(store, f"e-{k}", OrderPurpose.ENTRY, T0 + 1000 * (k + 1), None)
    assert _row(status_data(config, store), BTC)["stop_loss"] == "55000"


def test_an_open_incident_is_shown_after_many_newer_events(
    config: BotConfig, store: SqlStore
) -> None:
    def event(ts: int, kind: EventKind, symbol: str) -> RiskEvent:
        return RiskEvent(ts_ms=ts, kind=kind, symbol=symbol, state=TradingState.ACTIVE, reason="x")

    store.record_event(event(T0, EventKind.UNPROTECTED, BTC))
    for k in range(1100):
        store.record_event(event(T0 + k + 1, EventKind.DENIED, ETH))
    assert _row(status_data(config, store), BTC)["unprotected_since"] is not None


def test_a_contract_whose_last_decision_is_old_still_shows_it(
    config: BotConfig, store: SqlStore
) -> None:
    store.record_decisions([_decision(BTC, T0)])
    store.record_decisions([_decision(ETH, T0 + k + 1, "3000") for k in range(400)])
    btc = _row(status_data(config, store), BTC)
    assert btc["reason"] == "why"
    assert btc["target_leverage"] == "2"


def test_a_contract_without_a_decision_says_why_and_since_when(
    config: BotConfig, store: SqlStore
) -> None:
    """A gap in a contract's candles leaves it without a decision until the window refills:
    its last decision is old, and the status says why no newer one came (before: the old
    decision's reason, as if it were current)."""
    gap = "gap in the 1h candles from 2025-06-02 05:00 UTC to 2025-06-02 08:00 UTC: ..."

    def event(ts: int, kind: EventKind, symbol: str) -> RiskEvent:
        return RiskEvent(ts_ms=ts, kind=kind, symbol=symbol, state=TradingState.ACTIVE, reason=gap)

    store.record_decisions([_decision(BTC, T0), _decision(ETH, T0)])
    store.record_event(event(T0 + 3_600_000, EventKind.NO_DECISION, BTC))
    store.record_event(event(T0 + 3_600_000, EventKind.NO_DECISION, ETH))
    store.record_event(event(T0 + 7_200_000, EventKind.DECIDING, ETH))
    data = status_data(config, store)
    btc, eth = _row(data, BTC), _row(data, ETH)
    assert btc["no_decision"] == gap
    assert btc["no_decision_since"] == "2025-06-02 01:00:00 UTC"
    assert eth["no_decision"] is None  # over: decided again
    text = _text(config, data)
    assert "NO DECISION since 2025-06-02 01:00:00 UTC: gap in the 1h candles" in text


def test_the_last_job_is_shown_beside_the_last_tick(config: BotConfig, store: SqlStore) -> None:
    """A 1d bot ticks once a day; the job it last completed (its guard runs every minute)
    says whether it is running."""
    _equity(store, T0)
    before = status_data(config, store)
    assert before["last_job"] is None
    assert "last job" in _text(config, before)
    assert "none recorded" in _text(config, before)
    store.record_heartbeat(Heartbeat(ts_ms=T0 + 3 * 3_600_000 + 60_000, job="guard"))
    data = status_data(config, store)
    assert data["last_job"] == "guard"
    assert data["last_job_at"] == "2025-06-02 03:01:00 UTC"
    assert data["as_of"] == "2025-06-02 00:00:00 UTC"  # the last tick
    assert "guard at 2025-06-02 03:01:00 UTC" in _text(config, data)
    assert data["bot_down"] is None  # no time to judge by


def test_a_silent_bot_is_said_to_be_down(config: BotConfig, store: SqlStore) -> None:
    """`bot status` judges the last job's age as /healthz does: more than three guard
    intervals (at least 180 s) without one, and the bot may be down."""
    _equity(store, T0)
    last = T0 + 60_000
    store.record_heartbeat(Heartbeat(ts_ms=last, job="guard"))
    fresh = status_data(config, store, last + 120_000)
    assert fresh["last_job_age_s"] == 120
    assert fresh["bot_down"] is None
    assert "(120 s ago)" in _text(config, fresh)
    assert "BOT NOT RUNNING?" not in _text(config, fresh)
    silent = status_data(config, store, last + 600_000)
    assert silent["bot_down"].startswith("no job completed for 600 s (more than 180 s)")
    assert "BOT NOT RUNNING?" in _text(config, silent)


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_history_limit_must_be_positive(tmp_path: Path, limit: str) -> None:
    from typer.testing import CliRunner

    from bot.cli.app import app

    cfg = write_config(tmp_path, contracts=1)
    result = CliRunner().invoke(app, ["history", "--config", str(cfg), "--limit", limit])
    assert result.exit_code == 2
    assert f"--limit {limit}: the number of rows per table must be >= 1" in result.output


def test_an_order_error_quoting_a_signed_request_is_stored_and_shown_redacted(
    config: BotConfig, store: SqlStore
) -> None:
    import io

    from rich.console import Console

    from bot.cli.reports import history_tables

    _open(store, "e-1", OrderPurpose.ENTRY, T0, None)
    error = (
        "binanceusdm POST https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1"
        "&signature=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 -2019"
    )
    store.update_order("e-1", OrderStatus.REJECTED, T0 + 1, error=error)
    record = store.get_order("e-1")
    assert record is not None
    assert record.error is not None
    assert "9f86d081884c7d659a2f" not in record.error
    console = Console(width=400, record=True, file=io.StringIO())
    for table in history_tables(store, 5):
        console.print(table)
    assert "9f86d081884c7d659a2f" not in console.export_text()


def test_a_halt_posted_and_not_yet_applied_is_shown(config: BotConfig, store: SqlStore) -> None:
    """`bot halt` then `bot status`: the state stays the bot's until its next job applies the
    command; status says a halt is waiting, not only "active"."""
    from bot.runtime.commands import post_command

    post_command(store, "halt", reason="maintenance", flatten=True, now_ms=T0)
    data = status_data(config, store)
    [pending] = data["pending_commands"]
    assert pending["kind"] == "halt"
    assert "waiting for the bot" in _text(config, data)


def test_a_replays_heartbeat_is_not_judged_on_the_wall_clock(
    config: BotConfig, store: SqlStore
) -> None:
    """A replay's jobs carry replayed time: compared with the wall clock, a replay running well
    read as a bot down for months. A run on live time after it is judged again."""
    _equity(store, T0)
    store.record_heartbeat(Heartbeat(ts_ms=T0 + 60_000, job="guard"))
    store.open_run(REPLAY_RUN_MODE, str(config.source), "vol_target", T0)
    wall = T0 + 400 * 86_400_000  # more than a year later
    replay = status_data(config, store, wall)
    assert replay["bot_down"] is None
    assert replay["last_job_age_s"] is None
    assert replay["replay"] is True
    assert "guard at 2025-06-02 00:01:00 UTC (replayed time" in _text(config, replay)
    assert "BOT NOT RUNNING?" not in _text(config, replay)
    store.open_run("paper", str(config.source), "vol_target", wall)  # live prices: wall time
    paper = status_data(config, store, wall)
    assert paper["replay"] is False
    assert paper["bot_down"] is not None
