"""Enumerations shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the sign of the position change."""
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT_MARKET = "take_profit_market"
    # Conditional orders the bot never sends but reads on the venue (placed by hand): a limit
    # order once triggered (Binance STOP / TAKE_PROFIT, Bybit conditional orderType Limit) may
    # never fill through a fast market, and a trailing stop's trigger moves with the price.
    STOP_LIMIT = "stop_limit"
    TAKE_PROFIT_LIMIT = "take_profit_limit"
    TRAILING_STOP_MARKET = "trailing_stop_market"

    @property
    def is_conditional(self) -> bool:
        return self not in (OrderType.MARKET, OrderType.LIMIT)

    @property
    def sent_by_the_bot(self) -> bool:
        """The types the bot places (the others it only reads)."""
        return self in (
            OrderType.MARKET,
            OrderType.LIMIT,
            OrderType.STOP_MARKET,
            OrderType.TAKE_PROFIT_MARKET,
        )


class TriggerBy(StrEnum):
    """The price that fires a conditional order (Binance ``workingType`` MARK_PRICE /
    CONTRACT_PRICE, Bybit ``triggerBy`` MarkPrice / LastPrice / IndexPrice)."""

    MARK = "mark"
    LAST = "last"
    INDEX = "index"


class OrderPurpose(StrEnum):
    """Why the bot sent an order; encoded in the client order id so reconciliation can read it."""

    ENTRY = "en"  # increases exposure
    REDUCE = "rd"  # reduce-only trim (de-lever)
    CLOSE = "cl"  # reduce-only close of the whole position (halt, signal flat)
    STOP_LOSS = "sl"  # resting reduce-only stop, mark-price trigger
    TAKE_PROFIT = "tp"  # resting reduce-only take-profit, mark-price trigger

    @property
    def is_protective(self) -> bool:
        return self in (OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT)


class OrderStatus(StrEnum):
    PENDING_SUBMIT = "pending_submit"  # intent persisted, not yet acknowledged
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, outcome not known: resolved by reconciliation

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


class ForcedKind(StrEnum):
    """Why the venue itself closed part of a position (its own order, not the account's)."""

    LIQUIDATION = "liquidation"
    ADL = "auto-deleveraging"


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only reduce-only orders pass
    HALTED = "halted"  # positions are closed, nothing new is sent; stops stay resting

    @property
    def severity(self) -> int:
        return {"active": 0, "reducing": 1, "halted": 2}[self.value]


class MarginMode(StrEnum):
    ISOLATED = "isolated"
    CROSS = "cross"


class EventKind(StrEnum):
    """What a recorded risk event is about (the store's ``events`` table, ``bot history``)."""

    STATE = "state"  # the trading state changed
    DENIED = "denied"  # the risk gate refused an order (it was never sent)
    REJECTED = "rejected"  # the venue refused an order or a leverage setting
    UNKNOWN = "unknown"  # an order was sent and its answer lost: looked up by client id later
    RECONCILE = "reconcile"  # the exchange disagreed with what the bot believed
    CANCEL_FAILED = "cancel_failed"  # a cancel the venue refused
    TICK_FAILED = "tick_failed"  # a job raised: nothing more was done in it
    JOBS_OK = "jobs_ok"  # a job succeeded after failed ones (ends their run)
    # the venue asked for no request for longer than a guard interval (Retry-After, an IP
    # ban; Bybit's 403 ban names no end: the bot's own hold of it): its end, which a restart
    # waits for (bot.runtime.venue_hold)
    VENUE_HOLD = "venue_hold"
    UNREADABLE = "unreadable"  # the account could not be read: nothing was sent
    READABLE = "readable"  # the account was read again after unreadable reads (ends their run)
    UNPROTECTED = "unprotected"  # a position without a valid stop was closed
    PROTECTED = "protected"  # a position that was unprotected has its stop again
    TRIGGERED = "triggered"  # a resting order filled on the exchange between reads
    COOLDOWN = "cooldown"  # a contract's re-entry cooldown started (restored after a restart)
    # a position shrank on the exchange's side other than by the bot's stop-loss: a liquidation,
    # an ADL, a reversal, or reduced outside the bot (named from what the exchange says)
    EXIT = "exit"
    CATALOGUE = "catalogue"  # a contract's specification changed on the venue (catalogue sync)
    HEDGE = "hedge"  # the hedge leg was held (spot wallet unreadable, no market data)
    MARKET_DATA = "market_data"  # a contract's market data could not be read: no decision for it
    # a contract's candles do not fill the window its statistics need (a gap in them, a contract
    # younger than the window): no decision for it until they do; recorded once when it starts
    NO_DECISION = "no_decision"
    DECIDING = "deciding"  # the window is full again after a no_decision: decisions resume
    # a halt that flattens still holds a position a close was tried for at an earlier job (the
    # venue refused the closes, the gate denied them, their answers were lost): recorded once
    # when that starts, with the last failure (bot.engine.unflattened)
    FLATTEN_PENDING = "flatten_pending"
    FLATTEN_ENDED = "flatten_ended"  # that position is closed, or the state no longer flattens
    # the host clock is far from the venue's, or its offset could not be measured (live)
    CLOCK = "clock"
    # a position on a contract the bot trades that is not the bot's (opened outside it: from
    # flat with none of its fills, or reversed outside it): left alone until it is flat again
    FOREIGN = "foreign"
    FOREIGN_GONE = "foreign_gone"  # that position is flat again: the contract is the bot's again
    # a position of the bot's grew beyond what its own fills explain (added outside the bot):
    # the bot manages the whole position from then on
    ADDED = "added"
