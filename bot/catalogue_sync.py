"""``bot contracts sync``: read the venue's contracts and brackets into the user's catalogue.

Markets (tick size, step size, minimum quantity and notional, fees) come from ccxt's
``load_markets``; leverage brackets from ``fetch_leverage_tiers``: Bybit's
``GET /v5/market/risk-limit`` is public, Binance's ``GET /fapi/v1/leverageBracket`` is a signed
USER_DATA endpoint, so it is read only when keys are in the environment
(https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Notional-and-Leverage-Brackets).
Without keys a Binance contract keeps the brackets of the bundled snapshot when it has them (its
``source`` says so) and is skipped otherwise, named in the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ccxt

from bot.catalogue import bundled_catalogue, catalogue_path, load_catalogue
from bot.catalogue import write_catalogue as _write
from bot.clock import Clock
from bot.domain.instrument import Instrument
from bot.errors import BotError, DataError
from bot.exchange import mapping
from bot.exchange.capabilities import venue_profile
from bot.exchange.ccxt_errors import map_ccxt_error
from bot.exchange.retry import RetryPolicy, call_with_retry


@dataclass
class SyncResult:
    path: Path
    written: dict[str, str] = field(default_factory=dict)  # symbol -> where its brackets came from
    skipped: dict[str, str] = field(default_factory=dict)  # symbol -> why
    changed: dict[str, str] = field(default_factory=dict)  # symbol -> what changed vs before
    read_at_ms: int = 0


def linear_usdt_perpetuals(markets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Active linear USDT-settled perpetual swaps with contract size 1, sorted."""
    out = []
    for sym, m in markets.items():
        if not (m.get("swap") and m.get("linear") and m.get("settle") == "USDT"):
            continue
        if m.get("active") is False or m.get("expiry"):
            continue
        if m.get("contractSize") not in (None, 1, 1.0, "1"):
            continue
        out.append(sym)
    return sorted(out)


def sync_catalogue(
    exchange: Any,
    data_dir: Path,
    *,
    clock: Clock,
    symbols: Sequence[str] = (),
    signed: bool,
) -> SyncResult:
    """Read ``symbols`` (default: every linear USDT perpetual) from ``exchange`` (a ccxt
    instance, with keys when ``signed``) and merge them into the catalogue under ``data_dir``."""
    name = str(exchange.id)
    profile = venue_profile(name)
    path = catalogue_path(data_dir, name)
    previous = load_catalogue(path, name)
    _call(exchange, clock, lambda: exchange.load_markets(), "load_markets")
    wanted = list(symbols) or linear_usdt_perpetuals(exchange.markets)
    unknown = [s for s in wanted if s not in exchange.markets]
    if unknown:
        raise DataError(f"{name} has no market {', '.join(unknown)}")
    needs_keys = name == "binanceusdm"
    tiers: Mapping[str, Any] = {}
    if signed or not needs_keys:
        tiers = _call(
            exchange,
            clock,
            lambda: exchange.fetch_leverage_tiers(wanted),
            "fetch_leverage_tiers",
        )
    bundled = bundled_catalogue(name)
    now = clock.now_ms()
    result = SyncResult(path, read_at_ms=now)
    entries: dict[str, tuple[Instrument, str]] = {}
    if previous is not None:
        sources = _raw_sources(path)
        for sym, inst in previous.instruments.items():
            entries[sym] = (inst, sources.get(sym, f"kept from {previous.source}"))
    digits = exchange.precisionMode == ccxt.DECIMAL_PLACES
    read_at = f"read from {name} by `bot contracts sync`"
    for sym in wanted:
        market = exchange.markets[sym]
        rows = tiers.get(sym) or []
        brackets_source = f"brackets from {name} fetch_leverage_tiers"
        if not rows:
            if sym not in bundled.instruments:
                why = (
                    "no leverage brackets: Binance's leverageBracket endpoint needs API keys "
                    "(set BOT_API_KEY and BOT_API_SECRET) and the bundled snapshot lacks it"
                    if needs_keys and not signed
                    else "the venue returned no leverage tiers"
                )
                result.skipped[sym] = why
                continue
            brackets_source = f"brackets from the {bundled.source} (no keys to read them live)"
        try:
            if rows:
                inst = mapping.instrument_from_market(
                    market,
                    rows,
                    liquidation_fee=profile.liquidation_fee,
                    liquidation_fee_key=profile.liquidation_fee_key,
                    precision_is_digits=digits,
                    margin_model=profile.margin_model,
                )
            else:
                inst = _with_bundled_brackets(market, bundled.instruments[sym], profile, digits)
        except BotError as exc:
            result.skipped[sym] = str(exc)
            continue
        source = f"{read_at}; filters and fees from load_markets; {brackets_source}"
        old = entries.get(sym)
        if old is not None and old[0] != inst:
            result.changed[sym] = describe_change(old[0], inst)
        entries[sym] = (inst, source)
        result.written[sym] = brackets_source
    if entries:
        _write(
            path,
            name,
            entries,
            now,
            f"contracts read from {name} through ccxt (load_markets, fetch_leverage_tiers) by "
            "`bot contracts sync`; per-contract sources below",
        )
    return result


def describe_change(old: Instrument, new: Instrument) -> str:
    """A short human-readable difference between two versions of a contract."""
    parts = []
    for name in ("tick_size", "step_size", "min_qty", "min_notional", "maker_fee", "taker_fee"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            parts.append(f"{name} {a} -> {b}")
    if old.brackets != new.brackets:
        parts.append(
            f"brackets changed ({len(old.brackets)} -> {len(new.brackets)} tiers, max leverage "
            f"{old.max_leverage} -> {new.max_leverage})"
        )
    return "; ".join(parts) or "changed"


def _with_bundled_brackets(
    market: Mapping[str, Any], bundled: Instrument, profile: Any, digits: bool
) -> Instrument:
    fake_tiers = [
        {
            "minNotional": float(b.notional_floor),
            "maxNotional": float(b.notional_cap),
            "maintenanceMarginRate": float(b.maint_margin_rate),
            "maxLeverage": float(b.max_leverage),
            "info": {},
        }
        for b in bundled.brackets
    ]
    inst = mapping.instrument_from_market(
        market,
        fake_tiers,
        liquidation_fee=profile.liquidation_fee,
        liquidation_fee_key=profile.liquidation_fee_key,
        precision_is_digits=digits,
        margin_model=profile.margin_model,
    )
    return replace(inst, brackets=bundled.brackets)  # exact decimals, not the float round trip


def _raw_sources(path: Path) -> dict[str, str]:
    """Each contract's own ``source`` in an existing catalogue (kept across syncs)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {sym: str(spec.get("source", "")) for sym, spec in data["instruments"].items()}


def _call(exchange: Any, clock: Clock, fn: Any, what: str) -> Any:
    try:
        return call_with_retry(
            fn,
            clock=clock,
            policy=RetryPolicy(),
            retry_after_of=lambda exc: None,
            resync=lambda: exchange.load_time_difference(),
            what=what,
        )
    except ccxt.BaseError as exc:
        raise map_ccxt_error(exc) from exc
