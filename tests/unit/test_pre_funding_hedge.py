"""A pre-funding tick adds no exposure to a contract about to pay, hedge legs included.

The planner puts every contract whose position pays at the next settlement into the tick's
no-increase set (``bot/runtime/scheduler.py``), hedge legs too; ``Runner.before_funding`` sets
``Engine.no_increase``. The book's contracts honoured it, the hedge desk did not: a BTC short
about to pay grew by what the spot wallet gained (README, Scheduling: "a tick before each
funding settlement that adds no exposure to a contract about to pay")."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.exchange.spot import ConfiguredSpotWallet
from tests.unit.test_engine_hedge import BTC, ETH, build

RATES = {ETH: D("-0.0001"), BTC: D("-0.0003")}  # the ETH long receives, the BTC short pays


def test_a_pre_funding_tick_does_not_grow_a_hedge_leg_about_to_pay(
    instruments: dict[str, Instrument],
) -> None:
    # An ETH long and 0.05 BTC in the spot wallet, hedged by a BTC short; BTC funding is
    # negative, so the short pays at the settlement two minutes away.
    spot = ConfiguredSpotWallet({"BTC": D("0.05")})
    engine, ex, _ = build(instruments, spot)

    def funding(symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(RATES[symbol], D(8), now_ms + 120_000)  # settles in two minutes

    engine.market.funding = funding  # type: ignore[method-assign]
    engine.tick()
    short = ex.fetch_positions([BTC])[BTC].qty
    assert short < 0
    spot.holdings["BTC"] = D("0.10")  # the trader moved 0.05 BTC more into the spot wallet
    clock = engine.clock
    assert isinstance(clock, SimClock)
    clock.advance(timedelta(minutes=58))
    engine.no_increase = {BTC}  # what the planner plans: the paying short
    try:
        result = engine.tick()
    finally:
        engine.no_increase = set()
    assert ex.fetch_positions([BTC])[BTC].qty == short  # held, not grown before it pays
    (decision,) = [d for d in result.decisions if d.symbol == BTC]
    assert decision.target_qty == short
    assert "no increase allowed" in decision.reason
    assert "funding" in decision.reason

    # The regular tick after the settlement hedges the added spot as usual.
    clock.advance(timedelta(minutes=2))
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty < short


def test_a_pre_funding_tick_says_why_a_book_contract_takes_no_increase(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _ = build(instruments)
    engine.no_increase = {ETH}  # the book's ETH, flat: its entry would be an increase
    try:
        result = engine.tick()
    finally:
        engine.no_increase = set()
    assert ETH not in ex.fetch_positions([ETH])
    (decision,) = [d for d in result.decisions if d.symbol == ETH]
    assert "pre-funding tick: no new exposure before the settlement" in decision.reason
