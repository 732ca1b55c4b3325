"""``bot stress`` on a hedged book: each scenario with and without the hedge leg."""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import MarginMode
from bot.instruments import load_instruments
from bot.tools.hedge_stress import comparison_json, unhedged_outcomes, without_hedge
from bot.tools.portfolio import Holding, Portfolio
from bot.tools.scenarios import Scenario
from bot.tools.stress import Limits, run_scenario

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KNOWN = load_instruments("binanceusdm")
INSTRUMENTS = {s: KNOWN[s] for s in (BTC, ETH)}
LIMITS = Limits(D("0.05"), D("0.25"))
BOOK = Portfolio(
    wallet=D(10000),
    margin_mode=MarginMode.ISOLATED,
    holdings=(
        Holding(ETH, D(8), D(2500), 4, D(2500)),  # 2x equity long
        Holding(BTC, D("-0.3"), D(50000), 5, D(50000)),  # hedge: 1.5x equity short
    ),
    source="test book",
)


def test_the_book_without_its_hedge_keeps_the_rest() -> None:
    bare = without_hedge(BOOK, [BTC])
    assert bare is not None
    assert bare.symbols() == (ETH,)
    assert bare.wallet == BOOK.wallet
    assert without_hedge(BOOK, ["SOL/USDT:USDT"]) is None  # no hedge leg held


def test_a_market_wide_fall_costs_the_hedged_book_less() -> None:
    fall = Scenario("all -10%", "move", {ETH: D("-0.1"), BTC: D("-0.1")})
    rise = Scenario("BTC +10%", "move", {BTC: D("0.1")})
    hedged = [run_scenario(BOOK, INSTRUMENTS, s, LIMITS, D(0)) for s in (fall, rise)]
    bare = without_hedge(BOOK, [BTC])
    assert bare is not None
    unhedged = unhedged_outcomes(bare, INSTRUMENTS, [fall, rise], LIMITS, D(0))
    rows = comparison_json(hedged, unhedged)
    # All fall 10 %: ETH loses 2000, the BTC short gains 1500.
    assert D(rows[0]["pnl_unhedged"]) == D(-2000)
    assert D(rows[0]["pnl_hedged"]) == D(-500)
    # BTC alone rises: only the hedge loses; the unhedged book is untouched.
    assert D(rows[1]["pnl_unhedged"]) == 0
    assert D(rows[1]["pnl_hedged"]) == D(-1500)
