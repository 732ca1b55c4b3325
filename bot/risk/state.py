"""Trading state transitions from equity: daily loss (UTC day) and drawdown from the peak.

* Daily loss: equity (wallet + unrealised PnL) below the UTC day's starting equity by
  ``daily_loss`` -> ``reducing`` or ``halted`` (configurable) until the next UTC day.
* Drawdown: equity below the highest equity seen by ``max_drawdown`` -> ``halted``, sticky: only
  a person (``bot resume``) leaves it.
The memory (peak, day start, state) is persisted by the store so it survives restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent, RiskMemory
from bot.risk.limits import RiskLimits

DAY_MS = 86_400_000
# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_ACTIVE = TradingState.ACTIVE
_REDUCING = TradingState.REDUCING
_HALTED = TradingState.HALTED


@dataclass(frozen=True, slots=True)
class Transition:
    before: TradingState
    after: TradingState
    reason: str
    # A halt that held the positions (a person's plain `bot halt`) now closes them: a loss
    # limit crossed during it (the state stays halted).
    flattens: bool = False
    # A halt that would have lapsed at the next UTC day (the daily loss's) now waits for a
    # person: a drawdown limit crossed during it (the state stays halted).
    sticks: bool = False
    # A ``reducing`` of another cause (stale data, an unreadable account, failed jobs, an
    # exhausted loss budget) is now the daily loss's (``on_daily_loss = "reducing"``): it lasts
    # the UTC day, and the loss budget measures from the drawdown floor alone (the state stays
    # reducing).
    recaused: bool = False

    @property
    def worse(self) -> bool:
        """The change takes the account further from trading: a higher state, a hold halt
        that now closes every position, a halt that no longer lapses by itself, or a reducing
        that no longer lifts before the next UTC day."""
        return (
            self.flattens
            or self.sticks
            or self.recaused
            or self.after.severity > self.before.severity
        )


def initial_memory(equity: Decimal, now_ms: int) -> RiskMemory:
    return RiskMemory(
        state=TradingState.ACTIVE,
        state_reason="start",
        peak_equity=equity,
        day_start_ms=now_ms - now_ms % DAY_MS,
        day_start_equity=equity,
        sticky=False,
    )


STALE = "stale market data"
# How the reason of the state a daily loss moves the account to begins: the risk memory keeps no
# other record of a state's cause (as the stale data's, the unreadable account's and the
# exhausted loss budget's reasons are recognised by theirs), so a memory saved by an older
# version reads the same.
DAILY_LOSS = "daily loss "


def daily_loss_reducing(memory: RiskMemory) -> bool:
    """The account is in the ``reducing`` a daily loss moved it to (``on_daily_loss =
    "reducing"``): the loss limit reached, the state lasts the UTC day."""
    return memory.state is _REDUCING and memory.state_reason.startswith(DAILY_LOSS)


def update(
    memory: RiskMemory,
    equity: Decimal,
    now_ms: int,
    limits: RiskLimits,
    stale: Sequence[str] | None = None,
) -> tuple[RiskMemory, Transition | None]:
    """Roll the day, track the peak, and move the state if a limit is breached.

    ``stale`` lists the contracts whose market data is older than the limit (``None``: not
    known in this call): any -> ``reducing`` until the data is fresh again.
    """
    day = now_ms - now_ms % DAY_MS
    before = memory.state
    mem = memory
    # Days only move forward: a wall clock stepped back across 00:00 UTC (NTP, a bad clock
    # after a suspend) must not start a new day that forgets today's loss and lifts its halt.
    if day > mem.day_start_ms:
        mem = replace(mem, day_start_ms=day, day_start_equity=equity)
        if not mem.sticky and mem.state is not _ACTIVE:
            mem = replace(mem, state=_ACTIVE, state_reason="new UTC day")
    if mem.day_start_equity <= 0 < equity:
        # No day's start measured yet (a `bot halt` applied before the first job starts the
        # memory at 0): this reading is the day's start, or no daily loss would count all day.
        mem = replace(mem, day_start_equity=equity)
    if equity > mem.peak_equity:
        mem = replace(mem, peak_equity=equity)
    drawdown = (mem.peak_equity - equity) / mem.peak_equity if mem.peak_equity > 0 else Decimal(0)
    day_loss = (
        (mem.day_start_equity - equity) / mem.day_start_equity
        if mem.day_start_equity > 0
        else Decimal(0)
    )
    # A person's plain `bot halt` holds the positions with their stops (a hedge left with no
    # book to offset is still cut: Engine._on_halt_hedges); the loss limits still
    # apply beneath it: crossed, they close every position as from any other state (the halt
    # stays a person's: only `bot resume` lifts it).
    held = mem.state is _HALTED and not mem.flatten
    # A drawdown crossed under a daily-loss halt (not sticky: its closes refused in a crash,
    # the positions falling on) makes the halt the drawdown's: a person's to lift, not the
    # next UTC day's.
    lapsing = mem.state is _HALTED and not mem.sticky
    recaused = False
    if drawdown >= limits.max_drawdown and (mem.state is not _HALTED or held or lapsing):
        mem = replace(
            mem,
            state=_HALTED,
            sticky=True,
            flatten=True,
            state_reason=f"drawdown {drawdown:.2%} from peak {mem.peak_equity:.2f} "
            f">= limit {limits.max_drawdown:.2%}",
        )
    elif day_loss >= limits.daily_loss and _daily_loss_moves(mem, held, limits):
        # Also from a `reducing` entered for another reason (failed jobs, an unreadable
        # account, protection failures: a venue in trouble during a crash): a daily loss set
        # to halt still halts and flattens, instead of staying at reducing with every position;
        # set to reduce, the reducing becomes the daily loss's, or its own cause would lift it
        # within the day (fresh data, a readable account, room in the loss budget) with the
        # limit reached, and the loss budget would measure from the daily floor the loss
        # already crossed (a negative budget: every position cut to nothing).
        # The daily limit's state lasts the UTC day, whatever it replaces (a sticky reducing of
        # an exhausted loss budget must not make it sticky); under a person's hold halt, the
        # halt stays the person's to lift.
        recaused = mem.state is _REDUCING and limits.on_daily_loss == "reducing"
        target = TradingState(limits.on_daily_loss)
        mem = replace(
            mem,
            state=target,
            sticky=held,
            flatten=True,
            state_reason=f"{DAILY_LOSS}{day_loss:.2%} >= limit {limits.daily_loss:.2%} "
            + ("(the halt stays until `bot resume`)" if held else "(until the next UTC day)"),
        )
    elif stale and mem.state is _ACTIVE:
        mem = replace(
            mem,
            state=_REDUCING,
            sticky=False,
            state_reason=f"{STALE}: {', '.join(stale)}",
        )
    elif (
        stale is not None
        and not stale
        and mem.state is _REDUCING
        and mem.state_reason.startswith(STALE)
    ):
        mem = replace(mem, state=_ACTIVE, state_reason="market data fresh again")
    return mem, _transition(before, mem, held=held, lapsing=lapsing, recaused=recaused)


def _transition(
    before: TradingState, mem: RiskMemory, *, held: bool, lapsing: bool, recaused: bool
) -> Transition | None:
    """What :func:`update` changed: the state, or within it (see :class:`Transition`)."""
    if mem.state is not before:
        return Transition(before, mem.state, mem.state_reason)
    if held and mem.flatten:
        return Transition(before, mem.state, mem.state_reason, flattens=True)
    if lapsing and mem.sticky:
        return Transition(before, mem.state, mem.state_reason, sticks=True)
    if recaused:
        return Transition(before, mem.state, mem.state_reason, recaused=True)
    return None


def _daily_loss_moves(mem: RiskMemory, held: bool, limits: RiskLimits) -> bool:
    """Whether a daily loss reached moves the state of ``mem``: from a lower state, from a
    person's hold halt when it halts (it closes the positions), or from a reducing of another
    cause (see :func:`update`)."""
    return (
        TradingState(limits.on_daily_loss).severity > mem.state.severity
        or (held and limits.on_daily_loss == "halted")
        or (mem.state is _REDUCING and not daily_loss_reducing(mem))
    )


def state_event(now_ms: int, memory: RiskMemory, reason: str) -> RiskEvent:
    """The ``state`` event of a change to ``memory``'s state, saved with it in one write
    (``StorePort.save_risk_memory(memory, event)``): the runner alerts from it."""
    return RiskEvent(
        ts_ms=now_ms, kind=EventKind.STATE, symbol=None, state=memory.state, reason=reason
    )


def set_state(
    memory: RiskMemory, state: TradingState, reason: str, *, sticky: bool, flatten: bool = True
) -> RiskMemory:
    """A person's (or the bot's own) explicit change of state, e.g. ``bot halt``/``bot resume``.

    ``flatten`` applies to ``halted``: True closes every position, False holds them (their
    stop-losses stay resting) and only stops trading.
    """
    return replace(memory, state=state, state_reason=reason, sticky=sticky, flatten=flatten)
