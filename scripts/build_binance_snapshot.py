"""Regenerate the bundled Binance USD-M snapshot (bot/resources/instruments/binanceusdm.json).

Every figure comes from three published files (facts only; no code is taken from them). Each is
pinned by its SHA-256, so the output can only be rebuilt from exactly the files cited here and in
bot/resources/instruments/README.md:

TIERS          freqtrade's cache of Binance ``GET /fapi/v1/leverageBracket``,
               ``freqtrade/exchange/binance_leverage_tiers.json`` as merged from upstream
               freqtrade release 2026.4 into github.com/titouannwtt/freqtrade-fork, commit
               56179f3e671505cec998678f7e3cdce6d65a01eb (2026-05-01). Get it with
               ``git show 56179f3e:freqtrade/exchange/binance_leverage_tiers.json``.
EXCHANGE_INFO  a complete ``GET /fapi/v1/exchangeInfo`` response, ``serverTime`` 1766562549558
               (2025-12-24 07:49:09 UTC), committed as
               ``gateways/binance/futures_exchange_info.json`` in
               github.com/AlphaDogsResearch/Coinbase-Python, commit
               96360e4b37c327b329d6c5c8f85bb1d430895181 (2026-01-03).
LISTING        a dated digest of the USD-M listing (``{"date": "2026-08-06", "coins": {SYMBOL:
               {"status": ...}}}``, 697 symbols), ``data/exchange_info.json`` in
               github.com/rainbow3r1u/earth-1.0, commit 5d252b755c4bd410a7a319ee5947959d914a5343
               (2026-08-07); used only to drop contracts no longer trading in August 2026.

Selection (no published, dated per-contract open-interest table was found, see the README):
the contracts are ranked by the size of the leverage-bracket ladder Binance assigns them in
TIERS (the last bracket's notional cap, then the first bracket's), which Binance scales with a
market's depth and open interest. Eligible: crypto USDT-margined perpetuals (``underlyingType``
COIN) that are TRADING in EXCHANGE_INFO and in LISTING, with a bracket table in TIERS and a
plain upper-case ASCII base. The 40 highest ranked (and any tied with the 40th) are the
snapshot's "largest"; every other eligible contract is bundled as well, so that a contract a
trader holds today simulates offline. BTC, ETH, SOL and XRP keep their entries unchanged (their
brackets and filters pin tests that match Binance to the digit); a contract bundled before that
is no longer eligible but still has brackets in TIERS (delisted since) keeps its old entry.

Usage: python scripts/build_binance_snapshot.py TIERS EXCHANGE_INFO LISTING [--check]
(--check: rebuild in memory and fail if the committed file differs.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bot/resources/instruments/binanceusdm.json"
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Source:
    label: str  # short name used in each instrument's "source"
    what: str
    repo: str
    path: str
    commit: str
    date: str
    sha256: str

    def cite(self) -> str:
        return f"github.com/{self.repo} {self.path} @ {self.commit[:12]} ({self.date})"

    def short(self) -> str:
        return f"{self.label} ({self.repo}@{self.commit[:8]})"


TIERS = Source(
    "freqtrade binance_leverage_tiers.json of 2026-05-01",
    "freqtrade's cache of Binance GET /fapi/v1/leverageBracket (upstream release 2026.4)",
    "titouannwtt/freqtrade-fork",
    "freqtrade/exchange/binance_leverage_tiers.json",
    "56179f3e671505cec998678f7e3cdce6d65a01eb",
    "2026-05-01",
    "e5bf9b2a1d0ad56bf51efb0a2d5fc81ddd6a9a3f91dd487d6f7187ccf7cfabc8",
)
EXCHANGE_INFO = Source(
    "exchangeInfo of 2025-12-24",
    "Binance GET /fapi/v1/exchangeInfo, serverTime 1766562549558 (2025-12-24 07:49:09 UTC)",
    "AlphaDogsResearch/Coinbase-Python",
    "gateways/binance/futures_exchange_info.json",
    "96360e4b37c327b329d6c5c8f85bb1d430895181",
    "2026-01-03",
    "f6fd619a1b91151ffea2619a6b0f30801855948f4eaea2464bed151dfa0dede3",
)
LISTING = Source(
    "listing digest",
    "USD-M listing digest dated 2026-08-06 (symbol -> status)",
    "rainbow3r1u/earth-1.0",
    "data/exchange_info.json",
    "5d252b755c4bd410a7a319ee5947959d914a5343",
    "2026-08-07",
    "a863498401c6fca7d1e2db5f9c5ae3b0db113d48132ca08f77470fa3afc3fe85",
)
SERVER_TIME = 1766562549558
LISTING_DATE = "2026-08-06"
AS_OF = TIERS.date  # the brackets' date; the filters are older (2025-12-24), see the README

LARGEST = 40
# Kept byte for byte from the previous snapshot: they pin "matches Binance to the digit" tests.
ORIGINAL = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT")
# The other 36 contracts of the snapshot of 2026-03-26 (chosen from a 2024 listing). Those still
# eligible are rebuilt from the sources above; those delisted since but still in TIERS keep
# their old entries (so a configuration naming them keeps working); those gone from TIERS too
# are dropped.
PREVIOUS = tuple(
    [
        "BCH",
        "EOS",
        "LTC",
        "TRX",
        "ETC",
        "LINK",
        "XLM",
        "ADA",
        "XMR",
        "DASH",
        "ZEC",
        "XTZ",
        "BNB",
        "ATOM",
        "ONT",
        "BAT",
        "COMP",
        "OMG",
        "DOGE",
        "SXP",
        "BAL",
        "CRV",
        "TRB",
        "RUNE",
        "SUSHI",
        "EGLD",
        "ICX",
        "STORJ",
        "BLZ",
        "UNI",
        "AVAX",
        "FTM",
        "ENJ",
        "FLM",
        "REN",
        "NEAR",
    ]
)
MAKER_FEE, TAKER_FEE = "0.0002", "0.0005"  # Binance USD-M regular (VIP 0) tier, no BNB discount
BASE = re.compile(r"[A-Z0-9]+")
DELISTED_NOTE = "Delisted from Binance USD-M since"


class SourceError(Exception):
    """An input file is not the published file this script cites, or holds unexpected data."""


def num(text: object) -> str:
    """A decimal written the shortest exact way ("0.0065", "300000", "0")."""
    d = Decimal(str(text))
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def load(path: Path, src: Source) -> Any:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != src.sha256:
        raise SourceError(
            f"{path}: SHA-256 {digest} is not that of {src.cite()} ({src.sha256}); "
            f"get the cited file with `git show {src.commit}:{src.path}`"
        )
    return json.loads(raw, parse_float=Decimal)  # exact: the tiers file writes rates as numbers


def filters_of(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in row["filters"]:
        out[f["filterType"]] = f
    for needed in ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MIN_NOTIONAL", "PERCENT_PRICE"):
        if needed not in out:
            raise SourceError(f"exchangeInfo {row['symbol']}: no {needed} filter")
    return out


def eligible(
    symbol: str, tiers: dict[str, Any], info: dict[str, Any], listing: dict[str, Any]
) -> bool:
    base = symbol.split("/")[0]
    row = info.get(f"{base}USDT")
    status = listing.get(f"{base}USDT", {}).get("status")
    return (
        symbol in tiers
        and BASE.fullmatch(base) is not None
        and row is not None
        and row["contractType"] == "PERPETUAL"
        and row["underlyingType"] == "COIN"
        and row["status"] == "TRADING"
        and row["quoteAsset"] == "USDT"
        and row["marginAsset"] == "USDT"
        and row["baseAsset"] == base
        and status == "TRADING"
    )


def ladder(symbol: str, tiers: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(last bracket's notional cap, first bracket's notional cap): the ranking proxy."""
    rows = tiers[symbol]
    return Decimal(rows[-1]["info"]["notionalCap"]), Decimal(rows[0]["info"]["notionalCap"])


def brackets_of(symbol: str, tiers: dict[str, Any]) -> list[dict[str, str]]:
    rows = tiers[symbol]
    out = []
    for n, tier in enumerate(rows, start=1):
        info = tier["info"]
        if str(info["bracket"]) != str(n):
            raise SourceError(f"tiers {symbol}: bracket {info['bracket']} found in place {n}")
        out.append(
            {
                "notional_floor": num(info["notionalFloor"]),
                "notional_cap": num(info["notionalCap"]),
                "max_leverage": num(info["initialLeverage"]),
                "maint_margin_rate": num(info["maintMarginRatio"]),
                "maint_amount": num(info["cum"]),
            }
        )
    return out


def instrument(symbol: str, tiers: dict[str, Any], row: dict[str, Any], why: str) -> dict[str, Any]:
    base = symbol.split("/")[0]
    f = filters_of(row)
    lot, market_lot = f["LOT_SIZE"], f["MARKET_LOT_SIZE"]
    if num(lot["stepSize"]) != num(market_lot["stepSize"]):
        raise SourceError(f"exchangeInfo {row['symbol']}: LOT_SIZE, MARKET_LOT_SIZE steps differ")
    return {
        "base": base,
        "quote": "USDT",
        "tick_size": num(f["PRICE_FILTER"]["tickSize"]),
        "step_size": num(lot["stepSize"]),
        "min_qty": num(lot["minQty"]),
        "min_notional": num(f["MIN_NOTIONAL"]["notional"]),
        "maker_fee": MAKER_FEE,
        "taker_fee": TAKER_FEE,
        "liquidation_fee": num(row["liquidationFee"]),
        "max_order_qty": num(market_lot["maxQty"]),
        "max_position_notional": brackets_of(symbol, tiers)[-1]["notional_cap"],
        # Read from the same exchangeInfo row and recorded for reference; the bot does not
        # apply them (see the README: PERCENT_PRICE bounds limit prices, not stop triggers, and
        # PRICE_FILTER's bounds move with the market).
        "venue_limits": {
            "min_price": num(f["PRICE_FILTER"]["minPrice"]),
            "max_price": num(f["PRICE_FILTER"]["maxPrice"]),
            "percent_price_up": num(f["PERCENT_PRICE"]["multiplierUp"]),
            "percent_price_down": num(f["PERCENT_PRICE"]["multiplierDown"]),
            "market_take_bound": num(row["marketTakeBound"]),
        },
        "source": (
            f"brackets: {TIERS.short()}; filters and liquidationFee: {EXCHANGE_INFO.short()}; "
            f"trading on {LISTING_DATE}: {LISTING.short()}; selection: {why}"
        ),
        "brackets": brackets_of(symbol, tiers),
    }


MAX_QTY_NOTE = "max_order_qty: MARKET_LOT_SIZE.maxQty of the exchangeInfo of 2025-12-24."


def with_max_order_qty(kept: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A kept entry (filters of 2024) with the largest market order of the 2025-12-24 row and
    the largest position of its own bracket table (the last bracket's cap).

    The 2024 exchangeInfo did not record the first; Binance refuses a larger market order
    (-4005), reduce-only or not, and any order beyond the second (-2027), so the simulation must
    know them. Idempotent: a rebuild gives the same.
    """
    out: dict[str, Any] = {}
    for key, value in kept.items():
        if key in ("max_order_qty", "max_position_notional"):
            continue
        out[key] = value
        if key == "liquidation_fee":
            out["max_order_qty"] = num(filters_of(row)["MARKET_LOT_SIZE"]["maxQty"])
            # its bracket table is Binance's whole table: the last cap is the largest position
            out["max_position_notional"] = kept["brackets"][-1]["notional_cap"]
    if MAX_QTY_NOTE not in out["source"]:
        out["source"] = f"{out['source']} {MAX_QTY_NOTE}"
    return out


def build(tiers: dict[str, Any], exinfo: dict[str, Any], listing_doc: dict[str, Any]) -> str:
    if exinfo.get("serverTime") != SERVER_TIME or exinfo.get("futuresType") != "U_MARGINED":
        raise SourceError("exchangeInfo: not the U_MARGINED response of serverTime 1766562549558")
    if listing_doc.get("date") != LISTING_DATE:
        raise SourceError(f"listing: dated {listing_doc.get('date')!r}, expected {LISTING_DATE}")
    info = {row["symbol"]: row for row in exinfo["symbols"]}
    listing: dict[str, Any] = listing_doc["coins"]
    previous = json.loads(OUT.read_text(encoding="utf-8"))["instruments"]

    usdt = (s for s in tiers if s.endswith("/USDT:USDT"))
    pool = sorted(s for s in usdt if eligible(s, tiers, info, listing))
    ranked = sorted(pool, key=lambda s: (-ladder(s, tiers)[0], -ladder(s, tiers)[1], s))
    cut = ladder(ranked[LARGEST - 1], tiers)
    largest = [s for s in ranked if ladder(s, tiers) >= cut]  # the 40, and any tied with the 40th

    out: dict[str, Any] = {}
    for sym in ORIGINAL:
        out[sym] = with_max_order_qty(previous[sym], info[f"{sym.split('/')[0]}USDT"])
    for rank, sym in enumerate(ranked, start=1):
        if sym in out:
            continue
        last, first = ladder(sym, tiers)
        group = (
            f"largest by bracket ladder, rank {rank} of {len(ranked)} "
            f"(caps {num(last)}, {num(first)})"
            if sym in largest
            else f"beyond the largest (ladder rank {rank} of {len(ranked)}), for offline coverage"
        )
        out[sym] = instrument(sym, tiers, info[f"{sym.split('/')[0]}USDT"], group)
    for base in PREVIOUS:
        sym = f"{base}/USDT:USDT"
        if sym in out or sym not in tiers or sym not in previous:
            continue  # rebuilt above, or gone from the bracket source: dropped
        kept = dict(previous[sym])
        row_status = info.get(f"{base}USDT", {}).get("status", "absent")
        list_status = listing.get(f"{base}USDT", {}).get("status", "absent")
        if DELISTED_NOTE not in kept["source"]:
            kept["source"] += (
                f" {DELISTED_NOTE} this entry was read: status {row_status} in the exchangeInfo "
                f"of 2025-12-24, {list_status} in the {LISTING_DATE} listing; kept unchanged so "
                "that a configuration naming it keeps working."
            )
        out[sym] = kept

    snapshot = {
        "exchange": "binanceusdm",
        "as_of": AS_OF,
        "source": (
            f"Bundled snapshot of {len(out)} Binance USD-M linear USDT perpetuals; selection and "
            "sources in bot/resources/instruments/README.md, regenerated by "
            "scripts/build_binance_snapshot.py. Brackets: Binance GET /fapi/v1/leverageBracket "
            f"as cached by freqtrade ({TIERS.cite()}; BTC, ETH, SOL, XRP from the weekly update "
            "of 2026-03-26, commit 6bc35af36). A user-specific notionalCoef can scale these on a "
            "given account; live trading re-reads leverageBracket. Filters and liquidationFee: "
            f"{EXCHANGE_INFO.what} ({EXCHANGE_INFO.cite()}). Fees: Binance USD-M regular (VIP 0) "
            "tier, maker 0.02 %, taker 0.05 %, no BNB discount. Per-instrument sources are in "
            "each instrument's 'source'."
        ),
        "largest": {
            "rule": (
                f"the {LARGEST} eligible contracts (and any tied with the {LARGEST}th) with the "
                "largest bracket ladder in the tiers source: last bracket's notional cap, then "
                "first bracket's; a proxy for open interest (no dated per-contract open-interest "
                "table was found)"
            ),
            "symbols": largest,
        },
        "instruments": out,
    }
    return dump(snapshot)


def dump(snapshot: dict[str, Any]) -> str:
    """JSON with two-space indents and one line per bracket (the file stays readable)."""
    tables: dict[str, list[dict[str, str]]] = {}
    shallow = dict(snapshot)
    shallow["instruments"] = {}
    for sym, spec in snapshot["instruments"].items():
        key = f"@@brackets:{sym}@@"
        tables[key] = spec["brackets"]
        shallow["instruments"][sym] = {**spec, "brackets": key}
    text = json.dumps(shallow, indent=2, ensure_ascii=False)
    for key, rows in tables.items():
        lines = ",\n".join(f"        {json.dumps(r, separators=(',', ':'))}" for r in rows)
        text = text.replace(json.dumps(key), "[\n" + lines + "\n      ]")
    return text + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tiers", type=Path, help=TIERS.cite())
    parser.add_argument("exchange_info", type=Path, help=EXCHANGE_INFO.cite())
    parser.add_argument("listing", type=Path, help=LISTING.cite())
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args()
    try:
        tiers = load(args.tiers, TIERS)
        text = build(tiers, load(args.exchange_info, EXCHANGE_INFO), load(args.listing, LISTING))
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bot.instruments import parse_instruments  # every table must pass the loader's checks

    parse_instruments(json.loads(text), OUT.name)
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} differs from its sources; rerun without --check", file=sys.stderr)
            return 1
        print(f"{OUT} is what the sources give")
        return 0
    OUT.write_text(text, encoding="utf-8")
    n = len(json.loads(text)["instruments"])
    print(f"wrote {OUT} ({n} contracts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
