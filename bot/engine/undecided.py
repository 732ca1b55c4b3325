"""Contracts without a decision for lack of a full window of candles.

A volatility window never spans a gap in the decision candles (returns across it would be
invented), so right after a gap, or on a contract younger than the window, the policy has no
decision for that contract until enough candles have closed: it holds, protected. The engine
records it once when it starts (``no_decision``: the contract, the gap, the window it needs,
until when) and once when decisions resume (``deciding``), never once per tick; what is open
is read back from those events by a restarted engine (so a restart or a policy switch does not
record it again), ``bot status`` and the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.clock import ms_to_datetime
from bot.domain.enums import EventKind
from bot.ports.market import CandleWindow
from bot.ports.store import RiskEvent


@dataclass(frozen=True, slots=True)
class Undecided:
    """An open stretch without a decision: since when, and why (the newest event's reason)."""

    since_ms: int
    reason: str


def open_undecided(events: Iterable[RiskEvent]) -> dict[str, Undecided]:
    """Per contract, the stretch without a decision still open at the end of ``events`` (in
    any order): a ``no_decision`` event not followed by a ``deciding`` one."""
    out: dict[str, Undecided] = {}
    for e in sorted(events, key=lambda e: e.ts_ms):
        if e.symbol is None:
            continue
        if e.kind is EventKind.NO_DECISION:
            known = out.get(e.symbol)
            out[e.symbol] = Undecided(known.since_ms if known else e.ts_ms, e.reason)
        elif e.kind is EventKind.DECIDING:
            out.pop(e.symbol, None)
    return out


def short_window_reason(
    window: CandleWindow, needed: int, key: str, timeframe: str, tf_ms: int
) -> str:
    """Why ``window`` gets no decision: the gap that cut it (or the start of the data), the
    ``needed`` candles the window must hold (``key`` names the policy setting), and the first
    time a decision can come if no further candle is missing. The same text at every tick of
    one stretch (nothing in it counts the candles so far), so it is recorded once."""
    if not len(window.ts):
        return (
            f"no closed {timeframe} candles at all: the window needs {needed} ({key}); no "
            "decision until there are (held, protected)"
        )
    first = int(window.ts[0])
    until = first + needed * tf_ms
    gap = window.gap_before
    if gap is not None:
        cause = (
            f"gap in the {timeframe} candles from {_minute(gap[0])} to {_minute(gap[1])}: a "
            f"window never spans a gap and needs {needed} candles after it"
        )
    else:
        cause = (
            f"the {timeframe} candles start at {_minute(first)} (none older from the data "
            f"source): the window needs {needed}"
        )
    return (
        f"{cause} ({key}); no decision until {_minute(until)} if no candle is missing "
        "meanwhile (held, protected)"
    )


def _minute(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")
