"""``bot calc``: margin, liquidation and PnL of one position before it is opened.

The position is funded by the wallet balance: with a leverage the notional asked is ``balance x
leverage``; with a size the leverage is ``size x entry / balance``, and at least 1x, the venue's
lowest setting (a size worth less than the balance is held at 1x: its margin is its notional, the
rest of the balance stays in the wallet). Every figure is that of the
position the venue would hold: the size floored to the quantity step (the venue refuses any
other), its notional, margins, fee and PnL. In isolated mode the collateral is the position's
margin (``notional / leverage``; what the step leaves over stays in the wallet), in cross mode the
whole wallet backs the position. Margins and liquidation prices are the engine's
(:mod:`bot.domain.margin`: the venue's formula on its tiered brackets, Binance's or Bybit's), so
the calculator and the bot agree. The largest leverage for a stop (``--vol``) is a leverage
of the same meaning: the balance at it keeps its liquidation beyond the stop (a long's stop at or
below 0 never fires: only a position without a liquidation price qualifies).

Units: prices and money in the quote currency, quantities in the base asset, moves, distances
and returns as fractions (0.05 = 5 %), volatility annualised. Fees and funding are left out of
the liquidation price as in Binance's formula; Bybit's counts the estimated fee to close.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from bot.catalogue import resolve_instruments, stand_ins
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import (
    initial_margin,
    liquidation_price_cross,
    liquidation_price_isolated,
    maintenance_margin,
)
from bot.errors import ConfigError
from bot.instruments import available_exchanges
from bot.policy.protection import DAYS_PER_YEAR

__all__ = [
    "COMPARE_LEVERAGES",
    "MOVES",
    "CalcRequest",
    "CalcResult",
    "Column",
    "calculate",
    "jsonable",
    "lookup_instrument",
    "to_text",
]

ZERO = Decimal(0)
ONE = Decimal(1)
MOVES = tuple(Decimal("-0.2") + k * Decimal("0.025") for k in range(17))
"""Price moves of the table, fractions: -20 % .. +20 % in steps of 2.5 %."""
COMPARE_LEVERAGES = tuple(Decimal(x) for x in (1, 3, 5, 10, 20))
DEFAULT_STOP_VOL_UNITS = Decimal(2)
_JSON_PLACES = Decimal("1e-8")


@dataclass(frozen=True, slots=True)
class CalcRequest:
    """Inputs; exactly one of ``leverage`` and ``size`` (base asset) is set."""

    symbol: str
    side: int  # +1 long, -1 short
    entry: Decimal
    balance: Decimal  # wallet, quote currency
    margin_mode: MarginMode
    leverage: Decimal | None = None
    size: Decimal | None = None
    volatility: Decimal | None = None  # annualised fraction
    stop_vol_units: Decimal = DEFAULT_STOP_VOL_UNITS
    exchange: str = "binanceusdm"
    # A data directory whose catalogue (contracts/<exchange>.json, `bot contracts sync`) is read
    # before the bundled snapshot, as everywhere else a specification is needed.
    catalogue_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Column:
    """The same collateral at one leverage: its position and liquidation price."""

    leverage: Decimal
    # base asset, unsigned, as the margin formulas take it: the position held (order_qty), or
    # the size asked when that is below the minimum quantity (no order: the column not allowed)
    qty: Decimal
    notional: Decimal  # qty x entry
    liquidation_price: Decimal | None  # None: cannot be liquidated
    allowed: bool  # within the bracket maximum for this notional, and an order the venue takes
    # What the venue would accept: ``qty`` floored to the step, and whether that is below the
    # minimum quantity (no order at all).
    order_qty: Decimal = ZERO
    below_min_qty: bool = False
    # The liquidation price on the tick grid, rounded toward the mark (up for a long, down for a
    # short): the venue reports a held position's on its grid, and the engine plans with it.
    liquidation_on_grid: Decimal | None = None
    # The trader's stop (the same price at every leverage) lies at or beyond this leverage's
    # liquidation: the position would be liquidated before the stop fires.
    stop_beyond_liquidation: bool = False
    asked_qty: Decimal = ZERO  # what the balance buys at this leverage (or --size), unrounded


@dataclass(frozen=True, slots=True)
class Cell:
    pnl: Decimal | None  # None when the leverage is not allowed
    return_on_margin: Decimal | None
    liquidated: bool


@dataclass(frozen=True, slots=True)
class CalcResult:
    request: CalcRequest
    instrument: Instrument
    leverage: Decimal
    qty: Decimal
    notional: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    maint_margin_rate: Decimal
    bracket_max_leverage: Decimal
    liquidation_price: Decimal | None
    liquidation_distance: Decimal | None  # fraction of the entry price
    daily_volatility: Decimal | None  # fraction, annualised / sqrt(365)
    liquidation_distance_vol: Decimal | None  # in daily-volatility units
    stop_price: Decimal | None  # k daily-vol units from the entry
    max_leverage_for_stop: Decimal | None
    round_trip_fee: Decimal  # taker fee in and out at the entry price
    columns: tuple[Column, ...]
    moves: tuple[tuple[Decimal, Decimal, tuple[Cell, ...]], ...]  # (move, price, cells)
    order_qty: Decimal = ZERO  # the asked size floored to the step: the order the venue takes
    liquidation_on_grid: Decimal | None = None  # on the tick grid, toward the mark
    asked_notional: Decimal = ZERO  # balance x leverage (or size x entry), before the step
    asked_qty: Decimal = ZERO  # asked_notional / entry, unrounded
    # Why ``stop_price`` is None although a volatility was given (the stop k vols below a
    # long's entry is at or below 0), and what ``max_leverage_for_stop`` means then.
    stop_note: str | None = None
    # A --size worth less than the balance: held at the venue's lowest leverage, 1x.
    size_note: str | None = None

    @property
    def stop_beyond_liquidation(self) -> bool:
        """The stop lies at or beyond this leverage's liquidation price."""
        return any(c.stop_beyond_liquidation for c in self.columns if c.leverage == self.leverage)

    @property
    def largest_order(self) -> Decimal | None:
        """The venue's largest market order (None: not known)."""
        return self.instrument.largest_order

    @property
    def above_largest_order(self) -> bool:
        """The size is above the venue's largest market order: no one market order can open or
        close it, no one stop-market order protect it (Binance -4005), and the bot never holds
        more than that order (it cuts its decision to it)."""
        most = self.largest_order
        return most is not None and self.qty > most


def lookup_instrument(exchange: str, symbol: str, catalogue_dir: Path | None = None) -> Instrument:
    """The contract's specification: the user's catalogue under ``catalogue_dir`` first, then
    the bundled snapshot; a ConfigError naming both (and the command that fixes it) otherwise."""
    if exchange not in available_exchanges():
        known = ", ".join(available_exchanges())
        raise ConfigError(f"--exchange {exchange!r}: unknown; bundled specifications: {known}")
    return resolve_instruments(exchange, [symbol], catalogue_dir)[symbol]


def stand_in_note(exchange: str, symbol: str, catalogue_dir: Path | None = None) -> str | None:
    """What stands in for the venue's own figures of ``symbol`` (the instrument's ``source``
    text, see :mod:`bot.catalogue`), None when they are the venue's own."""
    catalogue = stand_ins(exchange, [symbol], catalogue_dir).get(symbol)
    return catalogue.notes[symbol] if catalogue is not None else None


def calculate(req: CalcRequest) -> CalcResult:
    """Validate ``req`` and compute every figure (raises ConfigError naming the bad input)."""
    inst = lookup_instrument(req.exchange, req.symbol, req.catalogue_dir)
    _validate(req, inst)
    if req.leverage is not None:
        leverage = req.leverage
        asked = req.balance * leverage
    else:
        assert req.size is not None  # noqa: S101 - _validate guarantees one of the two
        asked = req.size * req.entry
        # The venue's lowest leverage setting is 1x (--leverage refuses less). A size worth less
        # than the balance is held at 1x: in isolated mode its margin is its notional, not the
        # whole wallet (priced on the wallet, a 600 USDT short on 100 000 read 0.006x and
        # "liquidates at 10 019 920", where the venue's 1x position liquidates at 119 521.9); in
        # cross the whole wallet still backs it (_column), only its initial margin is the notional.
        leverage = max(ONE, asked / req.balance)
    _check_bracket(inst, leverage, asked, req)
    _check_order_minimums(inst, asked, req)
    # The minimums passed: the step-floored size is an order the venue takes. Its notional,
    # not the one asked, is what every figure below is made from (150 USDT at 1x buys 0.002 BTC
    # at 60 000: 120 USDT of position, 120 of margin, a fee on 120).
    held = req.size if req.size is not None else inst.floor_qty(asked / req.entry)
    notional = held * req.entry
    daily = None if req.volatility is None else req.volatility / DAYS_PER_YEAR.sqrt()
    # The stop k daily vols from the entry; a long's may be at or below 0 (k x daily >= 1): it
    # is kept as the level every column is judged against (any liquidation price comes first),
    # and shown as no stop (None).
    level = None if daily is None else req.entry * (1 - req.side * req.stop_vol_units * daily)
    stop = level if level is not None and level > 0 else None
    max_lev = None if level is None else _max_leverage_for_stop(inst, req, level)
    main = _column(inst, req, leverage, level, req.size)
    _check_liquidation_side(main, req, inst)
    bracket = inst.bracket_for(notional)
    distance = _distance(main.liquidation_price, req)
    levels = sorted({leverage, *COMPARE_LEVERAGES})
    columns = tuple(main if lev == leverage else _column(inst, req, lev, level) for lev in levels)
    return CalcResult(
        request=req,
        instrument=inst,
        leverage=leverage,
        qty=main.qty,
        notional=notional,
        initial_margin=initial_margin(notional, leverage),
        maintenance_margin=maintenance_margin(inst, notional),
        maint_margin_rate=bracket.maint_margin_rate,
        bracket_max_leverage=bracket.max_leverage,
        liquidation_price=main.liquidation_price,
        liquidation_distance=distance,
        daily_volatility=daily,
        liquidation_distance_vol=None if daily is None or distance is None else distance / daily,
        stop_price=stop,
        max_leverage_for_stop=max_lev,
        round_trip_fee=2 * notional * inst.taker_fee,
        columns=columns,
        moves=tuple(_move_row(req, columns, m) for m in MOVES),
        order_qty=main.order_qty,
        liquidation_on_grid=main.liquidation_on_grid,
        asked_notional=asked,
        asked_qty=main.asked_qty,
        stop_note=None if stop is not None or level is None else _stop_note(inst, req, level),
        size_note=_size_note(inst, req, asked, leverage),
    )


def _column(
    inst: Instrument,
    req: CalcRequest,
    leverage: Decimal,
    stop: Decimal | None,
    size: Decimal | None = None,
) -> Column:
    """The position the request's collateral (the balance) buys at ``leverage``, and whether
    the trader's ``stop`` (None: no stop asked) still lies before its liquidation. The position
    is the order the venue would take (the size floored to the step) when there is one; below
    the minimum quantity the column is not allowed and keeps the size asked (``size``, the
    trader's --size, or by default what the balance buys at ``leverage``)."""
    # --size is taken as given: through the leverage (size x entry / balance, rounded to 28
    # digits) it could come back a hair short and floor a whole step lower
    exact = size if size is not None else req.balance * leverage / req.entry
    on_grid = inst.floor_qty(exact)
    qty = on_grid if on_grid >= inst.min_qty else exact
    notional = qty * req.entry
    signed = qty * req.side
    # The collateral (= notional / leverage) as the formula sees the position: from qty x
    # entry, the very product it subtracts. Made from the balance, qty = balance x leverage /
    # entry rounded to 28 digits could leave the balance a hair short of qty x entry /
    # leverage, and a 1x long (margin = notional: no liquidation price) then got a
    # "liquidation price" of about 1e-29. Cross: the wallet backs the position, and the step
    # floored away stays in it (never less than the margin: the size is floored).
    collateral = initial_margin(notional, leverage)
    if req.margin_mode is MarginMode.ISOLATED:
        liq = liquidation_price_isolated(inst, signed, req.entry, collateral)
    else:
        wallet = max(collateral, req.balance)
        liq = liquidation_price_cross(inst, signed, req.entry, wallet, ZERO, ZERO)
    allowed = (
        leverage <= inst.max_leverage_for(notional)
        and (inst.max_position_notional is None or notional <= inst.max_position_notional)
        and on_grid >= inst.min_qty
        and on_grid * req.entry >= inst.min_notional
    )
    liq_on_grid = None if liq is None else inst.liquidation_on_grid(liq, req.side)
    return Column(
        leverage,
        qty,
        notional,
        liq,
        allowed,
        order_qty=on_grid,
        below_min_qty=on_grid < inst.min_qty,
        liquidation_on_grid=liq_on_grid,
        stop_beyond_liquidation=_stop_beyond(inst, req.side, stop, liq_on_grid),
        asked_qty=exact,
    )


def _stop_beyond(
    inst: Instrument, side: int, stop: Decimal | None, liquidation: Decimal | None
) -> bool:
    """Whether the stop, on the grid as it would be placed (toward the mark), lies at or beyond
    the liquidation price (on the grid, toward the mark): the engine keeps a stop strictly
    between mark and liquidation, and a stop there never fires before the liquidation. A stop
    at or below 0 (a long's only: a short's lies above its entry) never fires at all: any
    liquidation price comes first."""
    if stop is None or liquidation is None:
        return False
    if stop <= 0:
        return True
    placed = inst.stop_price(stop, side)
    return placed <= liquidation if side > 0 else placed >= liquidation


def _move_row(
    req: CalcRequest, columns: tuple[Column, ...], move: Decimal
) -> tuple[Decimal, Decimal, tuple[Cell, ...]]:
    price = req.entry * (1 + move)
    cells = []
    for col in columns:
        if not col.allowed:
            cells.append(Cell(None, None, False))
            continue
        liq = col.liquidation_price
        hit = liq is not None and (price <= liq if req.side > 0 else price >= liq)
        # A liquidated position loses its whole collateral: the exchange keeps what is left of
        # the margin as the liquidation fee, and never takes more (insurance fund). Isolated,
        # that is the position's margin (what the step floored away stays in the wallet);
        # cross, the wallet. qty x (price - entry) = notional x move (the held notional).
        # + 0: a short at no move is -1 x notional x 0 = Decimal("-0"), printed "-0".
        collateral = (
            initial_margin(col.notional, col.leverage)
            if req.margin_mode is MarginMode.ISOLATED
            else req.balance
        )
        pnl = -collateral if hit else req.side * col.notional * move + ZERO
        cells.append(Cell(pnl, pnl / collateral, hit))
    return move, price, tuple(cells)


def _distance(liq: Decimal | None, req: CalcRequest) -> Decimal | None:
    return None if liq is None else abs(liq - req.entry) / req.entry


def _stop_note(inst: Instrument, req: CalcRequest, level: Decimal) -> str:
    """Why a long's stop ``level`` (at or below 0) is shown as none, and what the largest
    leverage for it is then: a stop there never fires, so only a position that cannot be
    liquidated qualifies. On Binance's formula a 1x long (margin = notional) has no liquidation
    price; on Bybit's the maintenance margin on the value at entry (and the fee to close)
    outlasts that margin, so even 1x liquidates, near entry x MMR (bot.domain.margin
    ``_solve_bybit``), and no leverage qualifies."""
    head = (
        f"stop at or below 0: {_plain(req.stop_vol_units)} daily vols below the entry is "
        f"{_fmt(level)}, where no stop fires; only a position that cannot be "
        "liquidated qualifies"
    )
    one = _column(inst, req, ONE, level).liquidation_on_grid
    if one is None:
        return f"{head}: 1x (its margin is its notional) has no liquidation price"
    return f"{head}, and none does: even 1x liquidates, at {_plain(one)} ({req.exchange}'s formula)"


def _size_note(inst: Instrument, req: CalcRequest, asked: Decimal, leverage: Decimal) -> str | None:
    """What a --size worth less than the balance is priced as (None otherwise): 1x, the venue's
    lowest setting, with what backs the position in the margin mode asked."""
    if req.size is None or asked >= req.balance:
        return None
    backing = (
        f"isolated margin {_fmt(initial_margin(asked, leverage))} {inst.quote} (the notional); "
        "the rest of the balance stays in the wallet"
        if req.margin_mode is MarginMode.ISOLATED
        else f"initial margin {_fmt(initial_margin(asked, leverage))} {inst.quote}; the whole "
        f"wallet ({_plain(req.balance)}) backs it in cross"
    )
    return (
        f"--size {_plain(req.size)} is {_fmt(asked)} {inst.quote}, less than the balance "
        f"{_plain(req.balance)} ({asked / req.balance:.4g}x): held at the venue's lowest "
        f"leverage, 1x: {backing}"
    )


def _max_leverage_for_stop(inst: Instrument, req: CalcRequest, stop: Decimal) -> Decimal:
    """The largest leverage on the 0.01 grid (rounded down: the safe side) at which the column
    the tool shows for it (:func:`_column`: the balance at that leverage, the size floored to
    the step, liquidation and stop on the tick grid) has no ``stop_beyond_liquidation`` and
    the leverage is within the bracket of the notional asked (``_check_bracket``); 0 when not
    even 1x is. Both fail from some leverage on: the notional grows with the leverage, and with
    it the maintenance rate (the bracket) and the liquidation's nearness to the entry, while
    the bracket's cap falls. So a bisection on the grid finds the boundary.

    A long's ``stop`` at or below 0 (k daily vols >= 100 %) never fires: only a column
    without a liquidation price qualifies (:func:`_stop_beyond`), 1x on Binance's formula and
    none on Bybit's. It answered the bracket cap (150x on BTC, liquidating 0.27 % below the
    entry) when such a stop was taken for no stop at all.

    It was solved on the notional of the leverage asked (balance x --leverage) with less margin:
    above the first bracket that notional is smaller than the answer's own, its maintenance rate
    lower, and the answer too high (BTC long at 60 000, balance 100 000, stop 56 231.35: 14.83x,
    at which the liquidation lies at 56 259.2, above the stop; 14.73x is the largest)."""

    def fits(cents: int) -> bool:
        leverage = Decimal(cents).scaleb(-2)
        if leverage > inst.max_leverage_for(req.balance * leverage):
            return False
        return not _column(inst, req, leverage, stop).stop_beyond_liquidation

    top = max(b.max_leverage for b in inst.brackets)  # the first bracket's, on every venue seen
    low, high = 100, int(top * 100)  # 1x .. top, in cents of leverage
    if not fits(low):
        return ZERO
    if fits(high):
        return Decimal(high).scaleb(-2)
    while high - low > 1:  # fits(low), not fits(high)
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return Decimal(low).scaleb(-2)


def _validate(req: CalcRequest, inst: Instrument) -> None:
    if req.side not in (1, -1):
        raise ConfigError(f"--side must be long or short, got {req.side!r}")
    _positive("--entry", req.entry)
    _entry_on_the_venue(req.entry, inst)
    _positive("--balance", req.balance)
    if (req.leverage is None) == (req.size is None):
        given = "both" if req.leverage is not None else "neither"
        raise ConfigError(f"give exactly one of --leverage and --size ({given} given)")
    if req.leverage is not None and req.leverage < ONE:
        raise ConfigError(f"--leverage must be >= 1, got {_plain(req.leverage)}")
    if req.size is not None:
        _positive("--size", req.size)
        if req.size < inst.min_qty:
            raise ConfigError(
                f"--size {_plain(req.size)} is below {inst.symbol}'s minimum quantity "
                f"{inst.min_qty}"
            )
    if req.volatility is not None:
        _positive("--vol", req.volatility)
    _positive("--stop-vol-units", req.stop_vol_units)


def _entry_on_the_venue(entry: Decimal, inst: Instrument) -> None:
    """The venue trades only on its tick grid and within its price filter: an entry below its
    lowest price (one tick when it states none) or between two ticks is a price no fill is
    ever at, and the figures made from it (a size of 100 000 BTC at 0.05, a liquidation price
    rounded to the tick on the wrong side of the entry) describe no position."""
    lowest = inst.min_price if inst.min_price is not None else inst.tick_size
    if entry < lowest:
        raise ConfigError(
            f"--entry {_plain(entry)} is below {inst.symbol}'s lowest price {_plain(lowest)}; "
            "the exchange would refuse it"
        )
    if inst.max_price is not None and entry > inst.max_price:
        raise ConfigError(
            f"--entry {_plain(entry)} is above {inst.symbol}'s highest price "
            f"{_plain(inst.max_price)}; the exchange would refuse it"
        )
    if entry % inst.tick_size != 0:
        raise ConfigError(
            f"--entry {_plain(entry)} is not a multiple of {inst.symbol}'s tick "
            f"{_plain(inst.tick_size)}; the exchange trades on its tick only"
        )


def _check_liquidation_side(main: Column, req: CalcRequest, inst: Instrument) -> None:
    """A liquidation price shown on the tick grid (rounded toward the entry) must lie on the
    losing side of the entry: below a long's, above a short's. Within a tick of the entry (an
    entry a few ticks above zero) the venue would liquidate the position as soon as it opened;
    the figures would read as a position with room to lose."""
    liq = main.liquidation_on_grid
    if liq is None:
        return
    if (req.side > 0 and liq < req.entry) or (req.side < 0 and liq > req.entry):
        return
    side, way = ("long", "below") if req.side > 0 else ("short", "above")
    raise ConfigError(
        f"--entry {_plain(req.entry)}: a {side} at {_fmt(main.leverage)}x liquidates at "
        f"{_plain(liq)} on {inst.symbol}'s tick {_plain(inst.tick_size)}, not {way} the entry; "
        "the position would be liquidated as soon as it opened"
    )


def _check_bracket(
    inst: Instrument, leverage: Decimal, notional: Decimal, req: CalcRequest
) -> None:
    cap = inst.max_leverage_for(notional)
    if leverage > cap:
        what = (
            f"--leverage {_fmt(leverage)}"
            if req.leverage is not None
            else f"--size {_plain(req.size)} (leverage {_fmt(leverage)} on balance "
            f"{_plain(req.balance)})"
        )
        raise ConfigError(
            f"{what} is above {inst.symbol}'s maximum of {cap}x for a notional of "
            f"{_fmt(notional)} {inst.quote}; the exchange would refuse it"
        )


def _check_order_minimums(inst: Instrument, notional: Decimal, req: CalcRequest) -> None:
    """The exchange refuses an order off its quantity step, below its minimum quantity or below
    its minimum notional (Binance LOT_SIZE / MIN_NOTIONAL, -4004 / -4164)."""
    what = (
        f"--size {_plain(req.size)}"
        if req.size is not None
        else f"--balance {_plain(req.balance)} at --leverage {_plain(req.leverage)}"
    )
    if req.size is not None and inst.floor_qty(req.size) != req.size:
        raise ConfigError(
            f"{what} is not a multiple of {inst.symbol}'s quantity step {inst.step_size}; the "
            "exchange would refuse it"
        )
    most = inst.max_position_notional
    if most is not None and notional > most:
        raise ConfigError(
            f"{what}: a notional of {_fmt(notional)} {inst.quote} is above {inst.symbol}'s "
            f"largest position of {_fmt(most)} {inst.quote} (the last leverage bracket's cap); "
            "the exchange would refuse it at any leverage"
        )
    qty = inst.floor_qty(notional / req.entry)  # what an order for this notional would carry
    if qty < inst.min_qty:
        raise ConfigError(
            f"{what} buys {_fmt_qty(notional / req.entry)} {inst.base}, below {inst.symbol}'s "
            f"minimum quantity {inst.min_qty}; the exchange would refuse it"
        )
    if qty * req.entry < inst.min_notional:
        raise ConfigError(
            f"{what}: a notional of {_fmt(qty * req.entry)} {inst.quote} is below "
            f"{inst.symbol}'s minimum order of {inst.min_notional} {inst.quote}; the exchange "
            "would refuse it"
        )


def _plain(x: Decimal | None) -> str:
    """A number as typed, without Decimal's exponent (1.5e5 reads 150000, not 1.5E+5)."""
    return "-" if x is None else format(x, "f")


def _fmt_qty(x: Decimal) -> str:
    return format(_quantized(x, _JSON_PLACES).normalize(), "f")


def _positive(flag: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"{flag} must be a number > 0, got {_plain(value)}")


def _quantized(x: Decimal, places: Decimal) -> Decimal:
    """``x`` rounded (half-even) to ``places``, in a context wide enough for any magnitude: the
    default 28 digits cannot hold a large number with 8 decimals (InvalidOperation)."""
    digits = max(28, x.adjusted() - places.as_tuple().exponent + 2)  # type: ignore[operator]
    return x.quantize(places, context=Context(prec=digits))


def _fmt(x: Decimal) -> str:
    return format(_quantized(x, Decimal("0.01")).normalize(), "f")


def to_text(x: Decimal | None) -> str | None:
    """Decimal as a JSON string, 8 decimal places, trailing zeros dropped; None stays null;
    infinity (a margin ratio with no margin left) is ``"Infinity"``."""
    if x is None:
        return None
    if not x.is_finite():
        return str(x)
    q = _quantized(x, _JSON_PLACES)
    return "0" if q == 0 else format(q.normalize(), "f")  # never "-0"


def jsonable(r: CalcResult) -> dict[str, Any]:
    """The result as JSON-ready data: every Decimal a string, fractions as fractions."""
    req = r.request
    return {
        "contract": req.symbol,
        "exchange": req.exchange,
        "side": "long" if req.side > 0 else "short",
        "margin_mode": req.margin_mode.value,
        "entry": to_text(req.entry),
        "balance": to_text(req.balance),
        "leverage": to_text(r.leverage),
        "size_note": r.size_note,  # a --size worth less than the balance: held at 1x
        # the quantity an order would carry: floored to the step (the venue refuses others)
        "qty": to_text(r.order_qty),
        "notional": to_text(r.notional),  # of the position held (qty x entry)
        "asked_notional": to_text(r.asked_notional),  # balance x leverage, before the step
        "initial_margin": to_text(r.initial_margin),
        "maintenance_margin": to_text(r.maintenance_margin),
        "maint_margin_rate": to_text(r.maint_margin_rate),
        "bracket_max_leverage": to_text(r.bracket_max_leverage),
        # on the tick grid, toward the mark, as the venue reports it and the engine plans
        "liquidation_price": to_text(r.liquidation_on_grid),
        "liquidation_distance": to_text(r.liquidation_distance),
        "volatility": to_text(req.volatility),
        "daily_volatility": to_text(r.daily_volatility),
        "liquidation_distance_vol_units": to_text(r.liquidation_distance_vol),
        "stop_vol_units": to_text(req.stop_vol_units),
        "stop_price": to_text(r.stop_price),
        "stop_note": r.stop_note,  # why stop_price is null with a volatility given
        "stop_beyond_liquidation": r.stop_beyond_liquidation,
        "max_leverage_for_stop": to_text(r.max_leverage_for_stop),
        "round_trip_fee": to_text(r.round_trip_fee),
        "largest_market_order": to_text(r.largest_order),
        "above_largest_market_order": r.above_largest_order,
        "columns": [
            {
                "leverage": to_text(c.leverage),
                "qty": to_text(c.order_qty),
                "below_minimum_qty": c.below_min_qty,
                "notional": to_text(c.notional),
                "liquidation_price": to_text(c.liquidation_on_grid),
                "allowed": c.allowed,
                "stop_beyond_liquidation": c.stop_beyond_liquidation,
            }
            for c in r.columns
        ],
        "moves": [
            {
                "move": to_text(move),
                "price": to_text(price),
                "cells": [
                    {
                        "leverage": to_text(col.leverage),
                        "pnl": to_text(cell.pnl),
                        "return_on_margin": to_text(cell.return_on_margin),
                        "liquidated": cell.liquidated,
                    }
                    for col, cell in zip(r.columns, cells, strict=True)
                ],
            }
            for move, price, cells in r.moves
        ],
    }
