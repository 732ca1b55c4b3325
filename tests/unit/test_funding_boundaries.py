"""Boundaries of the direction of funding, who pays and who receives, where the bot acts on it
(bot/sim/triggers.py settle_funding, bot/policy/leverage.py funding_cap, bot/runtime/scheduler.py
pre-funding planning) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

A positive rate: longs pay shorts; a negative one: shorts pay longs (Binance "Introduction to
Binance Futures Funding Rates"). Every test of these three had a long and a positive rate, where
"the holder pays" and "the long pays" agree; each test below holds a short too."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import Decimal as D

import pytest

from bot.clock import LiveClock, SimClock
from bot.config.policy import Policy
from bot.domain.enums import MarginMode, OrderSide
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.position import Position
from bot.policy.decide import decide
from bot.policy.leverage import funding_cap
from bot.runtime.scheduler import VenueSchedule, _schedule_funding, new_scheduler
from bot.sim.triggers import settle_funding
from tests.conftest import make_exchange
from tests.unit.test_policy_properties import VOL_TARGET, view
from tests.unit.test_sim_exchange import market

BTC = "BTC/USDT:USDT"


# -- the simulated venue's settlement ------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "rate", "paid"),
    [
        (OrderSide.SELL, "0.0001", "-0.61"),  # a short receives a positive rate
        (OrderSide.BUY, "-0.0001", "-0.61"),  # a long receives a negative one
        (OrderSide.SELL, "-0.0001", "0.61"),  # a short pays a negative one
    ],
)
def test_funding_is_paid_by_the_side_the_rate_charges(
    instruments: dict[str, Instrument], side: OrderSide, rate: str, paid: str
) -> None:
    """Mutant t_fund_abs (the position's size taken without its sign: every holder pays a
    positive rate): 0.1 BTC at a mark of 61,000 and a rate of +-0.01 % exchange 0.1 x 61,000 x
    0.0001 = 0.61 USDT a settlement. A short receives it at a positive rate, where the mutant
    charged it: funding income counted as cost, a hedge's short leg reported losing it."""
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 5)
    ex.place_order(market("e1", side, "0.1"))
    wallet = ex.book.wallet
    settle_funding(ex, BTC, 0, D(rate), D(61000))
    assert ex.book.wallet == wallet - D(paid)
    assert ex.funding_paid == D(paid)
    assert ex.events[-1].amount == D(paid)


# -- the policy's funding cap --------------------------------------------------------------------


def _leverage(policy: Policy, rate: str, direction: int) -> D:
    """The leverage the policy decides for BTC at a volatility of 35 % a year (0.70 / 0.35 =
    2x before the funding cap) at a funding rate of ``rate`` every 8 h."""
    [d] = decide([view(D("0.35"), D(60000), D(rate), direction)], policy)
    return d.target_leverage


def test_the_funding_cap_binds_the_side_that_pays() -> None:
    """Mutant f_cap_dir (the cost per unit of leverage taken as the annual rate, whatever the
    side): a rate of -0.03 % every 8 h is -0.0003 x 1,095 = -32.85 % a year, paid by shorts. A
    short at 2x pays 65.7 % of its equity a year, over the policy's 25 %: its leverage is
    capped to 0.25 / 0.3285 = 0.76. A long receives it and keeps 2x. The mutant capped the
    long instead and let the short pay 65.7 % a year."""
    assert _leverage(VOL_TARGET, "-0.0003", -1) == D("0.76")
    assert _leverage(VOL_TARGET, "-0.0003", 1) == D(2)
    # The positive rate the other way round.
    assert _leverage(VOL_TARGET, "0.0003", 1) == D("0.76")
    assert _leverage(VOL_TARGET, "0.0003", -1) == D(2)
    # The cap itself: leverage x direction x annual rate, the cost of the side held.
    capped, note = funding_cap(D(2), -1, D("-0.3285"), D("0.25"))
    assert round(capped, 6) == D("0.761035")
    assert note
    assert funding_cap(D(2), 1, D("-0.3285"), D("0.25")) == (D(2), "")


# -- the pre-funding tick's planning -------------------------------------------------------------


ETH, SOL, XRP, ADA = "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "ADA/USDT:USDT"


class Book:
    """The engine, market data and exchange the funding planner reads: one position and one
    rate per contract (``None``: flat), every settlement ten minutes from ``now_ms``."""

    def __init__(self, now_ms: int, book: dict[str, tuple[str | None, str]]) -> None:
        self.symbols = tuple(book)
        self.withdrawn: frozenset[str] = frozenset()
        self.market = self
        self.exchange = self
        self.book = book
        self.settles_ms = now_ms + 10 * 60_000
        self.policy = VOL_TARGET

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(D(self.book[symbol][1]), D(8), self.settles_ms)

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        out = {}
        for sym in symbols:
            qty = self.book[sym][0]
            if qty is not None:
                out[sym] = Position(sym, D(qty), D(100), D(2), MarginMode.CROSS)
        return out


class Runner:
    """What the planner calls on the runner: the holds it plans are recorded."""

    def __init__(self, engine: Book, clock: SimClock) -> None:
        self.engine = engine
        self.clock = clock
        self.holds: list[tuple[int, int, set[str]]] = []

    def venue_now_ms(self) -> int:
        return self.clock.now_ms()

    def before_funding(self, symbols: set[str]) -> None:
        pass

    def hold_for_funding(self, settles_ms: int, from_ms: int, symbols: set[str]) -> None:
        self.holds.append((settles_ms, from_ms, symbols))


def test_the_pre_funding_tick_holds_back_the_contracts_that_pay_not_those_that_receive() -> None:
    """Mutant f_sched_pay (``p.qty * rate < 0``: the receivers held back) and its relatives
    (every position held back, whatever its side): the tick before a settlement takes no
    increase on the contracts whose position will PAY at it (docs/architecture.md). A long at
    a positive rate pays (BTC), a short at a negative one pays (SOL); a short at a positive
    rate (ETH) and a long at a negative one (XRP) receive, and a flat contract (ADA) pays
    nothing: those three trade on as usual. (tests/runtime/test_scheduler_faults.py's venue
    is all longs at a positive rate, where holding every position back looks right.)"""
    wall = LiveClock().now_ms()  # APScheduler plans on the wall clock: the job in the future
    engine = Book(
        wall,
        {
            BTC: ("0.5", "0.0001"),
            ETH: ("-2", "0.0001"),
            SOL: ("-10", "-0.0002"),
            XRP: ("1000", "-0.0002"),
            ADA: (None, "0.0001"),
        },
    )
    runner = Runner(engine, SimClock(wall))
    sched = new_scheduler(grace_seconds=120)
    venue = VenueSchedule(runner.clock, runner.venue_now_ms)
    _schedule_funding(sched, runner, venue, 120, threading.Event())  # type: ignore[arg-type]
    settles = engine.settles_ms
    assert runner.holds == [(settles, settles - 120_000, {BTC, SOL})]
    job = sched.get_job(f"funding-{settles}")
    assert job is not None
    assert list(job.args) == [{BTC, SOL}]
