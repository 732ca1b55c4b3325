"""Portfolios for the stress test: read them from files and stand them up on a simulated exchange.

Inputs:

* a positions CSV with the columns of :data:`bot.backtest.report.POSITION_COLUMNS`: ``symbol``,
  ``qty`` (signed, base asset), ``entry_price``, ``leverage`` (the whole-number exchange
  setting) required; ``isolated_margin`` (empty or 0: ``|qty| x entry / leverage``), ``mark``
  (default the entry) and ``stop_loss`` (trigger of a resting stop; empty for none) optional;
* a simulation's output directory (``bot simulate --out``): its ``positions.csv`` and
  ``account.json`` (wallet balance and margin mode) describe the simulation's end state;
* beside either, the configuration's ``[spot]`` holdings (:func:`spot_legs`): not on the
  exchange, valued at their perpetual's price (the hedge's exposure measure) in each scenario.

:func:`open_on_exchange` opens the portfolio on a fresh :class:`SimulatedExchange` with market
orders at the entry prices (fee- and slippage-free, so the wallet is exactly the one given),
restores the real fees and slippage, moves the marks to the current ones and rests the stops, so
every scenario is then played by the simulated exchange's own rules.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from difflib import get_close_matches
from pathlib import Path

from bot.backtest.report import POSITION_COLUMNS
from bot.clock import SimClock
from bot.config.hedge import spot_symbol
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.errors import ConfigError, DataError, OrderRejected
from bot.sim.book import PRICE_PLACES
from bot.sim.exchange import BPS, SimulatedExchange

__all__ = [
    "MAX_INPUT",
    "REQUIRED_COLUMNS",
    "Holding",
    "Portfolio",
    "SpotLeg",
    "open_on_exchange",
    "read_portfolio",
    "spot_legs",
]

ZERO = Decimal(0)
MAX_INPUT = Decimal("1e18")
"""Largest size of a number the tools accept (a price, a quantity, a balance): far above any
real book, and small enough for exact arithmetic and output to 8 decimals in 28 digits."""
MAX_OPENING_ORDERS = 10_000
"""A holding that needs more orders than this to stand up (its size over the venue's largest
market order) is refused rather than opened order by order."""
REQUIRED_COLUMNS = POSITION_COLUMNS[:4]
SCENARIO_TS_MS = 0  # the scenarios are instant: one timestamp for every simulated event


@dataclass(frozen=True, slots=True)
class Holding:
    """One open position. ``qty`` signed (base asset); prices and margin in the quote currency."""

    symbol: str
    qty: Decimal
    entry_price: Decimal
    leverage: int
    mark: Decimal
    isolated_margin: Decimal | None = None
    stop_loss: Decimal | None = None

    @property
    def sign(self) -> int:
        return 1 if self.qty > 0 else -1

    @property
    def margin(self) -> Decimal:
        """Collateral at the leverage setting: the isolated margin, else ``|qty| x entry / lev``."""
        if self.isolated_margin is not None:
            return self.isolated_margin
        return abs(self.qty) * self.entry_price / Decimal(self.leverage)


@dataclass(frozen=True, slots=True)
class SpotLeg:
    """A spot holding the hedge offsets (the configuration's ``[spot]``): outside the margin
    account, so no scenario liquidates or stops it, but every move of ``symbol`` (the
    perpetual whose price series prices it, as the hedge's exposure measure does) moves its
    value: ``qty x price x move``."""

    asset: str
    symbol: str  # the perpetual it is priced from (BASE/QUOTE:QUOTE)
    qty: Decimal  # base asset, > 0
    price: Decimal  # the perpetual's price it is valued at before the move
    priced_from: str  # where that price comes from, for the output

    @property
    def value(self) -> Decimal:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Portfolio:
    wallet: Decimal  # wallet balance, quote currency, without unrealised PnL
    margin_mode: MarginMode
    holdings: tuple[Holding, ...]
    source: str  # where it came from, for messages
    spot: tuple[SpotLeg, ...] = ()  # spot held beside the margin account

    def symbols(self) -> tuple[str, ...]:
        return tuple(h.symbol for h in self.holdings)

    def moved_symbols(self) -> tuple[str, ...]:
        """The contracts a scenario moves: the positions', then the perpetuals pricing spot
        holdings that no position is on (a spot leg is moved with its perpetual)."""
        held = self.symbols()
        return held + tuple(dict.fromkeys(s.symbol for s in self.spot if s.symbol not in held))

    @property
    def spot_value(self) -> Decimal:
        return sum((s.value for s in self.spot), ZERO)

    def at_leverage(self, leverage: int, instruments: Mapping[str, Instrument]) -> Portfolio:
        """Each holding re-sized to ``leverage`` on its own margin (notional = margin x leverage),
        same entry, mark and stop; quantities rounded down to the step."""
        out = []
        for h in self.holdings:
            qty = instruments[h.symbol].floor_qty(h.margin * leverage / h.entry_price)
            out.append(replace(h, qty=qty * h.sign, leverage=leverage, isolated_margin=None))
        return replace(self, holdings=tuple(out))


def read_portfolio(
    positions: Path | None,
    from_sim: Path | None,
    balance: Decimal | None,
    margin_mode: MarginMode | None,
    default_balance: Decimal,
    default_mode: MarginMode,
) -> Portfolio:
    """Read ``--positions FILE`` or ``--from-sim DIR``; flags override the account file, which
    overrides the config defaults."""
    if (positions is None) == (from_sim is None):
        given = "both" if positions is not None else "neither"
        raise ConfigError(f"give exactly one of --positions and --from-sim ({given} given)")
    wallet, mode = default_balance, default_mode
    if from_sim is not None:
        if not from_sim.is_dir():
            raise ConfigError(f"--from-sim {from_sim}: not a directory")
        positions = from_sim / "positions.csv"
        wallet, mode = _read_account(from_sim / "account.json")
    assert positions is not None  # noqa: S101 - one of the two is set
    holdings = _read_positions(positions)
    wallet = balance if balance is not None else wallet
    if wallet <= 0:
        raise ConfigError(f"{positions}: wallet balance must be > 0, got {wallet}")
    return Portfolio(wallet, margin_mode or mode, holdings, str(positions))


def _read_account(path: Path) -> tuple[Decimal, MarginMode]:
    if not path.is_file():
        raise DataError(f"{path}: not found (written by `bot simulate` next to positions.csv)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        wallet = Decimal(str(data["wallet"]))
        mode = MarginMode(data["margin_mode"])
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        KeyError,
        InvalidOperation,
        ValueError,
        TypeError,
    ) as exc:
        raise DataError(
            f"{path}: expected a JSON object with 'wallet' (a number) and 'margin_mode' "
            f"(isolated or cross): {exc!r}"
        ) from None
    if not wallet.is_finite() or wallet <= 0 or wallet >= MAX_INPUT:
        raise DataError(
            f"{path}: 'wallet' must be a finite number > 0 and below {MAX_INPUT:.0e}, "
            f"got {data['wallet']!r}"
        )
    return wallet, mode


def _read_positions(path: Path) -> tuple[Holding, ...]:
    if not path.is_file():
        raise DataError(f"{path}: positions file not found")
    try:
        return _parse_positions(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text (CSV) file: {exc}") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from None


def _parse_positions(path: Path) -> tuple[Holding, ...]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}; the header must have "
                f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(POSITION_COLUMNS[4:])}), "
                f"got {', '.join(header) or 'nothing'}"
            )
        unknown = [c for c in header if c not in POSITION_COLUMNS]
        if unknown:
            raise DataError(f"{path}: unknown column(s) {', '.join(unknown)}")
        rows = [
            _holding(path, n, {k.strip(): (v or "").strip() for k, v in row.items() if k})
            for n, row in enumerate(reader, start=2)
        ]
    if not rows:
        raise DataError(f"{path}: no positions")
    seen: set[str] = set()
    for n, h in enumerate(rows, start=2):
        if h.symbol in seen:
            raise DataError(f"{path}: line {n}: {h.symbol} appears twice (one-way mode)")
        seen.add(h.symbol)
    return tuple(rows)


def _holding(path: Path, line: int, row: dict[str, str]) -> Holding:
    where = f"{path}: line {line}"

    def number(key: str, *, required: bool = True) -> Decimal | None:
        text = row.get(key, "")
        if not text:
            if required:
                raise DataError(f"{where}: {key} is empty")
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise DataError(f"{where}: {key} is not a number: {text!r}") from None
        if not value.is_finite():
            raise DataError(f"{where}: {key} must be finite, got {text!r}")
        if abs(value) >= MAX_INPUT:
            raise DataError(
                f"{where}: {key} {text} is out of range (must be below {MAX_INPUT:.0e})"
            )
        if key == "isolated_margin" and value == 0:
            return None  # a cross position (bot simulate writes 0): no margin of its own
        if key != "qty" and value <= 0:
            raise DataError(f"{where}: {key} must be > 0, got {text}")
        return value

    symbol = row.get("symbol", "")
    if not symbol:
        raise DataError(f"{where}: symbol is empty")
    qty, entry, lev = number("qty"), number("entry_price"), number("leverage")
    assert qty is not None  # noqa: S101 - required numbers are never None
    assert entry is not None  # noqa: S101
    assert lev is not None  # noqa: S101
    if qty == 0:
        raise DataError(f"{where}: qty is 0 (leave flat contracts out)")
    if lev != lev.to_integral_value():
        raise DataError(
            f"{where}: leverage must be a whole number (the exchange setting), got {lev}"
        )
    mark = number("mark", required=False) or entry
    return Holding(
        symbol,
        qty,
        entry,
        int(lev),
        mark,
        number("isolated_margin", required=False),
        number("stop_loss", required=False),
    )


def open_on_exchange(
    portfolio: Portfolio, instruments: Mapping[str, Instrument], slippage_bps: Decimal
) -> SimulatedExchange:
    """A simulated exchange holding ``portfolio``: positions open, marks current, stops resting.

    Raises ConfigError naming the holding when the exchange refuses it (unknown contract,
    leverage above the bracket, quantity off the step, not enough margin, a stop on the wrong
    side of the mark) or when a position is already beyond its liquidation price.
    """
    for h in portfolio.holdings:
        if h.symbol not in instruments:
            # hundreds are known (the bundled snapshot): name the closest, not all of them
            close = get_close_matches(h.symbol, sorted(instruments), n=5, cutoff=0.6)
            raise ConfigError(
                f"{portfolio.source}: unknown contract {h.symbol!r}; {len(instruments)} known"
                + (f", closest: {', '.join(close)}" if close else "")
            )
    used = {h.symbol: instruments[h.symbol] for h in portfolio.holdings}
    # Opened without a fee, and on a tick as fine as the book keeps prices: a holding's entry is
    # an average of fills, off the tick, which the opening orders rebuild, not trade again.
    free = {s: replace(i, taker_fee=ZERO, tick_size=PRICE_PLACES) for s, i in used.items()}
    ex = SimulatedExchange(
        free,
        SimClock(SCENARIO_TS_MS),
        starting_balance=portfolio.wallet,
        margin_mode=portfolio.margin_mode,
    )
    for n, h in enumerate(portfolio.holdings):
        if h.qty == 0:
            raise ConfigError(
                f"{portfolio.source}: {h.symbol}: {h.margin:.2f} of margin at {h.leverage}x buys "
                f"less than one step ({instruments[h.symbol].step_size}) of quantity"
            )
        ex.marks[h.symbol] = ex.lasts[h.symbol] = h.entry_price
        side = OrderSide.BUY if h.qty > 0 else OrderSide.SELL
        _check_fundable(ex, portfolio, h, instruments[h.symbol])
        # A holding above the venue's largest market order was built from several orders.
        sizes = instruments[h.symbol].order_sizes(abs(h.qty))
        with _refused(portfolio, h):
            ex.set_leverage(h.symbol, h.leverage)
            for k, size in enumerate(sizes):
                suffix = "" if len(sizes) == 1 else f"-{k}"
                ex.place_order(
                    OrderRequest(
                        f"stress-open-{n}{suffix}",
                        h.symbol,
                        side,
                        OrderType.MARKET,
                        OrderPurpose.ENTRY,
                        size,
                        False,
                    )
                )
        if h.isolated_margin is not None and portfolio.margin_mode is MarginMode.ISOLATED:
            ex.book.positions[h.symbol].isolated_margin = h.isolated_margin
            if ex.book.available(ex.marks) < 0:
                raise ConfigError(
                    f"{portfolio.source}: {h.symbol}: isolated_margin {h.isolated_margin}: the "
                    f"isolated margins add up to more than the wallet {portfolio.wallet}"
                )
    ex.book.instruments.update(used)
    ex.slippage = slippage_bps * BPS
    for h in portfolio.holdings:
        ex.marks[h.symbol] = ex.lasts[h.symbol] = h.mark
    for n, h in enumerate(portfolio.holdings):
        _check_not_liquidatable(ex, portfolio, h)
        if h.stop_loss is not None:
            _rest_stop(ex, portfolio, h, n)
    return ex


def _check_fundable(
    ex: SimulatedExchange, portfolio: Portfolio, h: Holding, inst: Instrument
) -> None:
    """Refuse, before any order, a holding the wallet cannot fund or that would take more
    opening orders than :data:`MAX_OPENING_ORDERS` (the exchange would refuse the first order
    short of margin; a huge quantity would otherwise be split into millions of orders)."""
    needed = abs(h.qty) * h.entry_price / Decimal(h.leverage)
    available = ex.book.available(ex.marks)
    if needed > available:
        raise ConfigError(
            f"{portfolio.source}: {h.symbol} ({h.qty} at {h.entry_price}, {h.leverage}x, wallet "
            f"{portfolio.wallet} {portfolio.margin_mode.value}): the exchange refuses it: margin "
            f"is insufficient: need {needed:.2f}, available {available:.2f}"
        )
    largest = inst.largest_order
    if largest is not None and abs(h.qty) > largest * MAX_OPENING_ORDERS:
        raise ConfigError(
            f"{portfolio.source}: {h.symbol}: qty {h.qty} is more than {MAX_OPENING_ORDERS} "
            f"times the exchange's largest market order {largest}"
        )


@contextmanager
def _refused(portfolio: Portfolio, h: Holding) -> Iterator[None]:
    try:
        yield
    except OrderRejected as exc:
        raise ConfigError(
            f"{portfolio.source}: {h.symbol} ({h.qty} at {h.entry_price}, {h.leverage}x, wallet "
            f"{portfolio.wallet} {portfolio.margin_mode.value}): the exchange refuses it: {exc}"
        ) from None


def _check_not_liquidatable(ex: SimulatedExchange, portfolio: Portfolio, h: Holding) -> None:
    liq = ex.book.liquidation_price(h.symbol, ex.marks)
    if liq is not None and (h.mark <= liq if h.qty > 0 else h.mark >= liq):
        raise ConfigError(
            f"{portfolio.source}: {h.symbol} at mark {h.mark} is already at or beyond its "
            f"liquidation price {liq:.8g}: the exchange would have liquidated it"
        )


def _rest_stop(ex: SimulatedExchange, portfolio: Portfolio, h: Holding, n: int) -> None:
    stop = h.stop_loss
    assert stop is not None  # noqa: S101
    if (stop >= h.mark) if h.qty > 0 else (stop <= h.mark):
        side = "below" if h.qty > 0 else "above"
        raise ConfigError(
            f"{portfolio.source}: {h.symbol} stop_loss {stop} must be {side} the mark {h.mark} "
            f"(a stop past the mark would already have fired)"
        )
    side = OrderSide.SELL if h.qty > 0 else OrderSide.BUY
    largest = ex.book.instruments[h.symbol].largest_order
    # Above the largest market order, one stop can only cover the holding as close-position.
    whole = largest is not None and abs(h.qty) > largest
    req = OrderRequest(
        f"stress-sl-{n}",
        h.symbol,
        side,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        None if whole else abs(h.qty),
        not whole,
        trigger_price=stop,
        close_position=whole,
    )
    with _refused(portfolio, h):
        ex.place_order(req)


def spot_legs(
    quantities: Mapping[str, Decimal],
    quote: str,
    portfolio: Portfolio,
    last_close: Callable[[str], tuple[Decimal, str] | None],
) -> tuple[SpotLeg, ...]:
    """The spot holdings ``quantities`` (asset -> quantity) valued as the hedge values them:
    at the mark of their perpetual when the book holds a position on it, else at
    ``last_close(perpetual)`` (a price and where it comes from: the data's last candle).
    A holding no price is known for is refused: left out, it would read as worth nothing and
    every scenario would miss its loss."""
    marks = {h.symbol: h.mark for h in portfolio.holdings}
    out = []
    for asset, qty in quantities.items():
        sym = spot_symbol(asset, quote)
        if sym in marks:
            price, where = marks[sym], f"the mark of the {sym} position in {portfolio.source}"
        else:
            found = last_close(sym)
            if found is None:
                raise ConfigError(
                    f"spot {asset} ({qty}): no price: {portfolio.source} holds no {sym} "
                    f"position and the data has no {sym} candles (--data DIR with them)"
                )
            price, where = found
        out.append(SpotLeg(asset, sym, qty, price, where))
    return tuple(out)
