"""Bundled contract specifications: load ``bot/resources/instruments/<exchange>.json``.

One JSON file per ccxt exchange id (``binanceusdm``, ``bybit``)::

    {"exchange": "binanceusdm", "as_of": "YYYY-MM-DD", "source": "...",
     "instruments": {"BTC/USDT:USDT": {"base": "BTC", "quote": "USDT", "tick_size": "0.1", ...,
                                       "source": "...", "brackets": [{...}, ...]}}}

Every number is a JSON *string* so it becomes an exact ``Decimal`` (a float would already be
rounded). Validation is strict and every error names the file, the symbol, the bracket and the
field: a typo in a maintenance rate silently moves every liquidation price.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from difflib import get_close_matches
from functools import cache
from importlib import resources
from itertools import pairwise
from types import MappingProxyType
from typing import Any

from bot.domain.instrument import Bracket, Instrument, MarginModel

PACKAGE = "bot.resources.instruments"
ZERO = Decimal(0)
ONE = Decimal(1)

_DECIMAL_FIELDS = (
    "tick_size",
    "step_size",
    "min_qty",
    "min_notional",
    "maker_fee",
    "taker_fee",
    "liquidation_fee",
)
_BRACKET_FIELDS = (
    "notional_floor",
    "notional_cap",
    "max_leverage",
    "maint_margin_rate",
    "maint_amount",
)

__all__ = ["available_exchanges", "instrument_for", "load_instruments", "parse_instruments"]


def available_exchanges() -> tuple[str, ...]:
    """ccxt ids of the exchanges with a bundled specification file, sorted."""
    names = (entry.name for entry in resources.files(PACKAGE).iterdir() if entry.is_file())
    return tuple(sorted(name.removesuffix(".json") for name in names if name.endswith(".json")))


def load_instruments(exchange: str) -> dict[str, Instrument]:
    """All bundled instruments of ``exchange`` keyed by ccxt unified symbol (a fresh dict)."""
    return dict(_load(exchange))


def instrument_for(exchange: str, symbol: str) -> Instrument:
    """The bundled instrument ``symbol`` (e.g. ``"BTC/USDT:USDT"``) of ``exchange``.

    Raises ``ValueError`` naming the unknown exchange or symbol, how many symbols are bundled and
    the closest of them (the snapshot holds hundreds: listing them all would bury the message).
    """
    instruments = _load(exchange)
    if symbol not in instruments:
        close = get_close_matches(symbol, sorted(instruments), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(
            f"{exchange}: unknown symbol {symbol!r}; {len(instruments)} bundled symbols{hint}"
        )
    return instruments[symbol]


def parse_instruments(data: Any, source_name: str) -> dict[str, Instrument]:
    """Validate a decoded specification file and build its instruments.

    ``source_name`` (usually the file name) starts every error message.
    """
    top = _mapping(data, source_name, "top level")
    for key in ("exchange", "as_of", "source"):
        _string(top, key, source_name, "top level")
    try:
        date.fromisoformat(top["as_of"])
    except ValueError:
        raise ValueError(
            f"{source_name}: 'as_of' must be an ISO date (YYYY-MM-DD), got {top['as_of']!r}"
        ) from None
    entries = _mapping(
        _field(top, "instruments", source_name, "top level"), source_name, "instruments"
    )
    if not entries:
        raise ValueError(f"{source_name}: 'instruments' is empty")
    # The venue decides the liquidation formula (Binance's or Bybit's, bot.domain.margin).
    model = MarginModel.for_exchange(top["exchange"])
    return {
        symbol: _instrument(symbol, spec, source_name, model) for symbol, spec in entries.items()
    }


# ------------------------------------------------------------------------------------ internals


@cache
def _load(exchange: str) -> Mapping[str, Instrument]:
    known = available_exchanges()
    if exchange not in known:
        raise ValueError(
            f"unknown exchange {exchange!r}; bundled instrument files: {', '.join(known)}"
        )
    file_name = f"{exchange}.json"
    text = resources.files(PACKAGE).joinpath(file_name).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file_name}: not valid JSON: {exc}") from None
    instruments = parse_instruments(data, file_name)
    if data["exchange"] != exchange:
        raise ValueError(f"{file_name}: 'exchange' is {data['exchange']!r}, expected {exchange!r}")
    return MappingProxyType(instruments)  # cached: callers get a read-only view or a copy


def _instrument(symbol: str, spec: Any, source_name: str, model: MarginModel) -> Instrument:
    where = f"instrument {symbol!r}"
    entry = _mapping(spec, source_name, where)
    base = _string(entry, "base", source_name, where)
    quote = _string(entry, "quote", source_name, where)
    _string(entry, "source", source_name, where)
    if symbol != f"{base}/{quote}:{quote}":
        raise ValueError(
            f"{source_name}: {where}: symbol does not match base {base!r} and quote {quote!r} "
            f"(expected {base}/{quote}:{quote})"
        )
    numbers = {name: _decimal(entry, name, source_name, where) for name in _DECIMAL_FIELDS}
    for name, value in numbers.items():
        if value < ZERO:
            raise ValueError(f"{source_name}: {where}: {name} must be >= 0, got {value}")
    raw_brackets = _field(entry, "brackets", source_name, where)
    if not isinstance(raw_brackets, list) or not raw_brackets:
        raise ValueError(f"{source_name}: {where}: 'brackets' must be a non-empty list")
    brackets = tuple(
        _bracket(raw, f"{where} bracket {index + 1}", source_name)
        for index, raw in enumerate(raw_brackets)
    )
    _check_bracket_table(brackets, source_name, where)
    # Optional venue limits (absent: the source states none).
    limits: dict[str, Decimal] = {}
    for key in ("max_order_qty", "max_position_notional"):
        if key in entry:
            limits[key] = _decimal(entry, key, source_name, where)
            if limits[key] <= ZERO:
                raise ValueError(f"{source_name}: {where}: {key} must be > 0, got {limits[key]}")
    try:
        return Instrument(
            symbol=symbol,
            base=base,
            quote=quote,
            brackets=brackets,
            margin_model=model,
            **limits,
            **numbers,
        )
    except ValueError as exc:
        raise ValueError(f"{source_name}: {where}: {exc}") from None


def _bracket(raw: Any, where: str, source_name: str) -> Bracket:
    entry = _mapping(raw, source_name, where)
    values = {name: _decimal(entry, name, source_name, where) for name in _BRACKET_FIELDS}
    bracket = Bracket(**values)
    if bracket.notional_floor < ZERO or bracket.notional_cap <= bracket.notional_floor:
        raise ValueError(
            f"{source_name}: {where}: need 0 <= notional_floor < notional_cap, got "
            f"{bracket.notional_floor} .. {bracket.notional_cap}"
        )
    if not ZERO <= bracket.maint_margin_rate < ONE:
        raise ValueError(
            f"{source_name}: {where}: maint_margin_rate must be in [0, 1), "
            f"got {bracket.maint_margin_rate}"
        )
    if bracket.max_leverage < ONE:
        raise ValueError(
            f"{source_name}: {where}: max_leverage must be >= 1, got {bracket.max_leverage}"
        )
    return bracket


def _check_bracket_table(brackets: tuple[Bracket, ...], source_name: str, where: str) -> None:
    """First floor 0 with no deduction, contiguous ranges, and
    cum_i = cum_(i-1) + floor_i * (mmr_i - mmr_(i-1)) exactly (maintenance margin continuous)."""
    first = brackets[0]
    if first.notional_floor != ZERO or first.maint_amount != ZERO:
        raise ValueError(
            f"{source_name}: {where} bracket 1: notional_floor and maint_amount must be 0, got "
            f"{first.notional_floor} and {first.maint_amount}"
        )
    for index, (lower, upper) in enumerate(pairwise(brackets), start=2):
        if upper.notional_floor != lower.notional_cap:
            raise ValueError(
                f"{source_name}: {where} bracket {index}: notional_floor {upper.notional_floor} "
                f"!= notional_cap {lower.notional_cap} of bracket {index - 1} (not contiguous)"
            )
        expected = lower.maint_amount + upper.notional_floor * (
            upper.maint_margin_rate - lower.maint_margin_rate
        )
        if upper.maint_amount != expected:
            raise ValueError(
                f"{source_name}: {where} bracket {index}: maint_amount {upper.maint_amount} is "
                f"inconsistent, expected {expected} (maintenance margin would jump at "
                f"{upper.notional_floor})"
            )


def _field(entry: Mapping[str, Any], key: str, source_name: str, where: str) -> Any:
    if key not in entry:
        raise ValueError(f"{source_name}: {where}: missing field {key!r}")
    return entry[key]


def _mapping(value: Any, source_name: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{source_name}: {where}: expected a JSON object, got {value!r}")
    return value


def _string(entry: Mapping[str, Any], key: str, source_name: str, where: str) -> str:
    value = _field(entry, key, source_name, where)
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{source_name}: {where}: {key!r} must be a non-empty string, got {value!r}"
        )
    return value


def _decimal(entry: Mapping[str, Any], key: str, source_name: str, where: str) -> Decimal:
    value = _field(entry, key, source_name, where)
    if not isinstance(value, str):
        raise ValueError(
            f"{source_name}: {where}: {key!r} must be a number written as a string, got {value!r}"
        )
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{source_name}: {where}: {key!r} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{source_name}: {where}: {key!r} must be finite, got {value!r}")
    return number
