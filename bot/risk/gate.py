"""The risk gate: the one road to the exchange. A denial is a value with a reason, not an error.

Checks, in order (the first that fails denies the order):
``trading state`` (reducing/halted: only reduce-only orders), ``venue`` (a contract the venue
withdrew, or whose scheduled settlement is near: only reduce-only orders), ``stale data`` (no
new risk on a contract whose market data is older than the limit), ``hedge`` (an order on a
hedge leg may not raise the book's beta-weighted net exposure), ``max leverage`` per contract
and ``gross leverage`` after the order, ``max notional`` per contract, ``order rate`` (orders
that add risk; reduce-only and protective orders always pass so a position is never left
unprotected).

The order rate is counted on the clock's monotonic time (:attr:`OrderContext.monotonic_ms`), not
on the wall clock: a wall clock stepped back by an hour kept the orders of the last minute "in the
last minute" for an hour (entries refused), one stepped forward forgot them (the limit freed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from bot.domain.enums import TradingState
from bot.domain.orders import OrderRequest
from bot.risk.limits import RiskLimits


@dataclass(frozen=True, slots=True)
class Approved:
    pass


@dataclass(frozen=True, slots=True)
class Denied:
    reason: str


Verdict = Approved | Denied
APPROVED = Approved()


@dataclass(frozen=True, slots=True)
class OrderContext:
    """What the gate needs to judge one order."""

    state: TradingState
    now_ms: int
    data_age_ms: int
    price: Decimal
    position_qty: Decimal  # signed, before the order
    sleeve_equity: Decimal
    equity: Decimal
    gross_notional_other: Decimal  # notional of every other contract
    max_leverage_contract: Decimal  # per-contract cap from the configuration
    max_notional_contract: Decimal | None = None  # per-contract cap from the configuration
    # Hedge orders only: the beta-weighted net exposure of everything else, and this leg's beta.
    hedge_net_other: Decimal | None = None
    hedge_beta: Decimal = Decimal(1)
    # Why the venue allows only less than trading on this contract (withdrawn, a settlement
    # near); None: it trades it.
    restricted: str | None = None
    # The clock's monotonic time in ms (bot.clock.monotonic_ms): what the order rate counts on.
    monotonic_ms: int = field(kw_only=True)


def _is_reducing(req: OrderRequest, ctx: OrderContext) -> bool:
    return req.reduce_only or req.close_position


def check_state(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    if ctx.state is TradingState.ACTIVE or _is_reducing(req, ctx):
        return None
    return f"trading state {ctx.state.value}: only reduce-only orders pass"


def check_venue(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    if ctx.restricted is None or _is_reducing(req, ctx):
        return None
    return f"{ctx.restricted}: only reduce-only orders pass"


def check_stale(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    if _is_reducing(req, ctx) or ctx.data_age_ms <= limits.stale_data_ms:
        return None
    return f"market data is {ctx.data_age_ms // 1000}s old (limit {limits.stale_data_ms // 1000}s)"


def _after_notional(req: OrderRequest, ctx: OrderContext) -> Decimal:
    amount = req.amount or Decimal(0)
    return abs(ctx.position_qty + req.side.sign * amount) * ctx.price


def check_leverage(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    if _is_reducing(req, ctx) or ctx.sleeve_equity <= 0:
        return None
    lev = _after_notional(req, ctx) / ctx.sleeve_equity
    cap = min(limits.max_leverage_per_contract, ctx.max_leverage_contract)
    if lev > cap:
        return f"leverage {lev:.2f} after the order > limit {cap}"
    return None


def check_gross(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    if _is_reducing(req, ctx) or ctx.equity <= 0:
        return None
    gross = (ctx.gross_notional_other + _after_notional(req, ctx)) / ctx.equity
    if gross > limits.max_gross_leverage:
        return f"gross leverage {gross:.2f} after the order > limit {limits.max_gross_leverage}"
    return None


def check_notional(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    if _is_reducing(req, ctx):
        return None
    notional = _after_notional(req, ctx)
    cap = limits.max_notional_per_contract
    if ctx.max_notional_contract is not None:
        cap = min(cap, ctx.max_notional_contract)
    if notional > cap:
        return f"notional {notional:.2f} after the order > limit {cap}"
    return None


def check_hedge(req: OrderRequest, ctx: OrderContext, limits: RiskLimits) -> str | None:
    """A hedge order must not raise the book's net (beta-weighted) exposure. Reduce-only orders
    shrink the hedge leg itself and always pass (closing a hedge must never be blocked)."""
    if ctx.hedge_net_other is None or _is_reducing(req, ctx):
        return None
    amount = req.amount or Decimal(0)
    unit = ctx.price * ctx.hedge_beta
    before = ctx.hedge_net_other + ctx.position_qty * unit
    after = ctx.hedge_net_other + (ctx.position_qty + req.side.sign * amount) * unit
    if abs(after) > abs(before):
        return f"hedge order would raise net exposure from {before:.2f} to {after:.2f}"
    return None


Check = Callable[[OrderRequest, OrderContext, RiskLimits], "str | None"]
CHECKS: tuple[Check, ...] = (
    check_state,
    check_venue,
    check_stale,
    check_hedge,
    check_leverage,
    check_gross,
    check_notional,
)


class RiskGate:
    """Applies :data:`CHECKS` and the order-rate limit. Keeps the recent order times (on the
    clock's monotonic ms)."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self._sent: deque[int] = deque()

    def check(self, req: OrderRequest, ctx: OrderContext) -> Verdict:
        for check in CHECKS:
            reason = check(req, ctx, self.limits)
            if reason is not None:
                return Denied(reason)
        while self._sent and self._sent[0] <= ctx.monotonic_ms - 60_000:
            self._sent.popleft()
        if not _is_reducing(req, ctx) and len(self._sent) >= self.limits.max_orders_per_minute:
            return Denied(
                f"order rate: {len(self._sent)} orders in the last minute "
                f"(limit {self.limits.max_orders_per_minute})"
            )
        self._sent.append(ctx.monotonic_ms)
        return APPROVED
