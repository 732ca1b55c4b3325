"""``bot halt --flatten`` applied by a guard between two decision ticks shows at once.

A paper account replayed on the bundled data holds two positions with their stops; the trader
posts a flattening halt; the next guard (minutes before the next hourly tick) closes both and
cancels their stops. The dashboard, ``/metrics`` and ``bot status`` showed both positions open
with no stop ("NONE" in red, ``bot_position_without_stop`` 1) until the next decision tick,
because only a tick recorded positions. The guard records what it read now; each figure says
when it was read, and "last tick" stays the decision's.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from rich.console import Console

from bot.bootstrap import build_paper, open_store
from bot.cli.reports import status_data, status_tables
from bot.clock import SimClock, ms_to_datetime
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.security import Guard
from bot.runtime.commands import post_command
from tests.dashboard.test_metrics import scrape

MINUTE = 60_000
ZERO = Decimal(0)


def test_a_flatten_by_a_guard_shows_flat_before_the_next_tick(paper_account: Path) -> None:
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        tick = store.latest_equity()
        held = store.latest_positions()
        assert tick is not None
        assert held is not None
        assert len([p for p in held[1] if p.is_open]) == 2
        clock = SimClock(tick.ts_ms + 5 * MINUTE)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        post_command(store, "halt", reason="operator flatten", flatten=True, now_ms=clock.now_ms())
        guard_ms = tick.ts_ms + 6 * MINUTE
        clock.advance_to(guard_ms)
        runner.guard()
        paper.save()
        symbols = [c.symbol for c in config.contracts]
        assert not [p for p in paper.fetch_positions(symbols).values() if p.is_open]
        now = guard_ms + 30_000

        source = AccountSource(config, store)
        ov = source.overview(now)
        assert ov.state == "halted"
        assert [(c.qty, c.unprotected) for c in ov.contracts] == [(ZERO, False), (ZERO, False)]
        assert ov.last_tick_ms == tick.ts_ms  # the last decision
        assert ov.positions_ms == ov.as_of_ms == guard_ms  # the guard's reading
        client = TestClient(
            create_app(
                {config.account.name: source}, store=store, guard=Guard(None), clock=SimClock(now)
            ),
            base_url="http://127.0.0.1",
        )
        page = client.get("/").text
        assert "<strong>NONE</strong>" not in page
        shown = f"{ms_to_datetime(guard_ms):%Y-%m-%d %H:%M} UTC"  # (the pages' minutes)
        assert f"positions as of {shown}" in page
        assert f"as of {shown}" in page.split('id="equity"')[1].split("</div></div>")[0]
        m = scrape(client)
        for c in ov.contracts:
            assert m[("bot_position_without_stop", (("symbol", c.symbol),))] == 0
            assert m[("bot_position_notional", (("symbol", c.symbol),))] == 0

        data = status_data(config, store, now)
        assert [(r["position"], r["unprotected_qty"]) for r in data["contracts"]] == [
            ("0", None),
            ("0", None),
        ]
        assert data["positions_as_of"] == data["as_of"] != data["last_tick"]
        out = io.StringIO()
        console = Console(file=out, width=200)
        for table in status_tables(data):
            console.print(table)
        row = rf"positions as of\s*│\s*{re.escape(data['positions_as_of'])}"
        assert re.search(row, out.getvalue()), out.getvalue()
    finally:
        store.close()
