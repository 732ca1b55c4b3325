"""The paper exchange: the simulated exchange made durable, so a paper account survives restarts.

Every change (an order, a cancel, a leverage or margin-mode setting, a price move that triggered
something) is followed by saving the whole account through ``persist``, as a real exchange would
remember it. A crash at any moment therefore loses nothing the exchange "accepted": after a
restart the engine finds every order by its client id, as it would on Binance. (While the state
database, where the account is kept, cannot be written, a write stands unsaved until the next
job saves the account: see ``PaperExchange._save_applied``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from loguru import logger

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import ForcedClose, Order, OrderRequest
from bot.domain.position import Balance, Position
from bot.errors import BotError
from bot.sim.exchange import SimulatedExchange
from bot.sim.paper_state import StateEncoder


class PaperExchange:
    """Implements :class:`bot.ports.exchange.ExchangePort` over a :class:`SimulatedExchange`."""

    def __init__(self, sim: SimulatedExchange, persist: Callable[[str], None]) -> None:
        self.sim = sim
        self._persist = persist
        self._encoder = StateEncoder()

    def save(self) -> None:
        self._persist(self._encoder.dump(self.sim))

    @property
    def close_position_stops(self) -> bool:
        return self.sim.close_position_stops

    # reads: straight through
    def instrument(self, symbol: str) -> Instrument:
        return self.sim.instrument(symbol)

    def fetch_balance(self) -> Balance:
        return self.sim.fetch_balance()

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        return self.sim.fetch_positions(symbols)

    def confirm_flat(self, symbol: str) -> bool:
        return self.sim.confirm_flat(symbol)

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        return self.sim.fetch_open_orders(symbol)

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        return self.sim.fetch_order(symbol, client_id)

    def fetch_forced_closes(self, symbol: str, since_ms: int) -> list[ForcedClose] | None:
        return self.sim.fetch_forced_closes(symbol, since_ms)

    def venue_now_ms(self) -> int:
        return self.sim.venue_now_ms()

    def lookups_are_final(self) -> bool:
        return self.sim.lookups_are_final()

    def fetch_mark_price(self, symbol: str) -> Decimal:
        return self.sim.fetch_mark_price(symbol)

    def fetch_funding(self, symbol: str) -> FundingInfo:
        return self.sim.fetch_funding(symbol)

    def fetch_leverage(self, symbol: str) -> Decimal:
        return self.sim.fetch_leverage(symbol)

    # writes: applied, then saved (a rejected write changes nothing and saves nothing)
    def set_leverage(self, symbol: str, leverage: int) -> None:
        self.sim.set_leverage(symbol, leverage)
        self._save_applied()

    def set_margin_mode(self, symbol: str, mode: MarginMode) -> None:
        self.sim.set_margin_mode(symbol, mode)
        self._save_applied()

    def place_order(self, request: OrderRequest) -> Order:
        order = self.sim.place_order(request)
        self._save_applied()
        return order

    def cancel_order(self, symbol: str, client_id: str) -> Order | None:
        ended = self.sim.cancel_order(symbol, client_id)
        self._save_applied()
        return ended

    def _save_applied(self) -> None:
        """Save the account after a write it applied. A save that fails (the state database,
        where the paper account is kept, cannot be written) does not undo the write nor hide
        its answer, as a venue's answer does not depend on the bot's database: the one order
        the bot sends then, a stop for a position without one (``Engine.protect_without_store``),
        stands and is known. The account is saved again before every job (``Runner``'s
        ``save_paper``), which fails the job while the database cannot be written."""
        try:
            self.save()
        except BotError as exc:
            logger.error(
                "paper account not saved after a write (saved again at the next job): {}: {}",
                type(exc).__name__,
                exc,
            )
