"""Directional signals from a CSV file: ``timestamp,contract,direction``.

``timestamp`` is UTC epoch milliseconds (``1735689600000``) or ISO-8601 with an explicit
offset (``2025-01-01T00:00:00Z``); ``contract`` a ccxt perpetual symbol (``BTC/USDT:USDT``);
``direction`` one of -1 (short), 0 (flat), 1 (long). A signal holds until the next one.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.errors import DataError
from bot.marketdata.files import MAX_PLAUSIBLE_MS, MIN_PLAUSIBLE_MS, file_errors

SIGNAL_COLUMNS = ("timestamp", "contract", "direction")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+:[A-Z0-9]+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, eq=False)
class SignalSeries:
    """Signals of one contract, sorted by ``ts`` (int64 UTC epoch ms), unique timestamps."""

    contract: str
    ts: npt.NDArray[np.int64]
    direction: npt.NDArray[np.int8]
    source: str

    def __len__(self) -> int:
        return len(self.ts)

    def direction_at(self, ms: int) -> int:
        """The last direction issued at or before ``ms``; 0 before the first signal."""
        i = int(np.searchsorted(self.ts, ms, side="right")) - 1
        return int(self.direction[i]) if i >= 0 else 0


def load_signals(path: Path | str) -> dict[str, SignalSeries]:
    """Read a signal file into one series per contract. DataError names the file and line
    (a :class:`~bot.marketdata.files.DataFileError`: the file's, not the run's)."""
    with file_errors():
        return _load_signals(Path(path))


def _load_signals(path: Path) -> dict[str, SignalSeries]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    reader = csv.reader(text.splitlines())
    header = [c.strip() for c in next(reader, [])]
    if tuple(header) != SIGNAL_COLUMNS:
        raise DataError(
            f"{path}: line 1 (header): got {','.join(header)!r}, "
            f"expected {','.join(SIGNAL_COLUMNS)!r}"
        )
    rows: dict[str, dict[int, tuple[int, int]]] = {}  # contract -> ts -> (direction, line)
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue  # blank lines in a hand-written file are harmless
        if len(fields) != len(SIGNAL_COLUMNS):
            raise DataError(
                f"{path}: line {line}: expected 3 fields (timestamp,contract,direction), "
                f"found {len(fields)}"
            )
        raw_ts, contract, raw_dir = (f.strip() for f in fields)
        ms = _parse_timestamp(raw_ts, f"{path}: line {line}")
        if not _SYMBOL_RE.match(contract):
            raise DataError(
                f"{path}: line {line}: contract {contract!r} is not a ccxt perpetual symbol "
                "like 'BTC/USDT:USDT'"
            )
        direction = _parse_direction(raw_dir, f"{path}: line {line}")
        by_ts = rows.setdefault(contract, {})
        if ms in by_ts:
            raise DataError(
                f"{path}: line {line}: duplicate signal for {contract} at {raw_ts} "
                f"(first on line {by_ts[ms][1]})"
            )
        by_ts[ms] = (direction, line)
    if not rows:
        raise DataError(f"{path}: empty file: a header but no signals")
    return {c: _series(c, by_ts, str(path)) for c, by_ts in sorted(rows.items())}


def _series(contract: str, by_ts: dict[int, tuple[int, int]], source: str) -> SignalSeries:
    stamps = sorted(by_ts)
    ts = np.array(stamps, dtype=np.int64)
    direction = np.array([by_ts[t][0] for t in stamps], dtype=np.int8)
    ts.setflags(write=False)
    direction.setflags(write=False)
    return SignalSeries(contract=contract, ts=ts, direction=direction, source=source)


def _parse_timestamp(raw: str, where: str) -> int:
    if raw.isascii() and raw.isdigit():
        return _epoch_ms(raw, where)
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise DataError(
            f"{where}: timestamp {raw!r} is neither epoch milliseconds nor ISO-8601 "
            "(e.g. 1735689600000 or 2025-01-01T00:00:00Z)"
        ) from None
    if dt.tzinfo is None:
        raise DataError(f"{where}: timestamp {raw!r} has no time zone; write it in UTC with 'Z'")
    delta = dt - _EPOCH
    if delta % _MS:
        raise DataError(f"{where}: timestamp {raw!r} is finer than a millisecond")
    ms = delta // _MS
    if not MIN_PLAUSIBLE_MS <= ms <= MAX_PLAUSIBLE_MS:
        raise DataError(f"{where}: timestamp {raw!r} is not within 1973-03-03 to 2286-11-20")
    return ms


def _epoch_ms(raw: str, where: str) -> int:
    # Lengths first: int() refuses more than 4300 digits, and a number over 19 digits does not
    # fit the int64 the series are kept in.
    ms = int(raw) if len(raw.lstrip("0")) <= len(str(MAX_PLAUSIBLE_MS)) else None
    if ms is None or ms > MAX_PLAUSIBLE_MS:
        raise DataError(
            f"{where}: timestamp {raw} is not epoch milliseconds "
            "(too large: microseconds or nanoseconds?)"
        )
    if ms < MIN_PLAUSIBLE_MS:
        raise DataError(f"{where}: timestamp {raw} is not epoch milliseconds (seconds?)")
    return ms


def _parse_direction(raw: str, where: str) -> int:
    if raw not in ("-1", "0", "1", "+1"):
        raise DataError(f"{where}: direction {raw!r} must be -1, 0 or 1")
    return int(raw)
