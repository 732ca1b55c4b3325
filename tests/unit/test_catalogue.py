"""The contract catalogue: resolution order, file format, the live keeper, coverage choice."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path
from typing import Any, cast

import pytest

from bot.alerts import AlertRules, Notifier
from bot.catalogue import (
    catalogue_path,
    load_catalogue,
    resolve_instruments,
    resolve_with_sources,
    write_catalogue,
)
from bot.clock import SimClock
from bot.domain.instrument import Instrument
from bot.domain.market import VenueRestriction
from bot.errors import ConfigError, DataError
from bot.exchange.ccxt_adapter import ABSENT, CcxtExchange, Listing
from bot.instruments import load_instruments
from bot.marketdata.coverage import choose
from bot.marketdata.files import discover
from bot.runtime.catalogue_keeper import CatalogueKeeper, StaleCatalogue
from bot.store.memory import MemoryStore
from tests.fakes.alert_outbox import Outbox

BINANCE = load_instruments("binanceusdm")
ADA, BTC = "ADA/USDT:USDT", "BTC/USDT:USDT"
HOUR = 3_600_000


def test_the_users_catalogue_wins_over_the_snapshot(tmp_path: Path) -> None:
    mine = replace(BINANCE[ADA], tick_size=D("0.00001"))
    write_catalogue(
        catalogue_path(tmp_path, "binanceusdm"),
        "binanceusdm",
        {ADA: (mine, "by hand")},
        1_767_225_600_000,
        "test",
    )
    got = resolve_instruments("binanceusdm", [ADA, BTC], tmp_path)
    assert got[ADA].tick_size == D("0.00001")  # the user's file
    assert got[BTC] == BINANCE[BTC]  # not in the file: the bundled snapshot
    found, missing = resolve_with_sources("binanceusdm", [ADA, BTC, "NOPE/USDT:USDT"], tmp_path)
    assert found[ADA][1].path == catalogue_path(tmp_path, "binanceusdm")
    assert found[BTC][1].path is None
    assert missing == ["NOPE/USDT:USDT"]
    cat = load_catalogue(catalogue_path(tmp_path, "binanceusdm"), "binanceusdm")
    assert cat is not None
    assert cat.read_at_ms == 1_767_225_600_000


def test_stand_in_figures_are_flagged_per_contract(tmp_path: Path) -> None:
    sol, eth = "SOL/USDT:USDT", "ETH/USDT:USDT"
    found, missing = resolve_with_sources("bybit", [sol, eth], tmp_path)
    assert missing == []
    assert found[sol][1].is_stand_in(sol)
    assert found[sol][1].notes[sol].startswith("STAND-IN risk limits")
    assert not found[eth][1].is_stand_in(eth)
    # The user's own figures for the same contract are not a stand-in.
    write_catalogue(
        catalogue_path(tmp_path, "bybit"),
        "bybit",
        {sol: (found[sol][0], "read from the venue")},
        1_767_225_600_000,
        "test",
    )
    mine, _ = resolve_with_sources("bybit", [sol], tmp_path)
    assert mine[sol][1].path == catalogue_path(tmp_path, "bybit")
    assert not mine[sol][1].is_stand_in(sol)
    assert mine[sol][1].notes[sol] == "read from the venue"


def test_a_bybit_contract_the_snapshot_lacks_stands_in_on_binances_figures(
    tmp_path: Path,
) -> None:
    """XRP is not in the bundled Bybit snapshot: offline, Binance's figures for XRP (tick, step,
    minimums, brackets, largest order) stand in, with Bybit's fees and liquidation formula,
    labelled so. Binance has no such donor: a contract it lacks stays an error."""
    xrp = "XRP/USDT:USDT"
    found, missing = resolve_with_sources("bybit", [xrp, "BTC/USDT:USDT"], tmp_path)
    assert missing == []
    assert list(found) == [xrp, "BTC/USDT:USDT"]  # in the order asked
    inst, cat = found[xrp]
    theirs = load_instruments("binanceusdm")[xrp]
    bybit_btc = load_instruments("bybit")["BTC/USDT:USDT"]
    assert cat.is_stand_in(xrp)
    assert cat.donor == "binanceusdm"
    assert cat.notes[xrp].startswith("STAND-IN: binanceusdm's tick, step, minimums")
    assert (inst.tick_size, inst.step_size, inst.min_qty, inst.min_notional) == (
        theirs.tick_size,
        theirs.step_size,
        theirs.min_qty,
        theirs.min_notional,
    )
    assert inst.brackets == theirs.brackets
    assert inst.max_order_qty == theirs.max_order_qty
    assert (inst.maker_fee, inst.taker_fee, inst.liquidation_fee) == (
        bybit_btc.maker_fee,
        bybit_btc.taker_fee,
        bybit_btc.liquidation_fee,
    )
    assert inst.margin_model is bybit_btc.margin_model is not theirs.margin_model
    assert inst.percent_down is None
    assert inst.min_price is None
    assert not found["BTC/USDT:USDT"][1].is_stand_in("BTC/USDT:USDT")
    # The user's catalogue still wins over the stand-in.
    write_catalogue(
        catalogue_path(tmp_path, "bybit"), "bybit", {xrp: (inst, "mine")}, 1_767_225_600_000, "t"
    )
    mine, _ = resolve_with_sources("bybit", [xrp], tmp_path)
    assert not mine[xrp][1].is_stand_in(xrp)
    with pytest.raises(ConfigError, match="no contract specification for NOPE/USDT:USDT"):
        resolve_instruments("binanceusdm", ["NOPE/USDT:USDT"], tmp_path)


def test_a_bybit_contract_spelled_otherwise_stands_in_on_binances_same_contract() -> None:
    """Bybit writes some contracts' multiplier after the coin (SHIB1000), Binance before it
    (1000SHIB): the same contract, so Binance's figures stand in, under Bybit's name and with
    the donor's name in the note. A different multiplier is a different contract: no donor."""
    shib, shib10k = "SHIB1000/USDT:USDT", "SHIB10000/USDT:USDT"
    baby = "BABYDOGE1000000/USDT:USDT"
    found, missing = resolve_with_sources("bybit", [shib, baby, shib10k], None)
    assert missing == [shib10k]
    inst, cat = found[shib]
    theirs = load_instruments("binanceusdm")["1000SHIB/USDT:USDT"]
    assert (inst.symbol, inst.base) == (shib, "SHIB1000")
    assert (inst.tick_size, inst.step_size, inst.brackets) == (
        theirs.tick_size,
        theirs.step_size,
        theirs.brackets,
    )
    assert cat.is_stand_in(shib)
    assert "(binanceusdm names it 1000SHIB/USDT:USDT)" in cat.notes[shib]
    assert (
        found[baby][0].brackets == load_instruments("binanceusdm")["1MBABYDOGE/USDT:USDT"].brackets
    )
    same_name = resolve_with_sources("bybit", ["1000PEPE/USDT:USDT"], None)[0]
    assert "names it" not in same_name["1000PEPE/USDT:USDT"][1].notes["1000PEPE/USDT:USDT"]


def test_an_unknown_contract_names_both_places_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_instruments("bybit", ["PEPE/USDT:USDT"], tmp_path)
    text = str(info.value)
    assert str(catalogue_path(tmp_path, "bybit")) in text
    assert "bot/resources/instruments/bybit.json" in text
    assert "bot contracts sync --config CONFIG --contracts PEPE/USDT:USDT" in text


def test_a_broken_catalogue_is_named(tmp_path: Path) -> None:
    path = catalogue_path(tmp_path, "binanceusdm")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"exchange": "binanceusdm", "as_of": "2026-01-01", "source": "x"}))
    with pytest.raises(
        DataError, match=r"binanceusdm\.json: top level: missing field 'instruments'"
    ):
        resolve_instruments("binanceusdm", [ADA], tmp_path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        resolve_instruments("binanceusdm", [ADA], tmp_path)


class _Venue:
    """Stands in for the live adapter: what the venue says now."""

    def __init__(self, specs: dict[str, Instrument]) -> None:
        self.specs = dict(specs)
        self.withdrawn: dict[str, str] = {}
        self.settles: dict[str, int] = {}
        self.fail = False
        self.reads = 0

    def read_listing(self, symbols: Any = ()) -> Listing:
        if self.fail:
            from bot.errors import TransientExchangeError

            raise TransientExchangeError("venue down")
        self.reads += 1
        return Listing(dict(self.specs), dict(self.withdrawn), dict(self.settles))


def test_live_keeper_refreshes_hourly_records_changes_and_refuses_when_stale() -> None:
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA]})
    keeper = CatalogueKeeper(
        cast(CcxtExchange, venue),
        exchange_name="binanceusdm",
        data_dir=None,
        symbols=[ADA],
        store=store,
        clock=clock,
        max_age_hours=48,
    )
    keeper.check()  # start: read
    assert venue.reads == 1
    assert not store.events
    clock.advance_to(clock.now_ms() + 50 * 60_000)
    keeper.check()  # not due
    assert venue.reads == 1
    venue.specs[ADA] = replace(BINANCE[ADA], min_notional=D(10))
    clock.advance_to(clock.now_ms() + 10 * 60_000)
    keeper.check()  # the hourly refresh sees the change
    assert venue.reads == 2
    [event] = store.events
    assert event.kind == "catalogue"
    assert event.symbol == ADA
    assert "min_notional 5 -> 10" in event.reason
    venue.fail = True
    clock.advance_to(clock.now_ms() + 24 * HOUR)
    keeper.check()  # refresh failed, but the specs are 24 h old: still trading
    assert store.events[-1].reason.startswith("refresh from binanceusdm failed")
    clock.advance_to(clock.now_ms() + 25 * HOUR)
    with pytest.raises(StaleCatalogue, match="catalogue_max_age_hours = 48 h") as info:
        keeper.check()
    assert "(the last read failed: venue down)" in str(info.value)  # the reason, not only age
    venue.fail = False
    clock.advance_to(clock.now_ms() + 24 * HOUR)
    keeper.check()  # a refresh succeeded: trading again
    assert keeper.last_failure is None


def _candles(path: Path, start: int, n: int, tf_ms: int) -> None:
    lines = [f"{start + i * tf_ms},1.0,1.1,0.9,1.0,5.0" for i in range(n)]
    with gzip.open(path, "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n" + "\n".join(lines) + "\n")


def test_the_finest_file_that_covers_the_window_is_chosen(tmp_path: Path) -> None:
    t0 = 1_735_689_600_000
    _candles(tmp_path / "ADA_USDT_USDT-1m.csv.gz", t0, 600, 60_000)  # 10 hours
    _candles(tmp_path / "ADA_USDT_USDT-5m.csv.gz", t0 + 24 * HOUR, 12 * 24 * 3, 300_000)
    _candles(tmp_path / "ADA_USDT_USDT-1h.csv.gz", t0, 24 * 10, HOUR)  # 10 days
    inv = discover(tmp_path)
    tfs = inv.trade_timeframes(ADA)
    # Inside the 1m file: 1m.
    assert choose(inv, ADA, "trade", tfs, t0, t0 + 5 * HOUR).timeframe == "1m"
    # Day 2-3: only 5m and 1h cover it; 5m is finer.
    pick = choose(inv, ADA, "trade", tfs, t0 + 30 * HOUR, t0 + 60 * HOUR)
    assert pick.timeframe == "5m"
    assert "passed over because they cover less: 1m" in pick.note
    # Day 5-9: only 1h.
    assert choose(inv, ADA, "trade", tfs, t0 + 5 * 24 * HOUR, t0 + 9 * 24 * HOUR).timeframe == "1h"
    # No window: the widest span on offer (1h).
    assert choose(inv, ADA, "trade", tfs, None, None).timeframe == "1h"
    # Nothing covers it all: the one that covers most, said so.
    partial = choose(inv, ADA, "trade", tfs, t0 + 9 * 24 * HOUR, t0 + 12 * 24 * HOUR)
    assert partial.timeframe == "1h"
    assert "no file covers all of it" in partial.note


def test_a_failed_daily_refresh_is_tried_again_soon_not_a_day_later() -> None:
    # A 1h policy with catalogue_max_age_hours = 24: the daily refresh meets a venue hiccup.
    # Tried again only a day later, the specs went stale at once and the bot refused every
    # tick for 24 hours though the venue answered again an hour later.
    clock = SimClock(1_767_225_600_000)
    venue = _Venue({ADA: BINANCE[ADA]})
    keeper = CatalogueKeeper(
        cast(CcxtExchange, venue),
        exchange_name="binanceusdm",
        data_dir=None,
        symbols=[ADA],
        store=MemoryStore(),
        clock=clock,
        max_age_hours=24,
    )
    keeper.check()
    venue.fail = True
    clock.advance_to(clock.now_ms() + 24 * HOUR)
    keeper.check()  # the daily refresh fails; the specs are 24 h old: still trading
    venue.fail = False
    clock.advance_to(clock.now_ms() + HOUR)
    keeper.check()  # the next tick: read again, fresh
    assert venue.reads == 2
    assert keeper.read_at_ms == clock.now_ms()
    clock.advance_to(clock.now_ms() + 5 * 60_000)
    keeper.check()  # a success: the next read is about an hour later
    assert venue.reads == 2


def test_an_hourly_tick_reads_the_venues_listing_at_each_tick() -> None:
    """A contract the venue withdraws between two reads fails every tick's reads of it until
    the next read sees it gone: read once a day, that was up to a day of failed ticks. Each
    hourly tick now reads again, the tick's time jittering by milliseconds either way."""
    clock = SimClock(1_767_225_600_000)
    venue = _Venue({ADA: BINANCE[ADA]})
    keeper = CatalogueKeeper(
        cast(CcxtExchange, venue),
        exchange_name="binanceusdm",
        data_dir=None,
        symbols=[ADA],
        store=MemoryStore(),
        clock=clock,
        max_age_hours=48,
    )
    start = clock.now_ms()
    for hour, jitter in enumerate((0, 7, -3, 2, -9, 0)):
        clock.advance_to(start + hour * HOUR + jitter)
        keeper.check()
    assert venue.reads == 6


def test_failed_refreshes_are_not_retried_at_every_tick_of_a_fast_policy() -> None:
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA]})
    keeper = CatalogueKeeper(
        cast(CcxtExchange, venue),
        exchange_name="binanceusdm",
        data_dir=None,
        symbols=[ADA],
        store=store,
        clock=clock,
        max_age_hours=48,
    )
    keeper.check()
    venue.fail = True
    clock.advance_to(clock.now_ms() + 24 * HOUR)
    keeper.check()
    assert len(store.events) == 1  # the failed refresh
    for _ in range(5):  # a 1m policy's next ticks
        clock.advance_to(clock.now_ms() + 60_000)
        keeper.check()
    assert len(store.events) == 1  # not one venue read per minute while it fails
    clock.advance_to(clock.now_ms() + 10 * 60_000)
    keeper.check()
    assert len(store.events) == 2  # tried again, some minutes later


def _delisting_keeper(
    clock: SimClock, store: MemoryStore, venue: _Venue, out: Outbox
) -> tuple[CatalogueKeeper, list[dict[str, VenueRestriction]]]:
    notifier = Notifier(store, clock, None, AlertRules(), account="t")  # type: ignore[arg-type]
    out.serve(notifier)
    given: list[dict[str, VenueRestriction]] = []
    keeper = CatalogueKeeper(
        cast(CcxtExchange, venue),
        exchange_name="binanceusdm",
        data_dir=None,
        symbols=[ADA, BTC],
        store=store,
        clock=clock,
        max_age_hours=48,
        on_restrict=lambda r: given.append(dict(r)),
        notifier=notifier,
        settlement_lead_hours=24,
    )
    return keeper, given


def test_a_withdrawn_contract_is_one_event_and_alert_per_change_and_the_others_stay_fresh() -> None:
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    out = Outbox()
    keeper, given = _delisting_keeper(clock, store, venue, out)
    keeper.check()
    assert given[-1] == {}
    venue.withdrawn = {ADA: "status SETTLING"}
    for _ in range(3):  # three daily refreshes see the same withdrawal: one event, one alert
        clock.advance_to(clock.now_ms() + 25 * HOUR)
        keeper.check()
        assert keeper.read_at_ms == clock.now_ms()  # the refresh succeeds for BTC
    assert given[-1] == {ADA: VenueRestriction(f"{ADA}: withdrawn by the venue (status SETTLING)")}
    venue.withdrawn = {ADA: ABSENT}
    clock.advance_to(clock.now_ms() + 25 * HOUR)
    keeper.check()  # 100 h after the start: still fresh, not StaleCatalogue
    assert given[-1][ADA].listed is False
    venue.withdrawn = {}
    clock.advance_to(clock.now_ms() + 25 * HOUR)
    keeper.check()
    assert given[-1] == {}
    reasons = [e.reason for e in store.events if e.kind == "catalogue"]
    assert [r.split(": ", 2)[1] for r in reasons] == [
        "withdrawn by the venue (status SETTLING)",
        "withdrawn by the venue (the venue lists no such market)",
        "the venue trades this contract again (it was withdrawn",
    ]
    assert all(e.symbol == ADA for e in store.events)
    assert [title.split(": ")[0] for title, _ in out.sent] == ["[t] critical"] * 3
    assert all(ADA in body for _, body in out.sent)


def test_a_scheduled_settlement_is_one_warning_and_reduce_only_from_the_lead_time() -> None:
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    out = Outbox()
    keeper, given = _delisting_keeper(clock, store, venue, out)
    keeper.check()
    settles = clock.now_ms() + 60 * HOUR
    venue.settles = {ADA: settles}
    clock.advance_to(clock.now_ms() + 25 * HOUR)
    keeper.check()  # 35 h before the settlement: said, not yet reduce-only
    assert given[-1] == {}
    [event] = store.events
    assert event.symbol == ADA
    assert "the venue settles this perpetual at 2026-01-03 12:00 UTC" in event.reason
    assert "does not close it" in event.reason
    [(title, _)] = out.sent
    assert title.startswith("[t] warning")
    clock.advance_to(settles - 24 * HOUR)  # the lead time: reduce-only, no second alert
    keeper.check()
    [restriction] = given[-1].values()
    assert restriction.withdrawn is False
    assert "within the 24 h lead" in restriction.reason
    clock.advance_to(clock.now_ms() + 2 * HOUR)
    keeper.check()
    assert len(store.events) == 1
    assert len(out.sent) == 1
    clock.advance_to(settles)  # settled, before a refresh reads the venue's new status
    keeper.check()
    assert given[-1] == {
        ADA: VenueRestriction(f"{ADA}: settled by the venue at 2026-01-03 12:00 UTC")
    }


def test_a_withdrawal_and_a_settlement_seen_in_one_check_are_two_alerts() -> None:
    """At a start after the venue stopped trading a contract it had scheduled to settle (both
    read in one refresh): the critical alert and the warning naming the settlement time were
    keyed alike (contract and minute), so the warning was taken for a duplicate, not sent."""
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    venue.withdrawn = {ADA: "status SETTLING"}
    venue.settles = {ADA: clock.now_ms() + 10 * HOUR}
    out = Outbox()
    keeper, _ = _delisting_keeper(clock, store, venue, out)
    keeper.check()
    assert len([e for e in store.events if e.kind == "catalogue"]) == 2
    assert sorted(title.split(": ")[0] for title, _ in out.sent) == ["[t] critical", "[t] warning"]
    assert any("the venue settles this perpetual at" in body for _, body in out.sent)


def test_the_live_start_does_not_call_a_stand_in_a_change_by_the_venue() -> None:
    """Bybit live with XRP, which the bundled Bybit snapshot lacks: offline it resolves to the
    labelled stand-in (Binance's figures). The start compared the venue's own XRP with that
    stand-in and recorded "the venue changed the contract" (tick, step, brackets): the venue
    changed nothing. The difference is said as what it is; a change the venue makes after the
    start is still a change."""
    xrp = "XRP/USDT:USDT"
    [(stand_in, catalogue)] = resolve_with_sources("bybit", [xrp], None)[0].values()
    assert catalogue.is_stand_in(xrp)
    own = replace(stand_in, tick_size=stand_in.tick_size * 10, min_qty=stand_in.min_qty * 10)
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({xrp: own})
    keeper = CatalogueKeeper(
        cast(CcxtExchange, venue),
        exchange_name="bybit",
        data_dir=None,
        symbols=[xrp],
        store=store,
        clock=clock,
        max_age_hours=48,
    )
    keeper.check()
    [event] = store.events
    assert event.reason.startswith(
        f"{xrp}: the venue's own figures differ from the STAND-IN the simulation uses: tick_size"
    )
    venue.specs = {xrp: replace(own, min_qty=own.min_qty * 2)}
    clock.advance_to(clock.now_ms() + 25 * HOUR)
    keeper.check()
    assert store.events[-1].reason.startswith(f"{xrp}: the venue changed the contract: min_qty")


def test_a_restart_reports_only_what_changed_since_the_last_report() -> None:
    """What was reported lived in the keeper's memory: every start (a crash loop, a
    redeploy) sent the same critical alert and recorded the same events again."""
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    venue.withdrawn = {ADA: "status SETTLING"}
    settles = clock.now_ms() + 60 * HOUR
    venue.settles = {BTC: settles}
    out = Outbox()

    def start() -> list[dict[str, VenueRestriction]]:
        keeper, given = _delisting_keeper(clock, store, venue, out)
        keeper.check(hold_alerts=True)
        keeper.release_alerts()  # the start confirmed
        clock.advance_to(clock.now_ms() + 60_000)
        return given

    start()
    assert len(out.sent) == 2  # the withdrawal (critical) and the settlement (warning)
    for _ in range(3):  # a crash loop: the same listing read at each start
        given = start()
        assert given[-1] == {
            ADA: VenueRestriction(f"{ADA}: withdrawn by the venue (status SETTLING)")
        }
    assert len(out.sent) == 2
    assert len([e for e in store.events if e.kind == "catalogue"]) == 2
    # What changed since is said at the next start: a new settlement time, trading again.
    venue.settles = {BTC: settles + 24 * HOUR}
    venue.withdrawn = {}
    start()
    assert len(out.sent) == 4
    assert "the venue trades this contract again" in out.sent[-2][1] + out.sent[-1][1]
    start()
    assert len(out.sent) == 4


def test_a_start_declined_at_the_prompt_reports_again_at_the_next_start() -> None:
    """The alerts of a start declined at the prompt were never sent: the next start sends
    them (what was reported is kept once the alerts go out)."""
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    venue.withdrawn = {ADA: "status SETTLING"}
    out = Outbox()
    declined, _ = _delisting_keeper(clock, store, venue, out)
    declined.check(hold_alerts=True)  # ... and the trader answers no
    assert out.sent == []
    keeper, _ = _delisting_keeper(clock, store, venue, out)
    keeper.check(hold_alerts=True)
    keeper.release_alerts()
    [(title, body)] = out.sent
    assert title.startswith("[t] critical")
    assert "withdrawn by the venue (status SETTLING)" in body


def test_a_guard_refreshes_when_due_and_never_refuses_a_stale_catalogue() -> None:
    """The guard runs every minute, the decision tick of a 1d policy once a day: a delisting
    was seen at the next tick only. Before a guard the refresh is made when due (no request
    otherwise), and a catalogue too old stops the ticks, never the guard."""
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    keeper, given = _delisting_keeper(clock, store, venue, Outbox())
    keeper.check()
    for _ in range(54):  # minute guards within the hour: a time check each, no request
        clock.advance_to(clock.now_ms() + 60_000)
        keeper.refresh_when_due()
    assert venue.reads == 1
    assert len(given) == 1
    venue.withdrawn = {ADA: ABSENT}
    clock.advance_to(clock.now_ms() + 2 * 60_000)
    keeper.refresh_when_due()  # 56 min after the last read: due
    assert venue.reads == 2
    assert keeper.read_at_ms == clock.now_ms()
    assert given[-1][ADA].listed is False
    venue.fail = True  # the venue's market list cannot be read for three days
    clock.advance_to(clock.now_ms() + 72 * HOUR)
    keeper.refresh_when_due()  # no StaleCatalogue: the guard keeps the stops resting
    with pytest.raises(StaleCatalogue):
        keeper.check()  # the decision tick does refuse


def test_a_no_such_symbol_answer_reads_the_market_list_at_once_and_believes_only_it() -> None:
    """A read of ADA answered "no such symbol" minutes after a refresh: the market list is
    read at once, not at the next hourly refresh; ADA is withdrawn only when the list says so,
    and the list is read at most once a minute for such answers."""
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    out = Outbox()
    keeper, given = _delisting_keeper(clock, store, venue, out)
    keeper.check()
    clock.advance_to(clock.now_ms() + 5 * 60_000)
    keeper.confirm_withdrawn(ADA)  # the list still has ADA trading: nothing withdrawn
    assert venue.reads == 2
    assert given[-1] == {}
    clock.advance_to(clock.now_ms() + 30_000)
    keeper.confirm_withdrawn(ADA)  # asked again within the minute: no second read
    assert venue.reads == 2
    venue.withdrawn = {ADA: ABSENT}
    clock.advance_to(clock.now_ms() + 30_000)
    keeper.confirm_withdrawn(ADA)
    assert venue.reads == 3
    assert given[-1] == {
        ADA: VenueRestriction(
            f"{ADA}: withdrawn by the venue (the venue lists no such market)", listed=False
        )
    }
    [event] = [e for e in store.events if e.kind == "catalogue"]
    assert "withdrawn by the venue (the venue lists no such market)" in event.reason
    assert [title.split(": ")[0] for title, _ in out.sent] == ["[t] critical"]
    keeper.confirm_withdrawn(ADA)  # withdrawn already: no read
    assert venue.reads == 3


def test_a_contract_listed_not_trading_whose_reads_the_venue_refuses_is_read_no_more() -> None:
    """The venue lists ADA as not trading (its reads were still made) and answers "no such
    symbol" to them: read no more, as a contract it no longer lists, said once (a restart
    says it again only when something else was said of ADA since)."""
    clock = SimClock(1_767_225_600_000)
    store = MemoryStore()
    venue = _Venue({ADA: BINANCE[ADA], BTC: BINANCE[BTC]})
    venue.withdrawn = {ADA: "status CLOSE"}
    out = Outbox()
    keeper, given = _delisting_keeper(clock, store, venue, out)
    keeper.check()
    assert given[-1][ADA].listed is True
    keeper.confirm_withdrawn(ADA)
    assert venue.reads == 1  # the list already says ADA is not trading
    assert given[-1][ADA].listed is False
    assert given[-1][ADA].withdrawn
    restarted, again = _delisting_keeper(clock, store, venue, out)
    restarted.check()
    assert again[-1][ADA].listed is True  # read again after a restart ...
    restarted.confirm_withdrawn(ADA)
    assert again[-1][ADA].listed is False  # ... until the venue refuses it again
    reasons = [e.reason for e in store.events if e.kind == "catalogue"]
    assert len(reasons) == 2, reasons
    assert "answers that it has no such symbol" in reasons[-1]
    assert [title.split(": ")[0] for title, _ in out.sent] == ["[t] critical"] * 2
    venue.withdrawn = {}  # trading again: read again
    clock.advance_to(clock.now_ms() + HOUR)
    restarted.check()
    assert again[-1] == {}
