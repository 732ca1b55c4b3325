"""A venue's ban outlives the process that was told of it: a restart within it sends nothing.

A live bot against the loopback Binance USD-M (real ccxt) gets ``Retry-After: 259200`` (a 3-day
ban) on its account read. Before, the hold lived only in the process: a restart (the owner
trying to mend a bot whose every job fails, or a service manager) sent its start's reads at
once, and Binance lengthens a ban for requests sent during it. The runner records the hold's
end; ``bot run`` refuses to start before it, naming it, without a request; with
``--ignore-venue-hold`` it starts, and the first job whose requests are answered ends the
recorded hold (a later plain start is not refused)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bot.bootstrap import open_store
from bot.cli.run import run_bot
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind
from bot.runtime.venue_hold import VenueHoldRunning, check_no_venue_hold, recorded_hold_end
from bot.sim.exchange import SimulatedExchange
from tests.e2e.test_fault_matrix import VENUES, Venue
from tests.fakes.live_setup import (
    BTC,
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import Fault, LoopbackServer

KEY, SECRET = "ban-key-7c21", "ban-secret-41fe0d"
BAN_S = 259_200  # 3 days, the longest Binance IP ban (shared notes exchange-facts section 7)


@pytest.fixture
def venue() -> Venue:
    return VENUES["binanceusdm"]


@pytest.fixture
def backend(venue: Venue) -> SimulatedExchange:
    return venue_account(venue.name)


@pytest.fixture
def server(venue: Venue, backend: SimulatedExchange) -> Iterator[LoopbackServer]:
    srv = venue.server(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def config_path(
    tmp_path: Path, venue: Venue, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("BOT_API_KEY", KEY)
    monkeypatch.setenv("BOT_API_SECRET", SECRET)
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="ban",
            venue=venue.name,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    return path


def _start(config_path: Path, *, ignore: bool = False) -> int:
    return run_bot(
        config_path,
        live=True,
        yes=True,
        once=True,
        ticks=None,
        replay=None,
        speed=1.0,
        console=Console(file=None, quiet=True),
        ignore_venue_hold=ignore,
    )


def test_a_restart_within_a_ban_sends_nothing_and_says_until_when(
    venue: Venue, config_path: Path, server: LoopbackServer, backend: SimulatedExchange
) -> None:
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert run.tick() is not None
        assert backend.fetch_open_orders(BTC), "no stop rests: the test would prove nothing"
        server.inject(Fault(venue.balance, "GET", kind="rate_limit", retry_after=BAN_S, times=1))
        told = LiveClock().now_ms()
        run.guard()
        recorded = recorded_hold_end(store)
        assert recorded is not None, "the ban's end was not recorded"
        until_ms, _ = recorded
        assert abs(until_ms - (told + BAN_S * 1000)) < 5_000
    finally:
        stop_live(run, store)  # the process ends (killed, or stopped by its owner)

    sent = len(server.requests)
    with pytest.raises(VenueHoldRunning, match=r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"):
        _start(config_path)
    assert len(server.requests) == sent, "the refused start sent requests within the ban"

    # After the ban's end the same database starts (the check, on a later clock).
    store = open_store(load_config(config_path))
    try:
        check_no_venue_hold(store, until_ms + 1, "db")
    finally:
        store.close()


def test_a_start_told_to_ignore_the_hold_ends_it_once_a_job_is_answered(
    venue: Venue, config_path: Path, server: LoopbackServer
) -> None:
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert run.tick() is not None
        server.inject(Fault(venue.balance, "GET", kind="rate_limit", retry_after=BAN_S, times=1))
        run.guard()
        assert recorded_hold_end(store) is not None
    finally:
        stop_live(run, store)
    # (the loopback venue answers again at once: the bot now sends from another address)
    assert _start(config_path, ignore=True) == 0
    assert _start(config_path) == 0, "the recorded hold still refused a start after it ended"
    store = open_store(load_config(config_path))
    try:
        holds = store.recent_events(5, kinds=(EventKind.VENUE_HOLD,))
        assert [e.reason.startswith("the venue's hold is over") for e in holds] == [True, False]
    finally:
        store.close()


@pytest.mark.parametrize(("name", "retry_after"), [("binanceusdm", 7200), ("bybit", None)])
def test_a_ban_the_start_itself_meets_is_kept_and_the_next_start_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, retry_after: int | None
) -> None:
    """The venue bans the IP before the start (another program on the address spent the
    limit): Binance 418 with Retry-After, Bybit's 403 without an end. The start's first read is
    refused; the start records the hold (as a job does), names its end, and the next start is
    refused without a request. Before, only a job kept a hold: a service manager restarting
    the failed start sent into the ban at every restart."""
    monkeypatch.setenv("BOT_API_KEY", KEY)
    monkeypatch.setenv("BOT_API_SECRET", SECRET)
    venue = VENUES[name]
    backend = venue_account(name)
    srv = venue.server(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        path = tmp_path / "config.toml"
        path.write_text(
            live_config_text(
                name="ban",
                venue=name,
                base_url=srv.base_url,
                database=tmp_path / "state.db",
                log_dir=tmp_path / "logs",
            )
        )
        srv.ban_ip(retry_after=retry_after)
        with pytest.raises(VenueHoldRunning, match=r"no request before \d{4}-\d\d-\d\d"):
            _start(path)
        sent = len(srv.requests)
        assert sent >= 1
        store = open_store(load_config(path))
        try:
            assert recorded_hold_end(store) is not None, "the ban the start met was not recorded"
        finally:
            store.close()
        with pytest.raises(VenueHoldRunning, match=r"runtime\.database_url: the last run was"):
            _start(path)
        assert len(srv.requests) == sent, "the next start sent into the ban"


def test_a_short_rate_limit_at_the_start_is_neither_kept_nor_paged(tmp_path: Path) -> None:
    """A 429 whose Retry-After is within a guard interval fails the start as it is: no hold
    recorded (the next start is not refused), no critical page; as a job's is not."""
    from bot.cli.run import _ban_met_by_the_start
    from bot.errors import RateLimited

    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="short",
            venue="binanceusdm",
            base_url="http://127.0.0.1:9",
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    config = load_config(path)
    store = open_store(config, create=True)
    try:
        with (
            pytest.raises(RateLimited),
            _ban_met_by_the_start(config, store, venue_reads=True),
        ):
            raise RateLimited("binanceusdm 429 Too Many Requests", retry_after=2)
        assert recorded_hold_end(store) is None
        assert store.recent_alerts("venue_rate_limit", 0) == []
    finally:
        store.close()
