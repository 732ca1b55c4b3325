"""The downloader's rules on a hand-written venue: paging under a row cap, holes, the forming
bar, resuming, and refusing to touch a file it cannot read."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from bot.clock import SimClock
from bot.errors import DataError
from bot.exchange.history_download import HistoryDownloader

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SYM = "ADA/USDT:USDT"


class _Venue:
    """ccxt-shaped: fetch_ohlcv(symbol, tf, since, limit, params) -> rows (open time ascending),
    returning at most ``cap`` rows whatever the limit (as a venue or ccxt may)."""

    id = "fakevenue"

    def __init__(self, opens: list[int], cap: int) -> None:
        self.last_response_headers: dict[str, str] = {}
        self.markets: dict[str, dict[str, object]] = {SYM: {}}
        self.opens = opens
        self.cap = cap
        self.calls: list[tuple[int, int]] = []

    def load_markets(self) -> dict[str, Any]:
        return self.markets

    def fetch_ohlcv(
        self, symbol: str, tf: str, since: int, limit: int, params: dict[str, Any]
    ) -> list[list[float]]:
        until = int(params["until"])
        self.calls.append((since, until))
        rows = [t for t in self.opens if since <= t <= until][: min(limit, self.cap)]
        return [[t, 1.0, 1.5, 0.5, 1.25, 10.0] for t in rows]

    def fetch_funding_rate_history(
        self, symbol: str, since: int, limit: int, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return []


def _opens(path: Path) -> list[int]:
    with gzip.open(path, "rt") as fh:
        return [int(line.split(",")[0]) for line in fh.read().splitlines()[1:]]


def test_capped_pages_holes_and_the_forming_bar(tmp_path: Path) -> None:
    hole = set(range(T0 + 40 * MIN, T0 + 55 * MIN, MIN))
    opens = [t for t in range(T0, T0 + 120 * MIN, MIN) if t not in hole]
    venue = _Venue(opens, cap=7)  # fewer rows than asked: not a hole
    now = T0 + 100 * MIN + 30_000  # the 100th minute is still forming
    loader = HistoryDownloader(venue, tmp_path, clock=SimClock(now), page_limit=20)
    result = loader.candles(SYM, "1m", T0, T0 + 200 * MIN, mark=False)
    got = _opens(tmp_path / "ADA_USDT_USDT-1m.csv.gz")
    assert got == [t for t in opens if t < T0 + 100 * MIN]  # closed bars only, none missing
    assert result.gaps == [(T0 + 40 * MIN, T0 + 55 * MIN)]  # only the venue's real hole
    gaps = json.loads((tmp_path / "ADA_USDT_USDT-1m.gaps.json").read_text())
    assert gaps == [[T0 + 40 * MIN, T0 + 55 * MIN]]

    venue.calls.clear()  # a minute later: only the bar that closed since is asked for
    later = HistoryDownloader(venue, tmp_path, clock=SimClock(now + MIN), page_limit=20)
    again = later.candles(SYM, "1m", T0, T0 + 200 * MIN, mark=False)
    assert again.added == 1
    assert venue.calls == [(T0 + 100 * MIN, T0 + 101 * MIN - 1)]


def test_an_unreadable_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "ADA_USDT_USDT-1m.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("ts,o,h,l,c,v\n1,2,3,4,5,6\n")
    venue = _Venue([T0], cap=10)
    loader = HistoryDownloader(venue, tmp_path, clock=SimClock(T0 + 10 * MIN))
    with pytest.raises(DataError, match=r"ADA_USDT_USDT-1m\.csv\.gz: line 1: expected the header"):
        loader.candles(SYM, "1m", T0, T0 + 5 * MIN, mark=False)
    with gzip.open(path, "rt") as fh:
        assert fh.read() == "ts,o,h,l,c,v\n1,2,3,4,5,6\n"


def test_an_unknown_contract_and_an_empty_window_are_named(tmp_path: Path) -> None:
    loader = HistoryDownloader(_Venue([], cap=10), tmp_path, clock=SimClock(T0))
    with pytest.raises(DataError, match="fakevenue has no market 'NOPE/USDT:USDT'"):
        loader.run(["NOPE/USDT:USDT"], ["1m"], T0 - MIN, T0)
    with pytest.raises(DataError, match="download window is empty"):
        loader.run([SYM], ["1m"], T0, T0)


class _FundingVenue(_Venue):
    """Settled funding as Binance stamps it: ``fundingTime`` a few ms off the hour, either way."""

    def __init__(self, stamps: list[int]) -> None:
        super().__init__([], cap=10)
        self.stamps = stamps

    def fetch_funding_rate_history(
        self, symbol: str, since: int, limit: int, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        until = int(params["until"])
        return [
            {"timestamp": t, "fundingRate": 0.0001} for t in self.stamps if since <= t <= until
        ][:limit]


def test_funding_stamps_are_written_at_their_nearest_minute(tmp_path: Path) -> None:
    # 8 ms before the hour is the hour's settlement, as the loader reads it
    # (bot.marketdata.files.settlement_minute); floored, it was written a minute early.
    hour = 60 * MIN
    venue = _FundingVenue([T0 + 8 * hour + 11, T0 + 16 * hour - 8, T0 + 24 * hour])
    loader = HistoryDownloader(venue, tmp_path, clock=SimClock(T0 + 30 * hour))
    loader.funding(SYM, T0, T0 + 30 * hour)
    assert _opens(tmp_path / "ADA_USDT_USDT-funding.csv.gz") == [
        T0 + 8 * hour,
        T0 + 16 * hour,
        T0 + 24 * hour,
    ]
