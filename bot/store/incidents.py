"""Protection incidents read from recorded events: pure, no database (the CLI's status, the
dashboard and the simulation report share it)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.ports.store import RiskEvent


def unprotected_since(events: Sequence[RiskEvent]) -> dict[str, int]:
    """Per contract, since when it has been without a valid stop (open incidents only).

    ``events`` in any order; an ``unprotected`` event opens an incident, ``protected`` or a
    later flat position closes it.
    """
    since: dict[str, int] = {}
    for e in sorted(events, key=lambda e: e.ts_ms):
        if e.symbol is None:
            continue
        if e.kind == "unprotected":
            since.setdefault(e.symbol, e.ts_ms)
        elif e.kind == "protected":
            since.pop(e.symbol, None)
    return since
