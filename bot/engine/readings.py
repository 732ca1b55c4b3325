"""When a guard records the account it read (:meth:`bot.engine.tick.Engine.guard`).

A decision tick records its positions and equity every time (``StorePort.record_tick``). The
guard, every minute between ticks, records what it read too, or the status surfaces (the
dashboard, ``/metrics``, ``bot status``, all read from the store) showed the last tick's
positions beside the guard's orders since: a position its stop closed shown open with no stop
(a false critical page), the equity before the loss, the daily loss not counted (an hour, a
day on a 1d policy). It records only what tells something new, so that the store does not
grow by a row of each kind every minute:

* at once, when the positions differ from the last record (a side, a size, an entry, a
  leverage setting, a margin mode: a fill, a close, an addition by hand), the wallet does (a
  fill's PnL and fee, a funding settlement) or the trading state does (a halt);
* at once, when the equity moved by a tenth of the smallest loss limit since the last record
  (:data:`EQUITY_STEP`): the daily loss and drawdown shown, and the ``DailyLossNearLimit``
  rule on them (80 % of the limit), are never more than that step behind the bot's own limits;
* otherwise every :data:`REFRESH_MS`, for the unrealised PnL, the marks and the liquidation
  prices (those of cross positions move with every mark: taken as a change, they would record
  every minute).

So a quiet account costs four records an hour, a moving one at most one per guard. The
surfaces show the time of each figure ("as of"); "last tick" stays the last decision's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain.enums import MarginMode, TradingState
from bot.engine.account import AccountView

REFRESH_MS = 15 * 60_000
# The equity move, as a fraction of the smallest loss limit, that is recorded at once.
EQUITY_STEP = Decimal("0.1")

_Held = tuple[Decimal, Decimal, Decimal, MarginMode]  # qty, entry, leverage, margin mode


@dataclass(frozen=True, slots=True)
class Reading:
    """What a record said of the account: when, and the figures whose change is recorded."""

    ts_ms: int
    held: dict[str, _Held]
    wallet: Decimal
    equity: Decimal
    state: TradingState


def reading_of(acct: AccountView, now: int, state: TradingState) -> Reading:
    held = {
        s: (p.qty, p.entry_price, p.leverage, p.margin_mode)
        for s, p in acct.positions.items()
        if p.is_open
    }
    return Reading(now, held, acct.wallet, acct.equity(), state)


def worth_recording(last: Reading | None, now: Reading, smallest_limit: Decimal) -> bool:
    """Whether a guard records ``now`` after the record ``last`` (None: none by this process):
    see the module's docstring. ``smallest_limit``: the smaller of the daily-loss and drawdown
    limits (fractions of equity)."""
    if last is None or now.ts_ms - last.ts_ms >= REFRESH_MS:
        return True
    if now.held != last.held or now.wallet != last.wallet or now.state is not last.state:
        return True
    step = smallest_limit * EQUITY_STEP * abs(last.equity)
    return abs(now.equity - last.equity) >= step
