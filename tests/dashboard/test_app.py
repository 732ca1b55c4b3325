"""The dashboard's pages and actions through FastAPI's TestClient, on a replayed paper account."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bot.bootstrap import open_store
from bot.cli.app import app as cli
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.security import CSRF_COOKIE, Guard
from bot.dashboard.simulation import SimulationSource, discover_runs
from bot.errors import DataError
from bot.numbers import money
from bot.ports.store import Heartbeat
from bot.store import views
from bot.store.sql import SqlStore
from tests.dashboard.conftest import HOUR, TOKEN
from tests.runtime.conftest import ROOT

ORIGIN = {"origin": "http://127.0.0.1"}


@pytest.fixture
def store(paper_account: Path) -> Iterator[SqlStore]:
    s = open_store(load_config(paper_account), create=True)
    yield s
    s.close()


def client_for(config_path: Path, store: SqlStore, *, token: str | None, now_ms: int) -> TestClient:
    config = load_config(config_path)
    source = AccountSource(config, store)
    app = create_app(
        {config.account.name: source}, store=store, guard=Guard(token), clock=SimClock(now_ms)
    )
    return TestClient(app, base_url="http://127.0.0.1")


def last_tick(store: SqlStore) -> int:
    eq = store.latest_equity()
    assert eq is not None
    return eq.ts_ms


def csrf_of(client: TestClient, path: str = "/actions/halt") -> str:
    page = client.get(path)
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    assert client.cookies.get(CSRF_COOKIE) == match.group(1)
    return match.group(1)


def form_id_of(client: TestClient, action: str) -> str:
    """The one-time id of a fresh confirmation page of ``action``."""
    match = re.search(r'name="form_id" value="([^"]+)"', client.get(f"/actions/{action}").text)
    assert match is not None
    return match.group(1)


def test_overview_shows_the_accounts_numbers(paper_account: Path, store: SqlStore) -> None:
    client = client_for(paper_account, store, token=None, now_ms=last_tick(store) + 60_000)
    page = client.get("/")
    assert page.status_code == 200
    equity = store.latest_equity()
    assert equity is not None
    assert f'id="equity">{money(equity.equity, grouping=True)}<' in page.text
    assert 'id="state">active<' in page.text
    assert "STALE" not in page.text  # a minute after the last tick
    assert "<svg" in page.text  # the equity chart
    for symbol in ("BTC/USDT:USDT", "ETH/USDT:USDT"):
        assert symbol in page.text
    assert "/actions/halt" not in page.text  # read-only: no buttons
    assert page.headers["x-frame-options"] == "DENY"  # no clickjacking of the halt button
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_stale_tick_is_flagged(paper_account: Path, store: SqlStore) -> None:
    """The bot's guards run (a job completed a minute ago) but no tick for three intervals:
    not healthy all the same."""
    now = last_tick(store) + 3 * HOUR
    store.record_heartbeat(Heartbeat(ts_ms=now - 60_000, job="guard"))
    client = client_for(paper_account, store, token=None, now_ms=now)
    assert "STALE" in client.get("/").text
    health = client.get("/healthz")
    assert health.status_code == 503
    assert "more than two intervals" in health.json()["detail"]
    fresh_now = last_tick(store) + HOUR
    store.record_heartbeat(Heartbeat(ts_ms=fresh_now - 60_000, job="guard"))
    fresh = client_for(paper_account, store, token=None, now_ms=fresh_now)
    assert fresh.get("/healthz").status_code == 200


def test_contract_page_shows_the_resting_stop(paper_account: Path, store: SqlStore) -> None:
    client = client_for(paper_account, store, token=None, now_ms=last_tick(store))
    stops = [
        o
        for o in views.open_orders(store)
        if o.request.symbol == "BTC/USDT:USDT" and o.request.purpose.name == "STOP_LOSS"
    ]
    assert len(stops) == 1
    trigger = stops[0].request.trigger_price
    assert trigger is not None
    page = client.get("/contracts/BTC-USDT-USDT")
    assert page.status_code == 200
    assert f'id="stop-loss">{trigger:,.1f}<' in page.text  # BTC's tick is 0.1
    assert "BTC: vol" in page.text  # the decision's reason
    assert client.get("/contracts/DOGE-USDT-USDT").status_code == 404


def test_journal_filters_by_contract_and_time(paper_account: Path, store: SqlStore) -> None:
    client = client_for(paper_account, store, token=None, now_ms=last_tick(store))
    eth = client.get("/journal", params={"symbol": "ETH/USDT:USDT"}).text
    decisions = eth.split("<h2>decisions")[1].split("<h2>orders")[0]
    assert "ETH: vol" in decisions
    assert "BTC: vol" not in decisions
    late = client.get("/journal", params={"since": "2025-06-02T05:00"}).text
    late_decisions = late.split("<h2>decisions")[1].split("<h2>orders")[0]
    assert "2025-06-02 04:00" not in late_decisions
    assert "2025-06-02 05:00" in late_decisions
    assert client.get("/journal", params={"since": "yesterday"}).status_code == 400
    assert client.get("/journal", params={"symbol": "XRP/USDT:USDT"}).status_code == 404


def test_halt_is_refused_without_the_token(paper_account: Path, store: SqlStore) -> None:
    read_only = client_for(paper_account, store, token=None, now_ms=last_tick(store))
    csrf = csrf_of(read_only)
    form = {"token": TOKEN, "csrf": csrf, "confirm": "yes"}
    refused = read_only.post("/actions/halt", data=form, headers=ORIGIN)
    assert refused.status_code == 403
    assert "read-only" in refused.text
    operator = client_for(paper_account, store, token=TOKEN, now_ms=last_tick(store))
    csrf = csrf_of(operator)
    page = form_id_of(operator, "flatten")
    cases = [
        ({"token": "wrong-token-wrong-token", "csrf": csrf, "confirm": "yes"}, ORIGIN),
        ({"token": TOKEN, "csrf": "forged", "confirm": "yes"}, ORIGIN),
        ({"token": TOKEN, "csrf": csrf, "confirm": ""}, ORIGIN),
        ({"token": TOKEN, "csrf": csrf, "confirm": "yes"}, {"origin": "http://evil.example"}),
        ({"token": TOKEN, "csrf": csrf, "confirm": "yes"}, {}),  # no Origin, no Referer
        # a confirmation page this dashboard did not issue for flatten (none, or halt's)
        ({"token": TOKEN, "csrf": csrf, "confirm": "yes", "form_id": ""}, ORIGIN),
        (
            {
                "token": TOKEN,
                "csrf": csrf,
                "confirm": "yes",
                "form_id": form_id_of(operator, "halt"),
            },
            ORIGIN,
        ),
    ]
    for data, headers in cases:
        data = {"form_id": page, **data}
        answer = operator.post("/actions/flatten", data=data, headers=headers)
        assert answer.status_code == 403, (data, headers)
    assert views.pending_commands(store) == []  # nothing reached the bot
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state.value == "active"


def test_halt_with_the_token_goes_through_bot_halts_path(
    paper_account: Path, store: SqlStore
) -> None:
    client = client_for(paper_account, store, token=TOKEN, now_ms=last_tick(store))
    assert 'href="/actions/halt"' in client.get("/").text
    csrf = csrf_of(client)
    form = {
        "token": TOKEN,
        "csrf": csrf,
        "confirm": "yes",
        "reason": "going to sleep",
        "form_id": form_id_of(client, "halt"),
    }
    answer = client.post("/actions/halt", data=form, headers=ORIGIN)
    assert answer.status_code == 200, answer.text
    assert 'data-refresh="0"' in answer.text  # the answer stays on screen
    pending = views.pending_commands(store)
    assert [(p.kind, json.loads(p.args)) for p in pending] == [
        ("halt", {"flatten": False, "reason": "going to sleep"})
    ]
    assert "waiting for the bot" in client.get("/").text
    runner = CliRunner()
    cfg = str(paper_account)
    replay = str(ROOT / "data" / "sample")
    ran = runner.invoke(cli, ["run", "--config", cfg, "--once", "--replay", replay])
    assert ran.exit_code == 0, ran.output
    status = json.loads(runner.invoke(cli, ["status", "--config", cfg, "--json"]).stdout)
    assert status["state"] == "halted"
    assert status["state_reason"] == "going to sleep"
    page = client.get("/").text
    assert 'id="state">halted<' in page
    events = views.events(store, views.TimeWindow(), 20)
    assert any(e.kind == "state" and "halt" in e.reason for e in events)  # a recorded event


def test_a_confirmation_posted_twice_is_one_command(paper_account: Path, store: SqlStore) -> None:
    """A double click, or the browser resubmitting the form on reload (after a resume, it would
    halt again): the second POST of one confirmation page posts nothing."""
    client = client_for(paper_account, store, token=TOKEN, now_ms=last_tick(store))
    form = {
        "token": TOKEN,
        "csrf": csrf_of(client),
        "confirm": "yes",
        "form_id": form_id_of(client, "flatten"),
    }
    first = client.post("/actions/flatten", data=form, headers=ORIGIN)
    assert first.status_code == 200, first.text
    again = client.post("/actions/flatten", data=form, headers=ORIGIN)
    assert again.status_code == 409, again.text
    assert "posted already" in again.text
    assert [p.kind for p in views.pending_commands(store)] == ["halt"]
    # a new confirmation page is a new command
    form["form_id"] = form_id_of(client, "flatten")
    assert client.post("/actions/flatten", data=form, headers=ORIGIN).status_code == 200
    assert [p.kind for p in views.pending_commands(store)] == ["halt", "halt"]


def test_simulation_directory_in_the_same_views(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--config",
            str(ROOT / "config.example.toml"),
            "--policy",
            str(ROOT / "policies/vol_target.toml"),
            "--policy",
            str(ROOT / "policies/static_3x.toml"),
            "--contracts",
            "BTC/USDT:USDT",
            "--start",
            "2025-06-02",
            "--end",
            "2025-06-20",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    runs = discover_runs(out)
    assert sorted(runs) == ["static_3x", "vol_target"]
    # a run still being written (or left by a kill) is not one to show
    shutil.copytree(out / "vol_target", out / ".unfinished-x" / "vol_target")
    shutil.copy(out / "vol_target" / "report.json", out / ".unfinished-x" / "report.json")
    assert sorted(discover_runs(out)) == ["static_3x", "vol_target"]
    sources = {n: SimulationSource(n, p) for n, p in runs.items()}
    client = TestClient(
        create_app(sources, store=None, guard=Guard(TOKEN), clock=SimClock(0)),  # type: ignore[arg-type]
        base_url="http://127.0.0.1",
    )
    report = json.loads((out / "vol_target" / "report.json").read_text())
    page = client.get("/", params={"run": "vol_target"})
    assert page.status_code == 200
    assert f"{report['final_equity']:,.2f}" in page.text
    assert f"{report['max_drawdown']:.2%}" in page.text
    assert "/actions/halt" not in page.text  # a simulation cannot be halted
    compare = client.get("/compare").text
    assert compare.count("<polyline") == 4  # equity and drawdown of both runs
    assert client.get("/contracts/BTC-USDT-USDT", params={"run": "static_3x"}).status_code == 200
    assert "BTC: " in client.get("/journal", params={"run": "static_3x"}).text
    assert client.get("/healthz").status_code == 200
    refused = client.post("/actions/halt", data={"token": TOKEN}, headers=ORIGIN)
    assert refused.status_code == 403
    with pytest.raises(DataError, match=r"no report\.json"):
        discover_runs(tmp_path)


def test_the_token_typed_into_the_reason_is_not_posted(
    paper_account: Path, store: SqlStore
) -> None:
    """The reason is recorded, logged and alerted by the bot: the operator token pasted into it
    (the field beside the token's) is masked before it is posted."""
    client = client_for(paper_account, store, token=TOKEN, now_ms=last_tick(store))
    form = {
        "token": TOKEN,
        "csrf": csrf_of(client),
        "confirm": "yes",
        "reason": f"night {TOKEN}",
        "form_id": form_id_of(client, "halt"),
    }
    assert client.post("/actions/halt", data=form, headers=ORIGIN).status_code == 200
    [pending] = views.pending_commands(store)
    assert TOKEN not in pending.args
    assert json.loads(pending.args)["reason"] == "night ***"
