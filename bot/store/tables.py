"""SQLModel tables and the mappers between rows and the domain/record dataclasses.

The domain never imports this module. Enums are stored as their string values (no database enum
types, so adding a member needs no migration). Timestamps are integer epoch milliseconds
(``*_ms``, ccxt's unit). Money, prices and quantities use :class:`~bot.store.types.ExactDecimal`.
Changing a table here needs a new Alembic revision in ``bot/store/migrations/versions``; a test
fails while models and migrations differ.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, String, Text
from sqlalchemy import true as sa_true
from sqlmodel import Field, SQLModel

from bot import strict_json
from bot.domain.decision import Decision
from bot.domain.enums import (
    EventKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
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
from bot.store.types import ExactDecimal

# Short enum/identifier columns. Lengths are generous; PostgreSQL enforces them, SQLite does not.
_ENUM = 32
_NAME = 128


def _ms(*, index: bool = False) -> Any:
    """A BIGINT epoch-milliseconds field (2**31 ms is only 25 days)."""
    return Field(sa_type=BigInteger, index=index)


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    started_ms: int = _ms()
    mode: str = Field(sa_type=String(_ENUM))
    config_path: str = Field(sa_type=Text)
    policy_name: str = Field(sa_type=String(_NAME))
    version: str = Field(sa_type=String(_ENUM))
    # The venue account a live run traded (bootstrap.venue_of); None for paper runs (0006).
    venue: str | None = Field(default=None, sa_type=Text)


class OrderRow(SQLModel, table=True):
    """An order intent and its lifecycle; ``raw`` is JSON of the last exchange view of it."""

    __tablename__ = "orders"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(sa_type=String(_NAME), unique=True)
    symbol: str = Field(sa_type=String(_NAME))
    side: str = Field(sa_type=String(_ENUM))
    type: str = Field(sa_type=String(_ENUM))
    purpose: str = Field(sa_type=String(_ENUM))
    amount: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    reduce_only: bool
    trigger_price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    close_position: bool = False
    status: str = Field(sa_type=String(_ENUM), index=True)
    exchange_id: str | None = Field(default=None, sa_type=String(_NAME))
    filled: Decimal = Field(sa_type=ExactDecimal)
    average_price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    error: str | None = Field(default=None, sa_type=Text)
    created_ms: int = _ms()
    updated_ms: int = _ms(index=True)
    raw: str | None = Field(default=None, sa_type=Text)


class FillRow(SQLModel, table=True):
    """One execution. ``client_id`` is no foreign key: liquidations and foreign orders fill too."""

    __tablename__ = "fills"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(sa_type=String(_NAME), index=True)
    symbol: str = Field(sa_type=String(_NAME))
    side: str = Field(sa_type=String(_ENUM))
    qty: Decimal = Field(sa_type=ExactDecimal)
    price: Decimal = Field(sa_type=ExactDecimal)
    fee: Decimal = Field(sa_type=ExactDecimal)
    ts_ms: int = _ms(index=True)
    purpose: str | None = Field(default=None, sa_type=String(_ENUM))
    realized_pnl: Decimal = Field(sa_type=ExactDecimal)
    liquidation: bool = False


class PositionSnapshotRow(SQLModel, table=True):
    """One call of ``record_positions``: a header row, so that "flat at ts" is recorded too."""

    __tablename__ = "position_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = _ms(index=True)


class PositionRow(SQLModel, table=True):
    __tablename__ = "positions"

    id: int | None = Field(default=None, primary_key=True)
    snapshot_id: int = Field(foreign_key="position_snapshots.id", index=True)
    symbol: str = Field(sa_type=String(_NAME))
    qty: Decimal = Field(sa_type=ExactDecimal)
    entry_price: Decimal = Field(sa_type=ExactDecimal)
    leverage: Decimal = Field(sa_type=ExactDecimal)
    margin_mode: str = Field(sa_type=String(_ENUM))
    isolated_margin: Decimal = Field(sa_type=ExactDecimal)
    liquidation_price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    # The mark the position was valued at when recorded (None: recorded before revision 0007)
    mark_price: Decimal | None = Field(default=None, sa_type=ExactDecimal)


class EquityRow(SQLModel, table=True):
    __tablename__ = "equity_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = _ms(index=True)
    wallet: Decimal = Field(sa_type=ExactDecimal)
    unrealized_pnl: Decimal = Field(sa_type=ExactDecimal)
    equity: Decimal = Field(sa_type=ExactDecimal)
    state: str = Field(sa_type=String(_ENUM))
    # False: a guard's reading of the account, not a decision tick's (EquitySnapshot.decision)
    decision: bool = Field(default=True, sa_column_kwargs={"server_default": sa_true()})


class DecisionRow(SQLModel, table=True):
    __tablename__ = "decisions"

    id: int | None = Field(default=None, primary_key=True)
    tick_id: str = Field(sa_type=String(_NAME), index=True)
    ts_ms: int = _ms(index=True)
    symbol: str = Field(sa_type=String(_NAME))
    direction: int
    target_leverage: Decimal = Field(sa_type=ExactDecimal)
    target_qty: Decimal = Field(sa_type=ExactDecimal)
    stop_loss: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    take_profit: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    reason: str = Field(sa_type=Text)
    allow_increase: bool = True
    current_qty: Decimal = Field(sa_type=ExactDecimal)
    current_leverage: Decimal = Field(sa_type=ExactDecimal)
    mark_price: Decimal = Field(sa_type=ExactDecimal)
    volatility: Decimal = Field(sa_type=ExactDecimal)


class RiskEventRow(SQLModel, table=True):
    __tablename__ = "risk_events"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = _ms(index=True)
    kind: str = Field(sa_type=String(_ENUM))
    symbol: str | None = Field(default=None, sa_type=String(_NAME))
    state: str = Field(sa_type=String(_ENUM))
    reason: str = Field(sa_type=Text)


class AlertRow(SQLModel, table=True):
    """An alert sent (or attempted); ``key`` groups repeats so a notifier can rate-limit them."""

    __tablename__ = "alerts"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = _ms()
    key: str = Field(sa_type=String(_NAME), index=True)
    severity: str = Field(sa_type=String(_ENUM))
    message: str = Field(sa_type=Text)
    delivered: bool = False


class AlertDeliveryRow(SQLModel, table=True):
    """An alert owed to one destination of ``runtime.alert_urls`` (written with the alert, for
    each destination it was queued for), and when it reached it (NULL: not yet). A destination
    is named by a digest of its URL (``bot.alerts.destination_id``): the URL carries its
    credentials, which no stored text may show. An alert without a row was owed to none: a
    repeat within the dedup window, no destination configured, or recorded before these rows
    (revision 0008)."""

    __tablename__ = "alert_deliveries"

    alert_id: int = Field(foreign_key="alerts.id", primary_key=True)
    destination: str = Field(sa_type=String(_ENUM), primary_key=True)
    delivered_ms: int | None = Field(default=None, sa_type=BigInteger, index=True)


class RiskMemoryRow(SQLModel, table=True):
    """The single row of risk state that survives restarts (``id`` is always 1)."""

    __tablename__ = "risk_memory"
    __table_args__ = (CheckConstraint("id = 1", name="ck_risk_memory_single_row"),)

    id: int = Field(default=1, primary_key=True)
    state: str = Field(sa_type=String(_ENUM))
    state_reason: str = Field(sa_type=Text)
    peak_equity: Decimal = Field(sa_type=ExactDecimal)
    day_start_ms: int = _ms()
    day_start_equity: Decimal = Field(sa_type=ExactDecimal)
    sticky: bool
    flatten: bool = Field(sa_column_kwargs={"server_default": sa_true()})


class HeartbeatRow(SQLModel, table=True):
    """The single row of the last job completed (``id`` is always 1): replaced by every job,
    so the bot's liveness costs one small write per job and the table never grows."""

    __tablename__ = "heartbeat"
    __table_args__ = (CheckConstraint("id = 1", name="ck_heartbeat_single_row"),)

    id: int = Field(default=1, primary_key=True)
    ts_ms: int = _ms()
    job: str = Field(sa_type=String(_ENUM))


class DatabaseIdentityRow(SQLModel, table=True):
    """The single row naming this database (``id`` is always 1): a random ``database_id``
    written by the migration that creates the table, so with the schema. A running bot compares
    it before each job with the one it read at open: tables dropped and created again under it
    (``bot db upgrade`` after a drop, an empty dump restored) carry a new id, and the bot stops
    writing there instead of carrying on as if the empty database held its state."""

    __tablename__ = "database_identity"
    __table_args__ = (CheckConstraint("id = 1", name="ck_database_identity_single_row"),)

    id: int = Field(default=1, primary_key=True)
    database_id: str = Field(sa_type=String(_ENUM))


class ListingReportRow(SQLModel, table=True):
    """What the live bot last reported of one contract's listing (``ListingReport``): a
    restart compares the venue's listing with it and reports only what changed. No row: last
    reported trading, no settlement scheduled."""

    __tablename__ = "listing_reports"

    symbol: str = Field(sa_type=String(_NAME), primary_key=True)
    withdrawn: str | None = Field(default=None, sa_type=Text)
    settles_ms: int | None = Field(default=None, sa_type=BigInteger)
    ts_ms: int = _ms()


class VenueRefusalRow(SQLModel, table=True):
    """A contract the venue refused an order on while withdrawn, with the restriction it was
    withdrawn under (``reason``, ``withdrawn``, ``listed`` of ``VenueRestriction``): no order
    is sent on it while that restriction holds, across restarts."""

    __tablename__ = "venue_refusals"

    symbol: str = Field(sa_type=String(_NAME), primary_key=True)
    reason: str = Field(sa_type=Text)
    withdrawn: bool
    listed: bool
    ts_ms: int = _ms()


class SequenceRow(SQLModel, table=True):
    __tablename__ = "sequences"

    name: str = Field(sa_type=String(_NAME), primary_key=True)
    value: int = Field(sa_type=BigInteger)


class PaperStateRow(SQLModel, table=True):
    """The paper exchange's simulated account, one JSON document per account name."""

    __tablename__ = "paper_state"

    name: str = Field(sa_type=String(_NAME), primary_key=True)
    payload: str = Field(sa_type=Text)
    updated_ms: int = _ms()


class CommandRow(SQLModel, table=True):
    """An operator command (``bot halt``/``bot resume``) waiting for the running bot."""

    __tablename__ = "commands"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = _ms()
    kind: str = Field(sa_type=String(_ENUM))
    args: str = Field(sa_type=Text)
    consumed: bool = Field(default=False, index=True)


# --- mappers -------------------------------------------------------------------------------------


def order_row(request: OrderRequest, ts_ms: int) -> OrderRow:
    return OrderRow(
        client_id=request.client_id,
        symbol=request.symbol,
        side=request.side.value,
        type=request.type.value,
        purpose=request.purpose.value,
        amount=request.amount,
        reduce_only=request.reduce_only,
        trigger_price=request.trigger_price,
        price=request.price,
        close_position=request.close_position,
        status=OrderStatus.PENDING_SUBMIT.value,
        filled=Decimal(0),
        created_ms=ts_ms,
        updated_ms=ts_ms,
    )


def order_record(row: OrderRow) -> OrderRecord:
    request = OrderRequest(
        client_id=row.client_id,
        symbol=row.symbol,
        side=OrderSide(row.side),
        type=OrderType(row.type),
        purpose=OrderPurpose(row.purpose),
        amount=row.amount,
        reduce_only=row.reduce_only,
        trigger_price=row.trigger_price,
        price=row.price,
        close_position=row.close_position,
    )
    return OrderRecord(
        client_id=row.client_id,
        request=request,
        status=OrderStatus(row.status),
        created_ms=row.created_ms,
        updated_ms=row.updated_ms,
        exchange_id=row.exchange_id,
        filled=row.filled,
        average_price=row.average_price,
        error=row.error,
    )


def order_json(order: Order) -> str:
    """JSON of the exchange's view of an order (Decimals as exact strings)."""
    return strict_json.dumps(asdict(order), default=str, sort_keys=True)


def fill_row(fill: Fill) -> FillRow:
    return FillRow(
        client_id=fill.client_id,
        symbol=fill.symbol,
        side=fill.side.value,
        qty=fill.qty,
        price=fill.price,
        fee=fill.fee,
        ts_ms=fill.timestamp_ms,
        purpose=fill.purpose.value if fill.purpose is not None else None,
        realized_pnl=fill.realized_pnl,
        liquidation=fill.liquidation,
    )


def fill_domain(row: FillRow) -> Fill:
    return Fill(
        client_id=row.client_id,
        symbol=row.symbol,
        side=OrderSide(row.side),
        qty=row.qty,
        price=row.price,
        fee=row.fee,
        timestamp_ms=row.ts_ms,
        purpose=OrderPurpose(row.purpose) if row.purpose is not None else None,
        realized_pnl=row.realized_pnl,
        liquidation=row.liquidation,
    )


def position_row(snapshot_id: int, pos: Position, mark: Decimal | None = None) -> PositionRow:
    return PositionRow(
        snapshot_id=snapshot_id,
        symbol=pos.symbol,
        qty=pos.qty,
        entry_price=pos.entry_price,
        leverage=pos.leverage,
        margin_mode=pos.margin_mode.value,
        isolated_margin=pos.isolated_margin,
        liquidation_price=pos.liquidation_price,
        mark_price=mark,
    )


def position_domain(row: PositionRow) -> Position:
    return Position(
        symbol=row.symbol,
        qty=row.qty,
        entry_price=row.entry_price,
        leverage=row.leverage,
        margin_mode=MarginMode(row.margin_mode),
        isolated_margin=row.isolated_margin,
        liquidation_price=row.liquidation_price,
    )


def equity_row(snap: EquitySnapshot) -> EquityRow:
    return EquityRow(
        ts_ms=snap.ts_ms,
        wallet=snap.wallet,
        unrealized_pnl=snap.unrealized_pnl,
        equity=snap.equity,
        state=snap.state.value,
        decision=snap.decision,
    )


def equity_record(row: EquityRow) -> EquitySnapshot:
    return EquitySnapshot(
        ts_ms=row.ts_ms,
        wallet=row.wallet,
        unrealized_pnl=row.unrealized_pnl,
        equity=row.equity,
        state=TradingState(row.state),
        decision=row.decision,
    )


def decision_row(rec: DecisionRecord) -> DecisionRow:
    d = rec.decision
    return DecisionRow(
        tick_id=rec.tick_id,
        ts_ms=rec.ts_ms,
        symbol=d.symbol,
        direction=d.direction,
        target_leverage=d.target_leverage,
        target_qty=d.target_qty,
        stop_loss=d.stop_loss,
        take_profit=d.take_profit,
        reason=d.reason,
        allow_increase=d.allow_increase,
        current_qty=rec.current_qty,
        current_leverage=rec.current_leverage,
        mark_price=rec.mark_price,
        volatility=rec.volatility,
    )


def decision_record(row: DecisionRow) -> DecisionRecord:
    decision = Decision(
        symbol=row.symbol,
        direction=row.direction,
        target_leverage=row.target_leverage,
        target_qty=row.target_qty,
        stop_loss=row.stop_loss,
        take_profit=row.take_profit,
        reason=row.reason,
        allow_increase=row.allow_increase,
    )
    return DecisionRecord(
        tick_id=row.tick_id,
        ts_ms=row.ts_ms,
        decision=decision,
        current_qty=row.current_qty,
        current_leverage=row.current_leverage,
        mark_price=row.mark_price,
        volatility=row.volatility,
    )


def event_row(event: RiskEvent) -> RiskEventRow:
    return RiskEventRow(
        ts_ms=event.ts_ms,
        kind=event.kind,
        symbol=event.symbol,
        state=event.state.value,
        reason=event.reason,
    )


def event_record(row: RiskEventRow) -> RiskEvent:
    return RiskEvent(
        ts_ms=row.ts_ms,
        kind=EventKind(row.kind),
        symbol=row.symbol,
        state=TradingState(row.state),
        reason=row.reason,
    )


def risk_memory_values(memory: RiskMemory) -> dict[str, object]:
    """Column values of the single risk-memory row (without ``id``)."""
    return {
        "state": memory.state.value,
        "state_reason": memory.state_reason,
        "peak_equity": memory.peak_equity,
        "day_start_ms": memory.day_start_ms,
        "day_start_equity": memory.day_start_equity,
        "sticky": memory.sticky,
        "flatten": memory.flatten,
    }


def risk_memory_record(row: RiskMemoryRow) -> RiskMemory:
    return RiskMemory(
        state=TradingState(row.state),
        state_reason=row.state_reason,
        peak_equity=row.peak_equity,
        day_start_ms=row.day_start_ms,
        day_start_equity=row.day_start_equity,
        sticky=row.sticky,
        flatten=row.flatten,
    )


def heartbeat_record(row: HeartbeatRow) -> Heartbeat:
    return Heartbeat(ts_ms=row.ts_ms, job=row.job)


def listing_report(row: ListingReportRow) -> ListingReport:
    return ListingReport(symbol=row.symbol, withdrawn=row.withdrawn, settles_ms=row.settles_ms)


def venue_restriction(row: VenueRefusalRow) -> VenueRestriction:
    return VenueRestriction(row.reason, withdrawn=row.withdrawn, listed=row.listed)
