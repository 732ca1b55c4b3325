"""``bot data download``: the venue's public history into a data directory, resumable.

For each contract and timeframe it fetches last-trade OHLCV, mark-price OHLCV and the funding-rate
history through ccxt's public endpoints (``fetch_ohlcv``, ``fetch_ohlcv(params={"price": "mark"})``,
``fetch_funding_rate_history``) and writes the files :mod:`bot.marketdata.files` reads:
``<BASE>_<QUOTE>_<SETTLE>-<tf>.csv.gz``, ``...-<tf>-mark.csv.gz``, ``...-funding.csv.gz``.

Rules:

* only closed candles are written: a bar whose open time plus its timeframe is after the clock's
  time is still forming and is left for the next run;
* resumable: what a file already holds is never asked again, rows are never duplicated (rows are
  keyed by open time; an existing row is kept byte for byte), and a file is always replaced whole
  (temporary file + rename), every ``flush_pages`` pages and when the run stops for any reason;
* gaps the venue really has (it answered, with nothing for a stretch of the window) are recorded
  in ``<series>.gaps.json`` beside the file, as ``[[first_missing_open_ms, end_ms], ...]``, so that
  the next run does not ask again and the user can see them;
* pacing: ccxt's rate limiter (``enableRateLimit``), plus retries with backoff and ``Retry-After``
  on 429/418 and transient errors (:func:`bot.exchange.retry.call_with_retry`).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ccxt

from bot import strict_json
from bot.atomic_file import replaced_binary, replaced_text
from bot.clock import Clock
from bot.errors import DataError
from bot.exchange.ccxt_errors import is_rate_limit, map_ccxt_error, retry_after_seconds
from bot.exchange.retry import RetryPolicy, call_with_retry
from bot.marketdata.candles import parse_timeframe
from bot.marketdata.files import settlement_minute, symbol_to_stem

CANDLE_HEADER = "timestamp,open,high,low,close,volume"
FUNDING_HEADER = "timestamp,funding_rate"
PAGE_LIMITS = {"binanceusdm": 1500, "bybit": 1000}  # the venues' documented kline page maxima
FUNDING_PAGE = {"binanceusdm": 1000, "bybit": 200}
HOUR_MS = 3_600_000

Progress = Callable[[str, int, int], None]  # (series label, done, total) in candles


@dataclass
class SeriesResult:
    path: Path
    added: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class DownloadResult:
    series: list[SeriesResult] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(s.added for s in self.series)


class HistoryDownloader:
    """Downloads into ``out_dir`` through ``exchange`` (a sync ccxt instance, public calls)."""

    def __init__(
        self,
        exchange: Any,
        out_dir: Path,
        *,
        clock: Clock,
        page_limit: int | None = None,
        flush_pages: int = 50,
        retry: RetryPolicy | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._ex = exchange
        self._out = out_dir
        self._clock = clock
        self._limit = page_limit or PAGE_LIMITS.get(str(exchange.id), 500)
        self._funding_limit = min(self._limit, FUNDING_PAGE.get(str(exchange.id), 100))
        self._flush_pages = max(1, flush_pages)
        self._retry = retry or RetryPolicy()
        self._progress = progress

    # -- public --------------------------------------------------------------------------------

    def run(
        self, symbols: Sequence[str], timeframes: Sequence[str], start_ms: int, end_ms: int
    ) -> DownloadResult:
        """Everything missing in [start_ms, end_ms) for every contract, timeframe and series."""
        if end_ms <= start_ms:
            raise DataError(f"download window is empty: start {start_ms} >= end {end_ms}")
        self._out.mkdir(parents=True, exist_ok=True)
        self._call(lambda: self._ex.load_markets(), "load_markets")
        for sym in symbols:
            if sym not in self._ex.markets:
                raise DataError(f"{self._ex.id} has no market {sym!r}")
        result = DownloadResult()
        for sym in symbols:
            for tf in timeframes:
                for mark in (False, True):
                    result.series.append(self.candles(sym, tf, start_ms, end_ms, mark=mark))
            result.series.append(self.funding(sym, start_ms, end_ms))
        return result

    def candles(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int, *, mark: bool
    ) -> SeriesResult:
        """Fetch the closed candles of one series missing from its file, then merge them in."""
        tf_ms = parse_timeframe(timeframe)
        stem = f"{symbol_to_stem(symbol)}-{timeframe}{'-mark' if mark else ''}"
        path = self._out / f"{stem}.csv.gz"
        gaps_path = self._out / f"{stem}.gaps.json"
        rows = _read_rows(path, CANDLE_HEADER)
        known_gaps = _read_gaps(gaps_path)
        now = self._clock.now_ms()
        first = start_ms + (-start_ms) % tf_ms
        last_closed_open = (now // tf_ms) * tf_ms - tf_ms  # open time of the newest closed bar
        stop = min(end_ms, last_closed_open + tf_ms)  # exclusive end of the opens we want
        result = SeriesResult(path)
        runs = _missing_runs(first, stop, tf_ms, set(rows), known_gaps)
        total = sum((b - a) // tf_ms for a, b in runs)
        label = f"{symbol} {timeframe}{' mark' if mark else ''}"
        done = 0
        pages = 0
        params: dict[str, Any] = {"price": "mark"} if mark else {}
        try:
            for run_start, run_end in runs:
                since = run_start
                while since < run_end:
                    page_end = min(run_end, since + self._limit * tf_ms)
                    page = self._call(
                        _bind(
                            self._ex.fetch_ohlcv,
                            symbol,
                            timeframe,
                            since,
                            self._limit,
                            {**params, "until": page_end - 1},
                        ),
                        f"fetch_ohlcv({symbol}, {timeframe})",
                    )
                    got = [
                        r
                        for r in page
                        if since <= int(r[0]) < page_end and int(r[0]) <= last_closed_open
                    ]
                    expected = since
                    for r in got:
                        ts = int(r[0])
                        if ts % tf_ms:
                            raise DataError(
                                f"{self._ex.id} {label}: candle at {ts} is off the {timeframe} grid"
                            )
                        if ts > expected:
                            result.gaps.append((expected, ts))
                        if ts not in rows:
                            rows[ts] = _candle_line(r, mark)
                            result.added += 1
                        expected = ts + tf_ms
                    if not got:  # the venue answered with nothing for the whole page
                        result.gaps.append((since, page_end))
                        expected = page_end
                    # Go on after the last row received: a page may hold fewer rows than asked
                    # (a venue or ccxt cap), so only an empty answer proves a hole.
                    done += (expected - since) // tf_ms
                    since = expected
                    pages += 1
                    if self._progress is not None:
                        self._progress(label, done, total)
                    if pages % self._flush_pages == 0:
                        self._save(path, rows, CANDLE_HEADER, gaps_path, known_gaps, result.gaps)
        finally:
            self._save(path, rows, CANDLE_HEADER, gaps_path, known_gaps, result.gaps)
        return result

    def funding(self, symbol: str, start_ms: int, end_ms: int) -> SeriesResult:
        """Settled funding rates in [start_ms, end_ms) missing from the funding file."""
        path = self._out / f"{symbol_to_stem(symbol)}-funding.csv.gz"
        rows = _read_rows(path, FUNDING_HEADER)
        result = SeriesResult(path)
        stop = min(end_ms, self._clock.now_ms() + 1)
        windows: list[tuple[int, int]] = []
        if rows:
            lo, hi = min(rows), max(rows)
            if start_ms < lo:
                windows.append((start_ms, lo))
            if hi + 1 < stop:
                windows.append((max(start_ms, hi + 1), stop))
        else:
            windows.append((start_ms, stop))
        try:
            for since, until in windows:
                while since < until:
                    # Sized for the shortest funding interval (1 h) so a page can never hold
                    # more rows than the venue returns (Bybit returns the NEWEST rows of a
                    # window when it holds more than the limit).
                    page_end = min(until, since + self._funding_limit * HOUR_MS)
                    page = self._call(
                        _bind(
                            self._ex.fetch_funding_rate_history,
                            symbol,
                            since,
                            self._funding_limit,
                            {"until": page_end - 1},
                        ),
                        f"fetch_funding_rate_history({symbol})",
                    )
                    stamps = []
                    for r in page:
                        ts, rate = r.get("timestamp"), r.get("fundingRate")
                        if ts is None or rate is None or not since <= int(ts) < page_end:
                            continue
                        minute = settlement_minute(int(ts))  # settlement stamps carry jitter
                        stamps.append(int(ts))
                        if minute not in rows and not _near(rows, minute):
                            rows[minute] = f"{minute},{float(rate)!r}"
                            result.added += 1
                    # A full page may stop before page_end: go on after its last row.
                    full = len(page) >= self._funding_limit and stamps
                    since = max(stamps) + 1 if full else page_end
        finally:
            if rows:
                _write_rows(path, FUNDING_HEADER, rows)
        return result

    # -- internals -----------------------------------------------------------------------------

    def _save(
        self,
        path: Path,
        rows: dict[int, str],
        header: str,
        gaps_path: Path,
        known: list[tuple[int, int]],
        new: list[tuple[int, int]],
    ) -> None:
        if rows:
            _write_rows(path, header, rows)
        merged = _merge(known + new)
        if merged:
            with replaced_text(gaps_path) as fh:
                fh.write(strict_json.dumps([list(g) for g in merged]) + "\n")

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return call_with_retry(
                fn,
                clock=self._clock,
                policy=self._retry,
                retry_after_of=self._retry_after,
                resync=lambda: None,  # public calls are not signed: no clock to resync
                what=what,
            )
        except ccxt.BaseError as exc:
            raise map_ccxt_error(exc, retry_after=self._retry_after(exc)) from exc

    def _retry_after(self, exc: BaseException) -> float | None:
        if not is_rate_limit(exc):
            return None
        return retry_after_seconds(self._ex.last_response_headers)


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """``fn`` with its arguments fixed now (a retry repeats the same request)."""
    return lambda: fn(*args)


def _near(rows: dict[int, str], minute: int) -> bool:
    """A settlement already recorded one minute either side (jitter across the minute)."""
    return (minute - 60_000) in rows or (minute + 60_000) in rows


def _candle_line(r: Sequence[Any], mark: bool) -> str:
    ts, o, h, low, c = int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4])
    volume = 0.0 if mark or r[5] is None else float(r[5])
    return f"{ts},{o!r},{h!r},{low!r},{c!r},{volume!r}"


def _missing_runs(
    first: int, stop: int, tf_ms: int, have: set[int], gaps: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Contiguous [a, b) stretches of the grid first, first+tf, ... < stop that the file lacks
    and that are not known venue gaps."""
    runs: list[tuple[int, int]] = []
    run_start: int | None = None
    for ts in range(first, stop, tf_ms):
        missing = ts not in have and not any(a <= ts < b for a, b in gaps)
        if missing and run_start is None:
            run_start = ts
        elif not missing and run_start is not None:
            runs.append((run_start, ts))
            run_start = None
    if run_start is not None:
        runs.append((run_start, stop))
    return runs


def _merge(gaps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(gaps):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _read_rows(path: Path, header: str) -> dict[int, str]:
    """The data rows of an existing file keyed by timestamp (kept verbatim)."""
    if not path.exists():
        return {}
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the existing file to resume: {exc}") from exc
    lines = text.splitlines()
    if not lines or lines[0].strip() != header:
        raise DataError(f"{path}: line 1: expected the header {header!r} (will not overwrite)")
    rows: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            ts = int(line.split(",", 1)[0])
        except ValueError:
            raise DataError(f"{path}: line {number}: bad timestamp in {line[:60]!r}") from None
        if ts in rows:
            raise DataError(f"{path}: line {number}: duplicate timestamp {ts}")
        rows[ts] = line.strip()
    return rows


def _read_gaps(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [(int(a), int(b)) for a, b in data]
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a list of [start_ms, end_ms] pairs: {exc}") from None


def _write_rows(path: Path, header: str, rows: dict[int, str]) -> None:
    body = "\n".join(rows[ts] for ts in sorted(rows))
    data = gzip.compress(f"{header}\n{body}\n".encode(), mtime=0)
    with replaced_binary(path) as fh:
        fh.write(data)
