"""The guard between decisions: the daily-loss and drawdown limits on every mark the bot sees.

One rule, in every mode: :func:`bot.risk.state.update` applied to the equity of the moment. This
module adds what lets the simulation apply it to every candle of the finest data without a Python
loop per candle: :func:`equity_floor`, the equity at or below which ``update`` would move the
trading state, and :func:`first_breach`, the vectorised search for the first candle whose worst
equity reaches it. The simulation then runs the engine's guard on that candle only; paper and
live run the same guard on the scheduler's guard job (every minute by default).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import numpy.typing as npt

from bot.domain.enums import TradingState
from bot.ports.store import RiskMemory
from bot.risk.limits import RiskLimits
from bot.risk.state import daily_loss_reducing

ONE = Decimal(1)
# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_HALTED = TradingState.HALTED


def floors(memory: RiskMemory, limits: RiskLimits) -> tuple[Decimal, Decimal]:
    """The daily-loss floor (from the UTC day's start) and the drawdown floor (from the peak):
    the equities at which those limits act."""
    return (
        memory.day_start_equity * (ONE - limits.daily_loss),
        memory.peak_equity * (ONE - limits.max_drawdown),
    )


def equity_floor(memory: RiskMemory | None, limits: RiskLimits) -> Decimal | None:
    """The equity at or below which :func:`bot.risk.state.update` changes the state this UTC day.

    Active, or reducing of any cause but the daily loss: the higher of the daily-loss floor and
    the drawdown floor (a daily loss halts from such a reducing, or makes it its own reducing
    with ``on_daily_loss = "reducing"``); the reducing a daily loss moved the account to: the
    drawdown floor (only a drawdown halt is left this UTC day); halted, or no memory yet:
    ``None`` (nothing to watch).

    The loss budget (:mod:`bot.risk.loss_budget`) measures from the same floor: below the daily
    floor the daily loss's reducing cuts positions toward their targets, not all to nothing;
    above it, every other state keeps the day within the daily limit if every stop fires (a
    reducing of another cause, e.g. an exhausted budget, lifted with a budget measured from the
    drawdown floor alone opened the policy's full size a hair above the daily floor).
    """
    if memory is None or memory.state is _HALTED:
        return None
    daily, drawdown = floors(memory, limits)
    if limits.on_daily_loss != "halted" and daily_loss_reducing(memory):
        return drawdown
    return daily if daily > drawdown else drawdown  # max(drawdown, daily): first of equals


def first_breach(worst_equity: npt.NDArray[np.float64], floor: float) -> int:
    """Index of the first candle whose worst equity is at or below ``floor``, or -1."""
    if len(worst_equity) == 0:
        return -1
    hit = worst_equity <= floor
    k = int(hit.argmax())
    return k if bool(hit[k]) else -1
