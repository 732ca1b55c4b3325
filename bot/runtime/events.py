"""Recording an event from outside a tick (a failed job, a catalogue change, the host clock):
the event carries the trading state held at that moment, as the engine's own events do."""

from __future__ import annotations

from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent, RiskMemory, StorePort


def record_event_now(
    store: StorePort, ts_ms: int, kind: EventKind, symbol: str | None, reason: str
) -> RiskMemory | None:
    """Record ``reason`` as an event of ``kind`` at the stored trading state (``active`` before
    any is stored); return the risk memory read, for a caller that acts on the state next."""
    memory = store.load_risk_memory()
    state = memory.state if memory is not None else TradingState.ACTIVE
    store.record_event(RiskEvent(ts_ms=ts_ms, kind=kind, symbol=symbol, state=state, reason=reason))
    return memory
