"""Reconciliation: the exchange is the source of truth.

At every start and every tick, before anything is decided: orders whose outcome is unknown are
looked up by client id (one not found shortly after its send stays unknown, and holds its
contract's increases: it may still execute); positions, resting orders (conditional ones too),
the balance and the marks are read; orders the store believes rest but the exchange no longer
lists are settled (a stop that fired is recorded); fills go to the history; positions and
orders the bot did not make are found (adopted when the contract follows them, else left alone
and reported once).

Ownership is per position, not per contract (:meth:`Reconciler.judge`). A position is the
bot's when its own fills explain it since the contract was last read flat (every fill of its
orders it learns, from a send's answer, a lookup by client id or a resting order found filled,
is counted per contract, signed), or when one of its own protective orders (its client id, for
this account) rests on it on the side that closes it. One that appears from flat without
either, or that reverses the bot's without the bot's fills, is not the bot's: a ``foreign``
event, left alone (no decision, no order, no stop of the bot's) until it is flat again
(``foreign_gone``). One of the bot's that grows beyond what its fills explain was added
outside the bot: an ``added`` event, and the bot manages the whole position (one net position
per contract cannot be split): its stop covers it all and its next decision sizes it all. An
entry of the bot's whose outcome is still unknown (:attr:`Reconciler.unsettled`) may be what
opened or grew it: the position is managed, judged again once the entry is settled.

Unknown is never zero: a position the bot held (or still guards with its own protective orders)
that is missing from the positions answer is only believed gone when the venue confirms it
flat (:meth:`~bot.ports.exchange.ExchangePort.confirm_flat`); otherwise the whole read is
:class:`~bot.errors.AccountUnreadable` and the engine acts on nothing.

A contract the venue no longer lists (:attr:`Reconciler.unlisted`, withdrawn) cannot be read
at all: the venue answers "no such symbol" to every request that names it, and ccxt cannot
name it. Its reads are not made, so they cannot fail the reads of the others; what the last
reading held of it (position, resting orders, mark) is kept as last read: unknown, never
flat. A read the venue answers so (:class:`~bot.errors.NoSuchSymbol`) before the catalogue's
hourly refresh has seen the delisting asks the venue's market list at once
(:attr:`Reconciler.listing_check`, live: the catalogue keeper): confirmed withdrawn, the
contract is unlisted from then on and the reads are made again without it, in the same job;
still trading there (a symbol the bot got wrong), or no market list to ask, the answer fails
the reading as any error does. One contract's delisting never fails the reading of the others,
and is never taken for a flat contract on a venue's single answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_CEILING, Decimal
from functools import partial
from typing import Any, TypeVar

from bot.domain.enums import EventKind, OrderPurpose, OrderStatus, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Fill, Order, OrderRequest
from bot.domain.position import Balance, Position
from bot.engine.account import AccountView
from bot.engine.contracts import ContractSpec
from bot.engine.fanout import SEQUENTIAL, Fanout
from bot.errors import AccountUnreadable, NoSuchSymbol
from bot.numbers import unsigned
from bot.ports.client_ids import parse_purpose
from bot.ports.exchange import ExchangePort
from bot.ports.store import OrderRecord, RiskEvent, StorePort, open_at_end, storable

ZERO = Decimal(0)
# How long a positions answer may stay behind a protective order's fill before it is believed
# (:meth:`Reconciler._behind_the_fill`): one guard interval. A venue's lag is seconds; a
# position truly still held (a stop the venue answered filled in error, a position opened again
# by hand) is read, and protected, one job later than it would have been.
BEHIND_FOR_MS = 60_000
# How long after an order's outcome became unknown a lookup by client id that does not find it
# is not believed (:meth:`Reconciler.settle`): the send may still execute (Binance -1007 "send
# status unknown; execution status unknown"), and the venue's order query can trail its
# matching engine. One guard interval, a wide margin over the request's receive window (10 s,
# exchange-facts 8) within which the venue takes a request at all.
UNKNOWN_NOT_FOUND_MS = 60_000
EventSink = Callable[[int, EventKind, "str | None", TradingState, str], None]
T = TypeVar("T")


class Reconciler:
    def __init__(
        self,
        *,
        exchange: ExchangePort,
        store: StorePort,
        contracts: Sequence[ContractSpec],
        instruments: dict[str, Instrument],
        event: EventSink,
        fanout: Fanout = SEQUENTIAL,
        account: str | None = None,
    ) -> None:
        self.exchange = exchange
        self.store = store
        self.contracts = tuple(contracts)
        self.symbols = tuple(c.symbol for c in contracts)
        self.instruments = instruments
        self.event = event
        self.fanout = fanout
        # This bot's account.name: its own orders are those whose client id it prefixes
        # (parse_purpose; None: no order is taken for the bot's by its client id alone).
        self.account = account
        # Contracts holding a position the bot did not open: left alone until read flat. A
        # restart keeps those the last run found (the open ``foreign`` events).
        self.foreign: set[str] = set()
        self._foreign_at_start = open_foreign(
            store.recent_events(10_000, kinds=(EventKind.FOREIGN, EventKind.FOREIGN_GONE))
        )
        # The bot's positions: per contract, the signed quantity its own fills explain (see
        # judge). Counted per client id (a fill learnt twice, first in part, counts once).
        self._explained: dict[str, Decimal] = {}
        self._counted: dict[str, dict[str, Decimal]] = {}  # contract -> client id -> filled
        # Contracts this process has judged at least once (a contract not in it is judged on
        # what the store and the resting orders say of the last run: see _judge_at_start),
        # and the positions the last run recorded last.
        self._judged: set[str] = set()
        self._recorded_at_start = store.latest_positions()
        self._prev_positions: dict[str, Position] | None = None
        self._reported: set[tuple[str, str]] = set()
        # Contracts whose stop-loss (one of the bot's own orders) a reconcile found filled: the
        # venue closed them. It is known from the order records, so it also holds for a stop
        # that fired while the bot was down (the engine starts the re-entry cooldown). Like
        # ``took_profit`` and ``own_fills``, kept until the engine has named the exits
        # (:meth:`exits_named`): a reconcile the engine names none after (the runner's reading
        # for its alerts, after a job that left none of its own) may be the one that finds the
        # fill, and the order record, settled filled, never says so again: reset at every
        # reconcile, the next job named the bot's own stop-loss "closed outside the bot".
        self.stopped_out: set[str] = set()
        self._exits_named = True
        # contracts whose protective order found filled this reconcile was sized to the whole
        # position the last run recorded there (or closes the position): it closed that position
        self._exited_whole: set[str] = set()
        # Contracts whose take-profit (one of the bot's own orders) a reconcile found filled.
        self.took_profit: set[str] = set()
        # Contracts where a reconcile learnt that one of the bot's own orders that is not
        # protective (an entry, a reduction, a close) filled: a position change it explains is
        # the bot's doing, not an exit by the venue (an outcome unknown when it was sent, e.g.
        # the process died before recording it).
        self.own_fills: set[str] = set()
        # Contracts with an order of the bot's that can add exposure (an entry) whose outcome
        # is still unknown after this reconcile looked it up (:meth:`settle`): the engine sends
        # them no increase (it would double the entry if the first executed after all), and a
        # position there is not taken for foreign (it may be that order's fill).
        self.unsettled: set[str] = set()
        # Contracts the venue no longer lists (withdrawn; set by Engine.restrict), and the
        # account as the last reconcile read it (what they keep).
        self.unlisted: frozenset[str] = frozenset()
        # Asks the venue's market list about a contract a read of which the venue answered
        # "no such symbol" (live: the catalogue keeper's CatalogueKeeper.confirm_withdrawn,
        # which restricts it through Engine.restrict, so into ``unlisted``, when the venue no
        # longer trades it). None: such an answer fails the reading (the simulated and paper
        # venues know every configured contract).
        self.listing_check: Callable[[str], None] | None = None
        self._last: AccountView | None = None
        # The bot's protective orders found filled while the positions answer still held the
        # position as before the fill (:meth:`_behind_the_fill`), with when that was first seen.
        self._behind: dict[str, int] = {}

    def restore_exits(self, stopped: set[str], took: set[str]) -> None:
        """At start: the contracts whose stop-loss or take-profit the last run found filled and
        died before naming the exit (:func:`bot.engine.reentry.exits_at_start`), kept until
        the engine names the exits like a fill this process found."""
        if stopped or took:
            self.stopped_out = stopped
            self.took_profit = took
            self._exits_named = False

    def reconcile(self, now: int) -> AccountView:
        if self._exits_named:
            self.stopped_out = set()
            self.took_profit = set()
            self.own_fills = set()
            self._exits_named = False
        self._exited_whole = set()
        self.unsettled = set()
        for record in self.store.unresolved_orders():
            sym = record.request.symbol
            if sym not in self.unlisted:
                self._of_contract(now, sym, partial(self.settle, record, now))
        symbols, got = self._read_account(now)
        n = len(symbols)
        resting: dict[str, list[Order]] = dict(zip(symbols, got[:n], strict=True))
        positions = self.read_positions(now, resting, got[n])
        balance: Balance = got[n + 1]
        marks: dict[str, Decimal] = dict(zip(symbols, got[n + 2 :], strict=True))
        self._sync_closed_orders(now, resting, positions)
        for sym in self.unlisted:
            self._as_last_read_orders(sym, resting, marks, positions)
        self._prev_positions = dict(positions)
        self.judge(now, positions, resting)
        self._report_foreign_orders(now, resting)
        self._last = AccountView(
            balance.wallet, dict(positions), resting, marks, available=balance.available
        )
        return self._last

    def _read_account(self, now: int) -> tuple[tuple[str, ...], list[Any]]:
        """The listed contracts and, for them, one answer per read, in this order (each of the
        type its port method returns): each contract's open orders, the positions, the
        balance, each contract's mark. A contract the venue answers it has no such symbol for,
        confirmed withdrawn by its market list (:meth:`_withdrawn`), is read no more, and the
        reads are made again without it: the others' reading goes on in this job."""
        ex = self.exchange
        while True:
            symbols = self.listed
            # the reads are independent: read together (live) or in this order (simulation)
            reads: list[Callable[[], object]] = [
                partial(_naming, s, ex.fetch_open_orders) for s in symbols
            ]
            reads.append(partial(ex.fetch_positions, symbols))
            reads.append(ex.fetch_balance)
            reads.extend([partial(_naming, s, ex.fetch_mark_price) for s in symbols])
            try:
                return symbols, self.fanout.run_each(reads)
            except NoSuchSymbol as exc:
                if exc.symbol is None:
                    raise
                self._withdrawn(now, exc.symbol, exc)  # (raises unless unlisted now)

    def _of_contract(self, now: int, symbol: str, read: Callable[[], None]) -> None:
        """One read of ``symbol`` alone; not made, or its answer dropped, once the venue's
        answer that it has no such symbol is confirmed (:meth:`_withdrawn`)."""
        try:
            read()
        except NoSuchSymbol as exc:
            self._withdrawn(now, symbol, exc)

    def _withdrawn(self, now: int, symbol: str, exc: NoSuchSymbol) -> None:
        """The venue answered a read of ``symbol`` that it has no such symbol (``exc``): ask
        its market list at once (:attr:`listing_check`), whatever job is running, not at the
        next catalogue refresh (an hour away, a day on a daily policy). Withdrawn there, the
        contract is :attr:`unlisted` from now on (kept as last read, never flat) and the
        caller reads on without it. Still trading there, or no list to ask: ``exc`` is raised
        (a symbol the bot got wrong, an answer of the moment: a contract the venue lists is
        never dropped on one answer)."""
        check = self.listing_check
        if check is None:
            raise exc
        if symbol not in self.unlisted:
            check(symbol)
        if symbol not in self.unlisted:
            raise NoSuchSymbol(
                f"{exc} ({symbol}: the venue's market list does not confirm it withdrawn: not "
                "taken for delisted, the reading fails)",
                symbol,
            ) from exc
        self.event(
            now,
            EventKind.RECONCILE,
            symbol,
            TradingState.ACTIVE,
            f"{symbol}: the venue answers that it has no such symbol, and its market list "
            "confirms it withdrawn: read no more, its position and orders kept as last read "
            "(never flat); the other contracts are read on",
        )

    def exits_named(self) -> None:
        """The engine has named the exits from :attr:`stopped_out`, :attr:`took_profit` and
        :attr:`own_fills`: the next reconcile starts them anew (until then, each reconcile adds
        what it finds to them)."""
        self._exits_named = True

    @property
    def listed(self) -> tuple[str, ...]:
        """The contracts whose reads can be made (every one but the unlisted)."""
        if not self.unlisted:
            return self.symbols
        return tuple(s for s in self.symbols if s not in self.unlisted)

    def _as_last_read(self, sym: str, positions: dict[str, Position]) -> None:
        """An unlisted contract's position as the last reading held it (none: none held).
        Before this process's first reading (withdrawn before it), as the last run recorded
        it: unknown is never flat."""
        last = self._last
        if last is None:
            held = self.previous_positions().get(sym)
            if held is not None and held.is_open:
                positions[sym] = held
            return
        if sym in last.positions:
            positions[sym] = last.positions[sym]

    def _as_last_read_orders(
        self,
        sym: str,
        resting: dict[str, list[Order]],
        marks: dict[str, Decimal],
        positions: dict[str, Position],
    ) -> None:
        """An unlisted contract's resting orders and mark as the last reading held them.
        Before this process's first reading, a position the last run recorded is valued at
        its entry price (no mark of it can be read; the store keeps none to take)."""
        last = self._last
        if last is None:
            held = positions.get(sym)
            if held is not None and held.is_open:
                marks[sym] = held.entry_price
            return
        if sym in last.resting:
            resting[sym] = last.resting[sym]
        if sym in last.marks:
            marks[sym] = last.marks[sym]

    def settle(self, record: OrderRecord, now: int) -> None:
        """Look an order of unknown or open state up by its client id and record what the
        venue says of it (not found: it never reached the book).

        An order whose outcome became unknown less than :data:`UNKNOWN_NOT_FOUND_MS` ago and
        that the venue does not find stays unresolved: it may still execute (a resend or a new
        entry then filled twice). So does an intent still ``pending_submit`` (the process died
        while it was on the wire; its time is the intent's, before the send): a restart seconds
        later would otherwise cancel it and enter again. Until it is settled, its contract
        takes no increase (:attr:`unsettled`, for an order that can add exposure). Where the
        exchange's lookups are final (simulated and paper: its own), not found is believed at
        once."""
        found = self.exchange.fetch_order(record.request.symbol, record.client_id)
        sym = record.request.symbol
        if (
            found is None
            and record.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT)
            and now - record.updated_ms < UNKNOWN_NOT_FOUND_MS
            and not self.exchange.lookups_are_final()
        ):
            if record.request.can_add_exposure:
                self.unsettled.add(sym)
            self.event(
                now,
                EventKind.RECONCILE,
                sym,
                TradingState.ACTIVE,
                f"order {record.client_id} ({record.status}) not found on the exchange yet: "
                f"it may still execute, kept unresolved for {UNKNOWN_NOT_FOUND_MS // 1000} s "
                "after its send"
                + (", no increase on this contract meanwhile" if sym in self.unsettled else ""),
            )
            return
        if found is None:
            self.store.update_order(
                record.client_id, OrderStatus.CANCELED, now, error="not found on the exchange"
            )
            self.event(
                now,
                EventKind.RECONCILE,
                record.request.symbol,
                TradingState.ACTIVE,
                f"order {record.client_id} ({record.status}) not on the exchange",
            )
            return
        fill = self.fill_of(found, self.previous_positions().get(found.symbol), now)
        self.store.update_order(record.client_id, found.status, now, order=found, fill=fill)
        self.note_own_fill(found)
        if fill is not None and not record.request.purpose.is_protective:
            self.own_fills.add(sym)
        if found.status is OrderStatus.UNKNOWN and record.request.can_add_exposure:
            self.unsettled.add(sym)  # (the venue's answer does not say what became of it)

    def read_positions(
        self,
        now: int,
        resting: dict[str, list[Order]],
        answer: dict[str, Position] | None = None,
    ) -> dict[str, Position]:
        """Open positions, with every disappearance confirmed by the venue.

        A contract absent from the answer that the bot last saw open, or that still carries
        the bot's own protective orders, needs positive knowledge that it is flat before
        anything acts on it (cancelling its stop, buying it again). Without that, the answer is
        treated as unreadable.
        """
        listed = self.listed
        positions = self.exchange.fetch_positions(listed) if answer is None else answer
        before = self.previous_positions()
        for sym in listed:
            pos = positions.get(sym)
            if pos is not None and pos.is_open:
                continue
            held = before.get(sym)
            orders = resting.get(sym)
            if not orders and (held is None or not held.is_open):
                continue  # (the usual flat contract: nothing held, nothing guarded)
            guarded = [o for o in orders or () if o.purpose is not None and o.purpose.is_protective]
            if (held is None or not held.is_open) and not guarded:
                continue
            try:
                flat = self.exchange.confirm_flat(sym)
            except NoSuchSymbol as exc:
                self._withdrawn(now, sym, exc)
                continue  # (unlisted now: kept as last read, below)
            if flat:
                if held is not None and held.is_open:
                    self.event(
                        now,
                        EventKind.RECONCILE,
                        sym,
                        TradingState.ACTIVE,
                        f"position {held.qty} is gone (the venue confirms it flat)",
                    )
                continue
            last = f"last seen {held.qty}" if held is not None and held.is_open else "not seen"
            raise AccountUnreadable(
                f"{sym}: the positions answer omits a position the bot holds ({last}, "
                f"{len(guarded)} protective order(s) resting) and the venue does not confirm "
                "it flat"
            )
        if self.unlisted:
            positions = dict(positions)
            for sym in self.unlisted:
                self._as_last_read(sym, positions)
        return positions

    def _sync_closed_orders(
        self, now: int, resting: dict[str, list[Order]], positions: dict[str, Position]
    ) -> None:
        """Orders the store believes rest, but the exchange no longer lists: filled (a stop or a
        take-profit triggered), cancelled or expired there. The store learns what happened."""
        believed = self.store.open_orders()
        if not believed:
            return
        listed = {o.client_id for orders in resting.values() for o in orders}
        for record in believed:
            sym = record.request.symbol
            if record.client_id in listed or sym not in self.instruments or sym in self.unlisted:
                continue
            try:
                found = self.exchange.fetch_order(sym, record.client_id)
            except NoSuchSymbol as exc:
                self._withdrawn(now, sym, exc)
                continue  # (unlisted now: its orders kept as last read)
            if found is not None and found.status is OrderStatus.OPEN:
                # Jobs never overlap, so the order rested before the list was read: the list
                # answer is incomplete. Acting on it would place a second stop or miss one.
                raise AccountUnreadable(
                    f"{sym}: the open-orders answer omits {record.client_id}, which the venue "
                    "reports open when asked by client id"
                )
            status = found.status if found is not None else OrderStatus.CANCELED
            before = self.previous_positions().get(sym)
            if status is OrderStatus.FILLED and record.request.purpose.is_protective:
                self._behind_the_fill(now, record, before, positions.get(sym))
            self.store.update_order(
                record.client_id,
                status,
                now,
                order=found,
                error=None if found is not None else "gone from the exchange",
                fill=self.fill_of(found, before, now) if found is not None else None,
            )
            if found is not None:
                self.note_own_fill(found)
            if status is OrderStatus.FILLED and record.request.purpose.is_protective:
                if self._covers_recorded(record.request):
                    self._exited_whole.add(sym)
                if record.request.purpose is OrderPurpose.STOP_LOSS:
                    self.stopped_out.add(sym)
                elif record.request.purpose is OrderPurpose.TAKE_PROFIT:
                    self.took_profit.add(sym)
                price = found.average_price if found is not None else None
                self.event(
                    now,
                    EventKind.TRIGGERED,
                    sym,
                    TradingState.ACTIVE,
                    f"{record.request.purpose.name.lower()} {record.client_id} filled "
                    f"{found.filled if found else ''} at {price}",
                )

    def _behind_the_fill(
        self, now: int, record: OrderRecord, before: Position | None, held: Position | None
    ) -> None:
        """Raise :class:`AccountUnreadable` when the positions answer still holds the position
        exactly as before one of the bot's protective orders that the venue has just answered
        filled (by its client id): the positions endpoint is behind the order's own answer, as
        it can be after an entry. Believed, the account would hold the position twice over,
        the stop's loss in the wallet and again in the position's unrealised PnL: a loss limit
        crossed that was not (a halt, its flatten), a naked position that is not. The order
        stays open in the store, so the next job finds its fill again, past the lag.

        For :data:`BEHIND_FOR_MS` at most: an answer that still holds it then is believed
        (a position opened again to the same size by hand in between would otherwise never be
        read), with an event.
        """
        cid = record.client_id
        if before is None or held is None or not before.is_open or held.qty != before.qty:
            self._behind.pop(cid, None)
            return
        sym = record.request.symbol
        what = record.request.purpose.name.lower()
        since = self._behind.setdefault(cid, now)
        if now - since < BEHIND_FOR_MS:
            raise AccountUnreadable(
                f"{sym}: the {what} {cid} is filled (the venue's answer by client id) but the "
                f"positions answer still holds {held.qty} as before it: an answer behind the "
                "fill, read again at the next job"
            )
        del self._behind[cid]
        self.event(
            now,
            EventKind.RECONCILE,
            sym,
            TradingState.ACTIVE,
            f"the {what} {cid} is filled but the positions answer has held {held.qty}, as "
            f"before it, for {(now - since) // 1000} s: taken as the position held (opened "
            "again outside the bot?)",
        )

    def note_own_fill(self, order: Order) -> None:
        """Count what one of the bot's orders filled (its answer to the send, a lookup by
        client id, a resting order found filled) into the quantity its fills explain on the
        contract. Each order counts once, up to its latest filled quantity."""
        sym = order.symbol
        counted = self._counted.setdefault(sym, {})
        done = counted.get(order.client_id, ZERO)
        if order.filled <= done or sym in self.foreign:
            return
        counted[order.client_id] = order.filled
        explained = self._explained.get(sym, ZERO)
        self._explained[sym] = explained + order.side.sign * (order.filled - done)

    def judge(
        self, now: int, positions: dict[str, Position], resting: dict[str, list[Order]]
    ) -> None:
        """Whose each position is (see the module's docstring). A contract whose direction is
        ``follow`` adopts whatever it holds; one the venue no longer lists keeps its last
        judgement (it cannot be read)."""
        for spec in self.contracts:
            sym = spec.symbol
            if spec.direction == "follow" and self._was_foreign(sym):
                self.foreign.discard(sym)
                self._judged.add(sym)
                self._event_now(
                    now,
                    EventKind.FOREIGN_GONE,
                    sym,
                    "the position not opened by this bot is adopted: the contract's direction "
                    "is 'follow'",
                )
            if spec.direction == "follow" or sym in self.unlisted:
                continue
            pos = positions.get(sym)
            if pos is None or not pos.is_open:
                if self._was_foreign(sym):
                    self._event_now(
                        now,
                        EventKind.FOREIGN_GONE,
                        sym,
                        "the position not opened by this bot is flat: the contract is the "
                        "bot's to trade again",
                    )
                self.foreign.discard(sym)
                self._explained.pop(sym, None)
                self._counted.pop(sym, None)  # (what opens it again counts from flat)
                self._judged.add(sym)
                continue
            if sym in self.foreign:
                continue  # not the bot's until it is flat again (reported when found)
            if sym not in self._judged:
                self._judge_at_start(now, sym, pos, resting.get(sym, ()))
            elif sym not in self.unsettled:  # (else an entry of unknown outcome may be why)
                self._judge_held(now, sym, pos, resting.get(sym, ()))

    def _was_foreign(self, sym: str) -> bool:
        """Found not the bot's by this process, or by the last run (not judged here yet)."""
        return sym in self.foreign or (sym not in self._judged and sym in self._foreign_at_start)

    def _judge_held(self, now: int, sym: str, pos: Position, resting: Sequence[Order]) -> None:
        """An open position on a contract this process has judged before, against the
        quantity the bot's fills explain."""
        explained = self._explained.get(sym, ZERO)
        if explained == 0:  # from flat: the bot's fills opened none of it
            if self._guarded(pos, resting):
                self._explained[sym] = pos.qty
            else:
                self._not_the_bots(now, sym, pos, "opened from flat outside the bot")
        elif (explained > 0) != (pos.qty > 0):
            self._not_the_bots(
                now, sym, pos, f"reversed outside the bot (the bot's fills give {explained})"
            )
        elif abs(pos.qty) > abs(explained):
            self._event_now(
                now,
                EventKind.ADDED,
                sym,
                f"position {explained} -> {pos.qty}: added outside the bot (the bot's fills "
                f"give {explained}); the bot manages the whole position (one net position per "
                "contract): its stop covers all of it and its next decision sizes all of it, "
                "which may cut it back to its target",
            )
            self._explained[sym] = pos.qty
        else:
            self._explained[sym] = pos.qty  # (smaller: an exit the engine names)

    def _judge_at_start(self, now: int, sym: str, pos: Position, resting: Sequence[Order]) -> None:
        """The first reading of an open position in this process (a start, a restored
        database): the bot's when one of its protective orders rests on it, when the fills
        this reconcile just learnt explain it, or when the last run held it (its last
        recorded positions, on a contract the bot filled an entry on and the last run did not
        find foreign) or filled an entry there after it recorded them (a job that died between
        its entry and its record). An entry still unsettled: managed, judged again later.

        A recorded position the fills learnt now closed (its stop filled while no bot ran)
        leaves its other protective order resting, an orphan (the take-profit beside the
        stop): no evidence for a position found since, which the trader opened by hand."""
        explained = self._explained.get(sym, ZERO)
        closed = self._closed_while_down(sym, explained)
        own = (
            self._guarded(pos, resting, orphans_of_closed=closed)
            or (explained != 0 and (explained > 0) == (pos.qty > 0))
            or (sym not in self._foreign_at_start and self._held_by_last_run(pos, closed))
        )
        if own:
            self._judged.add(sym)
            self._explained[sym] = pos.qty
            if sym not in self.unsettled:  # (else an entry of unknown outcome may be why)
                self._added_while_down(now, sym, pos, closed, explained)
            return
        if sym in self.unsettled:
            return
        self._judged.add(sym)
        if sym in self._foreign_at_start:
            self.foreign.add(sym)  # (found and reported by the last run: still not the bot's)
            return
        self._not_the_bots(now, sym, pos, "found at start, none of the bot's fills explain it")

    def _added_while_down(
        self, now: int, sym: str, pos: Position, closed: bool, learnt: Decimal
    ) -> None:
        """A position of the bot's found at the start larger than what the last run recorded
        there and the bot's own fills since explain (those recorded filled after it, by a job
        that died before its record, and those this start learnt): added outside the bot while
        no bot ran, reported as an addition between two jobs is."""
        recorded = self._recorded_at_start
        if recorded is None or closed:
            return
        last = recorded_open(recorded, sym)
        if last is None or last.sign != pos.sign:
            return
        counted = self._counted.get(sym, {})
        expected = last.qty + learnt
        for r in self.store.filled_since(recorded[0]):
            req = r.request
            if req.symbol == sym and r.client_id not in counted:
                expected += req.side.sign * r.filled
        if expected == 0 or (expected > 0) != (pos.qty > 0) or abs(pos.qty) <= abs(expected):
            return
        told = self.store.recent_events(1_000, kinds=(EventKind.ADDED,), since_ms=recorded[0] + 1)
        if any(e.symbol == sym and f" -> {pos.qty}: " in e.reason for e in told):
            return  # (a start since the record reported this one: a crash loop says it once)
        self._event_now(
            now,
            EventKind.ADDED,
            sym,
            f"position {expected} -> {pos.qty}: added outside the bot while no bot ran (the "
            f"last run recorded {last.qty}, and the bot's fills since explain {expected}); the "
            "bot manages the whole position (one net position per contract): its stop covers "
            "all of it and its next decision sizes all of it, which may cut it back to its "
            "target",
        )

    def _closed_while_down(self, sym: str, learnt: Decimal) -> bool:
        """Whether the position the last run recorded on ``sym`` was closed while no bot ran:
        its stop or take-profit sized to all of it found filled at this start (a reduce-only
        order closes what is left whatever a hand reduction took first), or the bot's own fills
        learnt at this start (``learnt``, signed) closed or reversed it."""
        recorded = self._recorded_at_start
        if recorded is None:
            return False
        if sym in self._exited_whole:
            return True
        if learnt == 0:
            return False
        last = recorded_open(recorded, sym)
        if last is None:
            return False
        after = last.qty + learnt
        return after == 0 or (after > 0) != (last.qty > 0)

    def _covers_recorded(self, request: OrderRequest) -> bool:
        """Whether a protective order, found filled, closed the position the last run recorded
        on its contract: a close-position order, or one sized to all of it (reduce-only, it
        closes what is left whatever a hand reduction took first). One sized to part of it (a
        take-profit on the step part of a position off a coarser step) closes that part only."""
        recorded = self._recorded_at_start
        if recorded is None:
            return False
        last = recorded_open(recorded, request.symbol)
        if last is None:
            return False
        return request.close_position or (
            request.amount is not None and request.amount >= abs(last.qty)
        )

    def _held_by_last_run(self, pos: Position, closed: bool) -> bool:
        recorded = self._recorded_at_start
        if closed and recorded is not None:
            # the recorded position is gone: only an entry of the bot's since makes one
            return self.store.has_filled_entry(pos.symbol, since_ms=recorded[0])
        learnt = self._explained.get(pos.symbol, ZERO)
        return held_by_last_run(self.store, recorded, pos.symbol, pos.qty, learnt)

    def _guarded(
        self, pos: Position, resting: Sequence[Order], *, orphans_of_closed: bool = False
    ) -> bool:
        """One of the bot's own protective orders (its client id, for this account) rests on
        the side that closes ``pos``: the bot placed it for this position (a restored database
        that never recorded it, a stop placed while the database could not be written).

        ``orphans_of_closed``: the recorded position was closed while no bot ran; an order the
        database recorded before it recorded that position is an orphan of it (the
        take-profit beside the stop that filled) and proves nothing. One the database never
        recorded, or recorded later, was placed for a position since (a restored database
        older than the bot's last run): the bot's."""
        account = self.account
        if account is None:
            return False
        recorded = self._recorded_at_start
        for o in resting:
            purpose = parse_purpose(o.client_id, account)
            if purpose is None or not purpose.is_protective or o.side.sign == pos.sign:
                continue
            if orphans_of_closed and recorded is not None:
                known = self.store.get_order(o.client_id)
                if known is not None and known.created_ms <= recorded[0]:
                    continue
            return True
        return False

    def _not_the_bots(self, now: int, sym: str, pos: Position, how: str) -> None:
        self.foreign.add(sym)
        self._explained.pop(sym, None)
        self._event_now(
            now,
            EventKind.FOREIGN,
            sym,
            f"position {pos.qty} was not opened by this bot ({how}): left alone, no decision, "
            "no order and no stop of the bot's on it until it is flat again (set the "
            "contract's direction to 'follow' to manage it)",
        )

    def _report_foreign_orders(self, now: int, resting: dict[str, list[Order]]) -> None:
        """Orders the bot did not make: never touched, reported once."""
        for sym, orders in resting.items():
            for o in orders:
                if o.purpose is None:
                    self._report_once(
                        now,
                        ("order", o.client_id),
                        sym,
                        f"order {o.client_id} ({o.side} {o.amount}) is not this bot's: left alone",
                    )

    def _event_now(self, now: int, kind: EventKind, symbol: str, reason: str) -> None:
        self.event(now, kind, symbol, TradingState.ACTIVE, reason)

    def _report_once(self, now: int, key: tuple[str, str], symbol: str, reason: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.event(now, EventKind.RECONCILE, symbol, TradingState.ACTIVE, reason)

    def note_positions(self, positions: dict[str, Position]) -> None:
        """Positions as the engine left them after trading (the next reconcile's "before")."""
        self._prev_positions = dict(positions)

    def previous_positions(self) -> dict[str, Position]:
        """Positions as of the last reconcile (after a restart: as last recorded)."""
        if self._prev_positions is None:
            latest = self.store.latest_positions()
            self._prev_positions = {p.symbol: p for p in latest[1]} if latest else {}
        return self._prev_positions

    def fill_of(self, order: Order, before: Position | None, now: int) -> Fill | None:
        """The fill of one of the bot's orders, for the history (None if it did not fill).

        Price and quantity are the exchange's; the fee is the exchange's when the order reports
        it, otherwise the contract's taker rate; realised PnL is measured against the entry
        price of the position before the fill. The wallet the bot trades on is always the
        balance read from the exchange, never a sum of these records.
        """
        if order.status is not OrderStatus.FILLED or order.filled <= 0:
            return None
        price = order.average_price
        if price is None:
            return None
        inst = self.instruments[order.symbol]
        fee = order.fee
        if fee is None:  # estimated: charged, so rounded up
            fee = storable(order.filled * price * inst.taker_fee, ROUND_CEILING)
        realized = ZERO
        if before is not None and before.is_open and before.sign != order.side.sign:
            closed = min(order.filled, abs(before.qty))
            # (a short closed at its entry price: 1 * 0 * -1 is a signed zero, stored as "-0")
            realized = unsigned(storable(closed * (price - before.entry_price) * before.sign))
        return Fill(
            order.client_id,
            order.symbol,
            order.side,
            order.filled,
            price,
            fee,
            now,
            order.purpose,
            realized,
        )


def recorded_open(recorded: tuple[int, list[Position]], symbol: str) -> Position | None:
    """The open position on ``symbol`` in recorded positions (``store.latest_positions()``)."""
    return next((p for p in recorded[1] if p.symbol == symbol and p.is_open), None)


def held_by_last_run(
    store: StorePort,
    recorded: tuple[int, list[Position]] | None,
    symbol: str,
    qty: Decimal,
    learnt: Decimal = ZERO,
) -> bool:
    """Whether the last run held the position ``qty`` of ``symbol``: its last recorded
    positions (``recorded``, from ``store.latest_positions()``) hold the contract on the same
    side, on a contract the bot filled an entry on, or it filled an entry there after it
    recorded them (a job that died between its entry and its record). A position on the other
    side, or one where the last record is flat and no entry filled since, is not: the
    trader's, opened by hand. ``learnt``: the bot's own fills learnt since (signed; the start's
    reconcile settles the orders that ended while no bot ran): a recorded position they closed
    (its stop filled while the bot was down) is held no more, and a position found on that side
    was opened by hand after it. The start's reconcile and the start's check of contracts
    dropped from the configuration (``runtime/preflight.py``) judge by this one rule."""
    if recorded is None:  # (nothing recorded yet: every entry counts)
        return store.has_filled_entry(symbol)
    ts = recorded[0]
    last = recorded_open(recorded, symbol)
    if last is not None and (last.qty > 0) == (qty > 0):
        after = last.qty + learnt  # (the bot's own fills since: its stop, an exit, an entry)
        if after != 0 and (after > 0) == (qty > 0):
            return store.has_filled_entry(symbol)
    return store.has_filled_entry(symbol, since_ms=ts)


def open_foreign(events: Iterable[RiskEvent]) -> set[str]:
    """The contracts whose position was last found not the bot's (a ``foreign`` event not
    followed by a ``foreign_gone`` one; ``events`` as :func:`open_at_end` takes them): a
    restart keeps them foreign, and ``bot status`` and the dashboard show them so."""
    return open_at_end(events, EventKind.FOREIGN, EventKind.FOREIGN_GONE)


def _naming(symbol: str, read: Callable[[str], T]) -> T:
    """``read(symbol)``; a :class:`~bot.errors.NoSuchSymbol` it raises names ``symbol`` (the
    adapter's error mapping does not know which contract a request named)."""
    try:
        return read(symbol)
    except NoSuchSymbol as exc:
        if exc.symbol is None:
            exc.symbol = symbol
        raise
