"""The store port: what the engine records and reads back.

Implementations: :class:`bot.store.memory.MemoryStore` (simulation and tests) and the SQLModel
store (paper and live, SQLite or PostgreSQL). Every ``save_*``/``record_*`` call is durable when it
returns (the SQL store commits): an order intent is therefore persisted before it is sent.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Protocol

from bot.domain.decision import Decision
from bot.domain.enums import EventKind, OrderStatus, TradingState
from bot.domain.market import VenueRestriction
from bot.domain.orders import Fill, Order, OrderRequest
from bot.domain.position import Position

# Every Decimal a store keeps has at most this many fractional digits (NUMERIC(38, 18) on
# PostgreSQL, the same limit on SQLite): the SQL store refuses a finer value rather than round it.
STORED_DECIMALS = 18
# ... and at most this many integer digits (the 38 - 18 of NUMERIC(38, 18); the SQL store's
# column type is defined from these two, bot/store/types.py). A value of STORED_LIMIT or more in
# magnitude cannot be stored: the exchange adapter refuses such a number in a venue's answer
# before the engine acts on it (a job that acted on it failed at its record, after its orders).
STORED_INTEGER_DIGITS = 20
STORED_LIMIT = Decimal(10) ** STORED_INTEGER_DIGITS
_STORED_STEP = Decimal(1).scaleb(-STORED_DECIMALS)


def storable(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """A value the bot computes from the venue's numbers (equity, a fee estimate, a realised
    PnL) to the digits a store keeps; unchanged when it fits. A product or sum of the venue's
    numbers adds their digits up (a 16-decimal average entry price, as a venue prints a double,
    times a 0.001 step has 19): refused by the SQL store, the job that computed it failed, and
    the next one again, before any stop was placed or any loss limit acted."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -STORED_DECIMALS:
        return value
    # (a context wide enough for every integer digit: the default 28 would refuse 1e10)
    return value.quantize(_STORED_STEP, rounding=rounding, context=Context(prec=80))


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order intent and what became of it."""

    client_id: str
    request: OrderRequest
    status: OrderStatus
    created_ms: int
    updated_ms: int
    exchange_id: str | None = None
    filled: Decimal = Decimal(0)
    average_price: Decimal | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskEvent:
    """A state change, a denial or a reconciliation discrepancy, with its reason."""

    ts_ms: int
    kind: EventKind
    symbol: str | None
    state: TradingState
    reason: str


def open_at_end(events: Iterable[RiskEvent], opened: EventKind, ended: EventKind) -> set[str]:
    """The contracts whose incident (an ``opened`` event not followed by an ``ended`` one) is
    still open at the end of ``events``, given newest first as ``recent_events`` gives them
    (within one millisecond the later recorded first: an incident opened and ended by one job
    keeps its order; any order across milliseconds)."""
    out: set[str] = set()
    for e in sorted(reversed(list(events)), key=lambda e: e.ts_ms):  # (oldest first)
        if e.symbol is None:
            continue
        if e.kind is opened:
            out.add(e.symbol)
        elif e.kind is ended:
            out.discard(e.symbol)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class EquitySnapshot:
    ts_ms: int
    wallet: Decimal
    unrealized_pnl: Decimal
    equity: Decimal
    state: TradingState
    # True: recorded by a decision tick. False: by a job that read the account without deciding
    # (a guard), so that the status surfaces show the account as last read, not as the last
    # decision left it; "last tick" and the simulation's report read the decisions' only.
    decision: bool = True


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    tick_id: str
    ts_ms: int
    decision: Decision
    current_qty: Decimal
    current_leverage: Decimal
    mark_price: Decimal
    volatility: Decimal


@dataclass(frozen=True, slots=True)
class RiskMemory:
    """Risk state that must survive restarts (peak equity, day start equity, trading state)."""

    state: TradingState
    state_reason: str
    peak_equity: Decimal
    day_start_ms: int
    day_start_equity: Decimal
    sticky: bool  # True: only a person (``bot resume``) may leave this state
    flatten: bool = True  # halted: close every position (False: hold them, stops resting)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last job (tick, guard, funding, rollover) that completed without raising, and when
    (the runner's clock): the bot's liveness, however long its decision interval."""

    ts_ms: int
    job: str


@dataclass(frozen=True, slots=True)
class ListingReport:
    """What the live bot last reported (a ``catalogue`` event and its alert) of one contract's
    listing: ``withdrawn``, why the venue does not trade it (None: it trades); ``settles_ms``,
    the settlement the venue scheduled (None: none). Kept across restarts, so that a restart
    reports only what changed since, not again what a crash loop already said every minute."""

    symbol: str
    withdrawn: str | None = None
    settles_ms: int | None = None


class StorePort(Protocol):
    def next_sequence(self, name: str) -> int:
        """Return the next value of a durable counter (1, 2, ...); used for client order ids."""
        ...

    def save_intent(self, request: OrderRequest, ts_ms: int) -> OrderRecord:
        """Persist an order intent as ``pending_submit`` before it is sent."""
        ...

    def update_order(
        self,
        client_id: str,
        status: OrderStatus,
        ts_ms: int,
        *,
        order: Order | None = None,
        error: str | None = None,
        fill: Fill | None = None,
    ) -> None:
        """Record what became of an order; ``fill`` is written in the same transaction."""
        ...

    def unresolved_orders(self) -> list[OrderRecord]:
        """Intents whose outcome is not known (``pending_submit`` or ``unknown``)."""
        ...

    def get_order(self, client_id: str) -> OrderRecord | None: ...

    def open_orders(self) -> list[OrderRecord]:
        """Intents the store believes are resting on the exchange (status ``open``)."""
        ...

    def has_filled_entry(self, symbol: str, since_ms: int | None = None) -> bool:
        """Whether the bot ever opened or increased a position in ``symbol`` (with
        ``since_ms``: in an order whose fill was recorded after that time). Read at a start,
        where the bot knows nothing yet of the positions it holds (see
        :meth:`bot.engine.reconcile.Reconciler.judge`)."""
        ...

    def filled_since(self, since_ms: int, *, settled: bool = False) -> list[OrderRecord]:
        """The bot's orders sent after ``since_ms`` (their intent's time) that filled, in whole
        or in part, as recorded, oldest first; orders of unknown outcome (``pending_submit``,
        ``unknown``) are left out, the reconcile looks them up first. Read at a start: what the
        bot itself changed after the positions it recorded last (a job that died between its
        orders and its record; see :func:`bot.engine.reentry.held_at_start`).

        ``settled``: those whose record was last updated after ``since_ms`` instead, whenever
        sent (a stop placed before the positions recorded last and found filled after them:
        :func:`bot.engine.reentry.exits_at_start`)."""
        ...

    def record_fill(self, fill: Fill) -> None: ...

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None: ...

    def record_event(self, event: RiskEvent) -> None: ...

    def recent_events(
        self,
        limit: int,
        *,
        kinds: Collection[EventKind] | None = None,
        since_ms: int | None = None,
    ) -> list[RiskEvent]:
        """The ``limit`` most recent events, newest first; only those of ``kinds`` and at or
        after ``since_ms`` when given (so that a restart finds its cooldowns however many other
        events came after them)."""
        ...

    def record_equity(self, snapshot: EquitySnapshot) -> None: ...

    def record_positions(self, ts_ms: int, positions: Sequence[Position]) -> None: ...

    def record_tick(
        self,
        decisions: Sequence[DecisionRecord],
        positions: Sequence[Position],
        equity: EquitySnapshot,
        marks: Mapping[str, Decimal] | None = None,
    ) -> None:
        """A tick's decisions, open positions and equity (at ``equity.ts_ms``), all or none;
        ``marks``: the mark each position was valued at (its row keeps it, for the status
        surfaces). A job that read the account without deciding (a guard) records its reading
        so: no decision, ``equity.decision`` false."""
        ...

    def latest_positions(self) -> tuple[int, list[Position]] | None:
        """The last recorded positions ``(ts_ms, positions)``, None before the first: the
        newest reading of any job that recorded one (a tick or a guard)."""
        ...

    def load_risk_memory(self) -> RiskMemory | None: ...

    def save_risk_memory(self, memory: RiskMemory, event: RiskEvent | None = None) -> None:
        """Save the memory and, when given, the event that says why it changed, all or none:
        a process killed between the two would leave a state change never recorded, and its
        alert never sent."""
        ...

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Replace the last heartbeat (one row: one small write per job, never growing)."""
        ...

    def last_heartbeat(self) -> Heartbeat | None:
        """The last heartbeat recorded; None before the first (or on a bot older than it)."""
        ...

    def listing_reports(self) -> dict[str, ListingReport]:
        """What was last reported of each contract's listing (see :class:`ListingReport`);
        a contract absent was last reported trading with no settlement scheduled."""
        ...

    def record_listing_report(self, report: ListingReport, ts_ms: int) -> None:
        """Replace what was reported of ``report.symbol`` (a contract trading with no settlement
        scheduled is kept as no row)."""
        ...

    def venue_refusals(self) -> dict[str, VenueRestriction]:
        """The contracts the venue refused an order on while withdrawn, each with the
        restriction it was withdrawn under (no order is sent on it while that holds)."""
        ...

    def record_venue_refusal(self, symbol: str, restriction: VenueRestriction, ts_ms: int) -> None:
        """The venue refused an order on ``symbol``, withdrawn under ``restriction``."""
        ...

    def forget_venue_refusal(self, symbol: str) -> None:
        """``symbol``'s restriction changed: its orders are sent again (a no-op if none)."""
        ...
