"""Recent public market data from the exchange, written in the data-directory format.

``bot vol --exchange`` reads the venue's public candles, mark-price candles and funding history
through ccxt (no keys), writes them as ``<BASE>_USDT_USDT-1h.csv.gz`` and friends into a
directory, and the tool then reads that directory like any other: one code path for recorded
and live data, and the same validation of what the exchange sent.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.errors import DataError
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.marketdata.files import settlement_minute, symbol_to_stem


def download_recent(
    exchange: CcxtExchange,
    symbols: Sequence[str],
    directory: Path,
    *,
    candles: int = 1000,
    timeframe: str = "1h",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the last ``candles`` closed candles (trade and mark) and the recent funding
    settlements of ``symbols`` into ``directory``; return it. ``progress(symbols done,
    symbols)`` is called after each symbol."""
    directory.mkdir(parents=True, exist_ok=True)
    for done, sym in enumerate(symbols, start=1):
        stem = symbol_to_stem(sym)
        for mark, suffix in ((False, ""), (True, "-mark")):
            rows = exchange.fetch_candles(sym, timeframe, candles, mark=mark)
            if not rows:
                raise DataError(f"{sym}: the exchange returned no {timeframe} candles")
            with gzip.open(directory / f"{stem}-{timeframe}{suffix}.csv.gz", "wt") as fh:
                fh.write("timestamp,open,high,low,close,volume\n")
                for r in rows:
                    volume = 0.0 if mark else r.volume
                    fh.write(
                        f"{r.open_ms},{r.open!r},{r.high!r},{r.low!r},{r.close!r},{volume!r}\n"
                    )
        history = _funding_history(exchange, sym)
        if history:
            with gzip.open(directory / f"{stem}-funding.csv.gz", "wt") as fh:
                fh.write("timestamp,funding_rate\n")
                for ts, rate in history:
                    fh.write(f"{ts},{rate}\n")
        if progress is not None:
            progress(done, len(symbols))
    return directory


def _funding_history(exchange: CcxtExchange, symbol: str) -> list[tuple[int, str]]:
    rows: list[dict[str, Any]] = exchange.exchange.fetch_funding_rate_history(symbol, None, 100)
    out: dict[int, str] = {}
    for row in rows:
        ts, rate = row.get("timestamp"), row.get("fundingRate")
        if ts is None or rate is None:
            continue
        # settlement stamps carry jitter; the data format takes them to the minute
        out[settlement_minute(int(ts))] = repr(float(rate))
    return sorted(out.items())
