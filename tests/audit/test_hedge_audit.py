"""Adversarial audit of the hedge leg: scenarios a perp trader hits, each one a defect found on
the code before its fix (see each test's docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import tests.unit.test_hedge_policy as hp
from bot.backtest.replay import run_simulation
from bot.cli.run import run_bot
from bot.clock import LiveClock, SimClock
from bot.config.loader import load_config, load_policy
from bot.config.policy import Policy
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.errors import ConfigError, DataError
from bot.exchange.spot import ConfiguredSpotWallet
from bot.policy.hedge import BookLeg, decide_hedge
from bot.ports.market import CandleWindow
from bot.risk.limits import RiskLimits
from bot.risk.state import set_state
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.audit.harness import run as audit_run
from tests.conftest import T0, make_exchange
from tests.e2e.test_hedge_loopback import KEY, SECRET, write_config
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import hourly_rows
from tests.integration.test_hedge_sim import LONG_ETH_SOL, oscillation, setup
from tests.unit.test_engine_hedge import BTC, ETH, LIMITS, ROOT, TwoContracts


def hedged_policy(*, hedge_cooldown: int, reentry: str) -> Policy:
    policy = load_policy(ROOT / "policies" / "vol_target_hedged.toml")
    assert policy.hedge is not None
    hedge = policy.hedge.model_copy(
        update={
            "target_net_exposure": D(0),
            "band": D("0.1"),
            "cooldown_minutes": hedge_cooldown,
        }
    )
    reentry_params = policy.reentry.model_copy(update={"cooldown": reentry})
    return policy.model_copy(update={"hedge": hedge, "reentry": reentry_params})


def build(
    instruments: dict[str, Instrument],
    policy: Policy,
    limits: RiskLimits = LIMITS,
    market: TwoContracts | None = None,
    spot: ConfiguredSpotWallet | None = None,
) -> tuple[Engine, SimulatedExchange, MemoryStore, SimClock]:
    ex, clock = make_exchange(instruments)
    market = market or TwoContracts()
    for sym in (BTC, ETH):
        px, _ = market.last_price(sym, T0) or (D(0), 0)
        ex.set_mark(sym, px)
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=policy,
        contracts=[ContractSpec(ETH, "long", D(125)), ContractSpec(BTC, "hedge", D(125))],
        limits=limits,
        account="t",
        spot=spot,
        spot_assets=tuple(spot.holdings) if spot is not None else (),
    )
    return engine, ex, store, clock


def stop_of(ex: SimulatedExchange, symbol: str) -> D:
    (stop,) = [o for o in ex.fetch_open_orders(symbol) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    return stop.trigger_price


def crash_through_the_book_stop(ex: SimulatedExchange) -> None:
    """ETH falls through its stop (BTC, the hedge, falls 3 % with it: far from its own stop)."""
    ex.set_mark(BTC, ex.marks[BTC] * D("0.97"))
    ex.set_mark(ETH, stop_of(ex, ETH) * D("0.99"))
    assert ETH not in ex.fetch_positions([ETH])  # the long was stopped out


def test_a_cooldown_never_keeps_an_orphaned_hedge_after_the_book_is_stopped_out(
    instruments: dict[str, Instrument],
) -> None:
    """Crash: the long book is stopped out and the short hedge stays, the book is now net
    short by the whole hedge. Both the hedge cooldown (a change 1 h ago) and the book's
    re-entry cooldown are running. Before the fix the hedge was held for the rest of
    ``[hedge] cooldown_minutes`` (a squeeze in the rebound hit a naked short); a cooldown may
    delay an increase of the hedge, never a reduction that cuts the exposure."""
    policy = hedged_policy(hedge_cooldown=240, reentry="24h")
    engine, ex, _, clock = build(instruments, policy)
    engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    clock.advance(timedelta(minutes=30))
    crash_through_the_book_stop(ex)
    clock.advance(timedelta(minutes=30))
    result = engine.tick()
    assert ETH not in ex.fetch_positions([ETH])  # the book stays out (re-entry cooldown)
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert BTC not in ex.fetch_positions([BTC]), hedge.reason  # the orphaned hedge is closed
    assert "cooldown" in hedge.reason  # and the reason says the cooldown did not hold it


def test_an_orphaned_hedge_smaller_than_the_band_is_closed_after_the_book_is_stopped_out(
    instruments: dict[str, Instrument],
) -> None:
    """The shipped target and band (0.5, 0.5) and a book near the gross cap, so part-hedged:
    after the crash stopped the book out, the short hedge left, -0.42x equity, was inside the
    band around a target of 0 ("inside the band, keep the hedge"): a naked short for as long as
    the book stays out. A hedge only offsets: it is closed."""
    policy = hedged_policy(hedge_cooldown=0, reentry="24h")
    hedge = policy.hedge.model_copy(  # type: ignore[union-attr]
        update={"target_net_exposure": D("0.5"), "band": D("0.5")}
    )
    lev = policy.leverage.model_copy(update={"target_volatility": D("1.0")})
    policy = policy.model_copy(update={"hedge": hedge, "leverage": lev})
    engine, ex, _, clock = build(instruments, policy, replace(LIMITS, max_gross_leverage=D("2.4")))
    first = engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    short = ex.fetch_positions([BTC])[BTC].qty * ex.marks[BTC]
    assert D("-0.5") * first.equity < short < 0  # part-hedged: smaller than the band
    clock.advance(timedelta(minutes=30))
    crash_through_the_book_stop(ex)
    clock.advance(timedelta(minutes=30))
    result = engine.tick()
    assert ETH not in ex.fetch_positions([ETH])  # the book stays out (re-entry cooldown)
    (hedge_decision,) = [d for d in result.decisions if d.symbol == BTC]
    assert BTC not in ex.fetch_positions([BTC]), hedge_decision.reason
    assert "the hedge adds exposure" in hedge_decision.reason


@settings(max_examples=300, deadline=None)
@given(
    book=st.decimals(min_value=-60000, max_value=60000, places=0),
    held=st.decimals(min_value=-1, max_value=1, places=3),
    price=st.decimals(min_value=20000, max_value=120000, places=1),
    beta=st.decimals(min_value=D("0.3"), max_value=3, places=2),
    target=st.decimals(min_value=0, max_value=2, places=2),
    band=st.decimals(min_value=D("0.05"), max_value=1, places=2),
)
def test_inside_the_cooldown_the_hedge_only_shrinks_and_never_raises_net_exposure(
    book: D, held: D, price: D, beta: D, target: D, band: D
) -> None:
    p = hp.policy(target_net_exposure=target, band=band, min_notional=D(0), cooldown_minutes=240)
    book_legs = (BookLeg(ETH, book, beta),)
    now = 10 * 3_600_000
    out = decide_hedge(
        hp.inputs(
            D(0),
            (hp.leg(BTC, price, held),),
            book=book_legs,
            max_leverage=D(125),
            last_change_ms=now - 3_600_000,  # 180 min of the cooldown left
        ),
        p,
    )
    (d,) = out.decisions
    if d.target_qty != held:
        assert d.target_qty * held >= 0  # a cut, no flip
        assert abs(d.target_qty) < abs(held)
        # (A hold may also be cut to keep the leg's liquidation beyond its stop.)
        if "liquidation buffer" not in d.reason:
            net_after = book * beta + d.target_qty * price
            assert abs(net_after) < abs(out.net_before)
    # A hedge the book does not need at all (no book) is closed at once, cooldown or not.
    if book == 0 and held != 0 and abs(held * price) > band * D(10000):
        assert d.target_qty == 0, d.reason


def gap_through_the_book_stop(ex: SimulatedExchange) -> None:
    """ETH gaps 10 % through its stop (the fill is at the gapped price: a loss past the daily
    limit); BTC falls 3 %."""
    ex.set_mark(BTC, ex.marks[BTC] * D("0.97"))
    ex.set_mark(ETH, stop_of(ex, ETH) * D("0.90"))
    assert ETH not in ex.fetch_positions([ETH])


@pytest.mark.parametrize(("hedge_cooldown", "reentry"), [(0, "0"), (240, "24h")])
def test_in_reducing_the_hedge_is_measured_against_the_book_that_is_held(
    instruments: dict[str, Instrument], hedge_cooldown: int, reentry: str
) -> None:
    """The crash takes the day past its loss limit: the state moves to ``reducing`` and the
    long book, stopped out, may not re-enter (the gate denies its entries). Before the fix the
    hedge was decided on the book's targets, the entries the gate then denied: it kept the
    short hedge against a phantom long book, the account net short all day. It is measured
    against what the book can hold in this state and cut at once (only reductions pass in
    ``reducing``, and this is one). With cooldowns set, the move to ``reducing`` also starts
    the hedge leg's own re-entry cooldown, and the hedge changed an hour ago: neither holds
    the cut."""
    limits = replace(LIMITS, daily_loss=D("0.03"), on_daily_loss="reducing")
    policy = hedged_policy(hedge_cooldown=hedge_cooldown, reentry=reentry)
    engine, ex, store, clock = build(instruments, policy, limits)
    engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    clock.advance(timedelta(minutes=30))
    gap_through_the_book_stop(ex)
    clock.advance(timedelta(minutes=30))
    result = engine.tick()
    assert result.state is TradingState.REDUCING
    assert ETH not in ex.fetch_positions([ETH])  # no new exposure in this state
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert BTC not in ex.fetch_positions([BTC]), hedge.reason
    assert not [e for e in store.events if e.kind is EventKind.DENIED and e.symbol == BTC]


class GapInBtc(TwoContracts):
    """From ``gap = True`` on, BTC's feed has lost three candles a day ago: the market-data
    source cuts the window at the gap (``CandleWindow.gap_before``), as the paper and live
    sources do, and the 20 candles after it are far from the 169 the statistics need."""

    gap = False

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        w = super().closed_candles(symbol, tf_ms, count, now_ms)
        if symbol != BTC or not self.gap:
            return w
        first = int(w.ts[-20])
        return CandleWindow(
            w.ts[-20:],
            w.open[-20:],
            w.high[-20:],
            w.low[-20:],
            w.close[-20:],
            tf_ms,
            gap_before=(first - 3 * tf_ms, first),
        )


def test_an_orphaned_hedge_is_cut_while_a_gap_leaves_the_primary_without_statistics(
    instruments: dict[str, Instrument],
) -> None:
    """The crash stops the long book out (24 h re-entry cooldown) while BTC, the primary hedge
    instrument, has a gap in its candles: no statistics for BTC until 169 gap-free candles
    close. Before the fix the hedge was held for want of data ("no market data for the primary
    hedge instrument"): the short, about 1x equity with no book to offset, stayed open for up
    to a week. A cut needs only the position and its mark."""
    market = GapInBtc()
    engine, ex, store, clock = build(
        instruments, hedged_policy(hedge_cooldown=0, reentry="24h"), market=market
    )
    engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    clock.advance(timedelta(minutes=30))
    crash_through_the_book_stop(ex)
    market.gap = True
    clock.advance(timedelta(minutes=30))
    result = engine.tick()
    assert [e for e in store.events if e.kind is EventKind.NO_DECISION and e.symbol == BTC]
    assert ETH not in ex.fetch_positions([ETH])  # the book stays out (re-entry cooldown)
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert BTC not in ex.fetch_positions([BTC]), hedge.reason  # the orphaned hedge is closed
    assert "no market statistics for BTC" in hedge.reason
    assert "the hedge adds exposure" in hedge.reason
    assert not ex.fetch_open_orders(BTC)  # its stop went with it


def test_a_hedge_the_book_still_needs_is_held_while_the_primary_has_no_statistics(
    instruments: dict[str, Instrument],
) -> None:
    """The same gap with the book still held: only cuts are decided without statistics, and
    the hedge offsets the book as it should, so it is held as it is, with its stop."""
    market = GapInBtc()
    engine, ex, store, clock = build(
        instruments, hedged_policy(hedge_cooldown=0, reentry="24h"), market=market
    )
    engine.tick()
    short = ex.fetch_positions([BTC])[BTC].qty
    assert short < 0
    stop = stop_of(ex, BTC)
    market.gap = True
    clock.advance(timedelta(hours=1))
    result = engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty == short
    assert stop_of(ex, BTC) == stop
    assert [d.symbol for d in result.decisions] == [ETH]
    assert any(e.kind is EventKind.HEDGE and "none is due" in e.reason for e in store.events)


def hold_halt(store: MemoryStore) -> None:
    """What the runner does for a plain ``bot halt`` (no flatten) before the next job."""
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(
        set_state(memory, TradingState.HALTED, "bot halt", sticky=True, flatten=False)
    )


def test_a_plain_halt_still_cuts_an_orphaned_hedge(instruments: dict[str, Instrument]) -> None:
    """``bot halt`` without flatten holds the positions with their stops; the book's stop
    then fires. The hedge decision cut the short left behind, and the halt turned the cut into
    a hold: the account net short by the whole hedge until a person's ``bot resume``. A cut
    that lowers the net exposure is reduce-only and goes; the book still holds."""
    engine, ex, store, clock = build(instruments, hedged_policy(hedge_cooldown=0, reentry="0"))
    engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    hold_halt(store)
    clock.advance(timedelta(minutes=30))
    crash_through_the_book_stop(ex)
    clock.advance(timedelta(minutes=30))
    result = engine.tick()
    assert result.state is TradingState.HALTED
    assert ETH not in ex.fetch_positions([ETH])  # no re-entry under the halt
    (eth,) = [d for d in result.decisions if d.symbol == ETH]
    assert "hold, stops resting" in eth.reason
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert BTC not in ex.fetch_positions([BTC]), hedge.reason
    assert "a hedge cut that lowers the net exposure still goes" in hedge.reason
    assert not [e for e in store.events if e.kind is EventKind.DENIED]


def test_a_plain_halt_holds_a_hedge_the_policy_would_grow(
    instruments: dict[str, Instrument],
) -> None:
    """Under the same halt the book rises out of the band: the hedge policy would grow the
    short, which a halt never does. The hedge is held with its stop, and no order is sent."""
    engine, ex, store, clock = build(instruments, hedged_policy(hedge_cooldown=0, reentry="0"))
    engine.tick()
    short = ex.fetch_positions([BTC])[BTC].qty
    hold_halt(store)
    ex.set_mark(ETH, ex.marks[ETH] * D("1.15"))
    assert ex.fetch_positions([ETH])[ETH].qty > 0  # below its take-profit
    clock.advance(timedelta(hours=1))
    result = engine.tick()
    assert result.state is TradingState.HALTED
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert "-> hedge -" in hedge.reason  # the policy's larger short...
    assert "hold, stops resting" in hedge.reason  # ...held
    assert ex.fetch_positions([BTC])[BTC].qty == short
    assert not [e for e in store.events if e.kind is EventKind.DENIED]


def hedged_config(tmp: Path, candles: int, **policy_lines: str) -> Path:
    cfg = setup(
        tmp, oscillation(candles), contracts=LONG_ETH_SOL, stop="20", target="0", band="0.1"
    )
    text = (tmp / "policy.toml").read_text()
    for old, new in policy_lines.items():
        assert old in text
        text = text.replace(old, new)
    (tmp / "policy.toml").write_text(text)
    return cfg


def test_a_malformed_hedge_instrument_is_one_clear_error(tmp_path: Path) -> None:
    """Before: the right error, plus "hedge.instruments: must not be empty" (pydantic counts
    the array after dropping the bad entry) and the value shown twice."""
    cfg = hedged_config(
        tmp_path, 60, **{'instruments = ["BTC/USDT:USDT"]': 'instruments = ["btc/usdt:usdt"]'}
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{tmp_path / 'policy.toml'}: hedge.instruments[0]: must be a ccxt perpetual symbol "
        "like BTC/USDT:USDT (got btc/usdt:usdt)"
    ]


def test_a_beta_window_longer_than_the_data_names_the_key(tmp_path: Path) -> None:
    cfg = hedged_config(tmp_path, 100, **{"beta_window = 48": "beta_window = 500"})
    config = load_config(cfg)
    with pytest.raises(DataError, match=r"needs 501 1h candles .*\(hedge\.beta_window = 500\)"):
        run_simulation(config, config.policies[0])


class FlatHedgeInstrument(TwoContracts):
    """BTC, the hedge instrument, does not move at all over the window (zero variance)."""

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        w = super().closed_candles(symbol, tf_ms, count, now_ms)
        if symbol != BTC:
            return w
        flat = np.full_like(w.close, w.close[-1])
        return CandleWindow(w.ts, flat, flat, flat, flat, tf_ms)


class EveryOtherEthCandleMissing(TwoContracts):
    """ETH's data has a hole at every other hour: half as many returns in common with BTC."""

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        w = super().closed_candles(symbol, tf_ms, 2 * count, now_ms)
        step = 2 if symbol == ETH else 1
        keep = slice(-count * step, None, step)
        return CandleWindow(
            w.ts[keep], w.open[keep], w.high[keep], w.low[keep], w.close[keep], tf_ms
        )


@pytest.mark.parametrize(
    ("market", "said"),
    [
        (EveryOtherEthCandleMissing(), "ETH beta 1.00 (no regression: 83 common returns with BTC"),
    ],
)
def test_a_beta_without_a_regression_is_said_in_the_reason(
    instruments: dict[str, Instrument], market: TwoContracts, said: str
) -> None:
    """A flat hedge instrument (no variance) or a contract with holes in its data: no NaN
    reaches the decision (the beta falls back to 1, shrunk and clipped) and, before the fix,
    nothing in the reason said the hedge was sized on that fallback."""
    policy = hedged_policy(hedge_cooldown=0, reentry="0")
    engine, _, _, _ = build(instruments, policy, market=market)
    result = engine.tick()
    assert engine.hedge is not None
    assert engine.hedge.betas[ETH] == D(1)
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert hedge.target_qty < 0  # hedged on beta 1
    assert said in hedge.reason


def test_a_hedge_instrument_whose_prices_never_move_is_not_hedged_on(
    instruments: dict[str, Instrument],
) -> None:
    """A hedge instrument without one price change over the window (a frozen feed, a halted
    contract) gives no regression and no volatility: it gets no decision (the engine's frozen
    rule), so no hedge is sized on a beta or a price nothing confirms; the book is decided."""
    policy = hedged_policy(hedge_cooldown=0, reentry="0")
    engine, ex, store, _ = build(instruments, policy, market=FlatHedgeInstrument())
    result = engine.tick()
    assert [d.symbol for d in result.decisions] == [ETH]
    assert ex.fetch_positions([BTC]).get(BTC) is None
    [event] = [e for e in store.events if e.kind is EventKind.MARKET_DATA]
    assert event.symbol == BTC
    assert "prices did not move" in event.reason


def test_a_hedge_near_the_gross_cap_is_part_sized_not_refused(
    instruments: dict[str, Instrument],
) -> None:
    """The book (1x equity) leaves 0.5x of a 1.5x gross cap. Before the fix the whole 1x hedge
    went to the gate, which refused it (gross 2.0 > 1.5), tick after tick: the book stayed
    entirely unhedged. The hedge is sized into the room the book leaves, like the book's own
    increases, and the gate passes it."""
    limits = replace(LIMITS, max_gross_leverage=D("1.5"))
    engine, ex, store, _ = build(instruments, hedged_policy(hedge_cooldown=0, reentry="0"), limits)
    result = engine.tick()
    eth = ex.fetch_positions([ETH])[ETH]
    btc = ex.fetch_positions([BTC]).get(BTC)
    assert btc is not None, [e.reason for e in store.events if e.kind is EventKind.DENIED]
    assert btc.qty < 0
    gross = abs(eth.qty) * ex.marks[ETH] + abs(btc.qty) * ex.marks[BTC]
    assert gross <= D("1.5") * ex.equity()
    assert gross > D("1.45") * ex.equity()  # the room is used, to within a step
    assert not [e for e in store.events if e.kind is EventKind.DENIED]
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert "gross cap" in hedge.reason


def test_a_hedge_above_the_notional_cap_is_capped_not_refused(
    instruments: dict[str, Instrument],
) -> None:
    """ETH long at the 8,000 notional cap plus 0.05 spot BTC: the hedge needs about 11,300 of
    BTC short, above the per-contract notional cap the gate applies to the hedge leg too. Before
    the fix the whole hedge order was refused every tick (the book stayed unhedged); the
    hedge is capped at the limit like the book's contracts, and the reason says so."""
    limits = replace(LIMITS, max_notional_per_contract=D(8000))
    policy = hedged_policy(hedge_cooldown=0, reentry="0")
    spot = ConfiguredSpotWallet({"BTC": D("0.05")})
    engine, ex, store, _ = build(instruments, policy, limits, spot=spot)
    result = engine.tick()
    btc = ex.fetch_positions([BTC]).get(BTC)
    assert btc is not None, [e.reason for e in store.events if e.kind is EventKind.DENIED]
    assert btc.qty < 0
    assert abs(btc.qty) * ex.marks[BTC] <= D(8000)
    assert abs(btc.qty) * ex.marks[BTC] > D(8000) - instruments[BTC].step_size * ex.marks[BTC]
    assert not [e for e in store.events if e.kind is EventKind.DENIED]
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert "notional cap" in hedge.reason


def v_shaped_market(tmp: Path) -> Path:
    """ETH and SOL long 1.5x with 5 % stops, BTC short as the hedge; every contract falls
    10 % in three hours (the stops fire), then rebounds 25 % over twelve hours. The hedge's
    cooldown (600 min) and the book's re-entry cooldown (24 h) both run through the rebound.
    Funding is zero: the short hedge's payments are exactly 0."""
    calm = oscillation(80)
    crash = calm[-1] * np.array([0.97, 0.93, 0.90])
    rebound = crash[-1] * np.linspace(1.0, 1.25, 13)[1:]
    path = np.concatenate([calm, crash, rebound, np.full(10, rebound[-1])])
    cfg = setup(tmp, path, contracts=LONG_ETH_SOL, lev="1.5", stop="5", target="0", band="0.25")
    policy = tmp / "policy.toml"
    text = policy.read_text().replace("band = 0.25", "band = 0.25\ncooldown_minutes = 600")
    policy.write_text(text + '\n[reentry]\ncooldown = "24h"\n')
    return cfg


def test_crash_then_rebound_in_the_simulation(tmp_path: Path) -> None:
    """The whole path in the replay, the audit's invariants checked after every tick: the
    hedge is closed at the first decision after the book's stops fired (before the fix it was
    held short for ten hours of rebound), and the report holds no negative zero (before the
    fix the zero-rate funding of the short hedge was written as -0.0000000000)."""
    outcome = audit_run(v_shaped_market(tmp_path))
    assert outcome.problems == []
    ex = outcome.result.exchange
    stops = [f for f in ex.fills if f.symbol != BTC and f.purpose is OrderPurpose.STOP_LOSS]
    assert {f.symbol for f in stops} == {ETH, "SOL/USDT:USDT"}
    stopped_at = max(f.timestamp_ms for f in stops)
    (closed,) = [f for f in ex.fills if f.symbol == BTC and f.timestamp_ms > stopped_at]
    assert closed.timestamp_ms - stopped_at <= 3_600_000  # the next decision
    assert BTC not in ex.fetch_positions([BTC])


@pytest.fixture
def backend(instruments: dict[str, Instrument]) -> SimulatedExchange:
    """The account behind the loopback Binance USD-M server (as in tests/e2e)."""
    return SimulatedExchange(
        {s: instruments[s] for s in (ETH, BTC)},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.ISOLATED,
    )


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[ETH, BTC]
    )
    for sym in (ETH, BTC):
        rows = hourly_rows(400, sym)
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with srv:
        yield srv


def test_live_crash_cuts_the_orphaned_hedge_through_ccxt(
    tmp_path: Path,
    server: LoopbackBinance,
    backend: SimulatedExchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crash of the first test on the real ccxt path against the loopback Binance USD-M
    server: the hedged policy with its 240 min hedge cooldown and a 24 h re-entry cooldown. The
    first run opens ETH long and the BTC hedge; ETH's stop fires on the venue; the next run
    (a process restart: the cooldowns come back from the database) closes the hedge."""
    monkeypatch.setenv("BOT_API_KEY", KEY)
    monkeypatch.setenv("BOT_API_SECRET", SECRET)
    exchange = (
        f'[exchange]\nname = "binanceusdm"\ndemo = false\napi_url = "{server.base_url}"\n'
        "ccxt_options = { enableRateLimit = false, timeout = 2500 }"
    )
    cfg = write_config(tmp_path, name="e2ec", source="config", quantity="quantity = 0.0001",
                       exchange=exchange)  # fmt: skip
    policy = tmp_path / "hedged.toml"
    text = policy.read_text().replace("cooldown_minutes = 0", "cooldown_minutes = 240")
    policy.write_text(text + '\n[reentry]\ncooldown = "24h"\n')
    assert load_config(cfg).policies[0].reentry.cooldown_ms == 24 * 3_600_000
    with (tmp_path / "console.txt").open("w") as out:
        console = Console(file=out, width=200)

        def run_once() -> int:
            return run_bot(
                cfg, live=True, yes=True, once=True, ticks=None, replay=None, speed=1.0,
                console=console,
            )  # fmt: skip

        assert run_once() == 0
        assert backend.fetch_positions([ETH])[ETH].qty > 0
        assert backend.fetch_positions([BTC])[BTC].qty < 0
        with server.lock:
            crash_through_the_book_stop(backend)
        assert run_once() == 0
    assert ETH not in backend.fetch_positions([ETH])  # re-entry cooldown: the book stays out
    assert BTC not in backend.fetch_positions([BTC])  # the orphaned hedge is closed
    assert not [o for o in backend.fetch_open_orders(BTC)]  # and its stop cancelled
    assert server.errors == []


def test_a_hedge_instrument_without_data_is_named_as_the_policy_key(tmp_path: Path) -> None:
    """Before: "<data>: no data for 'XRP/USDT:USDT'", which reads like a traded contract's
    missing file; the key to fix was not named."""
    cfg = hedged_config(
        tmp_path, 60, **{'instruments = ["BTC/USDT:USDT"]': 'instruments = ["XRP/USDT:USDT"]'}
    )
    config = load_config(cfg)
    with pytest.raises(DataError, match=r"policy 'static_hedged': hedge\.instruments\[0\] = "):
        run_simulation(config, config.policies[0])
