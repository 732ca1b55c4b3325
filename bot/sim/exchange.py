"""The simulated exchange: Binance USD-M rules behind the exchange port.

Used by the dry-run simulation (history replayed through :meth:`SimulatedExchange.advance_to`)
and by paper trading (live prices through :meth:`SimulatedExchange.set_mark`). It implements
:class:`bot.ports.exchange.ExchangePort`, so the engine cannot tell it from the live adapter.

Fill rules (written down here because backtests live or die by them):

* Market orders fill at once at the current last price, moved against the trader by the
  slippage model (:mod:`bot.sim.slippage`: a fixed ``slippage_bps``, or a floor plus a term in
  the candle's range for fills inside a moving candle plus square-root impact on its volume),
  and pay the taker fee on the fill notional. Triggered stops and liquidations pay it too.
  A last price from history comes with until when the contract has a price
  (:meth:`SimulatedExchange.set_last`, :meth:`bot.sim.history.HistoricalMarket.trade_quote`);
  past that the data has a hole in every price series of the contract and a market order is
  refused, as by a venue in maintenance (see ``_last``).
* Every fill is on the contract's tick, as the venue's trades are: the model's price rounded
  against the trader, a buy up to the next tick, a sell down
  (:meth:`~bot.domain.instrument.Instrument.fill_on_tick`); a liquidation too, against the
  position (see :func:`bot.sim.triggers._liquidation_fill`). On a coarse tick (a contract
  priced 0.01 quoted to 0.00001: 10 bps a tick) the model's price between ticks would flatter
  every fill. ``slippage_paid`` counts the rounding with the slippage, and
  ``slippage_by_symbol`` the same per contract (the hedge legs' share in the report).
* Conditional orders (stop-market, take-profit-market) trigger on the **mark** price series given
  to the exchange (see :mod:`bot.sim.triggers`): a sell stop when the bar's low <= trigger, a buy
  stop when its high >= trigger; take-profits the other way round.
* Gap rule: if a bar **opens** beyond a trigger, the order fills at the open, not at the trigger.
* A stop triggered on a mark bar fills against the last-trade candle of the same time when the
  data has one (:func:`bot.sim.triggers.fill_reference`): the book, not the mark, fills it.
* Same-bar rule: a bar opening beyond the liquidation price liquidates; other levels crossed at
  the open fire first (of several, the one nearest the previous price, which the gap crossed
  first); otherwise stops and liquidation fire
  before take-profits (pessimistic), and of two adverse levels the one nearer the open fires
  first. After each fill the remaining orders of the bar are evaluated again.
* Close-position orders (Binance ``closePosition=true``): STOP_MARKET or TAKE_PROFIT_MARKET
  only, without a quantity and without ``reduceOnly`` (refused -1106 otherwise); the fill is
  the whole position at trigger time, whatever its size (no step or minimum applies to it);
  one per side and type rests at a time (a second is refused -4130); resting ones are
  cancelled once the position is flat. Sources: Binance New Algo Order ``closePosition``
  (https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/New-Algo-Order),
  error -4130 (https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code),
  /work notes ``exchange-facts.md`` §5.3.
* Reduce-only orders never increase a position: a reduce-only market order on a flat or
  same-side position is rejected (Binance -2022); its size is capped at the position. A resting
  reduce-only order that triggers with nothing to reduce expires.
* Liquidation: when the mark crosses the liquidation price computed from the tiered brackets, the
  position is closed at that price (or at the open on a gap) and the liquidation fee is charged.
* Funding is settled at the settlement times of the funding series, on the mark at that time,
  on the position held then: before anything the bot does at that instant (a tick, the guard).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import ROUND_CEILING, Decimal

from bot.clock import Clock, ms_to_datetime
from bot.domain.enums import (
    ForcedKind,
    MarginMode,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)
from bot.domain.instrument import Instrument, MarginModel
from bot.domain.margin import position_maintenance
from bot.domain.market import FundingInfo
from bot.domain.orders import Fill, ForcedClose, Order, OrderRequest
from bot.domain.position import Balance, Position
from bot.errors import (
    DuplicateClientId,
    InsufficientMargin,
    InvalidQuantity,
    OrderNotFound,
    OrderRejected,
    ReduceOnlyRejected,
)
from bot.sim.book import Book, SimPosition, fee_of
from bot.sim.events import SimEvent
from bot.sim.slippage import SlippageModel, fill_price
from bot.sim.triggers import insurance_takes, process_bar

ZERO = Decimal(0)
BPS = Decimal("0.0001")


def _iso(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


class SimulatedExchange:
    """Implements :class:`bot.ports.exchange.ExchangePort` over a :class:`Book`."""

    # Binance rules: a close-position stop protects a position of any size.
    close_position_stops = True

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        clock: Clock,
        *,
        starting_balance: Decimal,
        margin_mode: MarginMode,
        slippage_bps: Decimal = ZERO,
        quote: str = "USDT",
        slippage_model: SlippageModel | None = None,
    ) -> None:
        self.clock = clock
        self.quote = quote
        model = slippage_model or SlippageModel.fixed(slippage_bps)
        self.slippage = model.floor  # the floor (the whole slippage of the fixed model)
        self.slippage_model = model
        # The candle each contract's fills belong to: (high - low) / open and its volume, set
        # by the replay (decision-time candle) and by each trigger bar (the range only).
        self.candle_range: dict[str, Decimal] = {}
        self.candle_volume: dict[str, Decimal] = {}
        self.slippage_paid = ZERO
        self.slippage_by_symbol: dict[str, Decimal] = {}
        # Where a market order's candle comes from (the replay sets it; None: the dicts above).
        self.candle_lookup: Callable[[str], tuple[Decimal, Decimal] | None] | None = None
        self.book = Book(
            dict(instruments), starting_balance=starting_balance, margin_mode=margin_mode
        )
        self.marks: dict[str, Decimal] = {}
        self.lasts: dict[str, Decimal] = {}
        # Per contract, when its last price is from and until when it is one (ms), where it
        # comes from history (set_last); none: a price of the moment (paper's live feed, tools).
        self.last_times: dict[str, tuple[int, int]] = {}
        self.funding: dict[str, FundingInfo] = {}
        self.orders: dict[str, Order] = {}  # every order by client id
        self.resting: dict[str, dict[str, Order]] = {s: {} for s in instruments}
        self.fills: list[Fill] = []
        self.events: list[SimEvent] = []
        self.fees_paid = ZERO
        self.funding_paid = ZERO
        self.insurance_shortfall = ZERO  # losses beyond a wallet or isolated margin (insurance)
        self._next_id = 1
        self.processed_ms = 0  # prices processed up to here (triggers, funding): paper resumes here
        # The last position reported per contract, and the last rounding of its liquidation
        # price: a position whose values are the very same objects is reported again as the
        # same (immutable) Position, a liquidation price that did not move is not rounded again.
        self._reported: dict[str, Position] = {}
        self._rounded_liq: dict[str, tuple[Decimal, Instrument, bool, Decimal | None]] = {}

    # -- ExchangePort: reads -------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self.book.instruments[symbol]
        except KeyError:
            raise OrderRejected(f"unknown symbol {symbol}", code=-1121) from None

    def fetch_balance(self) -> Balance:
        self._require_marks()
        return Balance(
            asset=self.quote, wallet=self.book.wallet, available=self.book.available(self.marks)
        )

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        out: dict[str, Position] = {}
        for sym in symbols:
            pos = self.book.positions.get(sym)
            if pos is None or pos.qty == 0:
                continue
            out[sym] = self._position(sym, pos)
        return out

    def _position(self, symbol: str, pos: SimPosition) -> Position:
        book = self.book
        liq = self._reported_liquidation(symbol, pos.qty)
        leverage = book.leverage[symbol]
        known = self._reported.get(symbol)
        if (
            known is not None
            and known.qty is pos.qty
            and known.entry_price is pos.entry_price
            and known.isolated_margin is pos.isolated_margin
            and known.leverage is leverage
            and known.margin_mode is book.margin_mode
            and known.liquidation_price is liq
        ):
            return known
        position = self._reported[symbol] = book.to_position(symbol, liq)
        return position

    def confirm_flat(self, symbol: str) -> bool:
        """The simulated book is exact: a contract is flat when its book says so."""
        pos = self.book.positions.get(symbol)
        return pos is None or pos.qty == 0

    def _reported_liquidation(self, symbol: str, qty: Decimal) -> Decimal | None:
        """The liquidation price as an exchange reports it: on the tick, rounded toward the mark
        (the conservative side)."""
        liq = self.book.liquidation_price(symbol, self.marks)
        if liq is None:
            return None
        inst = self.book.instruments[symbol]
        long = qty > 0
        known = self._rounded_liq.get(symbol)
        if known is not None and known[0] is liq and known[1] is inst and known[2] is long:
            return known[3]
        reported: Decimal | None = inst.liquidation_on_grid(liq, 1 if long else -1)
        if long and liq < inst.tick_size:
            # Below the smallest price there is: the position cannot be liquidated (Binance
            # reports 0). Rounded up it would read as one tick and leave no room for a stop
            # on a contract trading a few ticks above zero.
            reported = None
        self._rounded_liq[symbol] = (liq, inst, long, reported)
        return reported

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        return list(self.resting.get(symbol, {}).values())

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        order = self.orders.get(client_id)
        return order if order is not None and order.symbol == symbol else None

    def fetch_forced_closes(self, symbol: str, since_ms: int) -> list[ForcedClose] | None:
        """The liquidations of ``symbol`` since ``since_ms`` (the simulator has no ADL)."""
        return [
            ForcedClose(f.symbol, ForcedKind.LIQUIDATION, f.qty, f.timestamp_ms)
            for f in self.fills
            if f.liquidation and f.symbol == symbol and f.timestamp_ms >= since_ms
        ]

    def lookups_are_final(self) -> bool:
        """Yes: this exchange is the process's own; an order it does not hold it never will."""
        return True

    def venue_now_ms(self) -> int:
        """The simulated venue keeps the injected clock's time."""
        return self.clock.now_ms()

    def fetch_mark_price(self, symbol: str) -> Decimal:
        try:
            return self.marks[symbol]
        except KeyError:
            raise OrderRejected(f"no mark price for {symbol} yet", code=-1121) from None

    def fetch_funding(self, symbol: str) -> FundingInfo:
        return self.funding.get(symbol, FundingInfo(ZERO, Decimal(8), None))

    def fetch_leverage(self, symbol: str) -> Decimal:
        return self.book.leverage[self.instrument(symbol).symbol]

    # -- ExchangePort: writes ------------------------------------------------------------------

    def set_margin_mode(self, symbol: str, mode: MarginMode) -> None:
        self.instrument(symbol)
        if mode is self.book.margin_mode:
            return
        if any(p.qty != 0 for p in self.book.positions.values()):
            raise OrderRejected("cannot change margin mode with open positions", code=-4048)
        self.book.margin_mode = mode

    def set_leverage(self, symbol: str, leverage: int) -> None:
        inst = self.instrument(symbol)
        lev = Decimal(leverage)
        if lev < 1 or lev > inst.max_leverage:
            raise OrderRejected(f"leverage {leverage} not valid for {symbol}", code=-4028)
        pos = self.book.positions[symbol]
        if pos.qty != 0:
            notional = abs(pos.qty) * self.marks.get(symbol, pos.entry_price)
            if lev > inst.max_leverage_for(notional):
                raise OrderRejected(
                    f"leverage {leverage} exceeds the bracket maximum for notional {notional}",
                    code=-2027,
                )
            lowering = lev < self.book.leverage.get(symbol, lev)
            if (
                self.book.margin_mode is MarginMode.ISOLATED
                and lowering
                and inst.margin_model is not MarginModel.BYBIT_UTA
            ):
                # Binance refuses to lower an open isolated position's leverage, whatever the
                # balance; raising it works. Modelled kinder (margin moved in when free), a
                # simulated increase went through that the venue refuses.
                # https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
                raise OrderRejected(
                    "Leverage reduction is not supported in Isolated Margin Mode with open "
                    "positions",
                    code=-4161,
                )
            if self.book.margin_mode is MarginMode.ISOLATED:
                # Bybit re-sizes isolated margin to the new setting; more margin must be free.
                needed = (abs(pos.qty) * pos.entry_price / lev).quantize(
                    Decimal("1e-10"), rounding=ROUND_CEILING
                )
                extra = needed - pos.isolated_margin
                if extra > 0 and extra > self.book.available(self.marks):
                    raise InsufficientMargin(
                        "not enough balance to lower leverage of an isolated position",
                        code=-4161,
                    )
                pos.isolated_margin = needed
        self.book.leverage[symbol] = lev

    def place_order(self, request: OrderRequest) -> Order:
        inst = self.instrument(request.symbol)
        if request.client_id in self.orders and self.orders[request.client_id].is_open:
            raise DuplicateClientId(f"duplicate client order id {request.client_id}", code=-4116)
        self._check_close_position(request)
        self._check_filters(inst, request)
        order = Order(
            client_id=request.client_id,
            exchange_id=str(self._next_id),
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            purpose=request.purpose,
            amount=request.amount,
            filled=ZERO,
            status=OrderStatus.OPEN,
            reduce_only=request.reduce_only,
            trigger_price=request.trigger_price,
            price=request.price,
            close_position=request.close_position,
            timestamp_ms=self.clock.now_ms(),
            # the simulated venue fires every conditional order on the mark (set_mark)
            trigger_by=TriggerBy.MARK if request.type.is_conditional else None,
        )
        self._next_id += 1
        if request.type.is_conditional:
            self._check_not_triggered(request)
            self.orders[order.client_id] = order
            self.resting[order.symbol][order.client_id] = order
            return order
        if request.type is not OrderType.MARKET:
            raise OrderRejected(f"order type {request.type} is not supported here", code=-1116)
        filled = self._fill_market(order, self._last(order.symbol), self.clock.now_ms())
        self.orders[order.client_id] = filled
        return filled

    def cancel_order(self, symbol: str, client_id: str) -> Order | None:
        order = self.resting.get(symbol, {}).pop(client_id, None)
        if order is None:
            known = self.orders.get(client_id)
            if known is None or known.symbol != symbol:
                raise OrderNotFound(f"order {client_id} does not exist", code=-2013)
            return known  # already filled, expired or cancelled: nothing to do
        self.orders[client_id] = order.with_status(OrderStatus.CANCELED)
        return None

    # -- prices --------------------------------------------------------------------------------

    def set_funding(self, symbol: str, info: FundingInfo) -> None:
        self.funding[symbol] = info

    def set_mark(self, symbol: str, mark: Decimal, last: Decimal | None = None) -> None:
        """Move the mark (and last) price to a new value and run triggers on that one price.

        Paper trading calls this with live prices; a degenerate bar open=high=low=close=mark.
        """
        self.instrument(symbol)
        self.marks[symbol] = mark
        self.lasts[symbol] = last if last is not None else mark
        self.last_times.pop(symbol, None)  # a price of now
        process_bar(self, symbol, self.clock.now_ms(), mark, mark, mark, mark)

    def set_last(self, symbol: str, price: Decimal, *, as_of_ms: int, until_ms: int) -> None:
        """The last price from history: the close of a candle that closed at ``as_of_ms``; the
        contract has a price until ``until_ms`` (see :meth:`bot.sim.history.HistoricalMarket.
        trade_quote`). A market order at or after ``until_ms`` is refused (see :meth:`_last`)."""
        self.lasts[symbol] = price
        self.last_times[symbol] = (as_of_ms, until_ms)

    def _require_marks(self) -> None:
        for sym, pos in self.book.positions.items():
            if pos.qty != 0 and sym not in self.marks:
                raise OrderRejected(f"no mark price for {sym}", code=-1121)

    def _last(self, symbol: str) -> Decimal:
        try:
            price = self.lasts[symbol]
        except KeyError:
            raise OrderRejected(f"no price for {symbol} yet", code=-1121) from None
        times = self.last_times.get(symbol)
        if times is not None and self.clock.now_ms() >= times[1]:
            # A hole in every price series of the contract (no trade candle nor mark bar within
            # one candle of now): the venue was in maintenance or the download skipped it, or the
            # data resumes only now, the last price from before the hole. No trade is known
            # to fill a market order at; the last close is hours old and the first price after
            # the hole may be far from it. A venue in maintenance takes no order (Binance answers
            # 503, ccxt OnMaintenance: /work notes exchange-facts.md §5.1, §5.2); the simulated
            # one refuses it, and no order rests, so the engine records a rejection. Resting
            # stops are not affected: they fill at the first bar after the hole, at its open.
            raise OrderRejected(
                f"no price for {symbol} since {_iso(times[0])}: a hole in its market data, no "
                "trade to fill a market order at (refused, as by a venue in maintenance)"
            )
        return price

    # -- internals -----------------------------------------------------------------------------

    def _check_close_position(self, request: OrderRequest) -> None:
        """Binance's closePosition rules (see the module docstring)."""
        if not request.close_position:
            return
        if not request.type.is_conditional:
            raise OrderRejected(
                f"{request.client_id}: closePosition is for STOP_MARKET/TAKE_PROFIT_MARKET only",
                code=-1106,
            )
        if request.reduce_only:
            raise OrderRejected(
                f"{request.client_id}: parameter 'reduceOnly' sent when not required "
                "(closePosition closes only)",
                code=-1106,
            )
        if request.amount is not None:
            raise OrderRejected(
                f"{request.client_id}: parameter 'quantity' sent when not required (closePosition)",
                code=-1106,
            )
        for o in self.resting.get(request.symbol, {}).values():
            if o.close_position and o.side is request.side and o.type is request.type:
                raise OrderRejected(
                    f"{request.client_id}: an open stop or take profit order with closePosition "
                    f"in the direction is existing ({o.client_id})",
                    code=-4130,
                )

    def cancel_close_position_orders(self, symbol: str) -> None:
        """A flat position takes its resting close-position orders with it (Binance)."""
        resting = self.resting.get(symbol)
        if not resting:
            return
        pos = self.book.positions.get(symbol)
        if pos is not None and pos.qty != 0:
            return
        for cid in [c for c, o in resting.items() if o.close_position]:
            self.orders[cid] = resting.pop(cid).with_status(OrderStatus.CANCELED)

    def _check_filters(self, inst: Instrument, request: OrderRequest) -> None:
        if request.amount is not None:
            self._check_quantity(inst, request, request.amount)
        self._check_prices(inst, request)

    def _check_quantity(self, inst: Instrument, request: OrderRequest, amount: Decimal) -> None:
        """Binance LOT_SIZE / MARKET_LOT_SIZE / MIN_NOTIONAL, as the venue applies them."""
        if amount % inst.step_size != 0:
            raise InvalidQuantity(
                f"quantity {amount} is not a multiple of the step {inst.step_size}", code=-1111
            )
        # The minimum binds reduce-only orders too: Binance's LOT_SIZE minQty does (only
        # MIN_NOTIONAL exempts them, below; shared/notes/exchange-facts.md §4.4). Whether Bybit's
        # minOrderQty does is not verified: assumed to (the harsher assumption), for every
        # contract whatever its margin model, so a simulation never counts on such an order.
        if amount < inst.min_qty:
            # (-4004 QTY_LESS_THAN_MIN_QTY; -4003 is a quantity of zero or less)
            raise InvalidQuantity(f"quantity {amount} below minimum {inst.min_qty}", code=-4004)
        # MARKET_LOT_SIZE binds market and stop-market orders, reduce-only ones too.
        most = inst.max_order_qty
        if most is not None and amount > most and request.type is not OrderType.LIMIT:
            raise InvalidQuantity(f"quantity {amount} greater than max quantity {most}", code=-4005)
        # Binance exempts reduce-only orders from the minimum notional.
        if not request.reduce_only and request.type is OrderType.MARKET:
            notional = amount * self._last(request.symbol)
            if notional < inst.min_notional:
                raise InvalidQuantity(
                    f"notional {notional:.2f} below minimum {inst.min_notional}", code=-4164
                )

    def _check_prices(self, inst: Instrument, request: OrderRequest) -> None:
        """Binance PRICE_FILTER: positive, on the tick, within the venue's min/max price."""
        for name in ("trigger_price", "price"):
            value = getattr(request, name)
            if value is None:
                continue
            if value <= 0:
                raise InvalidQuantity(f"{name} {value}: stop price less than zero", code=-4006)
            if value % inst.tick_size != 0:
                raise InvalidQuantity(
                    f"{name} {value} is not a positive multiple of the tick {inst.tick_size}",
                    code=-1111,
                )
            if inst.min_price is not None and value < inst.min_price:
                raise InvalidQuantity(
                    f"{name} {value}: price less than min price {inst.min_price}", code=-4013
                )
            if inst.max_price is not None and value > inst.max_price:
                raise InvalidQuantity(
                    f"{name} {value}: price greater than max price {inst.max_price}", code=-4016
                )

    def _check_not_triggered(self, request: OrderRequest) -> None:
        """Binance refuses a conditional order that would trigger at once (-2021)."""
        mark = self.marks.get(request.symbol)
        trig = request.trigger_price
        if mark is None or trig is None:
            return
        falls = (request.type is OrderType.STOP_MARKET) == (request.side is OrderSide.SELL)
        if (falls and trig >= mark) or (not falls and trig <= mark):
            raise OrderRejected(
                f"{request.client_id}: order would immediately trigger "
                f"(trigger {trig}, mark {mark})",
                code=-2021,
            )

    def _reduce_amount(self, order: Order) -> Decimal:
        """How much a reduce-only/close-position order may trade now (0 = nothing to reduce)."""
        pos = self.book.positions[order.symbol]
        if pos.qty == 0 or pos.sign == order.side.sign:
            return ZERO
        if order.close_position or order.amount is None:
            return abs(pos.qty)
        return min(order.amount, abs(pos.qty))

    def pay_slippage(self, symbol: str, amount: Decimal) -> None:
        """Count what a fill on ``symbol`` paid beyond its reference price: in the account's
        total and in the contract's (the hedge report sums its legs' from these, whatever the
        slippage model: the price paid, not one worked back from a fixed rate)."""
        self.slippage_paid += amount
        self.slippage_by_symbol[symbol] = self.slippage_by_symbol.get(symbol, ZERO) + amount

    def slippage_parts(self, symbol: str, qty: Decimal, *, inside: bool) -> tuple[Decimal, Decimal]:
        """The slippage fraction of a fill of ``qty`` on ``symbol`` now, and the part of it the
        order's own size adds (the data-driven model's impact term; 0 for the fixed model). See
        :mod:`bot.sim.slippage`."""
        model = self.slippage_model
        if not model.data_driven:
            return self.slippage, ZERO
        model = SlippageModel(self.slippage, model.range_fraction, model.impact)
        rng, volume = self.candle_range.get(symbol), self.candle_volume.get(symbol)
        if not inside and self.candle_lookup is not None:
            found = self.candle_lookup(symbol)
            if found is not None:
                rng, volume = found
        elif inside and volume is None and self.candle_lookup is not None:
            found = self.candle_lookup(symbol)
            volume = found[1] if found is not None else None
        return model.fraction(qty, rng, volume, inside), model.impact_fraction(qty, rng, volume)

    def _fill_market(
        self,
        order: Order,
        reference: Decimal,
        ts_ms: int,
        *,
        inside: bool = False,
        traded: tuple[Decimal, Decimal] | None = None,
    ) -> Order:
        """Fill ``order`` at ``reference`` plus slippage; raise like Binance on rejection.
        ``traded``: the (low, high) the last price traded at in the candle the order fills in
        (see :func:`bot.sim.slippage.within_traded`)."""
        inst = self.book.instruments[order.symbol]
        qty = order.amount if order.amount is not None else ZERO
        if order.reduce_only or order.close_position:
            qty = self._reduce_amount(order)
            if qty == 0:
                raise ReduceOnlyRejected(
                    f"{order.client_id}: reduce-only order would increase the position", code=-2022
                )
        slip, impact = self.slippage_parts(order.symbol, qty, inside=inside)
        sign = order.side.sign
        price = inst.fill_on_tick(fill_price(reference, sign, slip, impact, traded), sign)
        delta = qty * sign
        pos = self.book.positions[order.symbol]
        increases = pos.qty == 0 or pos.sign == order.side.sign
        if increases:
            new_notional = abs(pos.qty + delta) * price
            cap = inst.max_position_notional
            if cap is not None and new_notional > cap:
                raise OrderRejected(
                    f"exceeded the maximum allowable position: notional {new_notional:.2f} > {cap}",
                    code=-2027,
                )
            if self.book.leverage[order.symbol] > inst.max_leverage_for(new_notional):
                raise OrderRejected(
                    "exceeded the maximum allowable position at current leverage", code=-2027
                )
            fee = fee_of(qty, price, inst.taker_fee)
            needed = self.book.margin_for(order.symbol, delta, price) + fee
            if needed > self.book.available(self.marks):
                raise InsufficientMargin(
                    f"margin is insufficient: need {needed:.2f}, "
                    f"available {self.book.available(self.marks):.2f}",
                    code=-2019,
                )
        fee = fee_of(qty, price, inst.taker_fee)
        result = self.book.trade(order.symbol, delta, price, fee)
        # A fill past the bankruptcy price: what backed the position paid the loss first, the
        # fee is the insurance fund's as far as the backing ran out (as in a liquidation).
        self.fees_paid += fee - min(result.shortfall, fee)
        # What the fill cost beyond its reference: the slippage, and the rounding onto the tick.
        self.pay_slippage(order.symbol, qty * abs(price - reference))
        insurance_takes(
            self,
            ts_ms,
            order.symbol,
            result.shortfall,
            f"{order.client_id} filled at {price} beyond the bankruptcy price",
            "its margin" if self.book.margin_mode is MarginMode.ISOLATED else "the wallet",
        )
        fill = Fill(
            client_id=order.client_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=fee,
            timestamp_ms=ts_ms,
            purpose=order.purpose,
            realized_pnl=result.realized_pnl,
        )
        self.fills.append(fill)
        self.cancel_close_position_orders(order.symbol)
        return replace(order, filled=qty, status=OrderStatus.FILLED, average_price=price, fee=fee)

    def maintenance_total(self) -> Decimal:
        """The open positions' maintenance margin at the marks, each as its venue's
        liquidation rule holds it (:func:`~bot.domain.margin.position_maintenance`, as the
        alerts' margin ratio takes it: a Bybit long is held to its value at entry)."""
        total = ZERO
        for sym, pos in self.fetch_positions(list(self.book.positions)).items():
            total += position_maintenance(self.book.instruments[sym], pos, self.marks[sym])
        return total

    def equity(self) -> Decimal:
        return self.book.equity(self.marks)


__all__ = ["OrderSide", "SimEvent", "SimulatedExchange"]
