"""End to end in a real browser: Debian's Chromium, driven by Playwright, against ``bot serve``
on a paper account built by a short replay.

No browser is downloaded: Playwright launches the system Chromium through ``executable_path``
(scripts/test.sh installs it with apt). The test skips, saying why, only when no Chromium
can be found. Screenshots of every page go to ``$BOT_TEST_SCREENSHOTS`` (default: the test's
temporary directory)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bot.bootstrap import open_store
from bot.clock import LiveClock, utc_text
from bot.config.loader import load_config
from bot.numbers import money
from bot.ports.store import Heartbeat
from bot.store import views
from tests.dashboard.conftest import TOKEN
from tests.runtime.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BOT = [sys.executable, "-m", "bot"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("BOT_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(paper_account: Path, tmp_path: Path) -> Iterator[str]:
    """``bot serve`` on the account, with the operator token set; yields its base URL."""
    yield from serve(["--config", str(paper_account), "--refresh", "1"], tmp_path)


def serve(source: list[str], tmp_path: Path) -> Generator[str]:
    port = free_port()
    env = {**os.environ, "BOT_DASHBOARD_TOKEN": TOKEN}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*BOT, "serve", *source, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    clock = LiveClock()
    try:
        for _ in range(200):
            if proc.poll() is not None:
                pytest.fail(f"bot serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                clock.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def live_text(page: Any, selector: str, expected: str, seconds: float = 15) -> str:
    """The element's text once it contains ``expected`` without reloading the page (or the
    last text seen when ``seconds`` have passed)."""
    clock = LiveClock()
    text = ""
    for _ in range(int(seconds * 10)):
        text = str(page.inner_text(selector))
        if expected in text:
            break
        clock.sleep(0.1)
    return text


def bot(*args: str) -> str:
    done = subprocess.run([*BOT, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def browser_setup(tmp_path: Path) -> tuple[str, Any, Path]:
    """Chromium's path, Playwright's sync API and the screenshot directory (or a skip)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set BOT_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    shots = Path(os.environ.get("BOT_TEST_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return executable, sync_api, shots


def test_dashboard_in_chromium(served: str, paper_account: Path, tmp_path: Path) -> None:
    executable, sync_api, shots = browser_setup(tmp_path)
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        equity = store.latest_equity()
        assert equity is not None
        snap = store.latest_positions()
        assert snap is not None
        btc = next(p for p in snap[1] if p.symbol == "BTC/USDT:USDT")
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{served}/")
                assert page.inner_text("#equity") == money(equity.equity, grouping=True)
                assert page.inner_text("#state") == "active"
                assert page.locator("#contracts tbody tr").count() == 2
                page.screenshot(path=str(shots / "overview.png"), full_page=True)

                page.click("text=BTC/USDT:USDT")
                page.wait_for_url("**/contracts/BTC-USDT-USDT")
                assert page.inner_text("#position") == f"long {btc.qty:.3f}"  # step 0.001
                assert page.inner_text("#stop-loss") != "-"
                assert page.inner_text("#reason").startswith("BTC: vol")
                page.screenshot(path=str(shots / "contract.png"), full_page=True)

                page.goto(f"{served}/journal?symbol=ETH/USDT:USDT")
                assert "ETH: vol" in page.inner_text("main")
                page.screenshot(path=str(shots / "journal.png"), full_page=True)

                # halt without the token: refused, nothing changes
                page.goto(f"{served}/")
                page.click("text=HALT & FLATTEN")
                page.fill("input[name=token]", "not-the-operator-token")
                page.click("#confirm-button")
                assert "wrong operator token" in page.inner_text("#message")
                page.screenshot(path=str(shots / "refused.png"), full_page=True)
                assert views.pending_commands(store) == []

                # halt with the token: posted, applied by the bot, seen by bot status
                page.goto(f"{served}/")
                page.click("text=HALT")
                page.screenshot(path=str(shots / "confirm.png"), full_page=True)
                page.fill("input[name=token]", TOKEN)
                page.fill("input[name=reason]", "browser test")
                page.click("#confirm-button")
                assert "posted" in page.inner_text("#message")
                bot("run", "--config", str(paper_account), "--once", "--replay",
                    str(ROOT / "data" / "sample"))  # fmt: skip
                status = json.loads(bot("status", "--config", str(paper_account), "--json"))
                assert status["state"] == "halted"
                assert status["state_reason"] == "browser test"
                page.goto(f"{served}/")
                assert page.inner_text("#state") == "halted"
                # the open page follows the account by itself (live.js, every second here)
                bot("resume", "--config", str(paper_account), "--reason", "browser test over")
                assert "waiting for the bot" in live_text(page, "main", "waiting for the bot")
                bot("run", "--config", str(paper_account), "--once", "--replay",
                    str(ROOT / "data" / "sample"))  # fmt: skip
                assert live_text(page, "#state", "active") == "active"
                bot("halt", "--config", str(paper_account), "--reason", "browser test")
                bot("run", "--config", str(paper_account), "--once", "--replay",
                    str(ROOT / "data" / "sample"))  # fmt: skip
                assert live_text(page, "#state", "halted") == "halted"
                page.screenshot(path=str(shots / "halted.png"), full_page=True)

                phone = browser.new_page(viewport={"width": 390, "height": 844})
                phone.goto(f"{served}/")
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390  # no sideways scrolling of the page (tables scroll inside)
                phone.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
            finally:
                browser.close()
    finally:
        store.close()
    for name in ("overview", "contract", "journal", "refused", "confirm", "halted"):
        assert (shots / f"{name}.png").stat().st_size > 10_000


def test_simulation_output_in_chromium(tmp_path: Path) -> None:
    executable, sync_api, shots = browser_setup(tmp_path)
    out = tmp_path / "compare"
    bot(
        *("simulate", "--config", str(ROOT / "config.example.toml")),
        *("--policy", str(ROOT / "policies" / "vol_target.toml")),
        *("--policy", str(ROOT / "policies" / "static_3x.toml")),
        *("--contracts", "BTC/USDT:USDT", "--start", "2025-06-02", "--end", "2025-06-30"),
        *("--out", str(out)),
    )
    reports = {n: json.loads((out / n / "report.json").read_text()) for n in ("vol_target",
               "static_3x")}  # fmt: skip
    base = serve(["--sim", str(out)], tmp_path)
    url = next(base)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/compare")
                assert page.locator("svg polyline").count() == 4
                table = page.inner_text("main table")
                for report in reports.values():
                    assert f"{report['final_equity']:,.2f}" in table
                page.screenshot(path=str(shots / "compare.png"), full_page=True)
                page.select_option("select[name=run]", "vol_target")
                page.wait_for_url("**/?run=vol_target")
                assert "simulation vol_target" in page.inner_text("h1")
                assert "HALT" not in page.inner_text("main")  # a simulation has no actions
                page.screenshot(path=str(shots / "simulation.png"), full_page=True)
            finally:
                browser.close()
    finally:
        base.close()  # stops the server


def age_s(text: str) -> int:
    """Seconds of an age as the page writes it ("guard 12 s ago")."""
    found = re.search(r"(\d+) s ago", text)
    assert found is not None, text
    return int(found.group(1))


def test_an_open_tab_never_passes_old_figures_off_as_current(
    paper_account: Path, tmp_path: Path
) -> None:
    """An open tab whose refreshes fail. Defect: live.js kept the old <main> on any failure
    (an error status, no answer) and its ages were server-rendered text: `bot serve` killed,
    the tab still read "last job: guard 8 s ago" and "active" 20 s later, no notice; a refresh
    answered 503 (the state database cannot be read) kept the old figures, the "cannot be
    read" page never showed."""
    executable, sync_api, shots = browser_setup(tmp_path)
    config = load_config(paper_account)
    store = open_store(config)
    # a bot that completed a guard just now (the replay's own jobs are months old)
    store.record_heartbeat(Heartbeat(ts_ms=LiveClock().now_ms(), job="guard"))
    server = serve(["--config", str(paper_account), "--refresh", "1"], tmp_path)
    url = next(server)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/")
                assert page.inner_text("#last-job").startswith("guard ")

                # (b) the state database cannot be read: serve answers 503 naming it, shown
                with store.engine.begin() as conn:
                    conn.execute(text("ALTER TABLE commands RENAME TO commands_away"))
                shown = live_text(page, "main", "cannot be read")
                assert "cannot be read" in shown
                assert "state database" in shown
                assert page.locator("#last-job").count() == 0  # the old figures are gone
                assert page.locator("#not-answering").count() == 0  # serve did answer
                page.screenshot(path=str(shots / "unreadable-tab.png"), full_page=True)
                with store.engine.begin() as conn:
                    conn.execute(text("ALTER TABLE commands_away RENAME TO commands"))
                assert "last job: guard" in live_text(page, "main", "last job: guard")

                # no answer within two refreshes (at least 10 s): a server that hangs
                page.route(f"{url}/", lambda route: None)  # never answered
                page.wait_for_selector("#not-answering", timeout=20_000)
                assert "(no answer for 10 s)" in page.inner_text("#not-answering")
                page.unroute(f"{url}/")
                page.wait_for_selector("#not-answering", state="detached", timeout=20_000)

                # (a) serve stopped: a red banner, and the ages count on
                server.close()
                page.wait_for_selector("#not-answering", timeout=10_000)
                rendered = int(page.get_attribute("main", "data-rendered-ms") or 0)
                banner = page.inner_text("#not-answering")
                assert banner.startswith("DASHBOARD NOT ANSWERING since ")
                assert "(no connection)" in banner
                assert f"the figures below are as of {utc_text(rendered)}" in banner
                before = age_s(page.inner_text("#last-job"))
                page.wait_for_timeout(3_000)
                assert age_s(page.inner_text("#last-job")) >= before + 2
                page.screenshot(path=str(shots / "not-answering.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.close()
        store.close()
