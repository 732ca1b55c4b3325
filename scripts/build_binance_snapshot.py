"""Regenerate the bundled Binance USD-M snapshot (bot/resources/instruments/binanceusdm.json).

Inputs (facts only, no code taken): freqtrade's published bracket cache
``freqtrade/exchange/binance_leverage_tiers.json`` (path given as the first argument) and the
exchangeInfo filters transcribed below from a public GET /fapi/v1/exchangeInfo response with
serverTime 1711627208783 (2024-03-28). Contracts already in the snapshot keep their entries.
Usage: python scripts/build_binance_snapshot.py PATH/TO/binance_leverage_tiers.json COMMIT DATE
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bot/resources/instruments/binanceusdm.json"
# base: (tickSize, stepSize, minQty, MIN_NOTIONAL, liquidationFee) from exchangeInfo 2024-03-28
FILTERS = {
    "BCH": ("0.01", "0.001", "0.001", "20", "0.015"),
    "EOS": ("0.001", "0.1", "0.1", "5", "0.01"),
    "LTC": ("0.01", "0.001", "0.001", "20", "0.015"),
    "TRX": ("0.00001", "1", "1", "5", "0.01"),
    "ETC": ("0.001", "0.01", "0.01", "20", "0.015"),
    "LINK": ("0.001", "0.01", "0.01", "20", "0.015"),
    "XLM": ("0.00001", "1", "1", "5", "0.01"),
    "ADA": ("0.0001", "1", "1", "5", "0.01"),
    "XMR": ("0.01", "0.001", "0.001", "5", "0.015"),
    "DASH": ("0.01", "0.001", "0.001", "5", "0.015"),
    "ZEC": ("0.01", "0.001", "0.001", "5", "0.015"),
    "XTZ": ("0.001", "0.1", "0.1", "5", "0.01"),
    "BNB": ("0.01", "0.01", "0.01", "5", "0.015"),
    "ATOM": ("0.001", "0.01", "0.01", "5", "0.0175"),
    "ONT": ("0.0001", "0.1", "0.1", "5", "0.01"),
    "IOTA": ("0.0001", "0.1", "0.1", "5", "0.01"),
    "BAT": ("0.0001", "0.1", "0.1", "5", "0.01"),
    "ZRX": ("0.0001", "0.1", "0.1", "5", "0.015"),
    "COMP": ("0.01", "0.001", "0.001", "5", "0.015"),
    "OMG": ("0.0001", "0.1", "0.1", "5", "0.015"),
    "DOGE": ("0.00001", "1", "1", "5", "0.01"),
    "SXP": ("0.0001", "0.1", "0.1", "5", "0.01"),
    "KAVA": ("0.0001", "0.1", "0.1", "5", "0.01"),
    "BAL": ("0.001", "0.1", "0.1", "5", "0.02"),
    "CRV": ("0.001", "0.1", "0.1", "5", "0.02"),
    "TRB": ("0.001", "0.1", "0.1", "5", "0.015"),
    "RUNE": ("0.001", "1", "1", "5", "0.01"),
    "SUSHI": ("0.0001", "1", "1", "5", "0.01"),
    "EGLD": ("0.01", "0.1", "0.1", "5", "0.015"),
    "ICX": ("0.0001", "1", "1", "5", "0.01"),
    "STORJ": ("0.0001", "1", "1", "5", "0.015"),
    "BLZ": ("0.00001", "1", "1", "5", "0.02"),
    "UNI": ("0.001", "1", "1", "5", "0.02"),
    "AVAX": ("0.001", "1", "1", "5", "0.015"),
    "FTM": ("0.0001", "1", "1", "5", "0.01"),
    "ENJ": ("0.0001", "1", "1", "5", "0.01"),
    "FLM": ("0.0001", "1", "1", "5", "0.02"),
    "REN": ("0.00001", "1", "1", "5", "0.01"),
    "KSM": ("0.01", "0.1", "0.1", "5", "0.015"),
    "NEAR": ("0.001", "1", "1", "5", "0.01"),
}
SIZE = 40  # contracts in the snapshot


def num(text: str) -> str:
    d = Decimal(text)
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def main() -> None:
    tiers = json.loads(Path(sys.argv[1]).read_text())
    commit, day = sys.argv[2], sys.argv[3]
    snap = json.loads(OUT.read_text())

    # No open-interest history is published with the brackets; rank by the size of the bracket
    # ladder Binance gives each contract (its last notional cap, then its first), which Binance
    # scales with a market's depth, and keep the SIZE largest among those with known filters.
    def size(sym: str) -> tuple[float, float, str]:
        caps = [float(t["info"]["notionalCap"]) for t in tiers[sym]]
        return (-max(caps), -caps[0], sym)

    candidates = [f"{b}/USDT:USDT" for b in FILTERS] + list(snap["instruments"])
    ranked = sorted({s for s in candidates if s in tiers}, key=size)[:SIZE]
    snap["instruments"] = {s: v for s, v in snap["instruments"].items() if s in ranked}
    for base, (tick, step, min_qty, notional, liq) in FILTERS.items():
        sym = f"{base}/USDT:USDT"
        if sym in snap["instruments"] or sym not in ranked:
            continue
        brackets = [
            {
                "notional_floor": num(t["info"]["notionalFloor"]),
                "notional_cap": num(t["info"]["notionalCap"]),
                "max_leverage": num(t["info"]["initialLeverage"]),
                "maint_margin_rate": num(t["info"]["maintMarginRatio"]),
                "maint_amount": num(t["info"]["cum"]),
            }
            for t in tiers[sym]
        ]
        snap["instruments"][sym] = {
            "base": base,
            "quote": "USDT",
            "tick_size": tick,
            "step_size": step,
            "min_qty": min_qty,
            "min_notional": notional,
            "maker_fee": "0.0002",
            "taker_fee": "0.0005",
            "liquidation_fee": liq,
            "source": (
                "exchangeInfo filters and liquidationFee from a public GET /fapi/v1/exchangeInfo "
                "snapshot with serverTime 1711627208783 (2024-03-28); brackets from freqtrade's "
                f"freqtrade/exchange/binance_leverage_tiers.json at commit {commit} ({day})."
            ),
            "brackets": brackets,
        }
    OUT.write_text(json.dumps(snap, indent=2) + "\n")


if __name__ == "__main__":
    main()
