"""The exchange port: what the engine needs from an exchange, in domain types only.

Implementations: :class:`bot.sim.exchange.SimulatedExchange` (simulation and paper trading) and the
ccxt adapter (live). Only the composition root chooses one. Methods raise the errors of
:mod:`bot.errors`; an order rejection is an :class:`~bot.errors.OrderRejected` subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import ForcedClose, Order, OrderRequest
from bot.domain.position import Balance, Position


class ExchangePort(Protocol):
    @property
    def close_position_stops(self) -> bool:
        """Whether the venue takes a stop that closes the whole position whatever its size
        (Binance ``closePosition=true`` STOP_MARKET): the only stop that can protect a position
        whose size no order can carry (off the quantity step, below the minimum)."""
        ...

    def instrument(self, symbol: str) -> Instrument:
        """Contract filters, fees and leverage brackets."""
        ...

    def fetch_balance(self) -> Balance: ...

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        """Open positions among ``symbols``; flat contracts are absent."""
        ...

    def confirm_flat(self, symbol: str) -> bool:
        """Positive knowledge that ``symbol`` holds no position.

        True only when a well-formed answer reports the contract with size zero. Used before the
        engine believes a position it held is gone (and cancels its protective orders): a
        position missing from a list is not proof that it is closed.
        """
        ...

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        """Resting orders, regular and conditional (stop-loss, take-profit) alike."""
        ...

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        """Look an order up by client id (open or recently closed); ``None`` if unknown."""
        ...

    def fetch_forced_closes(self, symbol: str, since_ms: int) -> list[ForcedClose] | None:
        """The venue's own closes of ``symbol`` (liquidations, auto-deleveraging) since
        ``since_ms``; ``None`` when the venue keeps no such record the adapter can read
        (unknown, never "none")."""
        ...

    def lookups_are_final(self) -> bool:
        """Whether a lookup by client id that finds nothing means the order never reached the
        book and never will. Simulated and paper: yes (the exchange is this process's own, and
        a request a dead process was sending died with it). Live: no: a request whose answer
        was lost may still execute (Binance -1007, "execution status unknown"), and the
        venue's order query can trail its matching engine, so "not found" right after a send
        is believed only a while later (:data:`bot.engine.reconcile.UNKNOWN_NOT_FOUND_MS`)."""
        ...

    def venue_now_ms(self) -> int:
        """The time now as the venue's clock reads it: live, the host's clock corrected by the
        offset last measured against the venue (each job after the wall clock stepped, and
        hourly); simulated and paper, the injected clock's. No request is made."""
        ...

    def fetch_mark_price(self, symbol: str) -> Decimal: ...

    def fetch_funding(self, symbol: str) -> FundingInfo: ...

    def fetch_leverage(self, symbol: str) -> Decimal: ...

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set the leverage setting; "not modified" is success."""
        ...

    def set_margin_mode(self, symbol: str, mode: MarginMode) -> None:
        """Set the margin mode; "already set" is success."""
        ...

    def place_order(self, request: OrderRequest) -> Order:
        """Send an order. Market orders come back filled (or raise)."""
        ...

    def cancel_order(self, symbol: str, client_id: str) -> Order | None:
        """Cancel a resting order; cancelling an order that is already gone is not an error.

        None when this request cancelled it (or the venue knows no such order); the order as
        the venue reports it when it had already ended (filled, expired, cancelled) before the
        cancel: a stop that fired as the bot moved it is a fill to record, not a cancel."""
        ...


class SpotWalletPort(Protocol):
    def fetch_spot_balances(self, assets: Sequence[str]) -> dict[str, Decimal]:
        """Total quantity held of each of ``assets`` in the spot wallet (0 if none held).

        Raises an :class:`~bot.errors.ExchangeError` when the wallet cannot be read: an
        unreadable balance is unknown, never zero."""
        ...
