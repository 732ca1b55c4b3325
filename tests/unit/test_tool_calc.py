"""``bot calc`` against worked examples on the bundled Binance BTC/USDT:USDT brackets.

    bracket  notional range          max lev  MMR     cum
    1        [0, 300 000)            150x     0.004   0
    2        [300 000, 800 000)      100x     0.005   300
    3        [800 000, 3 000 000)    75x      0.0065  1 500

A fresh isolated position funded by its margin M = notional / L, one bracket, liquidates where
margin + PnL = maintenance, which gives the textbook forms (hand-derived from Binance's formula):

    long:  LP = EP * (1 - 1/L) / (1 - MMR)
    short: LP = EP * (1 + 1/L) / (1 + MMR)
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.catalogue import catalogue_path, write_catalogue
from bot.cli.app import app
from bot.domain.enums import MarginMode
from bot.domain.margin import liquidation_price_isolated
from bot.errors import ConfigError
from bot.instruments import instrument_for
from bot.tools.calc import MOVES, CalcRequest, calculate, jsonable, to_text

D = Decimal
BTC = instrument_for("binanceusdm", "BTC/USDT:USDT")
runner = CliRunner()


def request(**changes: object) -> CalcRequest:
    base: dict[str, object] = {
        "symbol": "BTC/USDT:USDT",
        "side": 1,
        "entry": D(60000),
        "balance": D(1000),
        "margin_mode": MarginMode.ISOLATED,
        "leverage": D(10),
    }
    base.update(changes)
    return CalcRequest(**base)  # type: ignore[arg-type]


def close(a: Decimal | None, b: Decimal, tol: str = "1e-9") -> bool:
    return a is not None and abs(a - b) <= D(tol)


def test_long_10x_isolated_worked_example() -> None:
    r = calculate(request())
    # 1000 x 10 = 10 000 asked buys 1/6 BTC, floored to the 0.001 step: 0.166 BTC, a notional of
    # 9 960; IM 996; MM 9 960 x 0.004 = 39.84 (the position the venue would hold).
    assert (r.asked_notional, r.order_qty, r.notional) == (D(10000), D("0.166"), D(9960))
    assert r.initial_margin == D(996)
    assert r.maintenance_margin == D("39.84")
    assert r.round_trip_fee == 2 * D(9960) * BTC.taker_fee
    # Isolated, margin = notional / 10 at any size: LP = 60 000 x 0.9 / 0.996 = 54 216.867469...;
    # distance (60 000 - LP) / 60 000 = 9.6386 %.
    assert close(r.liquidation_price, D(60000) * D("0.9") / D("0.996"))
    assert str(r.liquidation_price)[:8] == "54216.86"
    assert close(r.liquidation_distance, D("0.0963855421686747"), "1e-15")


def test_short_10x_and_the_size_form() -> None:
    short = calculate(request(side=-1))
    # LP = 60 000 x 1.1 / 1.004 = 65 737.05...
    assert close(short.liquidation_price, D(60000) * D("1.1") / D("1.004"))
    # 0.5 BTC at 60 000 = 30 000 on a 5 000 balance: leverage 6, short LP = 60 000 x (7/6) / 1.004.
    sized = calculate(request(side=-1, leverage=None, size=D("0.5"), balance=D(5000)))
    assert sized.leverage == D(6)
    assert sized.notional == D(30000)
    assert close(sized.liquidation_price, D(70000) / D("1.004"))


def test_cross_mode_backs_the_position_with_the_whole_balance() -> None:
    cross = calculate(request(margin_mode=MarginMode.CROSS))
    isolated = calculate(request())
    # The whole wallet (1 000) backs the 0.166 BTC held, where isolated puts up its margin (996):
    # LP = (1 000 - 9 960) / (0.166 x (0.004 - 1)) = 54 192.67, below the isolated 54 216.87.
    expected = (D(1000) - D(9960)) / (D("0.166") * (D("0.004") - 1))
    assert close(cross.liquidation_price, expected)
    assert cross.liquidation_price is not None
    assert isolated.liquidation_price is not None
    assert cross.liquidation_price < isolated.liquidation_price
    # On the step exactly (1 000 x 10 at 50 000 = 0.2 BTC), both put up the same 1 000.
    on_step = request(entry=D(50000))
    assert (
        calculate(replace(on_step, margin_mode=MarginMode.CROSS)).liquidation_price
        == calculate(on_step).liquidation_price
    )


def test_second_bracket_worked_example() -> None:
    # Balance 50 000 at 10x: 500 000 asked, 8.333 BTC held (notional 499 980, margin 49 998);
    # the liquidation notional is ~452 000, bracket 2 (MMR 0.005, cum 300):
    # LP = (49 998 + 300 - 499 980) / (q x (0.005 - 1)).
    r = calculate(request(balance=D(50000)))
    q = D("8.333")
    expected = (D(49998) + D(300) - D(499980)) / (q * (D("0.005") - 1))
    assert close(r.liquidation_price, expected)
    assert r.maintenance_margin == D(499980) * D("0.005") - D(300)  # 2 199.90
    assert str(expected)[:8] == "54235.17"


def test_move_table_marks_the_moves_that_liquidate() -> None:
    r = calculate(request())
    levels = [c.leverage for c in r.columns]
    assert levels == [D(1), D(3), D(5), D(10), D(20)]
    rows = {move: cells for move, _, cells in r.moves}
    assert len(r.moves) == len(MOVES) == 17
    at10, at20, at1 = levels.index(D(10)), levels.index(D(20)), levels.index(D(1))
    # 10x: 0.166 BTC held, LP 54 216.87. -7.5 % (55 500) survives: PnL 0.166 x -4 500 = -747,
    # -75 % of its 996 margin.
    cell = rows[D("-0.075")][at10]
    assert (cell.liquidated, cell.pnl, cell.return_on_margin) == (False, D(-747), D("-0.75"))
    # -10 % (54 000) is beyond the LP: the whole margin is lost (the 4 the step left over is not).
    cell = rows[D("-0.100")][at10]
    assert (cell.liquidated, cell.pnl, cell.return_on_margin) == (True, D(-996), D(-1))
    # 20x: 0.333 BTC; LP = 60 000 x 0.95 / 0.996 = 57 228.92; -5 % (57 000) liquidates, -2.5 %
    # does not: 19 980 x -0.025.
    assert rows[D("-0.050")][at20].liquidated
    assert rows[D("-0.025")][at20].pnl == D("-499.5")
    # 1x long (0.016 BTC) cannot be liquidated: -20 % costs 960 x 0.2.
    assert not rows[D("-0.200")][at1].liquidated
    assert rows[D("-0.200")][at1].pnl == D(-192)
    # Gains are never marked.
    assert not any(c.liquidated for c in rows[D("0.200")])


def test_columns_use_the_same_margin_functions_as_the_engine() -> None:
    r = calculate(request(side=-1))
    for col in r.columns:
        signed = -col.qty
        margin = col.notional / col.leverage
        assert col.liquidation_price == liquidation_price_isolated(BTC, signed, D(60000), margin)


def test_inverse_question_max_leverage_for_a_stop_two_vols_away() -> None:
    vol = D("0.6")
    r = calculate(request(volatility=vol, stop_vol_units=D(2)))
    daily = vol / D(365).sqrt()  # 3.1405 %
    assert close(r.daily_volatility, daily)
    stop = D(60000) * (1 - 2 * daily)  # 56 231.35
    assert close(r.stop_price, stop)
    # Bracket 1, liquidation exactly at the stop: margin/notional = 1 - (stop/EP)(1 - MMR), so
    # L = 1 / (1 - 0.937189 x 0.996) = 15.024 -> 15.02 (rounded down to 0.01).
    assert r.max_leverage_for_stop == D("15.02")
    notional = r.notional
    q = notional / D(60000)
    at = liquidation_price_isolated(BTC, q, D(60000), notional / D("15.02"))
    above = liquidation_price_isolated(BTC, q, D(60000), notional / D("15.03"))
    assert at is not None
    assert above is not None
    assert at <= stop < above
    # Distance in vol units: 9.6386 % / 3.1405 % = 3.07.
    assert r.liquidation_distance_vol is not None
    assert abs(r.liquidation_distance_vol - D("3.069")) < D("0.001")


def test_max_leverage_for_a_stop_is_solved_at_the_notional_of_its_own_leverage() -> None:
    """Above the first bracket: BTC long at 60 000, balance 100 000, stop 2 vols away
    (56 231.35). Solved on the notional of the leverage asked (10x: 999 960) the answer was
    14.83x; at 14.83x the balance holds 24.716 BTC (1 482 960, bracket 3: MMR 0.65 %, cum
    1 500) and liquidates at (100 000 + 1 500 - 1 482 960) / (24.716 x 0.0065 - 24.716) =
    56 259.2, above the stop. At 14.73x (24.55 BTC, 1 473 000) the same formula gives
    56 231.08, below it; at 14.74x (24.566 BTC, margin 99 997.29) 56 233.9, above."""
    base = {"balance": D(100000), "volatility": D("0.6")}
    r = calculate(request(**base))
    assert r.max_leverage_for_stop == D("14.73")
    assert r.stop_price is not None
    at = calculate(request(**base, leverage=D("14.73")))
    assert at.qty == D("24.55")
    liq = (at.initial_margin + 1500 - at.notional) / (at.qty * D("0.0065") - at.qty)
    assert liq < r.stop_price
    assert at.liquidation_price == liq
    assert not at.stop_beyond_liquidation
    assert calculate(request(**base, leverage=D("14.74"))).stop_beyond_liquidation
    # The answer does not depend on the leverage asked: it is the balance's.
    assert calculate(request(**base, leverage=D(3))).max_leverage_for_stop == D("14.73")


@pytest.mark.parametrize(
    ("exchange", "symbol", "entry", "side", "balance", "mode"),
    [
        ("binanceusdm", "BTC/USDT:USDT", D(60000), 1, D(1000), MarginMode.ISOLATED),
        ("binanceusdm", "BTC/USDT:USDT", D(60000), -1, D(30000), MarginMode.ISOLATED),
        ("binanceusdm", "BTC/USDT:USDT", D(60000), 1, D(400000), MarginMode.ISOLATED),
        ("binanceusdm", "ETH/USDT:USDT", D(2500), -1, D(100000), MarginMode.CROSS),
        ("binanceusdm", "SOL/USDT:USDT", D(150), 1, D(20000), MarginMode.ISOLATED),
        ("bybit", "SOL/USDT:USDT", D(150), -1, D(2000), MarginMode.ISOLATED),
        ("bybit", "ETH/USDT:USDT", D(2500), 1, D(120000), MarginMode.ISOLATED),
    ],
)
def test_max_leverage_for_a_stop_fed_back_keeps_the_stop_and_a_cent_more_does_not(
    exchange: str, symbol: str, entry: Decimal, side: int, balance: Decimal, mode: MarginMode
) -> None:
    """The answer is a leverage of the tool's own meaning (notional = balance x leverage):
    asked again with ``--leverage`` it shows the stop before the liquidation, and 0.01 more
    shows it beyond (the answer rounded down on the 0.01 grid, through the brackets)."""
    base = {
        "exchange": exchange,
        "symbol": symbol,
        "entry": entry,
        "side": side,
        "balance": balance,
        "margin_mode": mode,
        "volatility": D("0.6"),
    }
    best = calculate(request(**base)).max_leverage_for_stop
    assert best is not None
    assert best > 1
    at = calculate(request(**base, leverage=best))
    assert not at.stop_beyond_liquidation
    assert at.max_leverage_for_stop == best
    assert calculate(request(**base, leverage=best + D("0.01"))).stop_beyond_liquidation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"symbol": "NOPE/USDT:USDT"},
            "no contract specification for NOPE/USDT:USDT: not in the bundled snapshot",
        ),
        ({"exchange": "kraken"}, "--exchange 'kraken': unknown; bundled specifications"),
        ({"entry": D(-5)}, "--entry must be a number > 0, got -5"),
        ({"balance": D(0)}, "--balance must be a number > 0, got 0"),
        ({"leverage": D(151)}, "--leverage 151 is above BTC/USDT:USDT's maximum of 150x"),
        # 10 000 x 100 = 1 000 000 of notional falls in bracket 3, max 75x.
        ({"balance": D(10000), "leverage": D(100)}, "maximum of 75x for a notional of 1000000"),
        ({"size": D(1)}, "give exactly one of --leverage and --size (both given)"),
        ({"leverage": None}, "give exactly one of --leverage and --size (neither given)"),
        ({"leverage": None, "size": D("0.0001")}, "below BTC/USDT:USDT's minimum quantity 0.001"),
        ({"leverage": None, "size": D(100)}, "--size 100 (leverage 6000 on balance 1000)"),
        ({"volatility": D("-0.1")}, "--vol must be a number > 0"),
        ({"leverage": D("0.5")}, "--leverage must be >= 1"),
    ],
)
def test_invalid_input_is_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        calculate(request(**changes))
    assert message in str(err.value)


def test_json_output_shape_via_the_cli() -> None:
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "long", "--entry", "60000"]
    args += ["--leverage", "10", "--balance", "1000", "--margin-mode", "isolated", "--json"]
    result = runner.invoke(app, [*args, "--vol", "0.6"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # 54 216.867469... on the 0.1 tick, toward the mark (up for a long)
    assert data["liquidation_price"] == "54216.9"
    assert (data["initial_margin"], data["maintenance_margin"]) == ("996", "39.84")
    assert (data["qty"], data["notional"], data["asked_notional"]) == ("0.166", "9960", "10000")
    assert data["max_leverage_for_stop"] == "15.02"
    assert len(data["moves"]) == 17
    first = data["moves"][0]
    assert first["move"] == "-0.2"
    assert [c["leverage"] for c in first["cells"]] == ["1", "3", "5", "10", "20"]
    assert first["cells"][3] == {
        "leverage": "10",
        "pnl": "-996",
        "return_on_margin": "-1",
        "liquidated": True,
    }
    # Every number is a string (Decimal), never a float.
    assert all(isinstance(v, str) for k, v in data.items() if k.endswith("price"))
    assert {**jsonable(calculate(request(volatility=D("0.6")))), "stand_in": None} == data


def test_a_stand_in_is_said_beside_the_figures_made_from_it() -> None:
    """Bybit XRP is not bundled: the figures come from Binance's XRP with Bybit's fees and
    liquidation formula, and the answer says so (text and JSON)."""
    args = ["calc", "--contract", "XRP/USDT:USDT", "--side", "long", "--entry", "2.5"]
    args += ["--leverage", "5", "--balance", "1000", "--exchange", "bybit"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert data["stand_in"].startswith("STAND-IN: binanceusdm's tick, step")
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "warning: STAND-IN: binanceusdm's" in " ".join(text.output.split())


def test_volatility_from_a_data_directory() -> None:
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "short", "--entry", "60000"]
    args += ["--size", "0.5", "--balance", "5000", "--data", "data/sample", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert 0.05 < float(data["volatility"]) < 3
    assert data["leverage"] == "6"


def test_cli_errors_exit_2_with_the_message() -> None:
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "long", "--entry", "-1"]
    result = runner.invoke(app, [*args, "--leverage", "10", "--balance", "1000"])
    assert result.exit_code == 2
    assert "--entry must be a number > 0, got -1" in result.output
    result = runner.invoke(app, [*args[:-1], "abc", "--leverage", "10", "--balance", "1000"])
    assert result.exit_code == 2
    assert "--entry: not a number: 'abc'" in result.output


def test_a_catalogue_directory_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    """A typo in --catalogue fell back to the bundled brackets silently (they set the
    liquidation price the tool prints); --data has always been checked."""
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "long", "--entry", "60000"]
    result = runner.invoke(
        app,
        [*args, "--leverage", "10", "--balance", "1000", "--catalogue", str(tmp_path / "nowhere")],
    )
    assert result.exit_code == 2
    assert "nowhere: not a directory" in result.output


def test_calc_reads_the_users_catalogue_before_the_snapshot(tmp_path: Path) -> None:
    """A contract only in the user's catalogue is calculated; a catalogue entry wins over the
    bundled one (here BTC with a 20x maximum: 50x is refused)."""
    # in no bundled snapshot; priced in cents, so its tick is finer than BTC's
    pepe = replace(BTC, symbol="1000TOY/USDT:USDT", base="1000TOY", tick_size=D("0.0000001"))
    capped = replace(
        BTC,
        brackets=tuple(replace(b, max_leverage=min(b.max_leverage, D(20))) for b in BTC.brackets),
    )
    write_catalogue(
        catalogue_path(tmp_path, "binanceusdm"),
        "binanceusdm",
        {pepe.symbol: (pepe, "by hand"), BTC.symbol: (capped, "by hand")},
        1_767_225_600_000,
        "test",
    )
    with pytest.raises(ConfigError, match="1000TOY/USDT:USDT: not in the bundled snapshot"):
        calculate(request(symbol=pepe.symbol))
    got = calculate(request(symbol=pepe.symbol, catalogue_dir=tmp_path))
    assert got.instrument.symbol == pepe.symbol
    with pytest.raises(ConfigError, match="maximum of 20x"):
        calculate(request(leverage=D(50), catalogue_dir=tmp_path))
    out = runner.invoke(
        app,
        [
            "calc",
            "--contract",
            pepe.symbol,
            "--side",
            "long",
            "--entry",
            "0.01",
            "--balance",
            "1000",
            "--leverage",
            "5",
            "--catalogue",
            str(tmp_path),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["contract"] == pepe.symbol


def test_prices_of_a_contract_priced_in_cents_print_to_its_tick() -> None:
    """1000PEPE at 0.012 (tick 0.0000001): the liquidation price 0.0096629 must not print as
    0.01 (two decimals made it look above the entry's 20 % move)."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_moves, calc_summary

    pepe = request(symbol="1000PEPE/USDT:USDT", entry=D("0.012"), leverage=D(5))
    result = calculate(pepe)
    assert result.liquidation_price is not None
    out = StringIO()
    console = Console(file=out, width=200)
    console.print(calc_summary(result))
    console.print(calc_moves(result))
    text = out.getvalue()
    # to the tick, rounded toward the entry (0.00966281 -> 0.0096629: never more room)
    assert f"{result.instrument.ceil_price(result.liquidation_price):.7f}" in text
    assert "0.0096000" in text  # the -20 % row of the move table
    btc = StringIO()
    Console(file=btc, width=200).print(calc_summary(calculate(request())))
    # at least 2 decimals, on the 0.1 tick toward the entry: 54 216.867... -> 54,216.90
    assert "54,216.90" in btc.getvalue()


@pytest.mark.parametrize("flag", ["--entry", "--leverage", "--balance", "--vol"])
def test_cli_huge_numbers_are_named_not_a_traceback(flag: str) -> None:
    values = {"--entry": "60000", "--leverage": "2", "--balance": "1000", "--vol": "0.5"}
    values[flag] = "1e30"
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "long", "--json"]
    for k, v in values.items():
        args += [k, v]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{flag}: '1e30' is out of range" in result.output


def test_json_text_of_large_and_tiny_numbers() -> None:
    assert to_text(D("1e25")) == "10000000000000000000000000"  # 28 digits cannot hold 1e25.00000000
    assert to_text(D("-0.000000001")) == "0"  # never "-0"
    assert to_text(D("-1.5")) == "-1.5"


def test_a_size_above_the_largest_market_order_is_flagged() -> None:
    """1000PEPE's largest market order is 10 000 000: 2 000 000 USDT at 0.0123 is 162 million.
    The venue refuses one market or stop order that large and the bot caps its positions there:
    the calculator says so instead of showing a position the bot would never hold as normal."""
    args = ["calc", "--contract", "1000PEPE/USDT:USDT", "--side", "short", "--entry", "0.0123"]
    args += ["--leverage", "20", "--balance", "100000", "--margin-mode", "cross", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["largest_market_order"] == "10000000"
    assert data["above_largest_market_order"] is True
    text = runner.invoke(app, args[:-1])
    assert "above the largest market order" in text.stdout
    small = jsonable(calculate(request()))
    assert small["above_largest_market_order"] is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # 10 x 2 = 20 USDT buys 0.00033 BTC: below the minimum quantity 0.001
        ({"balance": D(10), "leverage": D(2)}, "buys 0.00033333 BTC, below BTC/USDT:USDT's min"),
        (
            {"leverage": None, "size": D("0.0015")},
            "not a multiple of BTC/USDT:USDT's quantity step",
        ),
        # 0.001 BTC at 60 000 is 60 USDT: below Binance's 100 USDT minimum order
        (
            {"leverage": None, "size": D("0.001")},
            "notional of 60 USDT is below BTC/USDT:USDT's min",
        ),
    ],
)
def test_an_order_the_exchange_would_refuse_is_named(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        calculate(request(**changes))
    assert message in str(err.value)
    assert "the exchange would refuse it" in str(err.value)


def test_columns_below_the_minimum_order_are_not_allowed() -> None:
    # 60 of balance: 1x is 60 USDT (below the 100 minimum), 3x is 180
    got = calculate(request(balance=D(60), leverage=D(3)))
    allowed = {c.leverage: c.allowed for c in got.columns}
    assert allowed[D(1)] is False
    assert allowed[D(3)] is True


def test_a_coarse_tick_liquidation_is_shown_rounded_toward_the_entry() -> None:
    """1000PEPE at 1.2e-6 with a 1e-7 tick: a long at 4x liquidates at 0.00000091 (9.1 ticks).
    The nearest tick (0.0000009) would show a tenth of a tick more room than there is: the text
    shows 0.0000010, as the engine plans with it."""
    args = ["calc", "--contract", "1000PEPE/USDT:USDT", "--side", "long", "--entry", "0.0000012"]
    args += ["--leverage", "4", "--balance", "1000", "--margin-mode", "isolated"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert data["liquidation_price"] == "0.000001"  # 0.00000091... on the tick, toward the mark
    text = runner.invoke(app, args).stdout
    line = next(x for x in text.splitlines() if "liquidation price" in x)
    assert "0.0000010" in line
    assert "0.0000009" not in line


def test_a_position_above_the_venues_largest_is_refused() -> None:
    """1000PEPE's last bracket ends at 35 000 000 USDT: Binance refuses a larger position at any
    leverage (-2027), so 40 000 000 at 1x is not a position the calculator can show."""
    pepe = request(symbol="1000PEPE/USDT:USDT", entry=D("0.01"), leverage=D(1))
    with pytest.raises(ConfigError) as err:
        calculate(replace(pepe, balance=D(40_000_000)))
    assert "above 1000PEPE/USDT:USDT's largest position of 35000000 USDT" in str(err.value)
    assert calculate(replace(pepe, balance=D(30_000_000))).notional == D(30_000_000)


def test_cli_the_size_limit_itself_is_refused_and_the_message_says_below() -> None:
    # 1e18 is refused: the message said "at most 1e+18", which reads as if 1e18 were allowed.
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "long", "--entry", "60000"]
    result = runner.invoke(app, [*args, "--leverage", "2", "--balance", "1e18"])
    assert result.exit_code == 2, result.output
    assert "--balance: '1e18' is out of range (must be below 1e+18 in size)" in result.output


@pytest.mark.parametrize(
    ("symbol", "entry", "balance"),
    [("DOGE/USDT:USDT", "0.21", "3000000"), ("1000PEPE/USDT:USDT", "0.0123", "50000")],
)
def test_a_long_at_1x_has_no_liquidation_price_whatever_the_rounding(
    symbol: str, entry: str, balance: str
) -> None:
    """A long whose margin is its whole notional stays above maintenance down to a price of 0
    (the first bracket's cum is 0): Binance shows no liquidation price. qty = notional / entry
    is rounded to 28 digits, and when qty x entry came out a hair above the notional the
    calculator showed a liquidation price of about 1e-29 (0.00001 on DOGE's tick), a distance
    of 100 % and a finite "distance in daily vols" for a position that cannot be liquidated."""
    r = calculate(
        request(symbol=symbol, entry=D(entry), balance=D(balance), leverage=D(1), volatility=D(1))
    )
    assert r.liquidation_price is None
    assert r.liquidation_distance is None
    assert r.liquidation_distance_vol is None
    one = next(c for c in r.columns if c.leverage == 1)
    assert one.liquidation_price is None
    cross = calculate(
        request(
            symbol=symbol,
            entry=D(entry),
            balance=D(balance),
            leverage=D(1),
            margin_mode=MarginMode.CROSS,
        )
    )
    assert cross.liquidation_price is None


def test_the_stop_of_the_inverse_question_is_shown_rounded_toward_the_mark() -> None:
    """1000PEPE short at 0.0123, vol 60 %: the stop two daily vols up is 0.01307257...; shown
    to the tick to the nearest it read 0.0130726, above the stop the leverage was computed for
    (a short's liquidation may lie just above it at that leverage). Toward the mark: 0.0130725."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_summary

    r = calculate(
        request(
            symbol="1000PEPE/USDT:USDT",
            side=-1,
            entry=D("0.0123"),
            leverage=D(5),
            volatility=D("0.6"),
        )
    )
    assert r.stop_price is not None
    assert str(r.stop_price).startswith("0.0130725737")
    out = StringIO()
    Console(file=out, width=200).print(calc_summary(r))
    line = next(x for x in out.getvalue().splitlines() if "max leverage, stop" in x)
    assert "(0.0130725)" in line
    # A long's stop is rounded up: BTC at 60 000, vol 80 %: 54 975.1303 shows as 54,975.14.
    btc = calculate(request(volatility=D("0.8")))
    out = StringIO()
    Console(file=out, width=200).print(calc_summary(btc))
    line = next(x for x in out.getvalue().splitlines() if "max leverage, stop" in x)
    assert "(54,975.14)" in line


def test_a_short_at_no_move_reads_0_not_minus_0() -> None:
    """The +0.0 % row of a short's move table read "-0 (-0%)" in every column: -1 x notional x
    0 is Decimal('-0')."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_moves

    r = calculate(request(side=-1))
    ((_, _, cells),) = [row for row in r.moves if row[0] == 0]
    assert all(not c.pnl.is_signed() for c in cells if c.pnl is not None)
    out = StringIO()
    Console(file=out, width=200).print(calc_moves(r))
    row = next(x for x in out.getvalue().splitlines() if "+0.0%" in x)
    assert "-0" not in row


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--contract", "DOGE/USDT:USDT", "--entry", "0.2", "--size", "1.5e5"],
            "--size 150000 (leverage 300 on balance 100) is above DOGE/USDT:USDT's maximum",
        ),
        (
            ["--contract", "DOGE/USDT:USDT", "--entry", "0.2", "--size", "1e5", "--vol", "-1e1"],
            "--vol must be a number > 0, got -10",
        ),
        (
            ["--contract", "BTC/USDT:USDT", "--entry", "6e4", "--leverage", "2e0", "--vol", "0"],
            "--vol must be a number > 0, got 0",
        ),
        (
            ["--contract", "BTC/USDT:USDT", "--entry", "6e4", "--size", "5e-4"],
            "--size 0.0005 is below BTC/USDT:USDT's minimum quantity 0.001",
        ),
    ],
)
def test_errors_show_the_numbers_without_exponents(flags: list[str], message: str) -> None:
    """Numbers typed as 1.5e5 or 1e2 were echoed as Decimal's 1.5E+5 and 1E+2."""
    result = runner.invoke(app, ["calc", "--side", "long", "--balance", "1e2", *flags])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text
    assert "E+" not in text
    assert "E-" not in text


def test_json_liquidation_prices_are_on_the_tick_grid_toward_the_mark() -> None:
    """The JSON gave the exact formula price (54216.86746987...), a price the venue never
    reports and a stop planned on it could lie a fraction of a tick beyond the real one."""
    long = jsonable(calculate(request()))
    assert long["liquidation_price"] == "54216.9"  # 54 216.8674... rounded up
    short = jsonable(calculate(request(side=-1)))
    assert short["liquidation_price"] == "65737"  # 60 000 x 1.1 / 1.004 = 65 737.0517... down
    for data in (long, short):
        for col in data["columns"]:
            price = col["liquidation_price"]
            assert price is None or D(price) % BTC.tick_size == 0
    exact = calculate(request(side=-1)).columns[-1].liquidation_price  # 20x
    assert exact is not None
    assert D(short["columns"][-1]["liquidation_price"]) == BTC.floor_price(exact)


def test_the_quantity_shown_is_the_one_the_venue_accepts() -> None:
    """1 000 at 10x buys 1/6 BTC = 0.1666...: the venue takes 0.166 (the 0.001 step)."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_summary

    r = calculate(request())
    data = jsonable(r)
    assert data["qty"] == "0.166"
    assert {c["leverage"]: c["qty"] for c in data["columns"]}["10"] == "0.166"
    out = StringIO()
    Console(file=out, width=200).print(calc_summary(r))
    line = next(x for x in out.getvalue().splitlines() if " size " in x)
    floored = "(floored to the 0.001 step from 0.16666667; 10,000.00 USDT asked)"
    assert f"0.166 BTC = 9,960.00 USDT {floored}" in line
    # 50 at 1x buys 0.00083 BTC: floored to 0, below the 0.001 minimum; said, not shown valid
    small = jsonable(calculate(request(balance=D(50), leverage=D(3))))
    one = next(c for c in small["columns"] if c["leverage"] == "1")
    assert (one["qty"], one["below_minimum_qty"], one["allowed"]) == ("0", True, False)
    three = next(c for c in small["columns"] if c["leverage"] == "3")
    assert (three["qty"], three["below_minimum_qty"]) == ("0.002", False)


@pytest.mark.parametrize("side", [1, -1])
def test_the_leverage_grid_marks_a_stop_beyond_liquidation(side: int) -> None:
    """The grid keeps the trader's stop (2 daily vols at 60 %: 56 231.35 for a long, 63 768.65
    for a short) at every leverage. At 20x the liquidation (57 228.92 long, 62 749.00 short)
    comes first: the column said nothing and read as a valid position."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_moves, calc_summary

    r = calculate(request(side=side, volatility=D("0.6")))
    flags = {c.leverage: c.stop_beyond_liquidation for c in r.columns}
    assert flags == {D(1): False, D(3): False, D(5): False, D(10): False, D(20): True}
    data = jsonable(r)
    assert [c["stop_beyond_liquidation"] for c in data["columns"]] == [False] * 4 + [True]
    assert data["stop_beyond_liquidation"] is False  # the request's own 10x
    out = StringIO()
    Console(file=out, width=250).print(calc_moves(r))
    assert out.getvalue().count("stop beyond liquidation") == 1
    # Asked at 20x itself, the summary says it too.
    at20 = calculate(request(side=side, leverage=D(20), volatility=D("0.6")))
    assert jsonable(at20)["stop_beyond_liquidation"] is True
    out = StringIO()
    Console(file=out, width=250).print(calc_summary(at20))
    assert "liquidated before the stop fires" in out.getvalue()
    # Without a stop (no volatility) nothing is marked.
    assert not any(c.stop_beyond_liquidation for c in calculate(request(side=side)).columns)


@pytest.mark.parametrize("side", ["long", "short"])
def test_cli_an_entry_below_the_lowest_price_is_refused(side: str) -> None:
    """BTC at 0.05 (its tick is 0.1): the calculator showed 100 000 BTC with a liquidation
    price of 0.10 above a long's entry (0 for a short) and exited 0."""
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", side, "--entry", "0.05"]
    result = runner.invoke(app, [*args, "--balance", "1000", "--leverage", "5", "--json"])
    assert result.exit_code == 2, result.output
    assert "--entry 0.05 is below BTC/USDT:USDT's lowest price 0.1" in result.output
    assert "Traceback" not in result.output


def test_an_entry_off_the_tick_or_outside_the_price_filter_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"--entry 60000\.05 is not a multiple of BTC/USDT"):
        calculate(request(entry=D("60000.05")))
    # a venue that states a price filter (as its markets answer gives it; no snapshot holds one)
    filtered = replace(BTC, min_price=D(1000), max_price=D(100000))
    monkeypatch.setattr("bot.tools.calc.lookup_instrument", lambda *_: filtered)
    with pytest.raises(ConfigError, match="below BTC/USDT:USDT's lowest price 1000"):
        calculate(request(entry=D(900)))
    with pytest.raises(ConfigError, match="above BTC/USDT:USDT's highest price 100000"):
        calculate(request(entry=D(100001)))
    assert calculate(request()).liquidation_on_grid is not None


@pytest.mark.parametrize(("side", "way"), [(1, "below"), (-1, "above")])
def test_a_liquidation_price_on_the_entrys_tick_is_refused(side: int, way: str) -> None:
    """BTC at 0.1, one tick: 5x liquidates within that tick, shown rounded toward the entry as
    the entry itself (a long's liquidation at its entry, or a short's); no such position."""
    with pytest.raises(ConfigError) as err:
        calculate(request(side=side, entry=D("0.1"), balance=D(1000), leverage=D(5)))
    assert f"liquidates at 0.1 on BTC/USDT:USDT's tick 0.1, not {way} the entry" in str(err.value)
    # 1.5 is 15 ticks: the liquidation lies ticks away, on the losing side
    got = calculate(request(side=side, entry=D("1.5"), balance=D(1000), leverage=D(5)))
    assert got.liquidation_on_grid is not None
    assert (got.liquidation_on_grid - D("1.5")) * side < 0


def test_a_stop_at_or_below_zero_admits_only_a_position_that_cannot_be_liquidated() -> None:
    """BTC long at 60 000, balance 1 000, vol 200 % (daily 2 / sqrt(365) = 10.4685 %). 9.5
    daily vols down the stop is 329.7: 1x (no liquidation price) is the largest leverage whose
    liquidation lies beyond it. 9.6 vols down it is -298.4, a stop that never fires; it was
    taken for no stop at all and the answer jumped to the bracket cap, 150x, a long that
    liquidates at 60 000 x (1 - 1/150) / 0.996 = 59 839.4, 0.27 % below the entry. Any
    liquidation price comes before such a stop: only 1x (margin = notional) qualifies."""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_summary

    base = {"leverage": D(5), "volatility": D(2)}
    above = calculate(request(**base, stop_vol_units=D("9.5")))
    assert above.stop_price is not None
    assert D(329) < above.stop_price < D(330)
    assert above.max_leverage_for_stop == D(1)
    below = calculate(request(**base, stop_vol_units=D("9.6")))
    assert below.stop_price is None
    assert below.max_leverage_for_stop == D(1)
    # asked again at the answer, nothing liquidates before the stop; a cent more does
    at = calculate(request(**{**base, "leverage": D(1)}, stop_vol_units=D("9.6")))
    assert at.liquidation_price is None
    assert not at.stop_beyond_liquidation
    assert calculate(
        request(**{**base, "leverage": D("1.01")}, stop_vol_units=D("9.6"))
    ).stop_beyond_liquidation
    # every column with a liquidation price is liquidated before a stop that never fires
    assert {c.leverage: c.stop_beyond_liquidation for c in below.columns} == {
        D(1): False,
        D(3): True,
        D(5): True,
        D(10): True,
        D(20): True,
    }
    assert below.stop_beyond_liquidation
    # the default 2 units at 1 000 % a year is the same case
    assert calculate(request(volatility=D(10))).max_leverage_for_stop == D(1)
    data = jsonable(below)
    assert (data["stop_price"], data["max_leverage_for_stop"]) == (None, "1")
    assert data["stop_note"].startswith("stop at or below 0: 9.6 daily vols below the entry")
    assert "1x (its margin is its notional) has no liquidation price" in data["stop_note"]
    assert above.stop_note is None
    assert jsonable(above)["stop_note"] is None
    out = StringIO()
    Console(file=out, width=400).print(calc_summary(below))
    line = next(x for x in out.getvalue().splitlines() if "max leverage, stop" in x)
    assert "(at or below 0)" in line
    assert "1.00x: stop at or below 0" in line


@pytest.mark.parametrize(
    ("mode", "entry"), [(MarginMode.ISOLATED, D(60000)), (MarginMode.CROSS, D(50000))]
)
def test_on_bybit_no_leverage_keeps_a_stop_at_or_below_zero(
    mode: MarginMode, entry: Decimal
) -> None:
    """On Bybit's formula (bot.domain.margin._solve_bybit) the maintenance margin is valued at
    the entry and holds the fee to close: a 1x long whose margin is its notional still
    liquidates, near the entry x 0.5 % (300 at 60 000). So no leverage keeps its liquidation
    beyond a stop that never fires, and the answer says so instead of giving a number. (Cross
    at 50 000, where 1 000 at 1x is 0.02 BTC on the step: at 60 000 the step leaves 40 of the
    wallet over the 960 held, enough to cover the maintenance, and 1x qualifies there.)"""
    from io import StringIO

    from rich.console import Console

    from bot.tools.render import calc_summary

    r = calculate(
        request(
            exchange="bybit",
            margin_mode=mode,
            entry=entry,
            leverage=D(5),
            volatility=D(2),
            stop_vol_units=D("9.6"),
        )
    )
    one = next(c for c in r.columns if c.leverage == 1)
    assert one.liquidation_price is not None
    assert entry * D("0.005") <= one.liquidation_price < entry * D("0.0051")
    assert r.stop_price is None
    assert r.max_leverage_for_stop == 0
    assert r.stop_note is not None
    assert f"none does: even 1x liquidates, at {one.liquidation_on_grid}" in r.stop_note
    out = StringIO()
    Console(file=out, width=400).print(calc_summary(r))
    line = next(x for x in out.getvalue().splitlines() if "max leverage, stop" in x)
    assert "none: stop at or below 0" in line
    assert "0.00x" not in line  # no number given as the answer


def test_a_size_worth_less_than_the_balance_is_held_at_1x() -> None:
    """0.01 BTC short at 60 000 (600 USDT) on a 100 000 wallet read 0.006x, a leverage the
    venue has no setting for (--leverage refuses it), and in isolated mode took the whole
    wallet as the position's margin: "liquidates at 10 019 920.3". The venue holds it at 1x at
    least, margin 600: LP = (600 + 600) / (0.01 x 0.004 + 0.01) = 119 521.9 (Binance's
    formula), as --leverage 1 on a 600 balance shows. In cross the whole wallet backs it and
    the liquidation price stays the wallet's; only the initial margin is the notional's."""
    sized = request(side=-1, leverage=None, size=D("0.01"), balance=D(100000))
    isolated = calculate(sized)
    assert isolated.leverage == D(1)
    assert isolated.initial_margin == D(600)
    assert isolated.liquidation_on_grid == D("119521.9")
    at_1x = calculate(request(side=-1, leverage=D(1), balance=D(600)))
    assert isolated.liquidation_price == at_1x.liquidation_price
    main = next(c for c in isolated.columns if c.leverage == 1)
    assert (main.order_qty, main.notional) == (D("0.01"), D(600))
    # the move table loses at most the position's margin, never the wallet
    worst = min(c.pnl for _, _, cells in isolated.moves for c in cells[:1] if c.pnl is not None)
    assert worst >= -600
    assert isolated.size_note is not None
    assert "held at the venue's lowest leverage, 1x: isolated margin 600 USDT" in (
        isolated.size_note
    )
    data = jsonable(isolated)
    assert (data["leverage"], data["liquidation_price"]) == ("1", "119521.9")
    assert data["size_note"] == isolated.size_note
    # cross: the wallet backs it, (100 000 + 600) / (0.01 x 1.004) = 10 019 920.3
    cross = calculate(replace(sized, margin_mode=MarginMode.CROSS))
    assert cross.leverage == D(1)
    assert cross.initial_margin == D(600)
    assert cross.liquidation_on_grid == D("10019920.3")
    assert cross.size_note is not None
    assert "the whole wallet (100000) backs it in cross" in cross.size_note
    # a size worth the balance or more keeps its leverage and says nothing
    assert calculate(replace(sized, balance=D(600))).size_note is None
    assert calculate(replace(sized, balance=D(300))).leverage == D(2)


def test_cli_a_size_below_the_balance_says_it_is_held_at_1x() -> None:
    args = ["calc", "--contract", "BTC/USDT:USDT", "--side", "short", "--entry", "60000"]
    args += ["--size", "0.01", "--balance", "100000", "--margin-mode", "isolated"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (data["leverage"], data["initial_margin"]) == ("1", "600")
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    flat = " ".join(text.output.split())
    assert "--size 0.01 is 600 USDT, less than the balance 100000 (0.006x)" in flat
