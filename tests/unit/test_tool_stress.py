"""``bot stress``: portfolios, scenarios and outcomes against worked examples.

Bundled Binance brackets used (bracket 1): BTC and ETH MMR 0.004, cum 0, taker fee 0.0005,
liquidation fee 0.0125. A fresh isolated long of margin M = N / L liquidates at
LP = EP * (1 - 1/L) / (1 - MMR); BTC 0.1 at 60 000, 10x: N = 6 000, M = 600, LP = 54 216.87.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from decimal import Decimal
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bot.cli.app import app
from bot.domain.enums import MarginMode
from bot.errors import ConfigError, DataError
from bot.instruments import load_instruments
from bot.marketdata.candles import Candles
from bot.tools.extremes import Extreme, worst_moves
from bot.tools.portfolio import Holding, Portfolio, open_on_exchange, read_portfolio
from bot.tools.render import stress_table
from bot.tools.scenarios import Scenario, standard_scenarios
from bot.tools.stress import Limits, leverage_grid, outcome_json, run_scenario

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.example.toml"
INSTRUMENTS = load_instruments("binanceusdm")
LIMITS = Limits(daily_loss=D("0.05"), max_drawdown=D("0.25"))
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
runner = CliRunner()


def book(*holdings: Holding, wallet: str = "1000", mode: str = "isolated") -> Portfolio:
    return Portfolio(D(wallet), MarginMode(mode), holdings, "test book")


def btc_long(stop: str | None = None, qty: str = "0.1", lev: int = 10) -> Holding:
    return Holding(
        BTC, D(qty), D(60000), lev, D(60000), stop_loss=None if stop is None else D(stop)
    )


def play(p: Portfolio, moves: dict[str, str], slippage: str = "0", **extra: object):
    scenario = Scenario("test", "move", {s: D(m) for s, m in moves.items()}, **extra)  # type: ignore[arg-type]
    return run_scenario(p, INSTRUMENTS, scenario, LIMITS, D(slippage))


def test_a_move_short_of_liquidation() -> None:
    o = play(book(btc_long()), {BTC: "-0.05"})
    # 57 000: PnL 0.1 x -3 000 = -300; equity 700; no fees on an instant move.
    assert o.equity_before == D(1000)
    assert o.equity_after == D(700)
    assert o.loss_fraction == D("0.3")
    assert o.survived
    assert o.daily_loss_breached
    assert o.drawdown_breached
    # Isolated margin ratio: MM / (margin + PnL) = 5 700 x 0.004 / (600 - 300) = 0.076.
    assert o.margin_ratio == D("0.076")
    assert o.next_liquidation is not None
    sym, price, distance = o.next_liquidation
    assert sym == BTC
    assert abs(price - D(60000) * D("0.9") / D("0.996")) < D("1e-9")
    assert abs(distance - (D(57000) - price) / D(57000)) < D("1e-12")


def test_a_move_past_the_liquidation_price_loses_the_margin() -> None:
    o = play(book(btc_long()), {BTC: "-0.10"})
    # 54 000 < LP 54 216.87: liquidated at the gapped price; loss capped at the margin of 600.
    assert o.liquidated == (BTC,)
    assert o.equity_after == D(400)
    assert not o.survived
    assert o.next_liquidation is None


def test_a_move_past_the_bankruptcy_price_reports_the_insurance_funds_part() -> None:
    o = play(book(btc_long()), {BTC: "-0.20"})
    # 48 000, beyond the bankruptcy price 54 000: the liquidation loses 0.1 x 12 000 = 1 200.
    # The margin of 600 pays half and nothing is left for the liquidation fee; the other 600
    # is the insurance fund's (before: a liquidation fee of -600, and nothing beyond).
    assert o.liquidated == (BTC,)
    assert o.equity_after == D(400)
    assert o.beyond_wallet == D(600)


def test_a_gap_through_the_stop_fills_at_the_moved_price_with_slippage() -> None:
    o = play(book(btc_long(stop="57000")), {BTC: "-0.08"}, slippage="2")
    # Gap to 55 200 (above LP): the stop fills at 55 200 x (1 - 0.0002) = 55 188.96, down to
    # the tick (0.1): 55 188.9, not 57 000.
    assert [s.symbol for s in o.stopped] == [BTC]
    stop = o.stopped[0]
    assert stop.trigger == D(57000)
    assert stop.fill_price == D("55188.9")
    # PnL 0.1 x (55 188.9 - 60 000) = -481.11; fee 0.1 x 55 188.9 x 0.0005 = 2.759445.
    assert stop.realized_pnl == D("-481.11")
    assert o.equity_after == D("516.130555")
    assert o.liquidated == ()
    untouched = play(book(btc_long(stop="57000")), {BTC: "-0.03"})
    assert untouched.stopped == ()


def test_a_holding_entered_off_the_tick_keeps_its_entry() -> None:
    """An entry is an average of fills, off the tick (a sample run's account.json holds BTC at
    111,532.9280663714): the stress book holds it as given. The orders that open it rebuild
    the holding; filled on the tick as trades are, they bought it at 60,000.1."""
    h = Holding(BTC, D("0.1"), D("60000.04"), 10, D(60000))
    ex = open_on_exchange(book(h), INSTRUMENTS, D(0))
    assert ex.book.positions[BTC].entry_price == D("60000.04")
    assert ex.book.instruments[BTC] == INSTRUMENTS[BTC]  # the real tick and fees afterwards


def test_cross_book_liquidates_all_at_once_past_the_account_threshold() -> None:
    # Wallet 1 000 backs BTC 0.1 @ 60 000 (N 6 000) and ETH 1 @ 3 000 (N 3 000), MMR 0.004 both.
    # Both fall by m: equity 1 000 + 9 000 m = MM 9 000 (1 + m) 0.004 at
    # m* = (36 - 1 000) / (9 000 x 0.996) = -0.10754.
    eth = Holding(ETH, D(1), D(3000), 10, D(3000))
    p = book(btc_long(), eth, mode="cross")
    survives = play(p, {BTC: "-0.105", ETH: "-0.105"})
    assert survives.liquidated == ()
    equity = D(1000) - D(9000) * D("0.105")
    assert survives.equity_after == equity
    assert survives.margin_ratio == D(9000) * D("0.895") * D("0.004") / equity
    gone = play(p, {BTC: "-0.11", ETH: "-0.11"})
    assert set(gone.liquidated) == {BTC, ETH}
    assert gone.equity_after >= 0


def test_funding_spike_is_paid_from_the_margin() -> None:
    rates = {BTC: D("0.001")}  # 10 x 0.01 %, longs pay
    o = play(book(btc_long()), {}, funding_rates=rates, settlements=3)
    # 3 x 0.1 x 60 000 x 0.001 = 18.
    assert o.funding_paid == D(18)
    assert o.equity_after == D(982)
    assert o.survived


def test_standard_scenarios() -> None:
    eth_short = Holding(ETH, D(-1), D(3000), 5, D(3000))
    p = book(btc_long(), eth_short, wallet="5000")
    extremes = [
        Extreme(BTC, "1h", -1, -0.089, 0, 0, 98967.9, 90200.0, "1h"),
        Extreme(BTC, "1h", 1, 0.07, 0, 0, 90000.0, 96300.0, "1h"),
        Extreme(ETH, "1d", 1, 0.2, 0, 0, 2000.0, 2400.0, "1h"),
    ]
    scenarios = {
        s.name: s for s in standard_scenarios(p, {BTC: D("0.6")}, {ETH: D("-0.0003")}, extremes)
    }
    assert scenarios["all -50.0%"].moves == {BTC: D("-0.5"), ETH: D("-0.5")}
    assert scenarios["ETH +10.0%"].moves == {ETH: D("0.1")}
    assert scenarios["crypto crash"].moves == {BTC: D("-0.30"), ETH: D("-0.45")}
    # Vol spike: 3 x 2 daily vols = 6 x 0.6 / sqrt(365) = 18.84 % against the long; no ETH vol.
    assert scenarios["volatility spike"].moves == {BTC: D("-0.1884")}
    funding = scenarios["funding spike"]
    # 10 x the latest rate against the holder: BTC had none (floor 0.0001, longs pay); ETH's
    # -0.0003 (shorts pay) becomes -0.003 for the short.
    assert funding.funding_rates == {BTC: D("0.001"), ETH: D("-0.003")}
    assert funding.settlements == 3
    # History: only the move against each position (BTC long: the drop; ETH short: the rise).
    assert scenarios["worst 1h drop BTC"].moves == {BTC: D("-0.089")}
    assert "worst 1h rise BTC" not in scenarios
    assert scenarios["worst 1d rise ETH"].moves == {ETH: D("0.2")}


def five_minute(
    open_: Sequence[float], high: Sequence[float], low: Sequence[float], ts: Sequence[int]
) -> Candles:
    o, h, lo = (np.array(x, dtype=np.float64) for x in (open_, high, low))
    return Candles(
        np.array(ts, dtype=np.int64), o, h, lo, o, np.zeros_like(o), 300_000, BTC, "trade", "test"
    )


def test_worst_moves_over_a_horizon_and_never_across_a_gap() -> None:
    opens = [100, 100, 120, 100, 100, 100, 100, 100]
    highs = [101, 101, 121, 101, 101, 101, 130, 101]
    lows = [99, 99, 119, 95, 80, 99, 99, 99]
    step = 300_000
    contiguous = five_minute(opens, highs, lows, [i * step for i in range(8)])
    drop, rise = worst_moves(contiguous, 900_000)  # windows of 3 candles
    assert drop is not None
    assert rise is not None
    # From the open of candle 2 (120) to the low of candle 4 (80): -33.3 %.
    assert drop.move == pytest.approx(80 / 120 - 1)
    assert (drop.start_ms, drop.at_ms, drop.to_price) == (2 * step, 4 * step, 80.0)
    # From the open of candle 4 (100) to the high of candle 6 (130).
    assert rise.move == pytest.approx(0.3)
    assert (rise.start_ms, rise.at_ms) == (4 * step, 6 * step)
    # A gap after candle 3: no window may join candle 2's open to candle 4's low.
    gapped = five_minute(
        opens, highs, lows, [i * step for i in range(4)] + [(10 + i) * step for i in range(4)]
    )
    drop, _ = worst_moves(gapped, 900_000)
    assert drop is not None
    assert drop.move == pytest.approx(-0.2)
    assert drop.start_ms == 10 * step


def test_leverage_grid_finds_the_highest_surviving_leverage() -> None:
    p = book(btc_long())  # margin 600 at every level; notional 600 x L
    scenario = Scenario("BTC -10%", "move", {BTC: D("-0.10")})
    (row,) = leverage_grid(p, INSTRUMENTS, [scenario], LIMITS, D(0))
    # LP(L) = 60 000 (1 - 1/L) / 0.996 >= 54 000 when L >= 9.65: 10x and 20x are liquidated.
    survived = [not isinstance(c, str) and c.survived for c in row.cells]
    assert survived == [True, True, True, True, False, False]
    assert row.max_surviving((1, 2, 3, 5, 10, 20)) == 5
    # A 50 USDT margin buys 0.00083 BTC at 1x, less than one step of 0.001, and 0.001 BTC at
    # 2x, 60 USDT of notional, below the 100 USDT minimum: neither book can exist.
    small = book(Holding(BTC, D("0.005"), D(60000), 6, D(60000)))
    (row,) = leverage_grid(small, INSTRUMENTS, [scenario], LIMITS, D(0))
    assert isinstance(row.cells[0], str)
    assert "less than one step (0.001)" in row.cells[0]
    assert isinstance(row.cells[1], str)
    assert "notional 60.00 below minimum 100" in row.cells[1]
    assert row.max_surviving((1, 2, 3, 5, 10, 20)) is None


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("symbol,qty,entry_price\nBTC/USDT:USDT,1,60000\n", "missing column(s) leverage"),
        (
            "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,abc,60000,5\n",
            "line 2: qty is not a number: 'abc'",
        ),
        (
            "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,1,-6,5\n",
            "line 2: entry_price must be > 0, got -6",
        ),
        (
            "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,1,60000,2.5\n",
            "leverage must be a whole number",
        ),
        ("symbol,qty,entry_price,leverage\nBTC/USDT:USDT,0,60000,5\n", "line 2: qty is 0"),
        (
            "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,1,6,5\nBTC/USDT:USDT,1,6,5\n",
            "line 3: BTC/USDT:USDT appears twice",
        ),
        (
            "symbol,qty,entry_price,leverage,colour\nBTC/USDT:USDT,1,6,5,red\n",
            "unknown column(s) colour",
        ),
        ("symbol,qty,entry_price,leverage\n", "no positions"),
    ],
)
def test_positions_file_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "positions.csv", text)
    with pytest.raises(DataError) as err:
        read_portfolio(path, None, None, None, D(1000), MarginMode.ISOLATED)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_portfolio_sources(tmp_path: Path) -> None:
    text = "symbol,qty,entry_price,leverage,mark,stop_loss\nBTC/USDT:USDT,-0.1,60000,5,61000,\n"
    path = write(tmp_path / "positions.csv", text)
    p = read_portfolio(path, None, D(2000), None, D(1000), MarginMode.ISOLATED)
    assert (p.wallet, p.margin_mode) == (D(2000), MarginMode.ISOLATED)
    assert p.holdings == (Holding(BTC, D("-0.1"), D(60000), 5, D(61000)),)
    write(tmp_path / "account.json", json.dumps({"wallet": "750.5", "margin_mode": "cross"}))
    sim = read_portfolio(None, tmp_path, None, None, D(1000), MarginMode.ISOLATED)
    assert (sim.wallet, sim.margin_mode) == (D("750.5"), MarginMode.CROSS)
    with pytest.raises(ConfigError, match="exactly one of --positions and --from-sim"):
        read_portfolio(path, tmp_path, None, None, D(1000), MarginMode.ISOLATED)
    (tmp_path / "account.json").unlink()
    with pytest.raises(DataError, match=r"account\.json: not found"):
        read_portfolio(None, tmp_path, None, None, D(1000), MarginMode.ISOLATED)


@pytest.mark.parametrize(
    ("holding", "message"),
    [
        (
            Holding("ADAX/USDT:USDT", D(1), D(1), 5, D(1)),
            "unknown contract 'ADAX/USDT:USDT'; ",
        ),
        (btc_long(lev=200), "leverage 200 not valid"),
        (btc_long(qty="0.0005"), "0.0005 is not a multiple of the step 0.001"),
        (btc_long(qty="1"), "margin is insufficient"),
        (btc_long(stop="61000"), "stop_loss 61000 must be below the mark 60000"),
        (
            Holding(BTC, D("0.1"), D(60000), 10, D(54000)),
            "already at or beyond its liquidation price",
        ),
    ],
)
def test_the_exchange_refusing_a_holding_is_named(holding: Holding, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_on_exchange(book(holding), INSTRUMENTS, D(0))
    assert message in str(err.value)


def test_an_unknown_holding_names_the_closest_known_contracts() -> None:
    with pytest.raises(ConfigError) as err:
        open_on_exchange(book(Holding("ADAX/USDT:USDT", D(1), D(1), 5, D(1))), INSTRUMENTS, D(0))
    assert f"{len(INSTRUMENTS)} known, closest: ADA/USDT:USDT" in str(err.value)


def test_opening_keeps_the_wallet_margins_and_stops() -> None:
    h = Holding(BTC, D("0.1"), D(60000), 10, D(61000), isolated_margin=D(650), stop_loss=D(58000))
    ex = open_on_exchange(book(h), INSTRUMENTS, D(2))
    assert ex.book.wallet == D(1000)  # opened without fees or slippage
    assert ex.book.positions[BTC].isolated_margin == D(650)
    assert ex.equity() == D(1100)  # 0.1 x (61 000 - 60 000) unrealised
    (stop,) = ex.fetch_open_orders(BTC)
    assert stop.trigger_price == D(58000)
    assert ex.book.instruments[BTC].taker_fee == D("0.0005")  # real fee back for the scenario


def test_cli_json_grid_and_plot(tmp_path: Path) -> None:
    text = (
        "symbol,qty,entry_price,leverage,stop_loss\n"
        "BTC/USDT:USDT,0.1,60000,5,57000\n"
        "ETH/USDT:USDT,-1,3000,3,3300\n"
    )
    path = write(tmp_path / "positions.csv", text)
    png = tmp_path / "grid.png"
    args = ["stress", "--config", str(CONFIG), "--positions", str(path), "--balance", "5000"]
    result = runner.invoke(app, [*args, "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"portfolio", "limits", "scenarios", "leverage_grid"}
    assert data["limits"] == {"daily_loss": "0.05", "max_drawdown": "0.25"}
    assert data["portfolio"]["wallet"] == "5000"
    names = [s["name"] for s in data["scenarios"]]
    assert {"all -50.0%", "crypto crash", "volatility spike", "funding spike"} <= set(names)
    assert any(n.startswith("worst 1d drop BTC") for n in names)
    assert any(n.startswith("worst 1h rise ETH") for n in names)
    first = data["scenarios"][0]
    for key in ("equity_after", "margin_ratio", "stopped", "liquidated", "loss_fraction"):
        assert key in first
    assert isinstance(first["equity_after"], str)
    # Every horizon, both directions, with when it happened.
    found = {(e["contract"], e["horizon"], e["direction"]) for e in data["historical_extremes"]}
    assert ("BTC/USDT:USDT", "1d", "drop") in found
    assert ("ETH/USDT:USDT", "5m", "rise") in found
    assert all(e["start"].endswith("Z") for e in data["historical_extremes"])
    grid = data["leverage_grid"]
    assert grid["levels"] == [1, 2, 3, 5, 10, 20]
    assert len(grid["rows"]) == len(names)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_missing_column_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "symbol,qty,leverage\nBTC/USDT:USDT,1,5\n")
    result = runner.invoke(app, ["stress", "--config", str(CONFIG), "--positions", str(path)])
    assert result.exit_code == 2
    assert "missing column(s) entry_price" in " ".join(result.output.split())


def test_cli_cross_hedged_book_is_monotone_and_never_pays_out(tmp_path: Path) -> None:
    # The book: long 0.5 BTC, short 5 ETH on a 5,000 USDT cross wallet. Before the
    # account-level liquidation, "all -50%" ended at +7,406 and "all -40%" at +5,887.
    positions = tmp_path / "book.csv"
    positions.write_text(
        "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,0.5,60000,20\nETH/USDT:USDT,-5,3000,20\n"
    )
    result = runner.invoke(
        app,
        [
            "stress",
            "--config",
            str(CONFIG),
            "--positions",
            str(positions),
            "--balance",
            "5000",
            "--margin-mode",
            "cross",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output  # the JSON is standard output; logs go to stderr
    scenarios = json.loads(result.stdout)["scenarios"]
    falls = sorted(
        (s for s in scenarios if s["kind"] == "move" and s["name"].startswith("all -")),
        key=lambda s: D(s["name"].split()[1].rstrip("%")),
        reverse=True,
    )
    assert len(falls) >= 3
    after = [D(s["equity_after"]) for s in falls]  # from the smallest fall to the largest
    assert after == sorted(after, reverse=True)
    assert all(D(s["equity_after"]) <= D(s["equity_before"]) for s in falls)
    worst = falls[-1]
    assert worst["liquidated"] == [BTC, ETH]
    assert D(worst["equity_after"]) == 0
    # 2,500 by hand without slippage (tests/unit/test_cross_liquidation.py; no liquidation fee
    # is left to charge); the config's 2 bps on the liquidation fills: BTC 0.5 x 30,000 x
    # 0.0002 = 3.00, ETH 5 x 1,500 x 0.0002 = 1.50: 2,504.50.
    assert D(worst["loss_beyond_wallet"]) == D("2504.5")


@pytest.mark.parametrize(
    ("wallet", "shown"),
    [("NaN", "nan"), ('"Infinity"', "'Infinity'"), ('"-5"', "'-5'"), ("1e400", "inf")],
)
def test_an_account_file_with_a_wallet_not_a_positive_number_is_named(
    tmp_path: Path, wallet: str, shown: str
) -> None:
    write(tmp_path / "positions.csv", "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,1,6,5\n")
    write(tmp_path / "account.json", f'{{"wallet": {wallet}, "margin_mode": "cross"}}')
    with pytest.raises(DataError) as err:
        read_portfolio(None, tmp_path, None, None, D(1000), MarginMode.ISOLATED)
    assert f"account.json: 'wallet' must be a finite number > 0 and below 1e+18, got {shown}" in (
        str(err.value)
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("BTC/USDT:USDT,1e30,60000,5", "line 2: qty 1e30 is out of range"),
        ("BTC/USDT:USDT,0.1,60000,5,1e400", "line 2: mark 1e400 is out of range"),
    ],
)
def test_huge_numbers_in_a_positions_file_are_named(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "positions.csv", f"symbol,qty,entry_price,leverage,mark\n{row}\n")
    with pytest.raises(DataError) as err:
        read_portfolio(path, None, None, None, D(1000), MarginMode.ISOLATED)
    assert message in str(err.value)


def test_a_positions_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "positions.csv"
    path.write_bytes(b"\xff\xfe\x00symbol")
    with pytest.raises(DataError, match="not a UTF-8 text"):
        read_portfolio(path, None, None, None, D(1000), MarginMode.ISOLATED)


def test_a_holding_the_wallet_cannot_fund_is_refused_before_any_order() -> None:
    """1e15 BTC would be split into 1e12 orders of the largest market order (it hung): the
    margin it needs is checked first, as the exchange's first order would be refused."""
    huge = Holding(BTC, D("1e15"), D(60000), 5, D(60000))
    with pytest.raises(ConfigError, match="margin is insufficient: need 12000000000000000000"):
        open_on_exchange(book(huge), INSTRUMENTS, D(0))


def test_isolated_margins_above_the_wallet_are_refused() -> None:
    h = Holding(BTC, D("0.1"), D(60000), 10, D(60000), isolated_margin=D(5000))
    with pytest.raises(ConfigError, match="isolated margins add up to more than the wallet 1000"):
        open_on_exchange(book(h), INSTRUMENTS, D(0))


def test_cli_an_unknown_contract_in_the_book_names_the_positions_file(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "symbol,qty,entry_price,leverage\nFOO/USDT:USDT,1,1,1\n")
    result = runner.invoke(app, ["stress", "--config", str(CONFIG), "--positions", str(path)])
    assert result.exit_code == 2
    assert f"{path}: binanceusdm: no contract specification for FOO/USDT:USDT" in result.output
    assert "config.example.toml: contracts" not in result.output


def test_cli_a_huge_mark_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv", "symbol,qty,entry_price,leverage,mark\nBTC/USDT:USDT,0.1,60000,5,1e25\n"
    )
    result = runner.invoke(app, ["stress", "--config", str(CONFIG), "--positions", str(path)])
    assert result.exit_code == 2
    assert "mark 1e25 is out of range" in result.output


def test_a_scenario_that_takes_the_whole_account_is_reported_bankrupt(tmp_path: Path) -> None:
    """Cross wallet 1 000 behind a DOGE short of 100 000 @ 0.2 (N 20 000, 20x): +50 % gaps
    past the bankruptcy price; the account is liquidated whole, the wallet is gone and the
    insurance fund takes the rest. With nothing held the margin ratio is 0 (no maintenance),
    which the table printed as "0.000", the figure of the healthiest book: it says bankrupt."""
    doge = Holding("DOGE/USDT:USDT", D(-100000), D("0.2"), 20, D("0.2"))
    gone = play(book(doge, wallet="1000", mode="cross"), {"DOGE/USDT:USDT": "0.5"})
    assert gone.liquidated == ("DOGE/USDT:USDT",)
    assert gone.equity_after == 0
    assert gone.beyond_wallet > 0
    assert gone.bankrupt
    assert outcome_json(gone)["bankrupt"] is True
    table = StringIO()
    Console(file=table, width=250).print(stress_table([gone], {**json_book(), "scenarios": []}))
    row = next(line for line in table.getvalue().splitlines() if line.startswith("│ test "))
    assert "bankrupt" in row
    assert "0.000" not in row
    survives = play(book(doge, wallet="1000", mode="cross"), {"DOGE/USDT:USDT": "0.01"})
    assert not survives.bankrupt
    assert outcome_json(survives)["bankrupt"] is False


def json_book() -> dict[str, object]:
    return {
        "portfolio": {"source": "test book", "equity": "1000", "margin_mode": "cross"},
        "limits": {"daily_loss": "0.05", "max_drawdown": "0.25"},
    }


def hourly_file(path: Path, closes: Sequence[float], start_ms: int = 1_735_689_600_000) -> None:
    """A 1 h last-trade candle file: each candle opens at the previous close."""
    lines = ["timestamp,open,high,low,close,volume"]
    prev = closes[0]
    for k, close in enumerate(closes):
        high, low = max(prev, close), min(prev, close)
        lines.append(f"{start_ms + k * 3_600_000},{prev},{high},{low},{close},10")
        prev = close
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def test_a_horizon_the_data_cannot_search_is_named_in_the_notes(tmp_path: Path) -> None:
    """With only 1 h candles no 5 m move can be found: the worst 5 m scenario is missing from
    the report, and the notes said nothing, as if the data had been searched."""
    from bot.config.loader import load_config
    from bot.marketdata.files import discover
    from bot.tools.scenarios import market_inputs

    hourly_file(tmp_path / "DOGE_USDT_USDT-1h.csv.gz", [0.2 + 0.001 * (k % 7) for k in range(60)])
    policy = load_config(CONFIG).policies[0]
    got = market_inputs(discover(tmp_path), policy, ["DOGE/USDT:USDT"])
    assert {(e.horizon, e.direction) for e in got.extremes} == {
        ("1h", -1),
        ("1h", 1),
        ("1d", -1),
        ("1d", 1),
    }
    notes = [n for n in got.missing if "worst 5m" in n]
    assert notes == [
        "DOGE/USDT:USDT: no worst 5m move: no last-trade candles of 5m or finer "
        f"(it has 1h) in {tmp_path}"
    ]
    assert not [n for n in got.missing if "worst 1h" in n or "worst 1d" in n]
    # Ten hours of TAO: no run of data as long as a day.
    hourly_file(tmp_path / "TAO_USDT_USDT-1h.csv.gz", [400.0 + k for k in range(10)])
    got = market_inputs(discover(tmp_path), policy, ["TAO/USDT:USDT"])
    assert (
        f"TAO/USDT:USDT: no worst 1d move: no contiguous run of 1d in its 1h candles in {tmp_path}"
        in got.missing
    )


def test_no_volatility_spike_is_claimed_without_any_volatility() -> None:
    """Without volatility data for any holding the spike moved nothing, and the report and the
    leverage grid showed it survived at every leverage ("survives up to 20x"): a scenario that
    was not played is left out (the data notes say which volatility is missing)."""
    p = book(btc_long(), wallet="5000")
    names = [s.name for s in standard_scenarios(p, {}, {}, [])]
    assert "volatility spike" not in names
    assert "funding spike" in names  # played with the floor rate when the data has none
    with_vol = [s.name for s in standard_scenarios(p, {BTC: D("0.6")}, {}, [])]
    assert "volatility spike" in with_vol


def test_a_historical_move_of_a_contract_priced_below_1e_4_shows_no_exponent() -> None:
    """1000SATS trades near 0.00003: the worst move's prices read "3.12e-05 -> 2.05e-05" in the
    scenario's note and were JSON numbers printed 3.12e-05."""
    from bot.tools.scenarios import extreme_json

    sats = "1000SATS/USDT:USDT"
    e = Extreme(sats, "1h", -1, -0.342949, 0, 0, 3.12e-05, 2.05e-05, "1h")
    p = book(Holding(sats, D(1_000_000), D("0.0000312"), 5, D("0.0000312")), wallet="100")
    (scenario,) = [s for s in standard_scenarios(p, {}, {}, [e]) if s.kind == "history"]
    assert "(0.0000312 -> 0.0000205, 1h candles)" in scenario.note
    data = extreme_json(e)
    assert (data["from_price"], data["to_price"]) == ("0.0000312", "0.0000205")
    assert "e-" not in json.dumps(data)


def test_a_stop_beyond_the_liquidation_price_is_warned_of(tmp_path: Path) -> None:
    """1000PEPE long 1 000 000 @ 0.01 at 20x liquidates near 0.0095621; a stop at 0.0095 can
    never fire (the liquidation comes first), which the report only showed as liquidations in
    the scenarios that go that far. The book is unprotected: it says so up front."""
    text = (
        "symbol,qty,entry_price,leverage,stop_loss\n"
        "1000PEPE/USDT:USDT,1000000,0.01,20,0.0095\n"
        "DOGE/USDT:USDT,-10000,0.2,5,0.21\n"
    )
    path = write(tmp_path / "positions.csv", text)
    args = ["stress", "--config", str(CONFIG), "--positions", str(path), "--balance", "5000"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "1000PEPE/USDT:USDT: stop_loss 0.0095 is at or beyond its liquidation price 0.0095621"
    )
    shown = " ".join(runner.invoke(app, args).stdout.split())
    assert "warning: 1000PEPE/USDT:USDT: stop_loss 0.0095 is at or beyond" in shown


def test_a_cross_stop_past_the_wallet_does_not_liquidate_a_profitable_leg() -> None:
    """Cross wallet 5 000: long 1 000 000 1000PEPE @ 0.012 (stop 0.0115), short 50 000 DOGE @
    0.2. A -45 % gap fills the stop at 0.0066 x (1 - 2 bps) = 0.00659868, down to the tick
    (0.0000001): 0.0065986: -5 401.40 and a fee of 3.30 leave the wallet at -404.70, while the
    short is up 50 000 x 0.09 = 4 500. Margin balance 4 095.30 against a maintenance of
    5 500 x 0.0065 = 35.75: Binance's formula puts the short's liquidation at
    (-404.70 + 10 000) / (50 000 x 1.0065) = 0.19067, far above the mark
    0.11. The simulated exchange's liquidation price refused the negative wallet and the book
    read that as "below maintenance at every price": the profitable short was liquidated."""
    pepe = Holding("1000PEPE/USDT:USDT", D(1_000_000), D("0.012"), 5, D("0.012"), None, D("0.0115"))
    doge = Holding("DOGE/USDT:USDT", D(-50_000), D("0.2"), 10, D("0.2"))
    moves = {"1000PEPE/USDT:USDT": "-0.45", "DOGE/USDT:USDT": "-0.45"}
    o = play(book(pepe, doge, wallet="5000", mode="cross"), moves, slippage="2")
    assert [s.symbol for s in o.stopped] == ["1000PEPE/USDT:USDT"]
    assert o.liquidated == ()
    wallet = D(5000) - D("5401.4") - D("0.0065986") * 1_000_000 * D("0.0005")
    assert o.equity_after == wallet + D(4500)
    assert o.next_liquidation is not None
    sym, price, _ = o.next_liquidation
    assert sym == "DOGE/USDT:USDT"
    expected = (wallet + D(50_000) * D("0.2")) / (D(50_000) * D("1.0065"))
    assert abs(price - expected) < D("1e-12")


def test_a_stand_in_contract_is_named_in_the_notes(tmp_path: Path) -> None:
    """A Bybit book with XRP, which the bundled Bybit snapshot lacks: it is stressed on the
    labelled stand-in (Binance's XRP figures with Bybit's fees and formula), and the notes say
    so beside the figures (text and JSON)."""
    data = tmp_path / "data"
    data.mkdir()
    hourly_file(data / "XRP_USDT_USDT-1h.csv.gz", [2.5 + 0.01 * (k % 7) for k in range(60)])
    text = CONFIG.read_text()
    text = text.replace('dir = "data/sample"', f'dir = "{data}"')
    text = text.replace('exchange = "binanceusdm"', 'exchange = "bybit"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT}/policies/vol_target.toml"'
    )
    config = write(tmp_path / "bybit.toml", text)
    path = write(tmp_path / "p.csv", "symbol,qty,entry_price,leverage\nXRP/USDT:USDT,1000,2.5,5\n")
    args = ["stress", "--config", str(config), "--positions", str(path)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["data_notes"]
    assert [n for n in notes if "STAND-IN" in n] == [
        n for n in notes if n.startswith("XRP/USDT:USDT: STAND-IN: binanceusdm's tick, step")
    ]
    assert any("STAND-IN" in n for n in notes)
    shown = runner.invoke(app, args)
    assert "note: XRP/USDT:USDT: STAND-IN" in " ".join(shown.output.split())


def test_cli_an_unusable_plot_path_is_one_error(tmp_path: Path) -> None:
    """--plot under a file was a FileExistsError traceback after the leverage grid ran."""
    path = write(
        tmp_path / "positions.csv", "symbol,qty,entry_price,leverage\nBTC/USDT:USDT,0.1,60000,5\n"
    )
    (tmp_path / "afile").write_text("mine")
    args = ["stress", "--config", str(CONFIG), "--positions", str(path), "--balance", "5000"]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "afile" / "grid.png")])
    assert result.exit_code == 2, result.output
    assert "afile is a file, not a directory" in " ".join(result.output.split())
    assert (tmp_path / "afile").read_text() == "mine"
