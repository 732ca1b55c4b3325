"""``bot run --live`` on a host clock far from the venue's, through the CLI (loopback Binance
USD-M): the clock offset was measured, recorded and alerted while the runner was built, before
the confirmation prompt, so a start the user then declined had already sent a clock alert.
Now the measurement comes after the confirmation; a ``--yes`` start still makes it. The start's
catalogue check (a settlement the venue scheduled) waits for the confirmation the same way."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import bot.cli.run
from bot.bootstrap import ENV_KEY, ENV_SECRET
from bot.cli.app import app
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import live_config_text, serve_btc_history, venue_account

KEY, SECRET = "confirm-key-7a21", "confirm-secret-c0ffee"


@pytest.fixture(autouse=True)
def on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bot run --live`` asks only on a terminal: its check sees one (the CliRunner's input
    is what the user types)."""
    terminal = SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(bot.cli.run, "sys", terminal)


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("binanceusdm")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=["BTC/USDT:USDT"]
    )
    serve_btc_history(srv, backend)
    srv.server_time_offset_ms = -5_000  # the host clock 5 s ahead of the venue's
    with srv:
        yield srv


@pytest.fixture
def config_path(tmp_path: Path, server: LoopbackBinance, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_KEY, KEY)
    monkeypatch.setenv(ENV_SECRET, SECRET)
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="confirm",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    return path


def clock_reports(config_path: Path) -> tuple[list[str], list[str]]:
    """The clock events and clock alerts the state database holds."""
    store = SqlStore.open(load_config(config_path).runtime.database_url)
    try:
        events = [e.reason for e in store.recent_events(100, kinds=(EventKind.CLOCK,))]
        alerts = [
            a.message
            for key in ("clock_offset", "clock_offset_critical")
            for a in store.recent_alerts(key, 0)
        ]
    finally:
        store.close()
    return events, alerts


def test_a_live_start_declined_at_the_prompt_sends_no_clock_alert(
    config_path: Path,
) -> None:
    result = CliRunner().invoke(
        app, ["run", "--live", "--once", "--config", str(config_path)], input="n\n"
    )
    assert result.exit_code == 1, result.output
    assert "Trade LIVE on binanceusdm" in result.output  # the prompt was asked...
    assert "not confirmed: nothing was traded" in result.output
    assert clock_reports(config_path) == ([], [])  # ...and nothing said of the clock


@pytest.mark.parametrize("confirm", [["--yes"], []], ids=["yes", "typed-y"])
def test_a_confirmed_live_start_still_checks_the_clock(
    config_path: Path, confirm: list[str]
) -> None:
    result = CliRunner().invoke(
        app,
        ["run", "--live", "--once", "--config", str(config_path), *confirm],
        input="y\n",
    )
    assert result.exit_code == 0, result.output
    [event], [alert] = clock_reports(config_path)
    assert "the host clock is 5.0 s ahead of binanceusdm's (at start" in event
    assert alert == event


def catalogue_reports(config_path: Path) -> tuple[list[str], list[str]]:
    """The catalogue events and catalogue alerts the state database holds."""
    from sqlmodel import Session, col, select

    from bot.store import tables as t

    store = SqlStore.open(load_config(config_path).runtime.database_url)
    try:
        events = [e.reason for e in store.recent_events(100, kinds=(EventKind.CATALOGUE,))]
        with Session(store.engine) as session:
            rows = session.exec(select(t.AlertRow).where(col(t.AlertRow.key).like("catalogue:%")))
            alerts = [r.message for r in rows]
    finally:
        store.close()
    return events, alerts


@pytest.mark.parametrize("answer", ["n", "y"])
def test_the_start_checks_catalogue_alerts_wait_for_the_confirmation(
    config_path: Path, server: LoopbackBinance, answer: str
) -> None:
    """The venue has scheduled BTC's settlement: the start's catalogue check records it and
    alerts it. The alert went out while the runner was built, before the prompt, so a start
    declined there had sent it; now it waits for the confirmation (the event is recorded)."""
    server.delivery_dates["BTC/USDT:USDT"] = 1_893_456_000_000  # 2030-01-01 00:00 UTC
    result = CliRunner().invoke(
        app, ["run", "--live", "--once", "--config", str(config_path)], input=f"{answer}\n"
    )
    assert result.exit_code == (1 if answer == "n" else 0), result.output
    events, alerts = catalogue_reports(config_path)
    [settles] = [e for e in events if "settles this perpetual at 2030-01-01 00:00 UTC" in e]
    assert alerts == ([] if answer == "n" else [settles])


# The preflight set the margin mode the configuration asks for while it checked the account,
# before the prompt: a start then declined (or refused for want of a terminal) had changed the
# account's margin mode. It is a planned change now, shown in the summary and made once the
# start is confirmed, before the first tick.
BTC = "BTC/USDT:USDT"
MARGIN_TYPE = "/fapi/v1/marginType"


@pytest.fixture
def in_cross(backend: SimulatedExchange) -> SimulatedExchange:
    """The trader's account holds BTC in cross margin; the bot is configured for isolated."""
    backend.set_margin_mode(BTC, MarginMode.CROSS)
    return backend


def test_a_declined_live_start_leaves_the_margin_mode_as_it_was(
    config_path: Path, server: LoopbackBinance, in_cross: SimulatedExchange
) -> None:
    result = CliRunner().invoke(
        app, ["run", "--live", "--once", "--config", str(config_path)], input="n\n"
    )
    assert result.exit_code == 1, result.output
    assert f"will set margin mode to isolated on {BTC}" in " ".join(result.output.split())
    assert server.calls(MARGIN_TYPE, "POST") == []
    assert in_cross.book.margin_mode is MarginMode.CROSS


def test_a_live_start_without_a_terminal_to_confirm_on_changes_nothing(
    config_path: Path,
    server: LoopbackBinance,
    in_cross: SimulatedExchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.cli.run, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=bool)))
    result = CliRunner().invoke(app, ["run", "--live", "--once", "--config", str(config_path)])
    assert result.exit_code == 2, result.output
    assert "live trading asks for confirmation" in result.output
    assert server.calls(MARGIN_TYPE, "POST") == []
    assert in_cross.book.margin_mode is MarginMode.CROSS


@pytest.mark.parametrize("confirm", [["--yes"], []], ids=["yes", "typed-y"])
def test_a_confirmed_live_start_sets_the_margin_mode_before_its_first_order(
    config_path: Path, server: LoopbackBinance, in_cross: SimulatedExchange, confirm: list[str]
) -> None:
    result = CliRunner().invoke(
        app, ["run", "--live", "--once", "--config", str(config_path), *confirm], input="y\n"
    )
    assert result.exit_code == 0, result.output
    assert in_cross.book.margin_mode is MarginMode.ISOLATED
    asked = [(r.method, r.path) for r in server.requests]
    first_order = asked.index(("POST", "/fapi/v1/order"))
    assert asked.index(("POST", MARGIN_TYPE)) < first_order
    assert [r.params["marginType"] for r in server.calls(MARGIN_TYPE, "POST")] == ["ISOLATED"]


def test_a_margin_change_the_venue_refuses_after_the_confirmation_stops_the_start(
    config_path: Path,
    server: LoopbackBinance,
    in_cross: SimulatedExchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trader opens a BTC position by hand while the prompt waits: the venue refuses the
    margin change then (Binance -4048), and the start stops there as a refusal in the
    preflight did, with nothing traded and nothing reported of the start."""

    def opened_by_hand_then_confirmed(_config: object) -> bool:
        hand = OrderRequest(
            "web_1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.01"), False
        )
        in_cross.place_order(hand)
        return True

    monkeypatch.setattr(bot.cli.run, "_confirmed", opened_by_hand_then_confirmed)
    result = CliRunner().invoke(app, ["run", "--live", "--once", "--config", str(config_path)])
    assert result.exit_code == 2, result.output
    assert "margin mode" in result.output
    assert in_cross.book.margin_mode is MarginMode.CROSS
    assert server.calls("/fapi/v1/order", "POST") == []
    assert clock_reports(config_path) == ([], [])  # the start's clock check never ran
