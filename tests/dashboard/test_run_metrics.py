"""``bot run --metrics-port`` and ``--dashboard``: the running bot serves /metrics, /healthz and
the pages from its own process, with its tick-duration histogram."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.clock import LiveClock
from tests.dashboard.test_browser import free_port
from tests.runtime.conftest import ROOT, write_config

pytestmark = pytest.mark.slow


def test_run_serves_metrics_and_the_dashboard(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, contracts=2)
    metrics_port, web_port = free_port(), free_port()
    cmd = [
        *(sys.executable, "-m", "bot", "run", "--config", str(cfg)),
        *("--replay", str(ROOT / "data" / "sample"), "--speed", "3600", "--ticks", "40"),
        *("--metrics-port", str(metrics_port), "--dashboard", "--port", str(web_port)),
    ]
    log = tmp_path / "run.log"
    clock = LiveClock()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        ticks = 0.0
        for _ in range(300):
            assert proc.poll() is None, log.read_text()
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
            except httpx.TransportError:
                clock.sleep(0.1)
                continue
            samples = {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if not s.labels
            }
            ticks = samples.get("bot_tick_duration_seconds_count", 0.0)
            if ticks >= 2:
                break
            clock.sleep(0.1)
        assert ticks >= 2
        assert samples["bot_equity"] > 0
        health = httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5)
        assert health.status_code == 200  # the replayed clock: the last tick is fresh
        page = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5)
        assert page.status_code == 200
        assert "account main" in page.text
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()
