"""No secret in any output: a live tick whose signed requests fail, against the loopback venue.

The real ccxt code path signs every private request (``X-MBX-APIKEY`` header, HMAC ``signature``
in the query string of a GET); the loopback server answers the positions read with HTTP 500 until
the tick gives up, so the failure travels through every sink the bot has: the console and
stderr (with the traceback), the JSON log files (rotated), the alert webhook, and the SQLite
database (events, alerts). None may contain the API key, the secret or any signature sent, nor
the password of a gateway in ``[exchange] api_url``.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot import logs
from bot.bootstrap import open_store
from bot.cli import run as runtime_main
from bot.config.loader import load_config
from bot.sim.exchange import SimulatedExchange
from tests.e2e import test_live_loopback as live
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.loopback_core import Reply

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]
HEX64 = re.compile(r"[0-9a-f]{64}")
KEY, SECRET, tick = live.KEY, live.SECRET, live.tick
# the live loopback test's fixtures: a simulated account behind the loopback venue, a config
backend, server, config_path = live.backend, live.server, live.config_path


@pytest.fixture
def venue() -> live.Venue:
    """This scenario speaks Binance's paths: the live fixtures on the Binance server only."""
    return live.VENUES["binanceusdm"]


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A ``json://`` alert destination on 127.0.0.1 recording every raw body it receives."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    bodies: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            bodies.append(self.rfile.read(length).decode())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    bodies.append(f"json://127.0.0.1:{httpd.server_address[1]}/hook")  # the URL, first
    try:
        yield bodies
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_failing_signed_request_leaks_no_secret_anywhere(
    config_path: Path,
    server: LoopbackBinance,
    backend: SimulatedExchange,
    tmp_path: Path,
    webhook: list[str],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = webhook.pop(0)
    text = config_path.read_text().replace(
        "[runtime]\n", f'[runtime]\nlog_level = "DEBUG"\nalert_urls = ["{url}"]\n', 1
    )
    config_path.write_text(text)
    # small files, so that the run rotates them and the rotated ones are checked too
    monkeypatch.setattr(
        runtime_main, "setup_logging", functools.partial(logs.setup_logging, rotation="8 KB")
    )
    signatures = record_signatures(server)

    console_file = tmp_path / "console.txt"
    with console_file.open("w") as out:
        console = Console(file=out, width=200)
        assert tick(config_path, console) == 0  # opens, protects: many signed requests
        server.inject(Fault("/fapi/v1/openAlgoOrders", "GET", kind="http_500", times=50))
        assert tick(config_path, console) == 1  # the signed read fails: the tick fails

    captured = capfd.readouterr()
    log_files = sorted((tmp_path / "logs").iterdir())
    assert len(log_files) >= 2, "the JSON log was expected to rotate"
    config = load_config(config_path)
    store = open_store(config, create=True)
    events = [f"{e.kind}: {e.reason}" for e in store.recent_events(500)]
    store.close()
    db_files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
    sinks = {
        "stdout": captured.out,
        "stderr": captured.err,
        "console": console_file.read_text(),
        "events": "\n".join(events),
        "alert payloads": "\n".join(webhook),
        **{f"log file {p.name}": p.read_text() for p in log_files},
        **{f"database file {p.name}": p.read_bytes().decode("latin-1") for p in db_files},
    }
    # the failure really went through every sink
    assert "Traceback" in sinks["stderr"]
    assert any(e.startswith("tick_failed: tick: TransientExchangeError") for e in events)
    assert any("tick failed" in json.loads(b)["message"] for b in webhook)
    assert any("tick_failed" in v for k, v in sinks.items() if k.startswith("database"))
    assert len(signatures) > 10

    for name, content in sinks.items():
        assert KEY not in content, f"the API key leaked into {name}"
        assert SECRET not in content, f"the API secret leaked into {name}"
        leaked = [s for s in signatures if s in content]
        assert not leaked, f"{len(leaked)} request signature(s) leaked into {name}"
        assert not HEX64.search(content), f"a signature-like value leaked into {name}"


GATEWAY_USER = "gw-user"
GATEWAY_PASSWORD = "gw%2FPassw0rd-51c3"  # as written in api_url: percent-encoded
SENT_PASSWORD = "gw/Passw0rd-51c3"  # as the basic authentication sends it: decoded


def test_a_gateway_password_in_api_url_reaches_no_output(
    config_path: Path,
    server: LoopbackBinance,
    tmp_path: Path,
    webhook: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``api_url = "http://user:password@host"`` (a gateway's HTTP basic authentication): the
    gateway gets the credentials with every request, and ccxt quotes the URL, user and password
    included, in every error text (the log, the events and alerts the database keeps for ``bot
    status``, ``bot history`` and the dashboard, the alert payloads): the password is in none."""
    url = webhook.pop(0)
    text = config_path.read_text()
    text = text.replace(
        'api_url = "http://', f'api_url = "http://{GATEWAY_USER}:{GATEWAY_PASSWORD}@', 1
    )
    text = text.replace(
        "[runtime]\n", f'[runtime]\nlog_level = "DEBUG"\nalert_urls = ["{url}"]\n', 1
    )
    config_path.write_text(text)
    authorizations = record_authorizations(server)

    console_file = tmp_path / "console.txt"
    with console_file.open("w") as out:
        console = Console(file=out, width=200)
        assert tick(config_path, console) == 0
        server.inject(Fault("/fapi/v1/openAlgoOrders", "GET", kind="http_500", times=50))
        assert tick(config_path, console) == 1  # the failure quotes the URL

    # the user part of the URL still reaches the gateway, on every request
    basic = base64.b64encode(f"{GATEWAY_USER}:{SENT_PASSWORD}".encode()).decode()
    assert len(authorizations) > 10
    assert set(authorizations) == {f"Basic {basic}"}
    captured = capfd.readouterr()
    config = load_config(config_path)
    store = open_store(config, create=False)
    events = [f"{e.kind}: {e.reason}" for e in store.recent_events(500)]
    store.close()
    sinks = {
        "stdout": captured.out,
        "stderr": captured.err,
        "console": console_file.read_text(),
        "events": "\n".join(events),
        "alert payloads": "\n".join(webhook),
        **{f"log file {p.name}": p.read_text() for p in (tmp_path / "logs").iterdir()},
        **{
            f"database file {p.name}": p.read_bytes().decode("latin-1")
            for p in tmp_path.iterdir()
            if p.name.startswith("state.db")
        },
    }
    # the failure went through every sink, quoting the URL (its user part redacted)
    failed = [e for e in events if e.startswith("tick_failed: tick:")]
    assert failed
    assert all("http://***@127.0.0.1:" in e for e in failed)
    assert any("tick failed" in json.loads(b)["message"] for b in webhook)
    for name, content in sinks.items():
        for secret in (GATEWAY_PASSWORD, SENT_PASSWORD):
            assert secret not in content, f"the api_url password leaked into {name}"


def record_authorizations(loopback: LoopbackBinance) -> list[str]:
    """The ``Authorization`` header of every request the server receives."""
    seen: list[str] = []
    handle = loopback.handle

    def recording(
        method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> Reply | None:
        seen.append(headers.get("authorization", ""))
        return handle(method, path, query, body, headers)

    loopback.handle = recording  # type: ignore[method-assign]
    return seen


def record_signatures(loopback: LoopbackBinance) -> set[str]:
    """Every ``signature`` the server receives (the server's own record redacts them)."""
    seen: set[str] = set()
    handle = loopback.handle

    def recording(
        method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> Reply | None:
        for part in f"{query}&{body}".split("&"):
            if part.startswith("signature="):
                seen.add(part.removeprefix("signature="))
        return handle(method, path, query, body, headers)

    loopback.handle = recording  # type: ignore[method-assign]
    return seen
