"""The project's exception tree.

::

    BotError
    ├── ConfigError              bad configuration or policy file (names file and key)
    ├── DataError                bad market data file (names file, row and what is wrong)
    └── ExchangeError            anything the exchange said or failed to say
        ├── TransientExchangeError   network, timeout, unavailable, rate limited: retry reads
        │   └── RateLimited           carries ``retry_after`` seconds when the venue sent one
        │                            (or the bot's own hold of a ban that names no end)
        ├── OutcomeUnknown           an order was sent and the reply is lost: look it up by id
        ├── AccountUnreadable        an account read (positions, orders, balance) cannot be
        │                            trusted: unknown, never zero; the tick sends nothing
        ├── ClockDrift               timestamp outside the receive window: resync, then retry
        └── PermanentExchangeError   never retried
            ├── AuthenticationFailed
            ├── NoSuchSymbol          a read naming a contract the venue answered it does not
            │                         know (Binance -1121, Bybit 10001 "symbol invalid")
            ├── NotSupported          the venue lacks a capability the bot needs
            │   └── UnknownMarket     it lists no market of a configured symbol
            └── OrderRejected         the venue refused an order (``code`` like Binance's)
                ├── InsufficientMargin
                ├── InvalidQuantity   below minimum, not on the step, below min notional
                ├── ReduceOnlyRejected a reduce-only order that would increase the position
                ├── DuplicateClientId
                └── OrderNotFound
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """Invalid configuration. The message names the file, the key path and the problem."""


class DataError(BotError):
    """Invalid market data. The message names the file, the row and the problem."""


class ExchangeError(BotError):
    """Base of exchange errors."""


class TransientExchangeError(ExchangeError):
    """May succeed if retried (network, timeout, exchange unavailable)."""


class RateLimited(TransientExchangeError):
    """``retry_after``: the seconds every request is held. ``end_named`` False: the venue said
    nothing of when its refusal ends (an IP ban answered without ``Retry-After``), and the
    hold is the least the venue documents, after which one request probes it."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, end_named: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.end_named = end_named


class OutcomeUnknown(ExchangeError):
    """An order request was sent but whether the exchange accepted it is unknown."""


class AccountUnreadable(ExchangeError):
    """An account read the engine would act on cannot be trusted.

    Raised for a reply that does not parse, carries nulls where numbers belong, or omits a
    position the bot holds without the venue confirming it flat. The account is *unknown*, never
    empty: a tick that meets this sends nothing (no entry, no cancel) and keeps every resting
    order.
    """


class ClockDrift(ExchangeError):
    """The request timestamp fell outside the exchange's receive window."""


class PermanentExchangeError(ExchangeError):
    """Retrying cannot help."""


class AuthenticationFailed(PermanentExchangeError):
    pass


class NoSuchSymbol(PermanentExchangeError):
    """The venue answered a request naming a contract that it has no such symbol (Binance
    ``-1121`` "Invalid symbol.", Bybit ``10001`` "params error: symbol invalid", ccxt's
    ``BadSymbol``): delisted, or a symbol the bot got wrong. ``symbol``: the contract the
    request named, when the caller knows it (the adapter's error mapping does not)."""

    def __init__(self, message: str, symbol: str | None = None) -> None:
        super().__init__(message)
        self.symbol = symbol


class NotSupported(PermanentExchangeError):
    pass


class UnknownMarket(NotSupported):
    """The venue lists no market ``symbol`` (a symbol the configuration names)."""

    def __init__(self, message: str, symbol: str) -> None:
        super().__init__(message)
        self.symbol = symbol


class OrderRejected(PermanentExchangeError):
    """The exchange refused the order. ``code`` mirrors the venue's code where there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class InsufficientMargin(OrderRejected):
    pass


class InvalidQuantity(OrderRejected):
    pass


class ReduceOnlyRejected(OrderRejected):
    pass


class DuplicateClientId(OrderRejected):
    pass


class OrderNotFound(OrderRejected):
    pass
