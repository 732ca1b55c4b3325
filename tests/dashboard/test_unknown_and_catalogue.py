"""The dashboard (and ``bot status``) on what they do not know and on contracts the bundled
snapshot does not describe as the bot does: an account with nothing recorded shows unknown, never
flat; margin figures and precision use the user's catalogue first, as the bot does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from bot.bootstrap import open_store
from bot.catalogue import catalogue_path, write_catalogue
from bot.cli.reports import contract_specs
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.metrics import build_registry
from bot.dashboard.security import Guard
from bot.domain.decision import Decision
from bot.domain.enums import EventKind, MarginMode, TradingState
from bot.domain.instrument import Bracket
from bot.domain.margin import maintenance_margin
from bot.domain.position import Position
from bot.instruments import load_instruments
from bot.ports.store import DecisionRecord, RiskEvent
from bot.store.sql import SqlStore
from tests.conftest import record_book
from tests.runtime.conftest import write_config

BTC = "BTC/USDT:USDT"
T0 = 1_748_822_400_000


def _config(tmp_path: Path, data_dir: Path) -> BotConfig:
    path = write_config(tmp_path, contracts=2)
    text = path.read_text()
    start = text.index('dir = "', text.index("[data]"))
    end = text.index("\n", start)
    path.write_text(text[:start] + f'dir = "{data_dir}"' + text[end:])
    return load_config(path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def config(tmp_path: Path, data_dir: Path) -> BotConfig:
    return _config(tmp_path, data_dir)


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def test_nothing_recorded_shows_unknown_not_flat(config: BotConfig, store: SqlStore) -> None:
    source = AccountSource(config, store)
    ov = source.overview(T0)
    assert ov.state == "unknown"
    assert ov.margin_ratio is None
    for c in ov.contracts:
        assert c.qty is None
        assert c.side == "unknown"
        assert c.leverage is None
        assert not c.unprotected
    clock = SimClock(T0)
    app = create_app({config.account.name: source}, store=store, guard=Guard(None), clock=clock)
    client = TestClient(app, base_url="http://127.0.0.1")
    page = client.get("/")
    assert page.status_code == 200
    assert ">flat<" not in page.text
    assert ">unknown<" in page.text
    assert client.get("/contracts/BTC-USDT-USDT").status_code == 200
    confirm = client.get("/actions/flatten").text
    assert "positions unknown" in confirm
    assert "0 open position" not in confirm
    registry, _ = build_registry(source, store, clock)
    text = generate_latest(registry).decode()
    assert "bot_position_without_stop{" not in text  # unknown is not "protected" (0)


def test_margin_ratio_and_precision_follow_the_users_catalogue(
    tmp_path: Path, data_dir: Path
) -> None:
    bundled = load_instruments("binanceusdm")[BTC]
    # The venue raised BTC's maintenance rate and refined its tick since the snapshot.
    mine = replace(
        bundled,
        tick_size=Decimal("0.01"),
        brackets=(Bracket(Decimal(0), Decimal("1e12"), Decimal(20), Decimal("0.05"), Decimal(0)),),
    )
    write_catalogue(
        catalogue_path(data_dir, "binanceusdm"), "binanceusdm", {BTC: (mine, "test")}, T0, "test"
    )
    config = _config(tmp_path, data_dir)
    assert contract_specs(config)[BTC].tick_size == Decimal("0.01")
    store = open_store(config, create=True)
    try:
        held = Position(BTC, Decimal("0.5"), Decimal(60000), Decimal(3), MarginMode.CROSS)
        record_book(store, T0, [held])
        d = Decision(
            symbol=BTC,
            direction=1,
            target_leverage=Decimal(3),
            target_qty=Decimal("0.5"),
            stop_loss=Decimal(55000),
            take_profit=None,
            reason="why",
            allow_increase=True,
        )
        store.record_decisions(
            [DecisionRecord("t", T0, d, Decimal("0.5"), Decimal(3), Decimal(60000), Decimal("0.5"))]
        )
        ov = AccountSource(config, store).overview(T0)
    finally:
        store.close()
    expected = maintenance_margin(mine, Decimal(30000)) / Decimal(10000)  # 1500 / 10000
    assert ov.margin_ratio == expected
    assert ov.margin_ratio != maintenance_margin(bundled, Decimal(30000)) / Decimal(10000)
    btc = ov.contract("BTC-USDT-USDT")
    assert btc is not None
    assert btc.tick == Decimal("0.01")


def test_a_coarse_tick_liquidation_is_shown_rounded_toward_the_mark() -> None:
    from bot.dashboard.model import ContractView

    def view(qty: str, liq: str) -> ContractView:
        return ContractView(
            symbol="1000PEPE/USDT:USDT",
            direction="long",
            tick=Decimal("1e-7"),
            step=Decimal(1),
            qty=Decimal(qty),
            entry=Decimal("1.2e-6"),
            mark=Decimal("1.2e-6"),
            notional=None,
            leverage=None,
            target_leverage=None,
            liquidation=Decimal(liq),
            liq_distance=None,
            liq_distance_vol=None,
            volatility=None,
            stop_loss=None,
            take_profit=None,
            funding_rate=None,
            next_funding_ms=None,
            increase_allowed=None,
            decided_ms=None,
            reason=None,
        )

    assert view("1000", "0.00000091").liquidation_shown == Decimal("0.0000010")  # long: up
    assert view("-1000", "0.00000159").liquidation_shown == Decimal("0.0000015")  # short: down
    assert view("1000", "0.0000010").liquidation_shown == Decimal("0.0000010")  # on the grid


def test_status_shows_a_coarse_tick_liquidation_toward_the_mark(tmp_path: Path) -> None:
    from bot.cli.reports import contracts_table
    from bot.cli.terminal import table_csv

    pepe = load_instruments("binanceusdm")["1000PEPE/USDT:USDT"]
    row = {
        "symbol": pepe.symbol,
        "position": "1000",
        "entry_price": "0.0000012",
        "current_leverage": "4",
        "target_leverage": "4",
        "liquidation_price": "0.00000091",
        "liquidation_distance_vol_units": None,
        "stop_loss": None,
        "take_profit": None,
        "unprotected_since": None,
        "next_funding": None,
    }
    text = table_csv(contracts_table({"contracts": [row]}, {pepe.symbol: pepe}, plain=True))
    assert ",0.0000010," in text


def _sim_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir(parents=True)
    (d / "report.json").write_text(
        json.dumps({"policy": "p", "contracts": [BTC], "final_equity": 10100.5, "sharpe": None})
    )
    (d / "equity.csv").write_text(
        "timestamp,time,equity,leverage_BTC\n"
        "1748822400000,2025-06-02T00:00:00Z,10000,1.0\n"
        "1748826000000,2025-06-02T01:00:00Z,10100.5,1.1\n"
    )
    (d / "account.json").write_text('{"wallet": "10000", "quote": "USDT"}')
    return d


def test_a_damaged_simulation_output_is_a_named_error_not_a_500(tmp_path: Path) -> None:
    from bot.dashboard.simulation import SimulationSource
    from bot.errors import DataError

    d = _sim_dir(tmp_path)
    source = SimulationSource("run", d)
    client = TestClient(
        create_app({"run": source}, store=None, guard=Guard(None), clock=SimClock(0)),
        raise_server_exceptions=False,
        base_url="http://127.0.0.1",
    )
    page = client.get("/")
    assert page.status_code == 200
    assert "10,100.50" in page.text
    # the simulation is rewriting its outputs: a half-written equity.csv
    (d / "equity.csv").write_text("timestamp,time,equity\n1748822400000,2025-06-02T00:00:00Z,")
    page = client.get("/")
    assert page.status_code == 503
    assert "equity.csv" in page.text
    assert client.get("/healthz").status_code == 503
    _sim_dir(tmp_path / "again")
    d = tmp_path / "again" / "run"
    (d / "account.json").write_text('{"wallet": ')
    with pytest.raises(DataError, match=r"account\.json: cannot be read"):
        SimulationSource("run", d)


def test_a_position_the_bot_did_not_open_is_not_shown_naked(
    config: BotConfig, store: SqlStore
) -> None:
    """A position opened by hand on a configured contract (not 'follow'): the engine leaves it
    and its orders alone, so the store has no stop for it; the dashboard must not claim it has
    none (a red NONE, bot_position_without_stop 1), nor that it has one. Whose it is, is
    the engine's judgement as recorded (its ``foreign`` event)."""
    by_hand = Position(BTC, Decimal("0.2"), Decimal(60000), Decimal(5), MarginMode.ISOLATED)
    record_book(store, T0, [by_hand])
    foreign = "position 0.2 was not opened by this bot (opened from flat outside the bot)"
    store.record_event(
        RiskEvent(
            ts_ms=T0, kind=EventKind.FOREIGN, symbol=BTC, state=TradingState.ACTIVE, reason=foreign
        )
    )
    source = AccountSource(config, store)
    btc = source.overview(T0).contract("BTC-USDT-USDT")
    assert btc is not None
    assert btc.foreign
    assert not btc.unprotected
    assert btc.side == "long (not the bot's)"
    clock = SimClock(T0)
    client = TestClient(
        create_app({config.account.name: source}, store=store, guard=Guard(None), clock=clock),
        base_url="http://127.0.0.1",
    )
    page = client.get("/").text
    assert "<strong>NONE</strong>" not in page
    assert "not the bot&#39;s" in page
    registry, _ = build_registry(source, store, clock)
    text = generate_latest(registry).decode()
    assert 'bot_position_without_stop{symbol="BTC/USDT:USDT"}' not in text
    from bot.cli.reports import status_data

    row = next(r for r in status_data(config, store)["contracts"] if r["symbol"] == BTC)
    assert row["foreign"] is True
    # flat again: the contract is the bot's; a position there now is shown as the bot's
    store.record_event(
        RiskEvent(
            ts_ms=T0 + 1,
            kind=EventKind.FOREIGN_GONE,
            symbol=BTC,
            state=TradingState.ACTIVE,
            reason="flat: the bot's again",
        )
    )
    btc = AccountSource(config, store).overview(T0).contract("BTC-USDT-USDT")
    assert btc is not None
    assert not btc.foreign
    row = next(r for r in status_data(config, store)["contracts"] if r["symbol"] == BTC)
    assert row["foreign"] is False


def test_a_database_that_cannot_answer_is_a_named_503(config: BotConfig, store: SqlStore) -> None:
    """The dashboard's own queries (pending commands, alerts, the journal) fail like every read
    of the store: StoreUnavailable naming the database, shown as a 503 page, not a 500."""
    from sqlalchemy import text

    from bot.store.sql import StoreUnavailable
    from bot.store.views import pending_commands

    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE commands"))
    with pytest.raises(StoreUnavailable, match="state database"):
        pending_commands(store)
    source = AccountSource(config, store)
    client = TestClient(
        create_app(
            {config.account.name: source}, store=store, guard=Guard(None), clock=SimClock(T0)
        ),
        raise_server_exceptions=False,
        base_url="http://127.0.0.1",
    )
    page = client.get("/")
    assert page.status_code == 503
    assert "state database" in page.text
    assert client.get("/healthz").status_code == 503


def test_a_margin_ratio_with_no_equity_left_is_exported_as_infinity() -> None:
    """Positions and no equity left: the margin ratio is Infinity. Leaving the series out hid
    the worst case from the MarginRatioHigh rule (bot_margin_ratio > 0.8)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from bot.dashboard.metrics import _account_metrics
    from bot.dashboard.model import Overview

    ov = Overview(
        title="account a",
        kind="account",
        quote="USDT",
        as_of_ms=T0,
        equity=Decimal(-5),
        wallet=Decimal(100),
        unrealized_pnl=Decimal(-105),
        peak_equity=Decimal(1000),
        drawdown=Decimal(1),
        max_drawdown_limit=Decimal("0.25"),
        state="active",
        state_reason=None,
        state_since_ms=None,
        daily_loss=Decimal(1),
        daily_loss_limit=Decimal("0.05"),
        margin_ratio=Decimal("Infinity"),
        last_tick_ms=T0,
        interval_ms=3_600_000,
        contracts=[],
    )

    class One:
        def collect(self) -> Iterator[Metric]:
            return _account_metrics(ov, T0)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    assert "bot_margin_ratio +Inf" in generate_latest(registry).decode()
