"""The web servers answer only for the host names they are served under (DNS rebinding).

A page the operator opens elsewhere can make its own name (``attacker.example``) resolve to
127.0.0.1 once it has loaded: its script then fetches ``http://attacker.example:8080/`` as its
own origin and reads whatever answers, and an action POST carries that origin in both ``Host``
and ``Origin``. The apps here are built as ``bot serve`` and ``bot run --dashboard
--metrics-port`` build them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from bot.bootstrap import open_store
from bot.cli.app import app as cli
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.dashboard import server
from bot.dashboard.security import TOKEN_ENV
from bot.store import views
from bot.store.sql import SqlStore
from tests.dashboard.conftest import TOKEN

REBOUND = "http://attacker.example:8080"  # the attacker's name, resolving to 127.0.0.1 now
DIRECT = "http://127.0.0.1:8080"


@pytest.fixture
def store(paper_account: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlStore]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # the actions are live: only the checks stop them
    s = open_store(load_config(paper_account), create=True)
    yield s
    s.close()


def dashboard(paper_account: Path, store: SqlStore, *proxied: str) -> Any:
    hosts = server.allowed_hosts("127.0.0.1", proxied)
    return server.account_app(load_config(paper_account), store, LiveClock(), hosts=hosts)


def action_form(client: TestClient, action: str = "flatten") -> dict[str, str]:
    """A confirmed form of ``action`` with every token right, as its confirmation page gives."""
    page = client.get(f"/actions/{action}")
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'name="(csrf|form_id)" value="([^"]+)"', page.text))
    return {"token": TOKEN, "confirm": "yes", **fields}


def test_a_foreign_host_is_refused_before_any_page(paper_account: Path, store: SqlStore) -> None:
    config = load_config(paper_account)
    hosts = server.allowed_hosts("127.0.0.1", [])
    apps = {
        "dashboard": server.account_app(config, store, LiveClock(), hosts=hosts),
        "metrics": server.metrics_app(config, store, LiveClock(), CollectorRegistry(), hosts),
    }
    paths = {
        "dashboard": [
            "/",
            "/journal",
            "/actions/flatten",
            "/metrics",
            "/healthz",
            "/static/live.js",
        ],
        "metrics": ["/metrics", "/healthz"],
    }
    for name, app in apps.items():
        rebound = TestClient(app, base_url=REBOUND)
        for path in paths[name]:
            answer = rebound.get(path)
            assert answer.status_code == 400, (name, path)
            assert "does not answer for host 'attacker.example:8080'" in answer.text
            assert "--allowed-host" in answer.text
            assert "bot_" not in answer.text  # no metric, no page
        for base in (DIRECT, "http://localhost:8080", "http://[::1]:8080", "http://LocalHost"):
            assert TestClient(app, base_url=base).get("/metrics").status_code == 200, base
    # the rebinding page's action, with every token but the operator's right: refused before
    # the form is read
    form = action_form(TestClient(apps["dashboard"], base_url=DIRECT))
    rebound = TestClient(apps["dashboard"], base_url=REBOUND)
    answer = rebound.post("/actions/flatten", data=form, headers={"origin": REBOUND})
    assert answer.status_code == 400
    assert views.pending_commands(store) == []


@pytest.mark.parametrize(
    "origin",
    [
        REBOUND,  # the rebinding page, its request sent to the loopback name
        "http://127.0.0.1:9999",  # another program on this machine: another origin
        "http://localhost:8080",  # not the address this request came to
        "https://bot.example.com",  # a proxy's name nobody allowed
    ],
)
def test_an_action_from_an_origin_not_allowed_is_refused(
    paper_account: Path, store: SqlStore, origin: str
) -> None:
    client = TestClient(dashboard(paper_account, store), base_url=DIRECT)
    answer = client.post("/actions/flatten", data=action_form(client), headers={"origin": origin})
    assert answer.status_code == 403
    assert "not from this dashboard" in answer.text
    assert views.pending_commands(store) == []


def test_a_reverse_proxys_name_is_served_once_allowed(paper_account: Path, store: SqlStore) -> None:
    """README: behind TLS and an authenticating proxy, `--allowed-host` names what the browser
    shows. The proxy may pass the browser's Host on, or send its own (nginx's default: the
    address it forwards to); the browser's Origin is the proxy's name either way."""
    public = "https://bot.example.com"
    assert TestClient(dashboard(paper_account, store), base_url=public).get("/").status_code == 400
    app = dashboard(paper_account, store, "Bot.Example.com")
    passed_on = TestClient(app, base_url=public)  # Host: bot.example.com
    assert passed_on.get("/").status_code == 200
    answer = passed_on.post("/actions/halt", data=action_form(passed_on, "halt"))
    assert answer.status_code == 403  # an action still needs an Origin (or Referer)
    posted = passed_on.post(
        "/actions/halt", data=action_form(passed_on, "halt"), headers={"origin": public}
    )
    assert posted.status_code == 200, posted.text
    own_host = TestClient(app, base_url=DIRECT)  # Host: 127.0.0.1:8080, from the proxy
    posted = own_host.post(
        "/actions/resume", data=action_form(own_host, "resume"), headers={"origin": public}
    )
    assert posted.status_code == 200, posted.text
    assert [p.kind for p in views.pending_commands(store)] == ["halt", "resume"]


@pytest.mark.parametrize("name", ["https://bot.example.com", "bot.example.com:443", "a/b"])
def test_an_allowed_host_must_be_a_name(paper_account: Path, name: str) -> None:
    runner = CliRunner()
    served = runner.invoke(cli, ["serve", "--config", str(paper_account), "--allowed-host", name])
    assert served.exit_code == 2
    assert "is not a host name or address" in served.output
    ran = runner.invoke(
        cli,
        ["run", "--config", str(paper_account), "--once", "--dashboard", "--allowed-host", name],
    )
    assert ran.exit_code == 2  # before the bot starts
    assert "is not a host name or address" in ran.output


def test_an_ip_address_is_served_on_a_wildcard_listener(
    paper_account: Path, store: SqlStore
) -> None:
    """`bot run --host 0.0.0.0 --metrics-port 9108`, scraped at the machine's address: the
    allow-list's `--host` entry (0.0.0.0) is no address a client sends, and the machine's own
    addresses are not known to it. An address cannot be rebound, so any is served; a name still
    needs `--allowed-host`, and an action from another address's page is still refused."""
    config = load_config(paper_account)
    hosts = server.allowed_hosts("0.0.0.0", [])  # noqa: S104 - the wildcard listener is the case
    metrics = server.metrics_app(config, store, LiveClock(), CollectorRegistry(), hosts)
    for base in ("http://192.0.2.2:9108", "http://[2001:db8::2]:9108", "http://10.0.0.7"):
        assert TestClient(metrics, base_url=base).get("/metrics").status_code == 200, base
    assert TestClient(metrics, base_url="http://box.lan:9108").get("/metrics").status_code == 400
    app = server.account_app(config, store, LiveClock(), hosts=hosts)
    lan = TestClient(app, base_url="http://192.0.2.2:8080")
    assert lan.get("/").status_code == 200
    refused = lan.post(
        "/actions/flatten", data=action_form(lan), headers={"origin": "http://192.0.2.9:8080"}
    )
    assert refused.status_code == 403
    assert views.pending_commands(store) == []
    posted = lan.post(
        "/actions/halt", data=action_form(lan, "halt"), headers={"origin": "http://192.0.2.2:8080"}
    )
    assert posted.status_code == 200, posted.text
    assert [p.kind for p in views.pending_commands(store)] == ["halt"]
