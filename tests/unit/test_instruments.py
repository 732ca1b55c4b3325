"""Bundled contract specifications: loading, validation and the consistency of the bracket data."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from decimal import Decimal
from importlib import resources
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bot.domain.instrument import Instrument
from bot.instruments import (
    available_exchanges,
    instrument_for,
    load_instruments,
    parse_instruments,
)

D = Decimal
# Contracts each bundled file must hold (the Binance file holds many more, see below).
EXPECTED = {
    "binanceusdm": {
        "ADA/USDT:USDT",
        "ATOM/USDT:USDT",
        "AVAX/USDT:USDT",
        "BAL/USDT:USDT",
        "BAT/USDT:USDT",
        "BCH/USDT:USDT",
        "BLZ/USDT:USDT",
        "BNB/USDT:USDT",
        "BTC/USDT:USDT",
        "COMP/USDT:USDT",
        "CRV/USDT:USDT",
        "DASH/USDT:USDT",
        "DOGE/USDT:USDT",
        "EGLD/USDT:USDT",
        "ENJ/USDT:USDT",
        "ETC/USDT:USDT",
        "ETH/USDT:USDT",
        "FLM/USDT:USDT",
        "FTM/USDT:USDT",
        "ICX/USDT:USDT",
        "LINK/USDT:USDT",
        "LTC/USDT:USDT",
        "NEAR/USDT:USDT",
        "OMG/USDT:USDT",
        "ONT/USDT:USDT",
        "REN/USDT:USDT",
        "RUNE/USDT:USDT",
        "SOL/USDT:USDT",
        "STORJ/USDT:USDT",
        "SUSHI/USDT:USDT",
        "SXP/USDT:USDT",
        "TRB/USDT:USDT",
        "TRX/USDT:USDT",
        "UNI/USDT:USDT",
        "XLM/USDT:USDT",
        "XMR/USDT:USDT",
        "XRP/USDT:USDT",
        "XTZ/USDT:USDT",
        "ZEC/USDT:USDT",
    },
    "bybit": {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "BNB/USDT:USDT"},
}
ROOT = Path(__file__).resolve().parents[2]


def _raw(exchange: str) -> dict[str, Any]:
    """The bundled file decoded by json alone, independent of the loader."""
    text = (
        resources.files("bot.resources.instruments")
        .joinpath(f"{exchange}.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def _minimal() -> dict[str, Any]:
    return {
        "exchange": "test",
        "as_of": "2026-01-01",
        "source": "hand-written for a test",
        "instruments": {
            "TOY/USDT:USDT": {
                "base": "TOY",
                "quote": "USDT",
                "tick_size": "0.01",
                "step_size": "1",
                "min_qty": "1",
                "min_notional": "5",
                "maker_fee": "0.0002",
                "taker_fee": "0.0005",
                "liquidation_fee": "0.0125",
                "source": "test",
                "brackets": [
                    {
                        "notional_floor": "0",
                        "notional_cap": "1000",
                        "max_leverage": "50",
                        "maint_margin_rate": "0.01",
                        "maint_amount": "0",
                    },
                    {
                        "notional_floor": "1000",
                        "notional_cap": "5000",
                        "max_leverage": "10",
                        "maint_margin_rate": "0.05",
                        "maint_amount": "40",
                    },
                ],
            }
        },
    }


# --------------------------------------------------------------------------------- loading


def test_available_exchanges() -> None:
    assert available_exchanges() == ("binanceusdm", "bybit")


@pytest.mark.parametrize("exchange", sorted(EXPECTED))
def test_load_instruments_returns_the_bundled_symbols(exchange: str) -> None:
    instruments = load_instruments(exchange)
    assert set(instruments) == set(_raw(exchange)["instruments"])
    assert EXPECTED[exchange] <= set(instruments)
    for symbol, instrument in instruments.items():
        assert isinstance(instrument, Instrument)
        assert instrument.symbol == symbol
        assert instrument.quote == "USDT"


def test_load_instruments_returns_a_fresh_dict() -> None:
    first = load_instruments("binanceusdm")
    first.clear()
    assert len(load_instruments("binanceusdm")) == len(_raw("binanceusdm")["instruments"])


def test_binance_btc_values() -> None:
    btc = instrument_for("binanceusdm", "BTC/USDT:USDT")
    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (
        D("0.1"),
        D("0.001"),
        D("0.001"),
        D(100),
    )
    assert (btc.maker_fee, btc.taker_fee, btc.liquidation_fee) == (
        D("0.0002"),
        D("0.0005"),
        D("0.0125"),
    )
    assert btc.max_leverage == D(150)
    assert btc.max_leverage_for(D(500000)) == D(100)
    assert len(btc.brackets) == 12
    assert btc.brackets[-1].maint_margin_rate == D("0.5")


# Contracts traders hold today (2026); each must simulate offline from the snapshot.
TODAYS_MAIN = tuple(
    [
        "1000PEPE",
        "SUI",
        "WIF",
        "APT",
        "ARB",
        "OP",
        "1000SHIB",
        "DOT",
        "FIL",
        "INJ",
        "TIA",
        "SEI",
        "WLD",
        "ENA",
        "AAVE",
        "ONDO",
        "HYPE",
        "BNB",
        "DOGE",
        "ADA",
        "LINK",
        "AVAX",
        "LTC",
        "BCH",
        "TRX",
        "NEAR",
    ]
)


def _ladder(spec: dict[str, Any]) -> tuple[Decimal, Decimal]:
    rows = spec["brackets"]
    return D(rows[-1]["notional_cap"]), D(rows[0]["notional_cap"])


def test_binance_snapshot_holds_todays_main_contracts() -> None:
    instruments = load_instruments("binanceusdm")
    missing = [b for b in TODAYS_MAIN if f"{b}/USDT:USDT" not in instruments]
    assert not missing
    assert "EOS/USDT:USDT" not in instruments  # gone from Binance and from the bracket source


def test_binance_largest_are_ranked_by_their_bracket_ladder() -> None:
    raw = _raw("binanceusdm")
    specs = raw["instruments"]
    largest = raw["largest"]["symbols"]
    assert len(largest) >= 40
    assert len(set(largest)) == len(largest)
    assert set(largest) <= set(specs)
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT"} <= set(largest)
    # BTC, ETH, SOL and XRP keep their tables of 2026-03-26; the rest are ranked on the bundled
    # tables themselves: non-increasing ladders, and nothing outside beats the smallest inside.
    ranked = [s for s in largest if "largest by bracket ladder" in specs[s]["source"]]
    assert len(ranked) >= 36
    ladders = [_ladder(specs[s]) for s in ranked]
    assert ladders == sorted(ladders, reverse=True)
    for sym, spec in specs.items():
        if sym not in largest and "beyond the largest" in spec["source"]:
            assert _ladder(spec) <= ladders[-1], sym
    beyond = [s for s, spec in specs.items() if "beyond the largest" in spec["source"]]
    assert len(beyond) > 300  # every other listed contract is bundled for offline coverage


def test_binance_every_instrument_names_its_sources() -> None:
    for sym, spec in _raw("binanceusdm")["instruments"].items():
        text = spec["source"]
        if sym in {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT"}:
            assert "exchangeInfo" in text
            continue
        if "Delisted" in text:  # an entry of the 2024 snapshot, kept unchanged
            assert "binance_leverage_tiers.json" in text, sym
            assert "exchangeInfo" in text, sym
            continue
        assert "binance_leverage_tiers.json of 2026-05-01" in text, sym
        assert "exchangeInfo of 2025-12-24" in text, sym
        assert "trading on 2026-08-06" in text, sym


def test_binance_1000pepe_matches_the_sources() -> None:
    # exchangeInfo of 2025-12-24 (serverTime 1766562549558): PRICE_FILTER tickSize 0.0000001,
    # LOT_SIZE stepSize 1 / minQty 1, MIN_NOTIONAL 5, liquidationFee 0.015000; freqtrade's
    # tiers of 2026-05-01: 10 brackets from 0-20 000 at 75x (0.65 %) to 30M-35M at 1x.
    pepe = instrument_for("binanceusdm", "1000PEPE/USDT:USDT")
    assert (pepe.tick_size, pepe.step_size, pepe.min_qty, pepe.min_notional) == (
        D("0.0000001"),
        D(1),
        D(1),
        D(5),
    )
    assert pepe.liquidation_fee == D("0.015")
    assert len(pepe.brackets) == 10
    first, second, last = pepe.brackets[0], pepe.brackets[1], pepe.brackets[-1]
    assert (first.notional_cap, first.max_leverage, first.maint_margin_rate) == (
        D(20000),
        D(75),
        D("0.0065"),
    )
    assert (second.notional_cap, second.maint_margin_rate, second.maint_amount) == (
        D(200000),
        D("0.01"),
        D(70),  # 20 000 * (0.01 - 0.0065)
    )
    assert (last.notional_floor, last.notional_cap, last.max_leverage) == (
        D(30000000),
        D(35000000),
        D(1),
    )
    assert last.maint_amount == D(11960070)


def test_bybit_btc_values() -> None:
    btc = instrument_for("bybit", "BTC/USDT:USDT")
    assert (btc.maker_fee, btc.taker_fee) == (D("0.0002"), D("0.00055"))
    assert btc.max_leverage == D(100)
    # Tier 2: risk limit 2 600 000, MMR 0.56 %, deduction 1 200 = 2 000 000 * (0.0056 - 0.005).
    tier2 = btc.bracket_for(D(2500000))
    assert (tier2.notional_floor, tier2.notional_cap) == (D(2000000), D(2600000))
    assert (tier2.maint_margin_rate, tier2.maint_amount, tier2.max_leverage) == (
        D("0.0056"),
        D(1200),
        D(90),
    )


def test_bybit_eth_values() -> None:
    eth = instrument_for("bybit", "ETH/USDT:USDT")
    assert (eth.tick_size, eth.step_size, eth.min_qty, eth.min_notional) == (
        D("0.01"),
        D("0.01"),
        D("0.01"),
        D(5),
    )
    assert eth.max_leverage == D(100)
    assert len(eth.brackets) == 13
    # Tier 3 of the published table: risk limit 3 000 000, MMR 1.5 %, 36.37x; its deduction
    # by Bybit's rule: 900 000 x 0.005 + 1 500 000 x 0.005 = 12 000.
    tier3 = eth.bracket_for(D(2000000))
    assert (tier3.notional_floor, tier3.notional_cap) == (D(1500000), D(3000000))
    assert (tier3.maint_margin_rate, tier3.maint_amount, tier3.max_leverage) == (
        D("0.015"),
        D(12000),
        D("36.37"),
    )
    # Beyond the last transcribed tier the last one applies.
    assert eth.bracket_for(D(30000000)).maint_margin_rate == D("0.065")


@pytest.mark.parametrize("symbol", ["SOL/USDT:USDT", "BNB/USDT:USDT"])
def test_bybit_stand_in_ladders_are_labelled_and_stricter(symbol: str) -> None:
    spec = _raw("bybit")["instruments"][symbol]
    assert spec["source"].startswith("STAND-IN risk limits")
    instrument = instrument_for("bybit", symbol)
    assert instrument.max_leverage == D(20)
    assert instrument.brackets[0].maint_margin_rate == D("0.025")
    # Tier 2: 5 000 x (0.0263 - 0.025) = 6.5.
    assert instrument.bracket_for(D(6000)).maint_amount == D("6.5")


def test_bybit_published_tables_are_not_labelled_stand_in() -> None:
    for symbol in ("BTC/USDT:USDT", "ETH/USDT:USDT"):
        assert "STAND-IN" not in _raw("bybit")["instruments"][symbol]["source"]


def _bybit_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_bybit_snapshot", ROOT / "scripts" / "build_bybit_snapshot.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_bundled_bybit_file_is_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_bybit_snapshot.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generator_refuses_a_published_deduction_that_breaks_bybits_rule() -> None:
    builder = _bybit_builder()
    tiers = (builder.Tier("100", "0.01", "50", "0"), builder.Tier("200", "0.02", "25", "2"))
    with pytest.raises(ValueError, match=r"X tier 2: published deduction 2 != 1.00"):
        builder.brackets_from_tiers(tiers, "X")
    good = (builder.Tier("100", "0.01", "50", "0"), builder.Tier("200", "0.02", "25", "1"))
    rows = builder.brackets_from_tiers(good, "X")
    assert rows[1] == {
        "notional_floor": "100",
        "notional_cap": "200",
        "max_leverage": "25",
        "maint_margin_rate": "0.02",
        "maint_amount": "1",
    }


def test_unknown_symbol_names_it_and_the_closest_known_ones() -> None:
    count = len(_raw("binanceusdm")["instruments"])
    with pytest.raises(ValueError, match=r"binanceusdm: unknown symbol 'PEPE/USDT:USDT'") as info:
        instrument_for("binanceusdm", "PEPE/USDT:USDT")
    assert f"{count} bundled symbols; closest: " in str(info.value)
    assert "1000PEPE/USDT:USDT" in str(info.value)  # Binance lists PEPE per 1000


def test_unknown_exchange_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown exchange 'okx'.*binanceusdm, bybit"):
        load_instruments("okx")


# ------------------------------------------------------------------- the bundled data itself


@pytest.mark.parametrize("exchange", sorted(EXPECTED))
def test_bundled_file_header(exchange: str) -> None:
    raw = _raw(exchange)
    assert raw["exchange"] == exchange
    assert len(raw["as_of"]) == 10
    assert raw["source"]
    for spec in raw["instruments"].values():
        assert spec["source"]


@pytest.mark.parametrize("exchange", sorted(EXPECTED))
def test_every_number_is_written_as_a_string(exchange: str) -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")
        else:
            assert isinstance(node, str), f"{exchange}{path} is {node!r}, not a string"

    walk(_raw(exchange), "")


@pytest.mark.parametrize("exchange", sorted(EXPECTED))
def test_cum_is_consistent_in_the_bundled_tables(exchange: str) -> None:
    # cum_i = cum_(i-1) + floor_i * (mmr_i - mmr_(i-1)), recomputed from the raw strings.
    for symbol, spec in _raw(exchange)["instruments"].items():
        rows = spec["brackets"]
        assert D(rows[0]["notional_floor"]) == 0
        assert D(rows[0]["maint_amount"]) == 0
        for lower, upper in pairwise(rows):
            assert upper["notional_floor"] == lower["notional_cap"], symbol
            expected = D(lower["maint_amount"]) + D(upper["notional_floor"]) * (
                D(upper["maint_margin_rate"]) - D(lower["maint_margin_rate"])
            )
            assert D(upper["maint_amount"]) == expected, (symbol, upper)


@pytest.mark.parametrize("exchange", sorted(EXPECTED))
def test_bundled_tables_tighten_as_notional_grows(exchange: str) -> None:
    for symbol, instrument in load_instruments(exchange).items():
        brackets = instrument.brackets
        for lower, upper in pairwise(brackets):
            assert upper.maint_margin_rate > lower.maint_margin_rate, symbol
            assert upper.max_leverage < lower.max_leverage, symbol
        for bracket in brackets:
            # Opening at the bracket's max leverage leaves margin above maintenance.
            assert 1 / bracket.max_leverage > bracket.maint_margin_rate, (symbol, bracket)


# ------------------------------------------------------------------------------ validation


def test_parse_minimal_file() -> None:
    instruments = parse_instruments(_minimal(), "test.json")
    toy = instruments["TOY/USDT:USDT"]
    assert toy.brackets[1].maint_amount == D(40)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("as_of"), r"test\.json: top level: missing field 'as_of'"),
        (lambda d: d.update(as_of="yesterday"), r"test\.json: 'as_of' must be an ISO date"),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"].pop("tick_size"),
            r"test\.json: instrument 'TOY/USDT:USDT': missing field 'tick_size'",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"]["brackets"][1].pop("maint_amount"),
            r"test\.json: instrument 'TOY/USDT:USDT' bracket 2: missing field 'maint_amount'",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"].update(taker_fee=0.0005),
            r"'taker_fee' must be a number written as a string, got 0\.0005",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"].update(min_qty="one"),
            r"'min_qty' is not a number: 'one'",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"]["brackets"][1].update(maint_amount="41"),
            r"bracket 2: maint_amount 41 is inconsistent, expected 40",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"]["brackets"][1].update(notional_floor="900"),
            r"bracket 2: notional_floor 900 != notional_cap 1000 of bracket 1 \(not contiguous\)",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"]["brackets"][0].update(
                maint_margin_rate="1"
            ),
            r"bracket 1: maint_margin_rate must be in \[0, 1\)",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"].update(quote="USDC"),
            r"symbol does not match base 'TOY' and quote 'USDC'",
        ),
        (
            lambda d: d["instruments"]["TOY/USDT:USDT"].update(brackets=[]),
            r"'brackets' must be a non-empty list",
        ),
        (lambda d: d.update(instruments={}), r"test\.json: 'instruments' is empty"),
    ],
)
def test_validation_errors_name_file_and_field(mutate: Any, message: str) -> None:
    data = copy.deepcopy(_minimal())
    mutate(data)
    with pytest.raises(ValueError, match=message):
        parse_instruments(data, "test.json")
