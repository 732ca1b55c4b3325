"""Orders as the bot asks for them, as the exchange reports them, and their fills."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from bot.domain.enums import (
    ForcedKind,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the bot sends. ``amount`` is in the base asset, ``None`` only with close_position."""

    client_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    purpose: OrderPurpose
    amount: Decimal | None
    reduce_only: bool
    trigger_price: Decimal | None = None
    price: Decimal | None = None
    close_position: bool = False

    def __post_init__(self) -> None:
        if not self.type.sent_by_the_bot:
            raise ValueError(f"{self.client_id}: the bot does not send {self.type} orders")
        if self.type.is_conditional and self.trigger_price is None:
            raise ValueError(f"{self.client_id}: {self.type} needs a trigger price")
        if self.amount is None and not self.close_position:
            raise ValueError(f"{self.client_id}: amount is required unless close_position")
        if self.amount is not None and self.amount <= 0:
            raise ValueError(f"{self.client_id}: amount must be > 0 (got {self.amount})")
        if self.purpose is not OrderPurpose.ENTRY and not (self.reduce_only or self.close_position):
            raise ValueError(f"{self.client_id}: a {self.purpose.name} order must be reduce-only")

    @property
    def can_add_exposure(self) -> bool:
        """Whether a fill of this order can open or increase a position (it is neither
        reduce-only nor close-position: the venue refuses or trims one of those that would)."""
        return not (self.reduce_only or self.close_position)


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the exchange knows it (resting, filled, cancelled...)."""

    client_id: str
    exchange_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    purpose: OrderPurpose | None  # None: not one of ours (foreign client id)
    amount: Decimal | None
    filled: Decimal
    status: OrderStatus
    reduce_only: bool
    trigger_price: Decimal | None = None
    price: Decimal | None = None
    average_price: Decimal | None = None
    close_position: bool = False
    timestamp_ms: int = 0
    fee: Decimal | None = None  # quote currency, when the exchange reports it with the order
    # The price that fires a conditional order as the venue reports it; None: not said, or
    # not readable (a stop placed by hand then does not count as protection: bot.risk.coverage)
    trigger_by: TriggerBy | None = None
    # Whether the venue carries this conditional order out whatever the account's free margin
    # when it triggers, as its reply says (Bybit ``closeOnTrigger``: without it, "if the margin
    # is insufficient after the conditional order is triggered, the order will be cancelled",
    # https://bybit-exchange.github.io/docs/v5/order/create-order; capabilities.BYBIT). None:
    # the venue has no such flag (Binance, the simulated venue: a triggered reduce-only order
    # is carried out), or its reply does not say. An own stop-loss reported False is replaced
    # (bot.engine.planner.plan_protection ``unflagged``).
    close_on_trigger: bool | None = None

    @property
    def is_open(self) -> bool:
        return self.status is OrderStatus.OPEN

    def with_status(self, status: OrderStatus) -> Order:
        return replace(self, status=status)


@dataclass(frozen=True, slots=True)
class ForcedClose:
    """A close the venue made on its own: a liquidation or an auto-deleveraging (ADL) order,
    as the venue records it (Binance ``/fapi/v1/forceOrders``, Bybit executions ``BustTrade``
    / ``AdlTrade``)."""

    symbol: str
    kind: ForcedKind
    qty: Decimal  # base asset, > 0
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``fee`` is positive when paid, in quote currency."""

    client_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    timestamp_ms: int
    purpose: OrderPurpose | None
    realized_pnl: Decimal
    liquidation: bool = False
