"""In-memory store: used by the simulation (fast, nothing on disk) and as the test fake."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal

from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.domain.market import VenueRestriction
from bot.domain.orders import Fill, Order, OrderRequest
from bot.domain.position import Position
from bot.ports.store import (
    DecisionRecord,
    EquitySnapshot,
    Heartbeat,
    ListingReport,
    OrderRecord,
    RiskEvent,
    RiskMemory,
)

# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_UNRESOLVED = (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN)
_OPEN, _FILLED, _ENTRY = OrderStatus.OPEN, OrderStatus.FILLED, OrderPurpose.ENTRY


class MemoryStore:
    """Implements :class:`bot.ports.store.StorePort` with lists and dicts."""

    def __init__(self) -> None:
        self.sequences: dict[str, int] = {}
        self.orders: dict[str, OrderRecord] = {}
        self.fills: list[Fill] = []
        self.decisions: list[DecisionRecord] = []
        self.events: list[RiskEvent] = []
        self.equity: list[EquitySnapshot] = []
        self.positions: list[tuple[int, tuple[Position, ...]]] = []
        self.risk_memory: RiskMemory | None = None
        self.heartbeat: Heartbeat | None = None
        self.listings: dict[str, ListingReport] = {}
        self.refusals: dict[str, VenueRestriction] = {}
        self._unresolved: set[str] = set()  # kept incrementally: a scan per tick is O(orders)
        self._open: set[str] = set()
        self._entered: set[str] = set()  # symbols with a filled entry

    def next_sequence(self, name: str) -> int:
        value = self.sequences.get(name, 0) + 1
        self.sequences[name] = value
        return value

    def save_intent(self, request: OrderRequest, ts_ms: int) -> OrderRecord:
        if request.client_id in self.orders:
            raise ValueError(f"client order id {request.client_id} already recorded")
        record = OrderRecord(
            client_id=request.client_id,
            request=request,
            status=OrderStatus.PENDING_SUBMIT,
            created_ms=ts_ms,
            updated_ms=ts_ms,
        )
        self.orders[request.client_id] = record
        self._unresolved.add(request.client_id)
        return record

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
        record = self.orders[client_id]
        if fill is not None:
            self.fills.append(fill)
        if status in _UNRESOLVED:
            self._unresolved.add(client_id)
        else:
            self._unresolved.discard(client_id)
        if status is _OPEN:
            self._open.add(client_id)
        else:
            self._open.discard(client_id)
        if status is _FILLED and record.request.purpose is _ENTRY:
            self._entered.add(record.request.symbol)
        # Every field named (what dataclasses.replace would do, without its per-field
        # introspection: a few orders per tick).
        self.orders[client_id] = OrderRecord(
            client_id=record.client_id,
            request=record.request,
            status=status,
            created_ms=record.created_ms,
            updated_ms=ts_ms,
            exchange_id=order.exchange_id if order is not None else record.exchange_id,
            filled=order.filled if order is not None else record.filled,
            average_price=order.average_price if order is not None else record.average_price,
            error=error if error is not None else record.error,
        )

    def unresolved_orders(self) -> list[OrderRecord]:
        if not self._unresolved:
            return []  # the usual answer, read every tick
        return [self.orders[cid] for cid in sorted(self._unresolved)]

    def open_orders(self) -> list[OrderRecord]:
        if not self._open:
            return []
        return [self.orders[cid] for cid in sorted(self._open)]

    def has_filled_entry(self, symbol: str, since_ms: int | None = None) -> bool:
        if since_ms is None or symbol not in self._entered:
            return symbol in self._entered
        return any(
            r.request.symbol == symbol
            and r.request.purpose is OrderPurpose.ENTRY
            and r.status is OrderStatus.FILLED
            and r.updated_ms > since_ms
            for r in self.orders.values()
        )

    def filled_since(self, since_ms: int, *, settled: bool = False) -> list[OrderRecord]:
        return [
            r
            for r in self.orders.values()  # (in the order the intents were saved)
            if (r.updated_ms if settled else r.created_ms) > since_ms
            and r.filled > 0
            and r.client_id not in self._unresolved
        ]

    def get_order(self, client_id: str) -> OrderRecord | None:
        return self.orders.get(client_id)

    def record_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None:
        self.decisions.extend(records)

    def record_event(self, event: RiskEvent) -> None:
        self.events.append(event)

    def recent_events(
        self,
        limit: int,
        *,
        kinds: Collection[EventKind] | None = None,
        since_ms: int | None = None,
    ) -> list[RiskEvent]:
        wanted = [
            e
            for e in self.events
            if (kinds is None or e.kind in kinds) and (since_ms is None or e.ts_ms >= since_ms)
        ]
        # newest first, the later recorded first within one millisecond (as the SQL store's
        # ``ts_ms DESC, id DESC``): readers that replay incidents depend on that order
        return sorted(reversed(wanted[-limit:]), key=lambda e: e.ts_ms, reverse=True)

    def record_equity(self, snapshot: EquitySnapshot) -> None:
        self.equity.append(snapshot)

    def record_positions(self, ts_ms: int, positions: Sequence[Position]) -> None:
        self.positions.append((ts_ms, tuple(positions)))

    def record_tick(
        self,
        decisions: Sequence[DecisionRecord],
        positions: Sequence[Position],
        equity: EquitySnapshot,
        marks: Mapping[str, Decimal] | None = None,
    ) -> None:
        # What record_decisions, record_positions and record_equity do, without three calls
        # (every tick). The marks are for the status surfaces, which read the SQL store only.
        self.decisions.extend(decisions)
        self.positions.append((equity.ts_ms, tuple(positions)))
        self.equity.append(equity)

    def latest_positions(self) -> tuple[int, list[Position]] | None:
        if not self.positions:
            return None
        ts, positions = self.positions[-1]
        return ts, list(positions)

    def load_risk_memory(self) -> RiskMemory | None:
        return self.risk_memory

    def save_risk_memory(self, memory: RiskMemory, event: RiskEvent | None = None) -> None:
        self.risk_memory = memory
        if event is not None:
            self.record_event(event)

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat

    def last_heartbeat(self) -> Heartbeat | None:
        return self.heartbeat

    def listing_reports(self) -> dict[str, ListingReport]:
        return dict(self.listings)

    def record_listing_report(self, report: ListingReport, ts_ms: int) -> None:
        if report.withdrawn is None and report.settles_ms is None:
            self.listings.pop(report.symbol, None)
        else:
            self.listings[report.symbol] = report

    def venue_refusals(self) -> dict[str, VenueRestriction]:
        return dict(self.refusals)

    def record_venue_refusal(self, symbol: str, restriction: VenueRestriction, ts_ms: int) -> None:
        self.refusals[symbol] = restriction

    def forget_venue_refusal(self, symbol: str) -> None:
        self.refusals.pop(symbol, None)
