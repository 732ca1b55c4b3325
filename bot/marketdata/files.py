"""Find and load market data files: one (gzip) CSV per contract and series.

Names (see ``data/sample/README.md``): ``<BASE>_USDT_USDT-<tf>.csv.gz`` last-trade OHLCV,
``<BASE>_USDT_USDT-<tf>-mark.csv.gz`` mark-price OHLC (volume 0),
``<BASE>_USDT_USDT-funding.csv.gz`` funding rates. Plain ``.csv`` is accepted too.
Timestamps are UTC epoch milliseconds; candles are stamped with their open time, funding
rows with the settlement time, taken to the nearest minute (:func:`settlement_minute`; a row
repeating a settlement at the same rate is dropped, at another rate refused). Files of
second candles (``-1s``) are skipped with a warning: the bot's timeframes are m, h, d or w.

Loading is one ``np.loadtxt`` pass (numpy's C parser) over the decompressed bytes, then
vectorised checks. Only when that pass fails is the file re-read line by line, to name the
first bad line.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, overload

import numpy as np
import numpy.typing as npt
from loguru import logger

from bot.errors import DataError
from bot.marketdata.cache import Columns, forget, load_table
from bot.marketdata.candles import Candles, FundingSeries, format_timeframe, parse_timeframe

T = TypeVar("T")


class DataFileError(DataError):
    """A data file's content cannot be used (a bad line, a file that cannot be read, files of
    one contract's name that hold two contracts' prices). A fact about the file, whatever run
    reads it: a sweep stops on it instead of recording it as every point's result
    (:mod:`bot.research.evaluate`)."""


@contextmanager
def file_errors() -> Iterator[None]:
    """A :class:`DataError` raised inside as a :class:`DataFileError` (same message)."""
    try:
        yield
    except DataFileError:
        raise
    except DataError as e:
        raise DataFileError(str(e)) from e


CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
FUNDING_COLUMNS = ("timestamp", "funding_rate")
MAX_ABS_FUNDING_RATE = 0.1  # fraction per interval; exchanges cap far lower (Binance: 0.03 at most)
SETTLEMENT_MS = 60_000  # funding settlement stamps are taken to the minute (settlement_minute)
# 1973-03-03 in ms; a smaller stamp is almost surely in seconds, not milliseconds.
MIN_PLAUSIBLE_MS = 100_000_000_000
# 2286-11-20 in ms; a larger stamp is almost surely in microseconds or nanoseconds (stamps of
# today are near 1.7e12 in ms, 1.7e15 in us, 1.7e18 in ns). It also keeps every stamp a date.
# Signal files are held to the same two bounds (bot.marketdata.signals).
MAX_PLAUSIBLE_MS = 10_000_000_000_000
# Prices outside this range are no perpetual's: the dearest (BTC) trades near 1e5 USDT, the
# cheapest near 3e-5 (1000SATS; the venues' finest tick is 1e-7). The cap also keeps the
# simulator's decimals exact: a price of at most 10 integer digits, quantized to the 1e-10 of
# its money (bot.sim.book), stays well inside Decimal's 28 digits, where 1e300 broke the
# funding charge and 1e12 charged funding on an absurd notional.
MIN_PRICE = 1e-9
MAX_PRICE = 1e9
# The most a price may move in one candle, either way: the high over the low, and over or under
# the close of the candle just before. Real perpetual candles stay far inside it (the widest in
# the full Binance and Bybit data set: ETH 1h on 2020-03-13, from 84 to 323, 3.8 times), and it
# leaves room for a collapse like LUNA's in May 2022 on hourly candles, while a price in another
# unit (x1000) or a stray exponent is off by far more. A bound this wide lets a one-digit typo
# (x10) through: refusing real crash candles of a daily file would be worse. A hole in the data
# is not a candle: the first candle after one is measured on its own (SOL was 6.4 times dearer
# after a two-year hole).
MAX_CANDLE_MOVE = 100.0
_CANDLE_DTYPE = np.dtype(
    [(c, np.int64 if c == "timestamp" else np.float64) for c in CANDLE_COLUMNS]
)
_FUNDING_DTYPE = np.dtype([("timestamp", np.int64), ("funding_rate", np.float64)])
_NAME_RE = re.compile(
    r"^(?P<stem>[A-Za-z0-9]+_[A-Za-z0-9]+_[A-Za-z0-9]+)-"
    r"(?:(?P<tf>[1-9][0-9]*[smhdw])(?P<mark>-mark)?|funding)\.csv(?:\.gz)?$"
)


def symbol_to_stem(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC_USDT_USDT"`` (the freqtrade file-name spelling)."""
    return symbol.replace("/", "_").replace(":", "_")


def stem_to_symbol(stem: str) -> str:
    """``"BTC_USDT_USDT"`` -> ``"BTC/USDT:USDT"``."""
    parts = stem.split("_")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"file stem {stem!r} is not BASE_QUOTE_SETTLE")
    return f"{parts[0]}/{parts[1]}:{parts[2]}"


@dataclass
class _SymbolFiles:
    trade: dict[int, Path] = field(default_factory=dict)  # tf_ms -> file
    mark: dict[int, Path] = field(default_factory=dict)
    funding: Path | None = None


@dataclass(frozen=True)
class DataInventory:
    """Which contracts and series a data directory holds. Timeframes are strings like ``"1h"``."""

    data_dir: Path
    _files: dict[str, _SymbolFiles]

    def symbols(self) -> list[str]:
        """ccxt symbols with at least one file, sorted."""
        return sorted(self._files)

    def _get(self, symbol: str) -> _SymbolFiles:
        try:
            return self._files[symbol]
        except KeyError:
            raise DataError(
                f"{self.data_dir}: no data for {symbol!r}; available: {', '.join(self.symbols())}"
            ) from None

    def trade_timeframes(self, symbol: str) -> list[str]:
        """Timeframes with last-trade candles, shortest first."""
        return [format_timeframe(ms) for ms in sorted(self._get(symbol).trade)]

    def mark_timeframes(self, symbol: str) -> list[str]:
        """Timeframes with mark-price candles, shortest first."""
        return [format_timeframe(ms) for ms in sorted(self._get(symbol).mark)]

    def has_funding(self, symbol: str) -> bool:
        return self._get(symbol).funding is not None

    def candle_path(self, symbol: str, tf: str, kind: str = "trade") -> Path:
        """Path of the ``kind`` ("trade" | "mark") candle file of ``symbol`` at ``tf``."""
        if kind not in ("trade", "mark"):
            raise ValueError(f"kind must be 'trade' or 'mark', got {kind!r}")
        files = self._get(symbol)
        by_tf = files.trade if kind == "trade" else files.mark
        path = by_tf.get(parse_timeframe(tf))
        if path is None:
            raise DataError(f"{self.data_dir}: no {kind} {tf} candles for {symbol}")
        return path

    def funding_path(self, symbol: str) -> Path:
        path = self._get(symbol).funding
        if path is None:
            raise DataError(f"{self.data_dir}: no funding file for {symbol}")
        return path

    def series_files(self, symbols: Iterable[str]) -> dict[str, Path]:
        """Every file of ``symbols``, by the name a sweep pins it under (``data BTC/USDT:USDT
        5m``, ``... 1h mark``, ``... funding``): the files the selection may choose from."""
        files: dict[str, Path] = {}
        for sym in symbols:
            for tf in self.trade_timeframes(sym):
                files[f"data {sym} {tf}"] = self.candle_path(sym, tf)
            for tf in self.mark_timeframes(sym):
                files[f"data {sym} {tf} mark"] = self.candle_path(sym, tf, "mark")
            if self.has_funding(sym):
                files[f"data {sym} funding"] = self.funding_path(sym)
        return files

    def load_candles(self, symbol: str, tf: str, kind: str = "trade") -> Candles:
        return load_candles(self.candle_path(symbol, tf, kind), symbol, parse_timeframe(tf), kind)

    def load_funding(self, symbol: str) -> FundingSeries:
        return load_funding(self.funding_path(symbol), symbol)


def discover(data_dir: Path) -> DataInventory:
    """List the recognisable data files directly inside ``data_dir`` (not in sub-folders)."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory does not exist")
    found: dict[str, _SymbolFiles] = {}
    seen: dict[str, Path] = {}
    for path in sorted(data_dir.iterdir()):
        m = _NAME_RE.match(path.name)
        if m is None or not path.is_file():
            continue
        if m["tf"] is not None and m["tf"].endswith("s"):
            # Second candles (freqtrade downloads them for some venues) are of no use here: the
            # policies, the statistics and the simulator count in m, h, d or w. Like any other
            # file that is not usable market data they are left out, but named, since their
            # name says market data.
            logger.warning(
                "{}: skipped {}: candles of seconds are not used (timeframes are m, h, d or w)",
                data_dir,
                path.name,
            )
            continue
        series = path.name.removesuffix(".gz").removesuffix(".csv")
        if (other := seen.get(series)) is not None:
            raise DataError(f"{data_dir}: both {other.name} and {path.name} hold {series}")
        seen[series] = path
        files = found.setdefault(stem_to_symbol(m["stem"]), _SymbolFiles())
        if m["tf"] is None:
            files.funding = path
            continue
        by_tf = files.mark if m["mark"] else files.trade
        tf_ms = parse_timeframe(m["tf"])
        if (other := by_tf.get(tf_ms)) is not None:
            # -60m and -1h name one series: which one the data is was down to the order of the
            # directory listing
            raise DataError(f"{data_dir}: both {other.name} and {path.name} hold the same candles")
        by_tf[tf_ms] = path
    if not found:
        raise DataError(
            f"{data_dir}: no market data files (expected names like BTC_USDT_USDT-1h.csv.gz, "
            "BTC_USDT_USDT-1h-mark.csv.gz, BTC_USDT_USDT-funding.csv.gz)"
        )
    return DataInventory(data_dir, found)


def load_candles(path: Path | str, symbol: str, tf_ms: int, kind: str = "trade") -> Candles:
    """Load and validate one candle file; ``tf_ms`` is the candle length in ms."""
    path = Path(path)
    if kind not in ("trade", "mark"):
        raise ValueError(f"kind must be 'trade' or 'mark', got {kind!r}")
    with file_errors():
        return _checked(
            path,
            CANDLE_COLUMNS,
            _CANDLE_DTYPE,
            lambda rows: _candles(path, rows, symbol, tf_ms, kind),
        )


def _checked(
    path: Path,
    columns: tuple[str, ...],
    dtype: np.dtype[np.void],
    check: Callable[[Columns], T],
) -> T:
    """``check`` of the table of ``path``. Rows from the binary cache that fail it are dropped
    from the cache and parsed again from the source, so a damaged cache entry never makes a
    sound data file look broken; a source that really fails says so, by its own line."""
    try:
        return check(_read_table(path, columns, dtype))
    except DataError:
        if not forget(path):
            raise
    return check(_read_table(path, columns, dtype))


def _candles(path: Path, rows: Columns, symbol: str, tf_ms: int, kind: str) -> Candles:
    ts = _column(rows, "timestamp")
    _check_timestamps(path, ts, tf_ms)
    cols = {name: _column(rows, name) for name in CANDLE_COLUMNS[1:]}
    _fail_first(
        path, {n: ~np.isfinite(a) for n, a in cols.items()}, "{col} is not finite: {v}", cols
    )
    prices = {n: cols[n] for n in ("open", "high", "low", "close")}
    _fail_first(path, {n: a <= 0 for n, a in prices.items()}, "{col} is not positive: {v}", cols)
    o, h, lo, c, v = (cols[n] for n in CANDLE_COLUMNS[1:])
    bad_high = h < np.maximum(o, c)
    _fail_first(path, {"high": bad_high}, "high {v} is below max(open, close)", cols)
    _fail_first(path, {"low": lo > np.minimum(o, c)}, "low {v} is above min(open, close)", cols)
    _fail_first(path, {"volume": v < 0}, "volume is negative: {v}", cols)
    absurd = {n: (a < MIN_PRICE) | (a > MAX_PRICE) for n, a in prices.items()}
    problem = f"{{col}} {{v}} is absurd (not within {MIN_PRICE:g} to {MAX_PRICE:g})"
    _fail_first(path, absurd, problem, cols)
    _check_moves(path, ts, tf_ms, cols)
    return Candles(ts, o, h, lo, c, v, tf_ms=tf_ms, symbol=symbol, kind=kind, source=str(path))


def _check_moves(
    path: Path, ts: npt.NDArray[np.int64], tf_ms: int, cols: dict[str, npt.NDArray[np.float64]]
) -> None:
    """Refuse the first candle that moves more than :data:`MAX_CANDLE_MOVE` times: its high over
    its low, or its high or low off the close of the candle just before it (none after a hole).
    Prices are positive here, and each candle's high its top and its low its bottom."""
    high, low, close = cols["high"], cols["low"], cols["close"]
    within = high > MAX_CANDLE_MOVE * low
    before = close[:-1]
    jump = np.zeros(len(ts), dtype=np.bool_)
    jump[1:] = (np.diff(ts) == tf_ms) & (
        (high[1:] > MAX_CANDLE_MOVE * before) | (low[1:] * MAX_CANDLE_MOVE < before)
    )
    bad = np.flatnonzero(within | jump)
    if not bad.size:
        return
    i = int(bad[0])
    hi, lo = float(high[i]), float(low[i])
    if jump[i]:
        ref = float(close[i - 1])
        what = (
            f"moves by a factor of {max(hi / ref, ref / lo):.3g} from the close {ref!r} of the "
            f"candle before it (line {i + 1})"
        )
    else:
        what = f"spans a factor of {hi / lo:.3g} from its low to its high"
    row = ", ".join(f"{n}={float(cols[n][i])!r}" for n in ("open", "high", "low", "close"))
    raise DataError(
        f"{path}: line {i + 2}: the candle {what} ({row}); no market moves more than "
        f"{MAX_CANDLE_MOVE:g} times in one candle: a typo, or a price in another unit?"
    )


def load_funding(path: Path | str, symbol: str) -> FundingSeries:
    """Load and validate one funding file (rates as fractions per interval)."""
    path = Path(path)
    with file_errors():
        return _checked(
            path, FUNDING_COLUMNS, _FUNDING_DTYPE, lambda rows: _funding(path, rows, symbol)
        )


@overload
def settlement_minute(ms: int) -> int: ...
@overload
def settlement_minute(ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def settlement_minute(ms: int | npt.NDArray[np.int64]) -> int | npt.NDArray[np.int64]:
    """The minute a funding settlement stamp belongs to: the nearest one. The venues settle on
    the minute (on the hour, in fact), but their raw stamps carry milliseconds of jitter
    (Binance ``fundingTime`` 16:00:00.011; the shared data README: the timestamp is "rounded
    to the nearest minute (the exchanges' raw stamps carry up to ~30 ms of jitter)"); the
    nearest minute keeps a stamp a few ms early in its minute too, where flooring moved it a
    whole minute back. The loader and both downloaders (:mod:`bot.exchange.history_download`,
    :mod:`bot.exchange.download`) take a stamp to its minute by this one rule."""
    return (ms + SETTLEMENT_MS // 2) // SETTLEMENT_MS * SETTLEMENT_MS


def _funding(path: Path, rows: Columns, symbol: str) -> FundingSeries:
    raw = _column(rows, "timestamp")
    _check_epoch_ms(path, raw)
    # A settlement is taken at its minute (settlement_minute): left with its jitter, one at
    # 08:00:00.011 came after the simulation's 08:00 decision tick (a position that tick
    # opened paid it, one it closed escaped it) and was priced on the mark after the 08:00
    # candle instead of at its open.
    ts = settlement_minute(raw)
    step = np.diff(ts)
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0])
        raise DataError(
            f"{path}: line {i + 3}: timestamps not strictly increasing: {_fmt_ms(int(raw[i + 1]))} "
            f"follows {_fmt_ms(int(raw[i]))} on line {i + 2}"
        )
    cols = {"funding_rate": _column(rows, "funding_rate")}
    rate = cols["funding_rate"]
    _fail_first(path, {"funding_rate": ~np.isfinite(rate)}, "{col} is not finite: {v}", cols)
    absurd = {"funding_rate": np.abs(rate) > MAX_ABS_FUNDING_RATE}
    problem = f"funding_rate {{v}} is absurd (|rate| > {MAX_ABS_FUNDING_RATE} per interval)"
    _fail_first(path, absurd, problem, cols)
    again = np.flatnonzero(step == 0)  # row i + 1 is in the minute of row i
    if again.size:
        ts, rate = _one_per_settlement(path, raw, ts, rate, again)
    ts.setflags(write=False)
    return FundingSeries(ts, rate, symbol=symbol, source=str(path))


def _one_per_settlement(
    path: Path,
    raw: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    rate: npt.NDArray[np.float64],
    again: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """One row per settlement: a row in the minute of the row before it is the same settlement.
    At the same rate it is a copy (two dumps merged, one with the venue's jittered stamp, the
    other with the minute: 08:00:00.007 beside 08:00:00.000) and is dropped: charged twice, it
    doubled the settlement, and the 7 ms step read as a change of interval. At another rate
    nothing says which one the venue charged: refused, both lines named."""
    differ = again[rate[again + 1] != rate[again]]
    if differ.size:
        i = int(differ[0])
        raise DataError(
            f"{path}: line {i + 3}: duplicate settlement: {_fmt_ms(int(raw[i + 1]))} is in the "
            f"minute of {_fmt_ms(int(raw[i]))} on line {i + 2} (settlement stamps are taken to "
            f"the nearest minute) at another funding_rate, {float(rate[i + 1])!r} against "
            f"{float(rate[i])!r}: one settlement has one rate"
        )
    keep = np.ones(len(ts), dtype=np.bool_)
    keep[again + 1] = False
    logger.info(
        "{}: {} duplicate funding row(s) dropped (a settlement repeated at the same rate in the "
        "same minute), the first on line {}",
        path,
        len(again),
        int(again[0]) + 3,
    )
    out = rate[keep]
    out.setflags(write=False)
    return ts[keep], out


def _column(table: Columns, name: str) -> npt.NDArray[Any]:
    out = table[name]
    out.setflags(write=False)
    return out


def _read_table(path: Path, columns: tuple[str, ...], dtype: np.dtype[np.void]) -> Columns:
    """Decompress if gzip, check the header, parse every row; DataError names the bad line.
    The parsed rows are kept in the binary cache (:mod:`bot.marketdata.cache`)."""
    return load_table(path, dtype, lambda data: _parse_table(path, data, columns, dtype))


def _parse_table(
    path: Path, data: bytes, columns: tuple[str, ...], dtype: np.dtype[np.void]
) -> npt.NDArray[np.void]:
    if data[:2] == b"\x1f\x8b":  # gzip magic: trust the content, not the suffix
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data: {e}") from e
    header, _, body = data.partition(b"\n")
    if not header.strip():
        raise DataError(f"{path}: empty file (no header, no rows)")
    _check_header(path, header.decode("utf-8-sig", errors="replace"), columns)
    # Trailing whitespace and blank lines at the end are harmless. Scan instead of rstrip():
    # copying a 30 MB body costs more than the check.
    end = len(body)
    while end and body[end - 1] in b" \t\r\n":
        end -= 1
    if end == 0:
        raise DataError(f"{path}: empty file: a header but no data rows")
    if end < len(body) - 1:
        body = body[:end]
    try:
        rows = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=dtype, comments=None, ndmin=1)
    except ValueError as e:
        _raise_first_bad_line(path, body[:end], columns, str(e))
    if len(rows) != body.count(b"\n", 0, end) + 1:  # loadtxt skips blank lines silently
        _raise_first_bad_line(path, body[:end], columns, "blank line")
    return rows


def _check_header(path: Path, header: str, expected: tuple[str, ...]) -> None:
    cols = [c.strip() for c in header.strip().split(",")]
    if tuple(cols) == expected:
        return
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected]
    problems = []
    if len(cols) == len(expected) and missing and len(missing) == len(extra):
        renamed = [f"{g!r} instead of {w!r}" for g, w in zip(cols, expected, strict=True) if g != w]
        problems.append("renamed column(s): " + ", ".join(renamed))
    else:
        if missing:
            problems.append("missing column(s): " + ", ".join(missing))
        if extra:
            problems.append("unexpected column(s): " + ", ".join(extra))
    dups = sorted({c for c in cols if cols.count(c) > 1})
    if dups:
        problems.append("duplicate column(s): " + ", ".join(dups))
    if not problems:
        problems.append("columns in the wrong order")
    raise DataError(
        f"{path}: line 1 (header): {'; '.join(problems)}; "
        f"got {','.join(cols)!r}, expected {','.join(expected)!r}"
    )


def _raise_first_bad_line(path: Path, body: bytes, columns: tuple[str, ...], why: str) -> NoReturn:
    for offset, raw in enumerate(body.split(b"\n")):
        where = f"{path}: line {offset + 2}"
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            raise DataError(f"{where}: empty line")
        fields = text.split(",")
        if len(fields) != len(columns):
            raise DataError(
                f"{where}: expected {len(columns)} fields ({','.join(columns)}), "
                f"found {len(fields)}: {text[:80]!r}"
            )
        for name, value in zip(columns, fields, strict=True):
            if not _parses(value, integer=name == "timestamp"):
                kind = "an integer (epoch ms)" if name == "timestamp" else "a number"
                raise DataError(f"{where}: column {name!r}: cannot parse {value!r} as {kind}")
    raise DataError(f"{path}: cannot parse: {why}")


def _parses(value: str, integer: bool) -> bool:
    if "_" in value:  # Python accepts 1_000, numpy does not
        return False
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        return False
    return not integer or -(2**63) <= number < 2**63


def _fmt_ms(ms: int) -> str:
    try:
        when = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(" ", timespec="milliseconds")
        return f"{ms} ({when.removesuffix('+00:00')} UTC)"
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _check_timestamps(path: Path, ts: npt.NDArray[np.int64], tf_ms: int | None) -> None:
    _check_epoch_ms(path, ts)
    step = np.diff(ts)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        i = int(bad[0])
        a, b = int(ts[i]), int(ts[i + 1])
        if a == b:
            raise DataError(
                f"{path}: line {i + 3}: duplicate timestamp {_fmt_ms(b)} (as line {i + 2})"
            )
        raise DataError(
            f"{path}: line {i + 3}: timestamps not strictly increasing: {_fmt_ms(b)} "
            f"follows {_fmt_ms(a)} on line {i + 2}"
        )
    if tf_ms is not None:
        off = np.flatnonzero(ts % tf_ms != 0)
        if off.size:
            i = int(off[0])
            raise DataError(
                f"{path}: line {i + 2}: timestamp {_fmt_ms(int(ts[i]))} is off the "
                f"{format_timeframe(tf_ms)} grid (remainder {int(ts[i] % tf_ms)} ms)"
            )


def _check_epoch_ms(path: Path, ts: npt.NDArray[np.int64]) -> None:
    """Refuse the first stamp that cannot be epoch milliseconds, guessing the unit it is in."""
    outside = np.flatnonzero((ts < MIN_PLAUSIBLE_MS) | (ts > MAX_PLAUSIBLE_MS))
    if outside.size:
        i = int(outside[0])
        small = ts[i] < MIN_PLAUSIBLE_MS
        why = "too small: seconds?" if small else "too large: microseconds or nanoseconds?"
        raise DataError(
            f"{path}: line {i + 2}: timestamp {ts[i]} is not UTC epoch milliseconds ({why})"
        )


def _fail_first(
    path: Path,
    masks: dict[str, npt.NDArray[np.bool_]],
    problem: str,
    cols: dict[str, npt.NDArray[np.float64]],
) -> None:
    """Raise for the earliest row flagged in any mask; ``problem`` may use {col} and {v}."""
    first: tuple[int, str] | None = None
    for name, mask in masks.items():
        hits = np.flatnonzero(mask)
        if hits.size and (first is None or hits[0] < first[0]):
            first = (int(hits[0]), name)
    if first is not None:
        row, name = first
        msg = problem.format(col=name, v=float(cols[name][row]))
        if len(cols) > 1:
            msg += " (" + ", ".join(f"{n}={float(cols[n][row])!r}" for n in cols) + ")"
        raise DataError(f"{path}: line {row + 2}: {msg}")
