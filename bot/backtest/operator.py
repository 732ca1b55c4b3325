"""A modelled operator for simulations: ``simulation.resume_after_halt``.

In a simulation a drawdown halt is final by default (live, only a person leaves it with
``bot resume``). With ``resume_after_halt`` set, the operator resumes trading that long after the
halt, as ``bot resume`` would: state ``active``, the equity peak reset to the equity of that
moment (otherwise the next tick would halt again), recorded as a ``state`` event.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from bot.domain.enums import TradingState
from bot.risk.loss_budget import budget_exhausted
from bot.risk.state import state_event
from bot.store.memory import MemoryStore


def resume_if_due(store: MemoryStore, now_ms: int, equity: Decimal, after_ms: int) -> bool:
    """Resume a sticky halt that began at least ``after_ms`` ago, or a sticky exhausted loss
    budget (``reducing``, no room under the drawdown floor: the alert asks for ``bot resume``
    as a halt's does); True if it did."""
    memory = store.load_risk_memory()
    if memory is None or not memory.sticky:
        return False
    exhausted = budget_exhausted(memory)
    if memory.state is not TradingState.HALTED and not exhausted:
        return False
    since = halted_since(store, "-> reducing" if exhausted else "-> halted")
    if since is None or now_ms - since < after_ms:
        return False
    what = "the loss budget ran out" if exhausted else "the halt"
    reason = (
        f"operator resumed {((now_ms - since) / 3_600_000):.0f} h after {what} "
        f"(simulation.resume_after_halt); peak reset from {memory.peak_equity:.2f} to {equity:.2f}"
    )
    resumed = replace(
        memory, state=TradingState.ACTIVE, state_reason=reason, sticky=False, peak_equity=equity
    )
    store.save_risk_memory(
        resumed, state_event(now_ms, resumed, f"{memory.state.value} -> active: {reason}")
    )
    return True


def halted_since(store: MemoryStore, change: str = "-> halted") -> int | None:
    """When the current halt began: the last ``-> halted`` state event (or ``change``)."""
    for e in reversed(store.events):
        if e.kind == "state" and change in e.reason:
            return int(e.ts_ms)
    return None
