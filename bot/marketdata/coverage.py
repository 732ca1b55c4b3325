"""Pick, per contract and series, the finest timeframe whose file covers the requested window.

A data directory often holds a short 1m file beside a long 1h file. The simulator and the replay
take the finest candles that cover the window they were asked for; a finer file that covers less
is passed over (and the choice is said), never an error. When no file covers the whole window,
the one covering most of it wins (finest on a tie) and the note says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from loguru import logger

from bot.marketdata.candles import Candles
from bot.marketdata.files import DataInventory


@dataclass(frozen=True, slots=True)
class Choice:
    candles: Candles
    timeframe: str
    note: str  # human-readable: what was chosen and why


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def covered_ms(c: Candles, start: int, end: int) -> int:
    """Milliseconds of [start, end) inside the file's span (first open .. last close)."""
    if len(c) == 0:
        return 0
    lo, hi = max(start, int(c.ts[0])), min(end, int(c.ts[-1]) + c.tf_ms)
    return max(0, hi - lo)


def choose(
    inventory: DataInventory,
    symbol: str,
    kind: str,
    timeframes: list[str],
    start_ms: int | None,
    end_ms: int | None,
) -> Choice:
    """The finest of ``timeframes`` (shortest first) whose ``kind`` file covers the window.

    ``start_ms``/``end_ms`` None mean "as far as any file goes" (the widest span on offer).
    """
    loaded: list[tuple[str, Candles]] = []
    for tf in timeframes:
        loaded.append((tf, inventory.load_candles(symbol, tf, kind)))
        if start_ms is not None and end_ms is not None:
            c = loaded[-1][1]
            if covered_ms(c, start_ms, end_ms) >= end_ms - start_ms:
                why = "covers the window" if len(loaded) > 1 or len(timeframes) > 1 else "only file"
                return _said(symbol, kind, tf, c, loaded[:-1], why)
    start = start_ms if start_ms is not None else min(int(c.ts[0]) for _, c in loaded)
    end = end_ms if end_ms is not None else max(int(c.ts[-1]) + c.tf_ms for _, c in loaded)
    need = max(end - start, 0)
    for i, (tf, c) in enumerate(loaded):  # finest first
        if covered_ms(c, start, end) >= need:
            return _said(symbol, kind, tf, c, loaded[:i], "covers the window")
    best_i = max(range(len(loaded)), key=lambda i: (covered_ms(loaded[i][1], start, end), -i))
    tf, best = loaded[best_i]
    return _said(
        symbol,
        kind,
        tf,
        best,
        loaded[:best_i],
        f"covers most of {_iso(start)} .. {_iso(end)} (no file covers all of it)",
    )


def _said(
    symbol: str,
    kind: str,
    tf: str,
    chosen: Candles,
    finer: list[tuple[str, Candles]],
    why: str,
) -> Choice:
    span = f"{_iso(int(chosen.ts[0]))} .. {_iso(int(chosen.ts[-1]) + chosen.tf_ms)}"
    note = f"{symbol} {kind}: {tf} ({span}) {why}"
    if finer:
        passed = ", ".join(
            f"{t} ({_iso(int(c.ts[0]))} .. {_iso(int(c.ts[-1]) + c.tf_ms)})" for t, c in finer
        )
        note += f"; finer files passed over because they cover less: {passed}"
    logger.info("data selection: {}", note)
    return Choice(chosen, tf, note)
