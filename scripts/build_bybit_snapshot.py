"""Regenerate the bundled Bybit snapshot (bot/resources/instruments/bybit.json).

Every figure below is transcribed from a published source named beside it (facts only, no code
taken); bot/resources/instruments/README.md lists the sources with their dates and locations.
The script converts Bybit's risk-limit tiers into the bot's bracket format and writes the file:

    python scripts/build_bybit_snapshot.py           # rewrite bybit.json
    python scripts/build_bybit_snapshot.py --check   # exit 1 if bybit.json differs from this

Conversion. A Bybit tier n covers position values from the previous tier's risk limit up to its
own ``riskLimitValue``: notional_floor = riskLimitValue(n-1) (0 for tier 1), notional_cap =
riskLimitValue(n). maint_amount is Bybit's "Maintenance Margin Deduction" (``mmDeduction``),
which Bybit defines exactly like Binance's cum (margin-parameters page):
deduction(n) = riskLimit(n-1) x (MMR(n) - MMR(n-1)) + deduction(n-1). Where a source publishes the
deduction the script checks it against that rule and refuses a mismatch; where it does not (the
2023 ETH table, the stand-in ladder) the rule computes it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bot/resources/instruments/bybit.json"
# The oldest dated source below (ETH's risk-limit print of 2023-03-05; BTC's page is undated): the
# snapshot is at least this old, as Binance's `as_of` is its brackets' date.
AS_OF = "2023-03-05"

# Bybit non-VIP derivatives fees (maker 0.02 %, taker 0.055 %). Bybit has no separate liquidation
# clearance fee: the liquidating close pays the taker fee, so liquidation_fee = taker fee.
MAKER, TAKER = "0.0002", "0.00055"


@dataclass(frozen=True)
class Tier:
    """One row of a published risk-limit table (strings exactly as published)."""

    risk_limit: str
    mmr: str
    max_leverage: str
    deduction: str | None = None  # None: not published, computed by Bybit's rule


@dataclass(frozen=True)
class Contract:
    base: str
    tick_size: str
    step_size: str
    min_qty: str
    min_notional: str
    tiers: tuple[Tier, ...]
    source: str
    max_order_qty: str | None = None  # lotSizeFilter.maxMktOrderQty; None: not in the source


# BTCUSDT, Bybit "Margin Parameters" page (bybit.com/en/announcement-info/margin-parameters, as
# captured at bybitx.global/pt-PT/announcement-info/margin-parameters): tiers 1-20 with their
# published Maintenance Margin Deduction.
BTC_TIERS = (
    Tier("2000000", "0.005", "100", "0"),
    Tier("2600000", "0.0056", "90", "1200"),
    Tier("3200000", "0.0063", "80", "3020"),
    Tier("3800000", "0.0067", "75", "4300"),
    Tier("4400000", "0.0071", "70", "5820"),
    Tier("5000000", "0.0077", "65", "8460"),
    Tier("5600000", "0.0091", "55", "15460"),
    Tier("8500000", "0.01", "50", "20500"),
    Tier("10000000", "0.013", "45", "46000"),
    Tier("14000000", "0.015", "40", "66000"),
    Tier("20000000", "0.016", "35", "80000"),
    Tier("28000000", "0.02", "30", "160000"),
    Tier("38000000", "0.025", "25", "300000"),
    Tier("50000000", "0.029", "20", "452000"),
    Tier("55000000", "0.03", "19", "502000"),
    Tier("60000000", "0.035", "18", "777000"),
    Tier("65000000", "0.036", "17", "837000"),
    Tier("70000000", "0.038", "16", "967000"),
    Tier("75000000", "0.04", "15", "1107000"),
    Tier("80000000", "0.045", "14", "1482000"),
)

# ETHUSDT, Bybit GET /v5/market/risk-limit as printed by ccxt's CLI in ccxt/ccxt pull request
# #17061 ("bybit: patch fetchMarketLeverageTiers", description of 2023-03-05): tiers 1-13 (the
# stored copy of the thread shows the table up to 24,000,000; higher tiers are not transcribed).
# maxNotional -> riskLimitValue, maintenanceMarginRate, maxLeverage. No deduction was published.
ETH_TIERS = (
    Tier("900000", "0.005", "100"),
    Tier("1500000", "0.01", "50"),
    Tier("3000000", "0.015", "36.37"),
    Tier("4500000", "0.02", "28.58"),
    Tier("6000000", "0.025", "23.53"),
    Tier("7500000", "0.03", "20"),
    Tier("9000000", "0.035", "17.4"),
    Tier("10500000", "0.04", "15.39"),
    Tier("16000000", "0.045", "13.8"),
    Tier("18000000", "0.05", "12.5"),
    Tier("20000000", "0.055", "11.43"),
    Tier("22000000", "0.06", "10.53"),
    Tier("24000000", "0.065", "9.76"),
)

# STAND-IN ladder: Bybit's published risk-limit table "After Adjustment" from its announcements
# "Risk Limit Adjustment for Perpetual Contracts (Jun 20, 2025)" and "(Jul 1, 2025)" (mirrored at
# bybitannouncements.com/?p=1542 and ?p=1828): Max. Position Value, Maintenance Margin Rate, Max.
# Leverage, rows 1-16 (up to 150,000; later rows are cut off in the stored copy). Bybit published
# it for small contracts (NEIROETHUSDT, TUTUSDT, VOXELUSDT ...), NOT for SOL or BNB: it stands in
# for their own tables, which could not be found in any published copy. For ordinary position
# sizes it is stricter than theirs (20x here; Bybit's 2022 symbol list gives both 50x), so a
# simulation with it liquidates earlier and allows less leverage than the venue would.
STAND_IN_TIERS = (
    Tier("5000", "0.025", "20"),
    Tier("9000", "0.0263", "19"),
    Tier("13000", "0.0278", "18"),
    Tier("17000", "0.0294", "17"),
    Tier("21000", "0.0313", "16"),
    Tier("25000", "0.0333", "15"),
    Tier("40000", "0.0357", "14"),
    Tier("55000", "0.0385", "13"),
    Tier("70000", "0.0417", "12"),
    Tier("85000", "0.0455", "11"),
    Tier("100000", "0.05", "10"),
    Tier("110000", "0.0526", "9.5"),
    Tier("120000", "0.0556", "9"),
    Tier("130000", "0.0588", "8.5"),
    Tier("140000", "0.0625", "8"),
    Tier("150000", "0.0667", "7.5"),
)
STAND_IN_NOTE = (
    "STAND-IN risk limits: no published copy of this contract's own Bybit risk-limit table was "
    "found, so its brackets are Bybit's published 'After Adjustment' ladder from the announcements "
    "'Risk Limit Adjustment for Perpetual Contracts' of Jun 20 and Jul 1, 2025 (rows 1-16, up to "
    "150,000 USDT; published for small contracts, stricter than this contract's real table for "
    "ordinary sizes: earlier liquidation, lower leverage). Deductions computed with Bybit's "
    "published rule. Run `bot contracts sync` (GET /v5/market/risk-limit is public) before "
    "relying on these figures."
)
V2_SYMBOLS = (
    "a GET /v2/public/symbols response (Bybit's v2 linear symbol list) posted in ccxt/ccxt issue "
    "#11268 ('ccxt BYBIT can't change margin type and leverage', January 2022)"
)
CCXT_MARKETS = (
    "ccxt's test fixture ts/src/test/static/markets/bybit.json (github.com/ccxt/ccxt, commit "
    "1f8d53ec6ee5e019956c2fd2dc204102b924716d), which records GET /v5/market/instruments-info"
)
MIN_NOTIONAL_RULE = (
    "min_notional 5: the v2 response has no notional filter; 5 USDT is the minNotionalValue that "
    "every linear USDT perpetual in " + CCXT_MARKETS.split(",")[0] + " carries"
)

CONTRACTS = (
    Contract(
        "BTC",
        "0.1",
        "0.001",
        "0.001",
        "5",
        BTC_TIERS,
        "Filters from GET /v5/market/instruments-info as recorded in ccxt's test fixture "
        "ts/src/test/static/markets/bybit.json (priceFilter.tickSize 0.10, lotSizeFilter qtyStep "
        "0.001, minOrderQty 0.001, minNotionalValue 5, maxMktOrderQty 119.000). Risk-limit "
        "tiers 1-20 (up to 80,000,000 "
        "USDT) from Bybit's margin-parameters page for BTCUSDT; larger positions are treated as "
        "tier 20. Bybit has no separate liquidation clearance fee: the liquidating close pays the "
        "taker fee and any margin left between the liquidation and bankruptcy prices goes to the "
        "insurance fund, so liquidation_fee is set to the taker fee.",
        "119",
    ),
    Contract(
        "ETH",
        "0.01",
        "0.01",
        "0.01",
        "5",
        ETH_TIERS,
        "Filters from " + CCXT_MARKETS + " (ETHUSDT: priceFilter.tickSize 0.01, lotSizeFilter "
        "qtyStep 0.01, minOrderQty 0.01, minNotionalValue 5, maxMktOrderQty 724.00, "
        "leverageFilter.maxLeverage 100.00). "
        "Risk-limit tiers 1-13 (up to 24,000,000 USDT) from Bybit's GET /v5/market/risk-limit as "
        "printed in ccxt/ccxt pull request #17061 (2023-03-05); larger positions are treated as "
        "tier 13. The 2023 table publishes no deduction: maint_amount is computed with Bybit's "
        "published deduction rule. liquidation_fee = taker fee (Bybit has no separate one).",
        "724",
    ),
    Contract(
        "SOL",
        "0.005",
        "0.1",
        "0.1",
        "5",
        STAND_IN_TIERS,
        STAND_IN_NOTE + " Filters: tick_size 0.005 from SOLUSDT's record in " + V2_SYMBOLS + " "
        "(price_filter.min_price 0.005, price_scale 3; the stored copy is cut off before the "
        "record's tick_size, which equals min_price in every other record of that response); "
        "step_size and min_qty 0.1 are a STAND-IN too (SOLUSDT's lot_size_filter is cut off; 0.1 "
        "is the lot size of the neighbouring 0.005-tick record of the same response); "
        + MIN_NOTIONAL_RULE
        + ".",
    ),
    Contract(
        "BNB",
        "0.05",
        "0.01",
        "0.01",
        "5",
        STAND_IN_TIERS,
        STAND_IN_NOTE + " Filters from BNBUSDT's record in " + V2_SYMBOLS + " (price_filter."
        "tick_size 0.05, lot_size_filter.qty_step 0.01, min_trading_qty 0.01, leverage_filter."
        "max_leverage 50); " + MIN_NOTIONAL_RULE + ".",
    ),
)

TOP_SOURCE = (
    "Bundled snapshot of Bybit linear USDT perpetuals (UTA), generated by "
    "scripts/build_bybit_snapshot.py; see bot/resources/instruments/README.md for every source, "
    "its date and location. Risk-limit tiers modelled as brackets: a tier covers position values "
    "above the previous tier's risk limit up to its own (notional_floor = previous riskLimitValue, "
    "notional_cap = riskLimitValue), maint_amount = Bybit's Maintenance Margin Deduction "
    "(mmDeduction), defined exactly like Binance's cum: deduction_n = risk limit_(n-1) x "
    "(MMR_n - MMR_(n-1)) + deduction_(n-1) "
    "(https://www.bybit.com/en/announcement-info/margin-parameters). Bybit includes a tier's upper "
    "risk limit in that tier while a bracket excludes its cap; the maintenance margin is "
    "continuous there, only max_leverage differs at exactly the boundary. BTC and ETH carry "
    "Bybit's own published tables (BTC from the margin-parameters page, whose capture date is not "
    "recorded; ETH from a 2023-03-05 API print); SOL and BNB carry a STAND-IN ladder (see their "
    "'source'). Fees: non-VIP derivatives maker 0.02 %, taker 0.055 %. Bybit has since been seen "
    "publishing a 150x first tier for BTCUSDT (risk limit 300000, MMR 0.33 %): re-read GET "
    "/v5/market/risk-limit (`bot contracts sync`) before trading live."
)


def num(text: str) -> str:
    """A decimal string without exponent or trailing zeros ("2000000", "0.0056")."""
    s = format(Decimal(text), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def brackets_from_tiers(tiers: tuple[Tier, ...], where: str) -> list[dict[str, str]]:
    """Bybit tiers -> bracket rows, with the deduction computed by Bybit's rule and any
    published deduction checked against it."""
    out: list[dict[str, str]] = []
    floor, previous_mmr, deduction = Decimal(0), Decimal(0), Decimal(0)
    for n, tier in enumerate(tiers, start=1):
        cap, mmr = Decimal(tier.risk_limit), Decimal(tier.mmr)
        if n > 1:
            deduction += floor * (mmr - previous_mmr)
        if tier.deduction is not None and Decimal(tier.deduction) != deduction:
            raise ValueError(
                f"{where} tier {n}: published deduction {tier.deduction} != {deduction} "
                "computed with Bybit's rule"
            )
        if cap <= floor:
            raise ValueError(f"{where} tier {n}: risk limit {cap} not above {floor}")
        out.append(
            {
                "notional_floor": num(str(floor)),
                "notional_cap": num(tier.risk_limit),
                "max_leverage": num(tier.max_leverage),
                "maint_margin_rate": num(tier.mmr),
                "maint_amount": num(str(deduction)),
            }
        )
        floor, previous_mmr = cap, mmr
    return out


def snapshot() -> dict[str, object]:
    instruments: dict[str, object] = {}
    for c in CONTRACTS:
        symbol = f"{c.base}/USDT:USDT"
        instruments[symbol] = {
            "base": c.base,
            "quote": "USDT",
            "tick_size": c.tick_size,
            "step_size": c.step_size,
            "min_qty": c.min_qty,
            "min_notional": c.min_notional,
            "maker_fee": MAKER,
            "taker_fee": TAKER,
            "liquidation_fee": TAKER,
            **({} if c.max_order_qty is None else {"max_order_qty": c.max_order_qty}),
            "source": c.source,
            "brackets": brackets_from_tiers(c.tiers, symbol),
        }
    return {"exchange": "bybit", "as_of": AS_OF, "source": TOP_SOURCE, "instruments": instruments}


def render() -> str:
    return json.dumps(snapshot(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} differs from what {Path(__file__).name} generates", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: build_bybit_snapshot.py [--check]", file=sys.stderr)
        return 2
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
