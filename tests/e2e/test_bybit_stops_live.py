"""The Bybit stops of ``bot run --live`` through the real ccxt path (the loopback Bybit v5
server): sent ``closeOnTrigger`` (carried out whatever the free margin when they trigger,
capabilities.BYBIT), and an older version's stops, placed without it, still the bot's
protection after the upgrade: neither cancelled nor replaced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import OrderPurpose
from bot.exchange import capabilities
from bot.sim.exchange import SimulatedExchange
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    BTC,
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)

KEY, SECRET = "stops-key-41c2", "stops-secret-7f0e1d"
CREATE, CANCEL = "/v5/order/create", "/v5/order/cancel"


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("bybit")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


def _config(tmp_path: Path, server: LoopbackBybit, direction: str = "long") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="stops",
            venue="bybit",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            direction=direction,
        )
    )
    return path


def _stop_creates(server: LoopbackBybit, start: int = 0) -> list[dict[str, str]]:
    return [
        r.params
        for r in server.requests[start:]
        if (r.method, r.path) == ("POST", CREATE) and "-sl-" in r.params.get("orderLinkId", "")
    ]


@pytest.mark.parametrize("direction", ["long", "short"])
def test_the_bot_s_stop_loss_goes_out_close_on_trigger(
    tmp_path: Path, server: LoopbackBybit, backend: SimulatedExchange, direction: str
) -> None:
    run, store = start_live(_config(tmp_path, server, direction), KEY, SECRET)
    try:
        run.tick()
        run.guard()
    finally:
        stop_live(run, store)
    sent = _stop_creates(server)
    assert sent, "no stop-loss was placed: the test would prove nothing"
    for params in sent:
        assert params["triggerBy"] == "MarkPrice"
        assert params["triggerDirection"] == ("2" if direction == "long" else "1")
        assert (params["reduceOnly"], params["closeOnTrigger"]) == ("true", "true"), params
    position = backend.fetch_positions([BTC])[BTC]
    stops = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert [s.amount for s in stops] == [abs(position.qty)]  # sized to the position


def test_an_older_version_s_stop_without_the_flag_is_kept_after_the_upgrade(
    tmp_path: Path,
    server: LoopbackBybit,
    backend: SimulatedExchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path, server)
    older = replace(capabilities.BYBIT, closing_trigger_params={})
    monkeypatch.setattr(capabilities, "VENUES", {**capabilities.VENUES, "bybit": older})
    run, store = start_live(config, KEY, SECRET)
    try:
        run.tick()
    finally:
        stop_live(run, store)
    monkeypatch.undo()
    placed = _stop_creates(server)
    assert placed, "the older version placed no stop: the test would prove nothing"
    assert all("closeOnTrigger" not in p for p in placed)
    before = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    start = len(server.requests)

    run, store = start_live(config, KEY, SECRET)
    try:
        run.guard()
        run.guard()
        unprotected = [e for e in store.recent_events(100) if e.kind.value == "unprotected"]
    finally:
        stop_live(run, store)
    writes = [(r.method, r.path) for r in server.requests[start:] if r.method == "POST"]
    assert ("POST", CREATE) not in writes, writes
    assert ("POST", CANCEL) not in writes, writes
    after = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert [o.client_id for o in after] == [o.client_id for o in before]
    assert unprotected == []
