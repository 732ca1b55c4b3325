"""``bot stress`` on a hedged book: each scenario with and without the hedge leg, and the spot
holdings the hedge offsets valued in every scenario."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from typer.testing import CliRunner

from bot.cli.app import app
from bot.domain.enums import MarginMode
from bot.instruments import load_instruments
from bot.tools.hedge_stress import comparison_json, unhedged_outcomes, without_hedge
from bot.tools.portfolio import Holding, Portfolio, SpotLeg
from bot.tools.scenarios import Scenario, standard_scenarios
from bot.tools.stress import Limits, outcome_json, run_scenario

ROOT = Path(__file__).resolve().parents[2]
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


SPOT_BTC = SpotLeg("BTC", BTC, D("0.3"), D(50000), "the test")  # 15,000 of spot BTC
CARRY = Portfolio(
    wallet=D(10000),
    margin_mode=MarginMode.ISOLATED,
    holdings=(Holding(BTC, D("-0.3"), D(50000), 5, D(50000)),),  # the spot hedged whole
    source="carry book",
    spot=(SPOT_BTC,),
)


def test_a_scenario_values_the_spot_the_hedge_offsets() -> None:
    """A carry book, spot BTC long and the BTC perpetual short: BTC -50 % is a gain of 7,500
    on the account (75 % of its equity) and a loss of 7,500 on the spot. The stress played the
    perpetual alone and showed the book gaining 75 %."""
    o = run_scenario(
        CARRY, INSTRUMENTS, Scenario("BTC -50%", "move", {BTC: D("-0.5")}), LIMITS, D(0)
    )
    assert o.pnl == D(7500)  # the account's, as the venue measures it
    assert o.spot_pnl == D(-7500)
    assert o.total_pnl == 0
    assert not o.daily_loss_breached


def test_the_loss_limits_count_the_spot() -> None:
    """Spot 15,000 BTC, hedged by a fifth only: BTC -10 % gains the account 300 and loses the
    spot 1,500: the book lost 12 % of the account's equity, past the 5 % daily limit."""
    book = replace(CARRY, holdings=(Holding(BTC, D("-0.06"), D(50000), 5, D(50000)),))
    o = run_scenario(
        book, INSTRUMENTS, Scenario("BTC -10%", "move", {BTC: D("-0.1")}), LIMITS, D(0)
    )
    assert o.loss_fraction == D("-0.03")
    assert o.total_loss_fraction == D("0.12")
    assert o.daily_loss_breached
    assert not o.drawdown_breached
    row = outcome_json(o)
    assert row["spot_pnl"] == "-1500"
    assert row["total_pnl"] == "-1200"
    assert row["daily_loss_breached"] is True
    # A rise: the account's loss (what the bot's limits act on) is flagged, the spot's gain
    # beside it notwithstanding.
    up = run_scenario(
        book, INSTRUMENTS, Scenario("BTC +20%", "move", {BTC: D("0.2")}), LIMITS, D(0)
    )
    assert up.loss_fraction == D("0.06")
    assert up.total_pnl > 0
    assert up.daily_loss_breached


def test_the_unhedged_carry_is_its_spot_alone() -> None:
    """Without the hedge leg, a carry book is its spot: BTC -10 % costs it 1,500, hedged 0."""
    bare = without_hedge(CARRY, [BTC])
    assert bare is not None
    assert bare.holdings == ()
    assert bare.spot == CARRY.spot
    fall = Scenario("BTC -10%", "move", {BTC: D("-0.1")})
    funding = Scenario("funding", "funding", {}, {BTC: D("-0.001")}, 3)
    hedged = [run_scenario(CARRY, INSTRUMENTS, s, LIMITS, D(0)) for s in (fall, funding)]
    rows = comparison_json(
        hedged, unhedged_outcomes(bare, INSTRUMENTS, [fall, funding], LIMITS, D(0))
    )
    assert D(rows[0]["total_pnl_hedged"]) == 0
    assert D(rows[0]["total_pnl_unhedged"]) == D(-1500)
    assert D(rows[0]["spot_pnl"]) == D(-1500)
    assert D(rows[1]["total_pnl_unhedged"]) == 0  # the spot pays no funding


def test_the_scenarios_move_a_spot_holding_no_position_is_on() -> None:
    """The hedge closed (the book's ETH alone is held) and spot BTC beside it: every market-wide
    scenario, and one of BTC's own, moves the spot with its perpetual."""
    book = replace(BOOK, holdings=BOOK.holdings[:1], spot=(SPOT_BTC,))
    assert book.moved_symbols() == (ETH, BTC)
    found = {s.name: s for s in standard_scenarios(book, {ETH: D("0.6"), BTC: D("0.4")}, {}, [])}
    assert found["all -50.0%"].moves == {ETH: D("-0.5"), BTC: D("-0.5")}
    assert found["BTC -20.0%"].moves == {BTC: D("-0.2")}
    assert found["crypto crash"].moves == {ETH: D("-0.45"), BTC: D("-0.30")}
    assert found["volatility spike"].moves[BTC] < 0  # against the spot
    assert set(found["funding spike"].funding_rates) == {ETH}  # spot pays no funding
    o = run_scenario(book, INSTRUMENTS, found["all -50.0%"], LIMITS, D(0))
    assert o.spot_pnl == D(-7500)


def _spot_config(tmp: Path, quantity: str) -> Path:
    """config.hedged.example.toml with its [spot] table in (0.05 BTC there) at ``quantity``."""
    text = (ROOT / "config.hedged.example.toml").read_text(encoding="utf-8")
    text = text.replace('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target_hedged.toml"',
        f'file = "{ROOT / "policies" / "vol_target_hedged.toml"}"',
    )
    spot = '# [spot]\n# source = "config"\n# [[spot.holdings]]\n# asset = "BTC"\n# quantity = 0.05'
    assert spot in text
    text = text.replace(spot, spot.replace("# ", "").replace("0.05", quantity))
    path = tmp / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bot_stress_shows_the_spot_beside_the_account(tmp_path: Path) -> None:
    positions = tmp_path / "positions.csv"
    positions.write_text(
        "symbol,qty,entry_price,leverage,mark\n"
        "ETH/USDT:USDT,4,2500,4,2500\n"  # the book, 1x of the 10,000 wallet
        "BTC/USDT:USDT,-0.2,50000,5,50000\n",  # the hedge: the book's 10,000 and the spot's
        encoding="utf-8",
    )
    config = _spot_config(tmp_path, "0.1")  # 5,000 of BTC at the hedge's mark
    args = ["stress", "--config", str(config), "--positions", str(positions), "--json"]
    result = CliRunner().invoke(app, [*args, "--balance", "10000"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    spot = out["portfolio"]["spot"]
    assert [(s["asset"], s["qty"], s["price"]) for s in spot] == [("BTC", "0.1", "50000")]
    assert out["portfolio"]["spot_value"] == "5000"
    rows = {s["name"]: s for s in out["scenarios"]}
    fall = rows["all -50.0%"]
    assert D(fall["spot_pnl"]) == D(-2500)
    assert D(fall["total_pnl"]) == D(fall["pnl"]) - 2500
    compared = {r["name"]: r for r in out["with_and_without_hedge"]}["all -50.0%"]
    assert D(compared["total_pnl_unhedged"]) == D(compared["pnl_unhedged"]) - 2500
    # BTC alone falling 10 %: the short gains 1,000, the spot loses 500
    btc = rows["BTC -10.0%"]
    assert (D(btc["pnl"]), D(btc["spot_pnl"])) == (D(1000), D(-500))
    # A spot no position is on is priced from the data's last close of its perpetual.
    positions.write_text(
        "symbol,qty,entry_price,leverage,mark\nETH/USDT:USDT,4,2500,4,2500\n", encoding="utf-8"
    )
    result = CliRunner().invoke(app, [*args, "--balance", "10000"])
    assert result.exit_code == 0, result.output
    (spot,) = json.loads(result.stdout)["portfolio"]["spot"]
    assert spot["priced_from"].startswith("the last 1h close of BTC/USDT:USDT in ")
    names = {s["name"] for s in json.loads(result.stdout)["scenarios"]}
    assert {"BTC -50.0%", "all -50.0%"} <= names
