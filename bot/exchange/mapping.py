"""ccxt's unified dicts <-> domain types. Pure functions: no I/O, no ccxt instance.

Numbers arrive from ccxt as floats or numeric strings; every one goes through ``Decimal(str(x))``
(never ``Decimal(float)``). Malformed answers raise :class:`UnexpectedResponse`, naming the field,
the symbol and the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, cast

from bot.domain.enums import MarginMode, OrderPurpose
from bot.domain.instrument import Bracket, Instrument, MarginModel
from bot.domain.orders import ForcedClose
from bot.domain.position import Balance, Position
from bot.errors import NotSupported, PermanentExchangeError
from bot.exchange.forced_probe import ForcedProbe
from bot.ports import client_ids
from bot.ports.store import STORED_LIMIT, storable

ZERO = Decimal(0)
ONE = Decimal(1)
_PURPOSES = {p.value: p for p in OrderPurpose}


class UnexpectedResponse(PermanentExchangeError):
    """The exchange (through ccxt) answered with a shape or value the adapter cannot use."""


# -- numbers ---------------------------------------------------------------------------------


def to_decimal(value: object, what: str) -> Decimal:
    """``Decimal(str(value))`` for an int, float, numeric string or Decimal; else raise."""
    if isinstance(value, bool) or value is None:
        raise UnexpectedResponse(f"{what}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        return value
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise UnexpectedResponse(f"{what}: expected a number, got {value!r}") from None
    if not result.is_finite():
        raise UnexpectedResponse(f"{what}: expected a finite number, got {value!r}")
    if result.copy_abs() >= STORED_LIMIT:  # (copy_abs: exact, abs() rounds to 28 digits)
        # No amount, price, leverage or time of a venue comes near 1e20 (the largest notional
        # cap of either venue's bundled tiers is below 1e10, an epoch-ms time is 1.8e12). A
        # larger number is garbled, and more than the store holds (20 integer digits): acted
        # on, a wallet of 1e30 sized every order, and a position or leverage of 1e30 failed its
        # job at the record, after its orders were sent, then every job while it lasted.
        raise UnexpectedResponse(
            f"{what}: expected a number a venue sends (below {STORED_LIMIT:.0e}), got {value!r}"
        )
    # To the 18 decimals a store keeps (unchanged when it fits): ccxt hands most numbers over
    # as doubles and computes some itself (an average as cost / filled), whose 17 significant
    # digits run past 18 decimals below 0.1 (1000SATS at 3.1234567890123457e-05). The SQL
    # store refused such a fill or position, and every job failed on it before its stop.
    return storable(result)


def positive(value: object, what: str) -> Decimal:
    """A number that must be known and > 0 (a mark, an entry price, a tick size)."""
    result = to_decimal(value, what)
    if result <= ZERO:
        raise UnexpectedResponse(f"{what}: must be > 0, got {value!r}")
    return result


def flag(value: object, what: str) -> bool:
    """A venue's true/false (a JSON boolean or the strings "true"/"false"); else raise: an
    unreadable setting (hedge mode, multi-assets mode, withdrawal permission) is not "off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UnexpectedResponse(f"{what}: expected true or false, got {value!r}")


def opt_decimal(value: object, what: str) -> Decimal | None:
    """Like :func:`to_decimal`, but ``None`` and ``""`` give ``None``."""
    if value is None or value == "":
        return None
    return to_decimal(value, what)


def positive_or_none(value: object, what: str) -> Decimal | None:
    """A price that venues report as 0 (or omit) when unknown: ``None`` unless > 0."""
    result = opt_decimal(value, what)
    return result if result is not None and result > ZERO else None


# -- client ids ------------------------------------------------------------------------------


def parse_purpose(client_id: str | None, account: str | None = None) -> OrderPurpose | None:
    """Purpose code of one of our client ids (``<account>-<purpose>-...``), else ``None``.

    With ``account`` the id must carry that prefix (:func:`bot.ports.client_ids.parse_purpose`);
    without it any ``<prefix>-<purpose>-<more>`` id with a known purpose code matches.
    """
    if not client_id:
        return None
    if account is not None:
        return client_ids.parse_purpose(client_id, account)
    parts = client_id.split("-")
    if len(parts) < 3 or not parts[0]:
        return None
    return _PURPOSES.get(parts[1])


# -- instruments -----------------------------------------------------------------------------


def brackets_from_tiers(symbol: str, tiers: Sequence[Mapping[str, Any]]) -> tuple[Bracket, ...]:
    """Leverage brackets from ccxt ``fetch_leverage_tiers`` rows for one market.

    The maintenance amount comes from the raw row (Binance ``cum``, Bybit ``mmDeduction``); when
    the venue omits it, it is derived so the maintenance margin is continuous at each floor:
    ``cum_i = cum_{i-1} + floor_i * (mmr_i - mmr_{i-1})``. (ccxt's own position
    ``maintenanceMargin`` ignores ``cum``; the domain computes it from these brackets.)
    """
    if not tiers:
        raise UnexpectedResponse(f"{symbol}: the exchange returned no leverage tiers")
    rows = sorted(
        tiers, key=lambda t: to_decimal(t.get("minNotional"), f"{symbol} tier minNotional")
    )
    out: list[Bracket] = []
    for i, tier in enumerate(rows):
        where = f"{symbol} leverage tier {i + 1}"
        floor = to_decimal(tier.get("minNotional"), f"{where} minNotional")
        mmr = to_decimal(tier.get("maintenanceMarginRate"), f"{where} maintenanceMarginRate")
        info = tier.get("info") or {}
        amount = opt_decimal(info.get("cum", info.get("mmDeduction")), f"{where} cum")
        if amount is None:
            amount = _continuous_cum(out[-1] if out else None, floor, mmr)
        bracket = Bracket(
            notional_floor=floor,
            notional_cap=to_decimal(tier.get("maxNotional"), f"{where} maxNotional"),
            max_leverage=to_decimal(tier.get("maxLeverage"), f"{where} maxLeverage"),
            maint_margin_rate=mmr,
            maint_amount=amount,
        )
        _check_bracket(bracket, out[-1] if out else None, where)
        out.append(bracket)
    return tuple(out)


def _continuous_cum(below: Bracket | None, floor: Decimal, mmr: Decimal) -> Decimal:
    """The maintenance amount that keeps the maintenance margin continuous at ``floor``:
    ``cum_i = cum_{i-1} + floor_i * (mmr_i - mmr_{i-1})``, 0 for the first tier."""
    if below is None:
        return ZERO
    return below.maint_amount + floor * (mmr - below.maint_margin_rate)


_CENT = Decimal("0.01")
_CUM_REL = Decimal("1e-6")


def _check_bracket(bracket: Bracket, below: Bracket | None, where: str) -> None:
    """A tier no venue publishes is a garbled answer, not a contract: a maintenance rate of 0
    puts the modelled liquidation out of reach (stops and leverage caps would trust it), a
    maximum leverage of 0 or a negative maintenance amount are nonsense.

    Tiers are contiguous from a notional of 0 (Binance ``notionalFloor``; ccxt derives Bybit's
    floors from the previous tier's cap).
    """
    floor, cap = bracket.notional_floor, bracket.notional_cap
    expected = below.notional_cap if below is not None else ZERO
    if floor != expected:
        raise UnexpectedResponse(f"{where}: minNotional {floor} must be {expected} (contiguous)")
    if cap <= floor:
        raise UnexpectedResponse(f"{where}: maxNotional {cap} must be above minNotional {floor}")
    if bracket.max_leverage < ONE:
        raise UnexpectedResponse(f"{where}: maxLeverage {bracket.max_leverage} must be >= 1")
    if not ZERO < bracket.maint_margin_rate < ONE:
        raise UnexpectedResponse(
            f"{where}: maintenanceMarginRate {bracket.maint_margin_rate} must be in (0, 1)"
        )
    # The maintenance amount makes the maintenance margin continuous (0 at a notional of 0):
    # cum_i = cum_{i-1} + floor_i * (mmr_i - mmr_{i-1}). Every boundary of the bundled Binance
    # (3,432) and Bybit tables holds it to the cent; a cum that breaks it is garbled.
    expected_cum = _continuous_cum(below, floor, bracket.maint_margin_rate)
    if abs(bracket.maint_amount - expected_cum) > max(_CENT, abs(expected_cum) * _CUM_REL):
        raise UnexpectedResponse(
            f"{where}: cum {bracket.maint_amount} breaks the maintenance margin's continuity "
            f"(expected {expected_cum})"
        )


def instrument_from_market(
    market: Mapping[str, Any],
    tiers: Sequence[Mapping[str, Any]],
    *,
    liquidation_fee: Decimal,
    liquidation_fee_key: str | None = None,
    precision_is_digits: bool = False,
    margin_model: MarginModel = MarginModel.BINANCE_USDM,
) -> Instrument:
    """An :class:`Instrument` from a ccxt market and its leverage tiers.

    ``liquidation_fee`` (fraction of notional) is used unless the raw market ``info`` carries
    ``liquidation_fee_key`` (Binance exchangeInfo ``liquidationFee``). ``precision_is_digits``
    is True for ccxt's DECIMAL_PLACES precision mode (Binance and Bybit use TICK_SIZE).
    ``margin_model``: the venue's liquidation formula (its :class:`VenueProfile`'s).
    """
    symbol = str(market.get("symbol"))
    if not (market.get("swap") and market.get("linear")):
        raise NotSupported(f"{symbol}: only linear perpetual swaps are supported")
    contract_size = opt_decimal(market.get("contractSize"), f"{symbol} contractSize")
    if contract_size is not None and contract_size != ONE:
        raise NotSupported(
            f"{symbol}: amounts are contracts of {contract_size} base units; the bot needs "
            "contract size 1 (quantities in the base asset)"
        )
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    step = _precision(precision.get("amount"), f"{symbol} precision.amount", precision_is_digits)
    info = market.get("info") or {}
    fee = liquidation_fee
    if liquidation_fee_key is not None and info.get(liquidation_fee_key) not in (None, ""):
        fee = to_decimal(info[liquidation_fee_key], f"{symbol} info.{liquidation_fee_key}")
    min_qty = opt_decimal((limits.get("amount") or {}).get("min"), f"{symbol} min qty") or step
    # The venue's whole table: its last tier's cap is the largest position it allows.
    brackets = brackets_from_tiers(symbol, tiers)
    most = _largest_market_order(symbol, limits, info)
    if most is not None and most < max(min_qty, step):
        raise UnexpectedResponse(
            f"{symbol}: largest market order {most} is below the minimum order {min_qty}"
        )
    return Instrument(
        symbol=symbol,
        base=str(market.get("base")),
        quote=str(market.get("quote")),
        tick_size=_precision(
            precision.get("price"), f"{symbol} precision.price", precision_is_digits
        ),
        step_size=step,
        min_qty=min_qty,
        min_notional=opt_decimal((limits.get("cost") or {}).get("min"), f"{symbol} min cost")
        or ZERO,
        brackets=brackets,
        maker_fee=to_decimal(market.get("maker"), f"{symbol} maker fee"),
        taker_fee=to_decimal(market.get("taker"), f"{symbol} taker fee"),
        liquidation_fee=fee,
        # Binance PRICE_FILTER / Bybit priceFilter. (Binance's PERCENT_PRICE bounds the price of
        # limit orders, not the trigger of a stop-market order, so it is not applied to stops.)
        min_price=positive_or_none((limits.get("price") or {}).get("min"), f"{symbol} min price"),
        max_price=positive_or_none((limits.get("price") or {}).get("max"), f"{symbol} max price"),
        max_order_qty=most,
        max_position_notional=brackets[-1].notional_cap,
        margin_model=margin_model,
    )


def _largest_market_order(
    symbol: str, limits: Mapping[str, Any], info: Mapping[str, Any]
) -> Decimal | None:
    """The most one market (or stop-market) order may carry, ``None`` if the venue states none.

    ccxt maps Binance's ``MARKET_LOT_SIZE.maxQty`` to ``limits.market.max``; Bybit v5's
    ``lotSizeFilter.maxMktOrderQty`` (market orders; ``maxOrderQty`` is for limit orders) is only
    in the raw market (https://bybit-exchange.github.io/docs/v5/market/instrument).
    """
    raw = (limits.get("market") or {}).get("max")
    if raw is None:
        lot = info.get("lotSizeFilter")
        raw = lot.get("maxMktOrderQty") if isinstance(lot, Mapping) else None
    return positive_or_none(raw, f"{symbol} largest market order")


def _precision(value: object, what: str, digits: bool) -> Decimal:
    if digits:
        return ONE.scaleb(-int(to_decimal(value, what)))
    return positive(value, what)


# -- orders ----------------------------------------------------------------------------------


def select_position_row(symbol: str, rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The open position row of ``symbol``, matched by side, never by list index.

    Hedge-mode venues return one row per side and the first can be the empty one (Bybit,
    bybit-exchange/pybit#367). Rows with zero contracts are flat sides and are skipped. Two open
    rows mean a hedge-mode position on both sides, which the one-way bot cannot manage.
    """
    live = [r for r in rows if r.get("symbol") == symbol and _signed_contracts(r) != ZERO]
    if not live:
        return None
    if len(live) > 1:
        sides = sorted(str(r.get("side")) for r in live)
        raise UnexpectedResponse(
            f"{symbol}: {len(live)} open position rows (sides {sides}); the bot needs one-way "
            "mode with a single position per contract"
        )
    return live[0]


def position_sizes(rows: Sequence[Mapping[str, Any]]) -> dict[str, Decimal]:
    """The signed size of each contract's open position in ccxt position rows (flat rows
    left out; a hedge-mode account's two sides summed)."""
    out: dict[str, Decimal] = {}
    for row in rows:
        qty = _signed_contracts(row)
        if qty != ZERO:
            symbol = row.get("symbol")
            if not isinstance(symbol, str) or not symbol:
                raise UnexpectedResponse(f"open position row without a symbol: {symbol!r}")
            out[symbol] = out.get(symbol, ZERO) + qty
    return out


def position_from_ccxt(
    row: Mapping[str, Any],
    *,
    leverage: Decimal | None = None,
    margin_mode: MarginMode | None = None,
) -> Position:
    """A signed one-way :class:`Position` from a ccxt position row.

    ``leverage``/``margin_mode`` are used when the row lacks them (Binance v3 positionRisk has no
    leverage). A liquidation price of 0 or none means "unknown" (``None``), never a price.
    """
    symbol = str(row.get("symbol"))
    info: Mapping[str, Any] = row.get("info") or {}
    row_leverage = opt_decimal(row.get("leverage"), f"{symbol} position leverage")
    lev = row_leverage if row_leverage is not None else leverage
    if lev is None:
        raise UnexpectedResponse(f"{symbol}: position has no leverage and none was fetched")
    if lev <= ZERO:
        raise UnexpectedResponse(f"{symbol}: position leverage must be > 0, got {lev}")
    mode_raw = row.get("marginMode")
    mode = MarginMode(mode_raw) if mode_raw in ("cross", "isolated") else margin_mode
    if mode is None:
        raise UnexpectedResponse(
            f"{symbol}: position margin mode {mode_raw!r} is not cross/isolated"
        )
    isolated = ZERO
    if mode is MarginMode.ISOLATED:
        candidates = (
            info.get("isolatedWallet"),
            row.get("positionMargin"),
            info.get("positionBalance"),
        )
        wallet = next((v for v in candidates if v not in (None, "")), None)
        isolated = to_decimal(wallet, f"{symbol} isolated margin") if wallet is not None else ZERO
        if isolated <= ZERO and wallet is not None:
            # an open isolated position always holds margin; <= 0 is a garbled row (Binance
            # v3 derives the margin mode itself from ``isolatedMargin`` being non-zero)
            raise UnexpectedResponse(
                f"{symbol}: isolated position with margin {wallet!r}: must be > 0"
            )
    qty = _signed_contracts(row)
    _check_raw_size(symbol, info, qty)
    entry = positive(row.get("entryPrice"), f"{symbol} position entryPrice")
    mark = positive_or_none(row.get("markPrice"), f"{symbol} position markPrice")
    _check_row_figures(symbol, info, qty, entry, mark)
    liquidation = positive_or_none(row.get("liquidationPrice"), f"{symbol} liquidationPrice")
    _check_liquidation_side(symbol, qty, liquidation, mark)
    return Position(
        symbol=symbol,
        qty=qty,
        entry_price=entry,
        leverage=lev,
        margin_mode=mode,
        isolated_margin=isolated,
        liquidation_price=liquidation,
    )


class _RowFigure(NamedTuple):
    """A figure a venue's position row states about the position, and what it must equal."""

    key: str  # the raw row's field
    source: str  # the venue and the answer
    formula: str
    on_mark: bool  # computed on the row's mark (not checked when the row gives none)
    value: Callable[[Decimal, Decimal, Decimal], Decimal]  # (signed size, entry, mark)


# Binance positionRisk: unRealizedProfit = positionAmt x (markPrice - entryPrice) and notional =
# positionAmt x markPrice, both signed (ccxt reads the side from the notional's sign). Its
# documented rows meet both to the last printed digit: WLDUSDT 5 x (2.3956 - 2.3483) = 0.2365,
# 5 x 2.3956 = 11.978; BTCUSDT 0.01 x (45464.1735922 - 44525.0) = 9.39173592 (8 decimals).
# https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Position-Information-V3
# Bybit v5 position list: unrealisedPnl = size x (markPrice - avgPrice), signed by the side, and
# positionValue = size x avgPrice: the ENTRY's value, not the mark's (its documented rows:
# 0.1 ETHUSDT at 1198.45 = 119.845; 100 XRPUSDT at 0.3615 = 36.15 with unrealisedPnl
# 100 x (0.3432 - 0.3615) = -1.83; ccxt's comments in bybit.py parse_position keep them).
# https://bybit-exchange.github.io/docs/v5/position
_ROW_FIGURES = (
    _RowFigure(
        "unRealizedProfit",
        "Binance positionRisk",
        "positionAmt x (markPrice - entryPrice)",
        True,
        lambda qty, entry, mark: qty * (mark - entry),
    ),
    _RowFigure(
        "notional",
        "Binance positionRisk",
        "positionAmt x markPrice",
        True,
        lambda qty, entry, mark: qty * mark,
    ),
    _RowFigure(
        "unrealisedPnl",
        "Bybit position list",
        "size x (markPrice - avgPrice), signed by side",
        True,
        lambda qty, entry, mark: qty * (mark - entry),
    ),
    _RowFigure(
        "positionValue",
        "Bybit position list",
        "size x avgPrice",
        False,
        lambda qty, entry, mark: abs(qty) * entry,
    ),
)
# How far a row's figures may stand from what its size, entry and mark give. The venue computes
# them at full precision and prints each rounded on its own: money to 8 decimals (Bybit to as
# few as 2 in its examples: 0.02 covers it), the average entry to 8 decimals and the mark to 8
# decimals or to its tick. On a contract priced at 1,000 ticks or more (1e-4 at the finest
# tick of the bundled catalogues, 1e-7) half a tick is at most 0.05 % of the price and half of
# 1e-8 at most 0.005 %: 0.1 % of the notional covers both. A garbled entry or size moves the
# figures by far more (an entry read at half the price: 50 % of the notional); one this lets
# through moves the equity by at most 0.1 % of the position's notional.
_ROW_SLACK = Decimal("0.02")
_ROW_REL = Decimal("0.001")


def _check_row_figures(
    symbol: str, info: Mapping[str, Any], qty: Decimal, entry: Decimal, mark: Decimal | None
) -> None:
    """A position row whose size or entry price its own unrealised PnL and notional contradict
    is garbled (:data:`_ROW_FIGURES`). The engine measures the equity from the size and the
    entry: an entry read at half the price (the row's PnL still 0) made a phantom gain of 67 %,
    an increase on it, and then a drawdown halt that sold the book; a size read 10 times too
    large closed the position. A figure the row does not give is not checked."""
    scale = abs(qty) * (mark if mark is not None else entry)
    slack = max(_ROW_SLACK, scale * _ROW_REL)
    for figure in _ROW_FIGURES:
        stated = opt_decimal(info.get(figure.key), f"{symbol} position {figure.key}")
        if stated is None or (figure.on_mark and mark is None):
            continue
        expected = figure.value(qty, entry, mark if mark is not None else ZERO)
        if abs(stated - expected) > slack:
            raise UnexpectedResponse(
                f"{symbol}: {figure.source} row's {figure.key} {stated} is not "
                f"{figure.formula} = {expected:f} (size {qty}, entry {entry}, mark {mark}): "
                "the row contradicts itself"
            )


def _check_liquidation_side(
    symbol: str, qty: Decimal, liquidation: Decimal | None, mark: Decimal | None
) -> None:
    """An open long is liquidated below the mark, a short above it: a liquidation price on the
    other side of the row's own mark is garbled. (Trusted as the venue's, it left no room for
    a stop: the bot closed the position and bought it back every tick.)"""
    if liquidation is None or mark is None:
        return
    if (qty > ZERO and liquidation >= mark) or (qty < ZERO and liquidation <= mark):
        side = "long" if qty > ZERO else "short"
        raise UnexpectedResponse(
            f"{symbol}: {side} position with liquidationPrice {liquidation} on the wrong side "
            f"of its markPrice {mark}"
        )


def _signed_contracts(row: Mapping[str, Any]) -> Decimal:
    symbol = row.get("symbol")
    # A null size is unknown, not zero (a garbled row must never read as a flat position).
    contracts = to_decimal(row.get("contracts"), f"{symbol} position contracts")
    size = opt_decimal(row.get("contractSize"), f"{symbol} contractSize") or ONE
    qty = abs(contracts) * size
    if qty == ZERO:
        return ZERO
    info: Mapping[str, Any] = row.get("info") or {}
    signed = opt_decimal(info.get("positionAmt"), f"{symbol} info.positionAmt")
    side = row.get("side")
    if side in ("long", "short"):
        return qty if side == "long" else -qty
    if signed is not None and signed != ZERO:
        return qty if signed > ZERO else -qty
    raise UnexpectedResponse(f"{symbol}: open position row without a side: {side!r}")


def _check_raw_size(symbol: object, info: Mapping[str, Any], result: Decimal) -> None:
    """The venue's own size fields must say what ccxt made of them: a row where they disagree
    is garbled, not a position (a long read as a short gets a stop on the wrong side).

    Binance: ccxt takes the side from the sign of ``notional`` and the size from
    ``positionAmt`` (signed). Bybit: ccxt's side also looks at ``positionIdx``; the raw row
    has ``side`` ``Buy``/``Sell`` and an unsigned ``size``.
    """
    signed = opt_decimal(info.get("positionAmt"), f"{symbol} info.positionAmt")
    if signed is not None and signed != result:
        raise UnexpectedResponse(
            f"{symbol}: position row read as {result} but its positionAmt is {signed}"
        )
    raw_side = info.get("side")
    if raw_side in ("Buy", "Sell") and (raw_side == "Buy") != (result > ZERO):
        raise UnexpectedResponse(
            f"{symbol}: position row read as {result} but its side is {raw_side!r}"
        )
    size = opt_decimal(info.get("size"), f"{symbol} info.size") if "size" in info else None
    if size is not None and size != abs(result):
        raise UnexpectedResponse(f"{symbol}: position row read as {result} but its size is {size}")


def require_market(row: Mapping[str, Any], symbol: str, market_id: str, what: str) -> None:
    """A ccxt row asked for ``symbol`` must be of that market: ccxt's ``symbol`` and the raw
    row's venue ``symbol`` (Binance, Bybit: the market id), where the raw row names one.

    ccxt names a row whose market id it does not know by the market it was asked for, so only
    the raw name shows another market's answer. Believed, another contract's mark put a long
    BTC position 95 % under water (a drawdown halt sold every position), another contract's
    stop counted as this position's protection.
    """
    info = row.get("info")
    venue_symbol = info.get("symbol") if isinstance(info, Mapping) else None
    if row.get("symbol") != symbol or (venue_symbol is not None and venue_symbol != market_id):
        named = venue_symbol if venue_symbol is not None else row.get("symbol")
        raise UnexpectedResponse(f"{what}: the answer is of market {named!r}, not {market_id}")


def require_rows(rows: object, what: str) -> None:
    """A ccxt list answer: a list of dicts, each carrying the venue's raw row in ``info``."""
    if not isinstance(rows, list):
        raise UnexpectedResponse(f"{what}: expected a list, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("info"), Mapping):
            raise UnexpectedResponse(f"{what}: row {i} is not a venue row: {str(row)[:80]!r}")


def probe_sizes(raw: object, rows_path: str, size_key: str, market_id: str) -> list[Decimal]:
    """Position sizes of ``market_id`` in a venue's raw per-symbol position answer.

    ``rows_path`` is the dotted path of the row list in the answer ("" = the answer itself).
    Every matching row must carry a number under ``size_key``; a reply without the row gives an
    empty list (nothing is confirmed).
    """
    sizes = []
    for row in rows_at(raw, rows_path, f"{market_id} position"):
        if isinstance(row, Mapping) and row.get("symbol") == market_id:
            sizes.append(to_decimal(row.get(size_key), f"{market_id} position {size_key}"))
    return sizes


def forced_closes(
    raw: object, probe: ForcedProbe, symbol: str, market_id: str, since_ms: int
) -> tuple[list[ForcedClose], bool]:
    """The venue's own closes of ``market_id`` in one page of its raw answer (see
    :class:`ForcedProbe`): rows whose ``kind_key`` names a liquidation or an ADL; other rows
    (the account's own trades) are not forced closes. With them, whether the page is full
    (``probe.limit`` rows, of any kind): the window may hold rows the page cut. A row of one of
    those kinds without a readable size or time makes the answer unreadable."""
    node: object = raw
    for key in filter(None, probe.rows_path.split(".")):
        if not isinstance(node, Mapping):
            raise UnexpectedResponse(f"{market_id} forced closes: no {probe.rows_path!r}")
        node = node.get(key)
    if not isinstance(node, list):
        raise UnexpectedResponse(f"{market_id} forced closes: expected a list of rows")
    out = []
    for row in node:
        if not isinstance(row, Mapping) or row.get("symbol") != market_id:
            continue
        tag = str(row.get(probe.kind_key) or "")
        kind = next((k for prefix, k in probe.kinds.items() if tag.startswith(prefix)), None)
        if kind is None:
            continue
        qty = to_decimal(row.get(probe.qty_key), f"{market_id} forced close {probe.qty_key}")
        ts = to_decimal(row.get(probe.time_key), f"{market_id} forced close {probe.time_key}")
        if int(ts) >= since_ms and qty > 0:
            out.append(ForcedClose(symbol, kind, qty, int(ts)))
    return out, len(node) >= probe.limit


def balance_from_ccxt(balance: Mapping[str, Any], asset: str) -> Balance:
    """Wallet balance (excluding unrealised PnL) and available margin of ``asset``.

    The available margin is ccxt's unified ``free`` (Binance ``availableBalance``, Bybit the
    account's available balance); ``None`` when the answer does not give it: unknown is not
    zero, and no increase is sized on it.

    ccxt's unified ``total`` includes unrealised PnL on Binance (``marginBalance``), so the
    wallet comes from the raw answer: Binance ``assets[].walletBalance``, Bybit
    ``result.list[].coin[].walletBalance``. Only when neither is present does it fall back to
    the unified ``total`` (absent too: unreadable). An answer that lists asset rows without
    ``asset``'s is unreadable (a zero wallet halts the account and sells every position).
    """
    if not isinstance(balance, Mapping):
        raise UnexpectedResponse(f"balance: expected an object, got {type(balance).__name__}")
    info = balance.get("info")
    if not (isinstance(info, Mapping) or (isinstance(info, list) and info)):
        raise UnexpectedResponse(f"balance: the venue's answer is missing or empty ({info!r})")
    unified: Mapping[str, Any] = balance.get(asset) or {}
    listed, row = _raw_wallet(info, asset)
    if listed and row is None:
        # A futures account that lists its assets lists the one it settles in: read as zero,
        # a garbled or renamed row put the account in a 100 % drawdown halt that sold every
        # position. (An account without it cannot trade these contracts anyway.)
        raise UnexpectedResponse(f"balance: the answer lists no {asset} row")
    if row is not None:
        # The asset's row is there: its wallet must be a number (null is unknown, not zero).
        wallet = to_decimal(row.get("walletBalance"), f"{asset} walletBalance")
        _check_margin_balance(asset, wallet, row)
        return Balance(
            asset=asset,
            wallet=wallet,
            available=_available(unified, info, asset),
        )
    # No asset rows at all (Binance's ``assets`` or Bybit's ``coin`` lists missing): ccxt's
    # unified total is all there is. Absent, the wallet is unknown, never zero: a partial answer
    # without its asset list read as a zero wallet, a 100 % drawdown halt that sold every
    # position.
    total = unified.get("total")
    if total is None or total == "":
        raise UnexpectedResponse(
            f"balance: the answer gives no {asset} wallet (no asset rows, no total)"
        )
    return Balance(
        asset=asset,
        wallet=to_decimal(total, f"{asset} wallet balance"),
        available=opt_decimal(unified.get("free"), f"{asset} available balance"),
    )


def _available(unified: Mapping[str, Any], info: object, asset: str) -> Decimal | None:
    """ccxt's ``free``; on a Bybit unified account, no more than the account's
    ``totalAvailableBalance`` (margin balance less initial margin, unrealised PnL included,
    which is what its margin check uses, 110007): ccxt derives a coin's ``free`` from its
    wallet less initial margin (``availableToWithdraw`` is empty since 2025), which overstates
    what is available while positions are at a loss."""
    free = opt_decimal(unified.get("free"), f"{asset} available balance")
    result = info.get("result") if isinstance(info, Mapping) else None
    if free is None or not isinstance(result, Mapping):
        return free
    for account in result.get("list") or []:
        if not isinstance(account, Mapping) or account.get("totalAvailableBalance") in (None, ""):
            continue
        total = to_decimal(account["totalAvailableBalance"], "totalAvailableBalance")
        if total < free:
            free = total
    return free


def _check_margin_balance(asset: str, wallet: Decimal, row: Mapping[str, Any]) -> None:
    """The asset row's wallet must be what the row's own figures make of it: a wallet that
    breaks them is garbled (a wrong wallet put the account in a drawdown halt that sold every
    position).

    Binance (account ``assets[]``): ``marginBalance = walletBalance + unrealizedProfit``.
    Bybit (wallet-balance ``coin[]``): ``equity = walletBalance + unrealisedPnl - spotBorrow``
    (Bybit's UTA glossary, https://www.bybit.com/en/help-center/article/Glossary-Unified-Trading-Account:
    a coin's equity is its wallet balance, bonus included, plus its perpetual and expiry
    unrealised PnL plus its options' value, less its spot borrowing; ``spotBorrow`` is given
    since the manual borrowing of 2025, when "old walletBalance = new walletBalance -
    spotBorrow", https://bybit-exchange.github.io/docs/v5/account/wallet-balance). The coin
    row gives no options value: an account holding options settled in the asset breaks the
    identity and is refused (the bot trades perpetuals; such an account is not one it can
    measure). A row without the figures is not checked."""
    if "marginBalance" in row and "unrealizedProfit" in row:
        upnl = to_decimal(row["unrealizedProfit"], f"{asset} unrealizedProfit")
        margin = to_decimal(row["marginBalance"], f"{asset} marginBalance")
        if not _balance_agrees(wallet + upnl, margin):
            raise UnexpectedResponse(
                f"balance: {asset} walletBalance {wallet} + unrealizedProfit {upnl} is not its "
                f"marginBalance {margin}"
            )
        return
    equity = opt_decimal(row.get("equity"), f"{asset} equity")
    coin_upnl = opt_decimal(row.get("unrealisedPnl"), f"{asset} unrealisedPnl")
    if equity is None or coin_upnl is None:
        return
    borrowed = opt_decimal(row.get("spotBorrow"), f"{asset} spotBorrow") or ZERO
    if not _balance_agrees(wallet + coin_upnl - borrowed, equity):
        raise UnexpectedResponse(
            f"balance: Bybit coin row {asset}: walletBalance {wallet} + unrealisedPnl "
            f"{coin_upnl} - spotBorrow {borrowed} is not its equity {equity} (the row "
            "contradicts itself; an account holding options settled in it is not one the bot "
            "can measure)"
        )


def _balance_agrees(computed: Decimal, stated: Decimal) -> bool:
    return abs(computed - stated) <= max(_BALANCE_SLACK, abs(stated) * _CUM_REL)


_BALANCE_SLACK = Decimal("0.02")  # the venue rounds each of the three on its own


def _raw_wallet(info: object, asset: str) -> tuple[bool, Mapping[str, Any] | None]:
    """(whether the raw answer lists asset rows, the asset's row or ``None``)."""
    if not isinstance(info, Mapping):
        return False, None
    rows: list[Any] = list(info.get("assets") or [])
    listed = "assets" in info
    result = info.get("result")
    if isinstance(result, Mapping):
        for account in result.get("list") or []:
            listed = listed or "coin" in account
            rows.extend(account.get("coin") or [])
    found: list[Mapping[str, Any]] = []
    for i, row in enumerate(rows):
        name = row.get("asset", row.get("coin")) if isinstance(row, Mapping) else None
        if not (isinstance(name, str) and name):
            # a row without its asset name could be the settlement asset's: reading the
            # wallet as absent (zero) would halt and flatten a funded account
            raise UnexpectedResponse(f"balance: asset row {i} has no asset name: {row!r:.80}")
        if name == asset:
            found.append(cast(Mapping[str, Any], row))
    if len(found) > 1:
        # Which row is the account's? ccxt's unified ``free`` comes from the last one, the
        # wallet would come from the first: a balance mixed from two rows (one of them at 0 is
        # a 100 % drawdown halt that sells every position). Garbled: unknown, not a guess.
        raise UnexpectedResponse(f"balance: the answer lists {len(found)} {asset} rows")
    return listed, (found[0] if found else None)


# -- funding and candles ---------------------------------------------------------------------

# How far the mark may sit from the index in one answer. Both venues derive the mark from the
# index plus a bounded basis (a fraction of a percent, a few percent on thin contracts), so a
# mark 15 % away from the index it was answered with is garbled, not a market: acted on, one
# wrong number put the account in a drawdown halt that sold every position.
# https://www.binance.com/en/support/faq/360033525071 (mark price), https://www.bybit.com/en/help-center/article/Mark-Price
MARK_INDEX_TOLERANCE = Decimal("0.15")


def check_mark_against_index(symbol: str, mark: Decimal, index: object) -> None:
    """Raise when ``mark`` is further than :data:`MARK_INDEX_TOLERANCE` from the ``index`` of
    the same answer (an index the answer lacks or reports as 0 is not checked)."""
    reference = positive_or_none(index, f"{symbol} indexPrice")
    if reference is not None and abs(mark / reference - ONE) > MARK_INDEX_TOLERANCE:
        raise UnexpectedResponse(
            f"{symbol} markPrice {mark} is more than {MARK_INDEX_TOLERANCE:%} from the index "
            f"{reference} in the same answer"
        )


# How far outside the day's range of the same ticker answer its last price may be. The venue
# computes both from the same trades (Binance /fapi/v1/ticker/24hr, Bybit v5 tickers
# highPrice24h/lowPrice24h), so the last price is inside the range; the slack only allows for a
# range refreshed a moment later than the last trade. A last price outside it is garbled: the
# engine sizes orders and the risk gate measures notional at it.
LAST_RANGE_TOLERANCE = Decimal("0.05")


def last_price(symbol: str, last: object, low: object, high: object) -> Decimal:
    """A ticker's last price: > 0, and inside the day's ``low``..``high`` of the same answer
    (widened by :data:`LAST_RANGE_TOLERANCE`; a range the answer lacks is not checked)."""
    price = positive(last, f"{symbol} last price")
    lo = positive_or_none(low, f"{symbol} 24h low")
    hi = positive_or_none(high, f"{symbol} 24h high")
    if (
        lo is not None
        and hi is not None
        and not (lo * (ONE - LAST_RANGE_TOLERANCE) <= price <= hi * (ONE + LAST_RANGE_TOLERANCE))
    ):
        raise UnexpectedResponse(
            f"{symbol} last price {price} is outside the day's range {lo}..{hi} of the same "
            "ticker answer"
        )
    return price


def rows_at(raw: object, rows_path: str, what: str) -> list[object]:
    """The row list at the dotted ``rows_path`` of a venue's raw answer ("" = the answer)."""
    node: object = raw
    for key in filter(None, rows_path.split(".")):
        if not isinstance(node, Mapping):
            raise UnexpectedResponse(f"{what}: no {rows_path!r} in the answer")
        node = node.get(key)
    if not isinstance(node, list):
        raise UnexpectedResponse(f"{what}: expected a list of rows at {rows_path!r}")
    return node


def row_of(raw: object, rows_path: str, market_id: str, what: str) -> Mapping[str, Any]:
    """The one row of ``market_id`` in a venue's raw per-symbol answer (asked for that symbol,
    the venue lists it once: none, or two, is a garbled answer)."""
    rows = [
        r
        for r in rows_at(raw, rows_path, what)
        if isinstance(r, Mapping) and r.get("symbol") == market_id
    ]
    if len(rows) != 1:
        raise UnexpectedResponse(f"{what}: {len(rows)} rows of {market_id} in the answer")
    return cast(Mapping[str, Any], rows[0])


# How far ahead of the bot's clock a time of the venue may be: a day, far beyond any clock
# difference the bot runs with (the hourly resync alerts past 1 s). A time a venue stamps on
# a price, a settlement or a fired order is of the past or the moment; one ahead by more is
# garbled, and one far ahead is no date at all (a closeTime of 1e17 ms, year 3 million, failed
# the job in the time conversion of its event, every job while it lasted).
VENUE_TIME_AHEAD_MS = 86_400_000


def venue_time(value: object, what: str, *, now_ms: int | None) -> int:
    """A time the venue gave (epoch ms): an integer > 0, and no more than
    :data:`VENUE_TIME_AHEAD_MS` ahead of ``now_ms`` (the bot's clock; ``None`` for a time
    the venue schedules ahead, a contract's settlement). There is no default: a price whose
    time is unknown must not read as fresh (the engine's stale-data check measures its age)."""
    if value is None or value == "":
        raise UnexpectedResponse(f"{what}: the answer gives no time")
    ms = to_decimal(value, what)
    if ms <= ZERO or ms != ms.to_integral_value():
        raise UnexpectedResponse(f"{what}: expected epoch milliseconds, got {value!r}")
    if now_ms is not None and ms > now_ms + VENUE_TIME_AHEAD_MS:
        raise UnexpectedResponse(
            f"{what}: {value!r} is more than a day ahead of the bot's clock ({now_ms} ms)"
        )
    return int(ms)


# The widest funding rate a venue's answer may carry where it publishes no cap of its own, and
# the limit of any cap it publishes: 10 % per interval. Venue caps are a few percent: Binance
# caps every USD-M contract of 25x maximum leverage or less at +-3 % (announcement of
# 2023-09-28, https://www.binance.com/en/support/announcement/important-updates-on-funding-rates-of-usd%E2%93%A2-m-perpetual-contracts-98d6b24d3e5c4f84a8ed04087997d8d0),
# others at 2 % to 3 % (/fapi/v1/fundingInfo adjustedFundingRateCap); Bybit's per-contract
# upperFundingRate/lowerFundingRate are announced at +-0.8 % to +-2 %. More than three times the
# widest: a real extreme rate passes, a garbled 5.0 (500 % per interval) does not.
FUNDING_RATE_LIMIT = Decimal("0.1")


class FundingBounds(NamedTuple):
    """The range a contract's funding rate (fraction per interval) must be in, and whence."""

    floor: Decimal
    cap: Decimal
    source: str

    def admits(self, rate: Decimal) -> bool:
        return self.floor <= rate <= self.cap


def funding_bounds(symbol: str, info: object, cap_key: str, floor_key: str) -> FundingBounds:
    """The venue's funding cap and floor of ``symbol`` from a raw row ``info`` (which may lack
    them: Binance lists only contracts whose cap was adjusted), never wider than
    :data:`FUNDING_RATE_LIMIT`; without them, that limit alone."""
    limit = FUNDING_RATE_LIMIT
    row = info if isinstance(info, Mapping) else {}
    cap = opt_decimal(row.get(cap_key), f"{symbol} {cap_key}")
    floor = opt_decimal(row.get(floor_key), f"{symbol} {floor_key}")
    if cap is None and floor is None:
        return FundingBounds(-limit, limit, f"the plausible bound +-{limit} per interval")
    if cap is None or floor is None or not floor < ZERO < cap:
        raise UnexpectedResponse(
            f"{symbol} funding cap: {floor_key} {floor} and {cap_key} {cap} are not a range "
            "around 0"
        )
    return FundingBounds(
        max(floor, -limit),
        min(cap, limit),
        f"the venue's {floor_key} {floor} .. {cap_key} {cap}, within +-{limit}",
    )


def check_funding_rate(symbol: str, rate: Decimal, bounds: FundingBounds) -> None:
    """Raise when ``rate`` is outside ``bounds``: the venue clamps its rates to its cap, so a
    rate beyond it is garbled (the funding-aware policy and the hedge leg choice act on it)."""
    if not bounds.admits(rate):
        raise UnexpectedResponse(
            f"{symbol} fundingRate {rate} is outside {bounds.floor}..{bounds.cap} ({bounds.source})"
        )


def settled_funding(rows: object, symbol: str, now_ms: int) -> list[tuple[int, Decimal]]:
    """A ccxt funding-rate history of ``symbol`` as (settlement time ms, rate), oldest first,
    one row per time; a garbled row raises (see CcxtExchange.fetch_funding_history). ``now_ms``:
    the bot's clock (a settlement time ahead of it by more than a day is garbled)."""
    if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
        raise UnexpectedResponse(f"{symbol} funding history: expected a list, got {rows!r:.80}")
    bounds = funding_bounds(symbol, None, "cap", "floor")
    out: dict[int, Decimal] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise UnexpectedResponse(f"{symbol} funding history: a row is {row!r:.80}")
        if row.get("symbol") not in (None, symbol):
            raise UnexpectedResponse(
                f"{symbol} funding history: a row of {row.get('symbol')!r} in the answer"
            )
        ts = venue_time(row.get("timestamp"), f"{symbol} funding history time", now_ms=now_ms)
        rate = to_decimal(row.get("fundingRate"), f"{symbol} funding history rate")
        check_funding_rate(symbol, rate, bounds)
        out[ts] = rate
    return sorted(out.items())


_INTERVAL = re.compile(r"^(\d+)h$")


def funding_interval_hours(row: Mapping[str, Any]) -> Decimal | None:
    """Hours between settlements from a ccxt funding-rate row (``interval`` like ``"8h"``)."""
    match = _INTERVAL.match(str(row.get("interval") or ""))
    return Decimal(match.group(1)) if match else None


def interval_from_history(rows: Sequence[Mapping[str, Any]]) -> Decimal | None:
    """Hours between the last two settlements of a ccxt funding-rate history, if observable."""
    stamps = sorted(int(r["timestamp"]) for r in rows if r.get("timestamp") is not None)
    if len(stamps) < 2 or stamps[-1] <= stamps[-2]:
        return None
    # settlement times jitter by a few ms; round to the hour
    hours = round((stamps[-1] - stamps[-2]) / 3_600_000)
    return Decimal(hours) if hours > 0 else None


class Candle(NamedTuple):
    """One closed OHLCV bar: open time in epoch ms, prices in quote currency, volume in base.

    Floats, not Decimal: candles feed statistics (volatility, ATR), where float64 is the rule.
    """

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def closed_candles(
    rows: Sequence[Sequence[Any]], timeframe_ms: int, now_ms: int, what: str = "OHLCV"
) -> list[Candle]:
    """ccxt OHLCV rows ``[ms, o, h, l, c, v]`` without the still-forming bar(s).

    A bar is closed when ``open_ms + timeframe_ms <= now_ms``. Rows must be in ascending time.
    ``what`` names the answer in errors (contract, timeframe, series).
    """
    out: list[Candle] = []
    for i, row in enumerate(rows):
        if len(row) < 6 or any(v is None for v in row[:5]):
            raise UnexpectedResponse(f"OHLCV row {i}: expected [ms, o, h, l, c, v], got {row!r}")
        open_ms = int(row[0])
        if out and open_ms <= out[-1].open_ms:
            raise UnexpectedResponse(f"OHLCV row {i}: time {open_ms} not after {out[-1].open_ms}")
        if open_ms + timeframe_ms > now_ms:
            break
        volume = float(row[5]) if row[5] is not None else 0.0
        bar = Candle(open_ms, float(row[1]), float(row[2]), float(row[3]), float(row[4]), volume)
        _check_bar(bar, f"{what} row {i}")
        out.append(bar)
    return out


def _check_bar(bar: Candle, where: str) -> None:
    """A price bar: finite prices > 0, low <= open, close <= high. Anything else is a garbled
    answer: a low of 1 fired a paper stop (and would liquidate) on a move the market never
    made, and statistics on it size every order."""
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    if not (0 < lo <= min(o, c) and max(o, c) <= h < math.inf):  # NaN fails every comparison
        raise UnexpectedResponse(
            f"{where} (open time {bar.open_ms}) is not a price bar: open {o}, high {h}, "
            f"low {lo}, close {c} (prices must be finite, > 0, low <= open, close <= high)"
        )


# -- create_order arguments ------------------------------------------------------------------


def spot_totals_from_ccxt(balance: object, assets: Sequence[str]) -> dict[str, Decimal]:
    """Total (free + locked) of each asset in a ccxt spot balance. An asset absent from a readable
    reply is held at zero (Binance omits empty assets); a reply that is not a balance at all, one
    without its list of asset rows, or an asset row without a total, is an error: an unknown
    holding is never zero."""
    if not isinstance(balance, Mapping) or "info" not in balance:
        raise PermanentExchangeError(f"spot balance reply is not a balance: {balance!r:.200}")
    out: dict[str, Decimal] = {}
    for asset in assets:
        row = balance.get(asset)
        if row is None:
            if not _lists_spot_assets(balance["info"]):
                # read as zero, the hedge of a spot inventory still held was bought back
                raise PermanentExchangeError(
                    f"spot balance of {asset}: the reply lists no asset rows "
                    f"({balance['info']!r:.120})"
                )
            out[asset] = ZERO
            continue
        total = opt_decimal(row.get("total") if isinstance(row, Mapping) else None, asset)
        if total is None:
            raise PermanentExchangeError(f"spot balance of {asset}: no total in {row!r:.200}")
        out[asset] = total
    return out


def _lists_spot_assets(info: object) -> bool:
    """Whether a venue's raw spot balance carries its list of asset rows (Binance
    ``balances``; Bybit ``result.list[].coin``), so that an asset it does not list is held at
    zero rather than unknown."""
    if not isinstance(info, Mapping):
        return False
    if isinstance(info.get("balances"), list):
        return True
    result = info.get("result")
    accounts = result.get("list") if isinstance(result, Mapping) else None
    return (
        isinstance(accounts, list)
        and bool(accounts)
        and all(isinstance(a, Mapping) and isinstance(a.get("coin"), list) for a in accounts)
    )


# Binance's deliveryDate of a perpetual with no delivery scheduled: 2100-01-01 00:00 UTC (ccxt's
# binance parse_market reads the same figure as "no expiry").
NO_SETTLEMENT_MS = 4_133_404_800_000


def withdrawal(market: Mapping[str, Any], status_keys: Sequence[str]) -> str | None:
    """Why the venue does not trade ``market`` (its raw status, e.g. ``status SETTLING``), or
    None when it does. ccxt's ``active`` decides (Binance and Bybit: the status is trading);
    ``None`` there (ccxt does not know) counts as trading, as ccxt's own order checks do."""
    if market.get("active") is not False:
        return None
    info = market.get("info")
    raw = info if isinstance(info, Mapping) else {}
    status = next((raw[k] for k in status_keys if raw.get(k) not in (None, "")), None)
    return f"status {status}" if status is not None else "not trading (no status given)"


def settlement_ms(market: Mapping[str, Any], delivery_key: str | None) -> int | None:
    """When the venue settles the perpetual ``market`` it delists (epoch ms), or None when no
    settlement is scheduled (Binance ``deliveryDate`` 2100-01-01, Bybit ``deliveryTime`` "0").
    A value that is not a time raises :class:`UnexpectedResponse` naming the market."""
    info = market.get("info")
    if delivery_key is None or not market.get("swap") or not isinstance(info, Mapping):
        return None
    raw = info.get(delivery_key)
    if raw in (None, "", 0, "0"):
        return None
    # scheduled ahead by nature (months, for a delisting announced early): no bound on now
    ms = venue_time(raw, f"{market.get('symbol')} info.{delivery_key}", now_ms=None)
    return ms if ms < NO_SETTLEMENT_MS else None
