"""Protection incidents read from recorded events: pure, no database (the CLI's status, the
dashboard and the simulation report share it)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.ports.store import RiskEvent


def unprotected_spans(events: Sequence[RiskEvent]) -> dict[str, list[tuple[int, int | None]]]:
    """Per contract, each span (epoch ms) it spent without a valid stop: (since, until), until
    ``None`` while the incident is open.

    ``events`` in any order; an ``unprotected`` event opens an incident, ``protected`` (the
    position has a valid stop again or is closed) ends it.
    """
    spans: dict[str, list[tuple[int, int | None]]] = {}
    open_since: dict[str, int] = {}
    for e in sorted(events, key=lambda e: e.ts_ms):
        if e.symbol is None:
            continue
        if e.kind == "unprotected":
            open_since.setdefault(e.symbol, e.ts_ms)
        elif e.kind == "protected" and e.symbol in open_since:
            spans.setdefault(e.symbol, []).append((open_since.pop(e.symbol), e.ts_ms))
    for sym, since in open_since.items():
        spans.setdefault(sym, []).append((since, None))
    return spans


def unprotected_since(events: Sequence[RiskEvent]) -> dict[str, int]:
    """Per contract, since when it has been without a valid stop (open incidents only)."""
    return {
        sym: spans[-1][0]
        for sym, spans in unprotected_spans(events).items()
        if spans[-1][1] is None
    }
