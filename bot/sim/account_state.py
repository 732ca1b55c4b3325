"""What the trigger and liquidation code reads and writes of the simulated exchange.

:mod:`bot.sim.triggers` and :mod:`bot.sim.account_watch` work on the simulated account that
:class:`bot.sim.exchange.SimulatedExchange` owns, and the exchange calls them to process its
bars. They name these Protocols, never the exchange class, so no module the exchange imports
refers back to it (``lint-imports`` checks it, type-checking imports included).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from bot.domain.orders import Fill, Order
from bot.sim.book import Book
from bot.sim.events import SimEvent
from bot.sim.slippage import SlippageModel


class BookAndMarks(Protocol):
    """An account's book and mark prices (what the account-path search reads)."""

    @property
    def book(self) -> Book: ...
    @property
    def marks(self) -> dict[str, Decimal]: ...


class SimAccount(BookAndMarks, Protocol):
    """The simulated account that triggers, liquidations and funding settle on."""

    # mutated in place (items set, appended, popped)
    @property
    def candle_range(self) -> dict[str, Decimal]: ...
    @property
    def events(self) -> list[SimEvent]: ...
    @property
    def fills(self) -> list[Fill]: ...
    @property
    def orders(self) -> dict[str, Order]: ...
    @property
    def resting(self) -> dict[str, dict[str, Order]]: ...
    @property
    def slippage_model(self) -> SlippageModel: ...

    # totals and the processed time, assigned
    fees_paid: Decimal
    funding_paid: Decimal
    insurance_shortfall: Decimal
    slippage_paid: Decimal
    processed_ms: int

    def slippage_parts(
        self, symbol: str, qty: Decimal, *, inside: bool
    ) -> tuple[Decimal, Decimal]: ...

    def pay_slippage(self, symbol: str, amount: Decimal) -> None: ...

    def cancel_close_position_orders(self, symbol: str) -> None: ...

    def _fill_market(
        self,
        order: Order,
        reference: Decimal,
        ts_ms: int,
        *,
        inside: bool = False,
        traded: tuple[Decimal, Decimal] | None = None,
    ) -> Order: ...
