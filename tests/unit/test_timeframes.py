"""Timeframe parsing, 24/7 annualisation and dropping the still-forming candle."""

from __future__ import annotations

import numpy as np
import pytest

from bot.stats.timeframes import MS_PER_YEAR, closed_count, parse_timeframe, periods_per_year

MINUTE = 60_000
HOUR = 60 * MINUTE


@pytest.mark.parametrize(
    ("tf", "ms"),
    [
        ("1m", MINUTE),
        ("3m", 3 * MINUTE),
        ("5m", 5 * MINUTE),
        ("15m", 15 * MINUTE),
        ("30m", 30 * MINUTE),
        ("1h", HOUR),
        ("2h", 2 * HOUR),
        ("4h", 4 * HOUR),
        ("8h", 8 * HOUR),
        ("12h", 12 * HOUR),
        ("1d", 24 * HOUR),
        ("1w", 7 * 24 * HOUR),
    ],
)
def test_parse_timeframe_known_values(tf: str, ms: int) -> None:
    assert parse_timeframe(tf) == ms


# "1M" is a month in ccxt (no fixed length); "1s" is not a futures kline interval we use.
@pytest.mark.parametrize(
    "bad", ["", "1M", "1H", "0m", "01h", "1s", "h", "1.5h", " 1h", "1h ", "-1h"]
)
def test_parse_timeframe_rejects_and_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid timeframe") as info:
        parse_timeframe(bad)
    assert repr(bad) in str(info.value)
    assert "<int><m|h|d|w>" in str(info.value)


def test_parse_timeframe_rejects_non_string() -> None:
    with pytest.raises(ValueError, match="invalid timeframe 60"):
        parse_timeframe(60)  # type: ignore[arg-type]


def test_periods_per_year_is_a_365_day_24_7_year() -> None:
    assert periods_per_year(parse_timeframe("1h")) == 8760.0
    assert periods_per_year(parse_timeframe("1d")) == 365.0  # not 252: crypto never closes
    assert periods_per_year(parse_timeframe("1m")) == 525_600.0
    assert periods_per_year(parse_timeframe("8h")) == 1095.0
    assert periods_per_year(parse_timeframe("1w")) == pytest.approx(365 / 7)
    assert MS_PER_YEAR == 31_536_000_000


@pytest.mark.parametrize("bad", [0, -HOUR, True])
def test_periods_per_year_rejects_non_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        periods_per_year(bad)


def test_closed_count_drops_the_forming_candle() -> None:
    # Three 1h candles opening 10:00, 11:00, 12:00 (as ms offsets from 10:00).
    opens = np.array([0, HOUR, 2 * HOUR], dtype=np.int64)
    # At 12:30 the 12:00 candle is still forming: two are closed.
    assert closed_count(opens, HOUR, 2 * HOUR + 30 * MINUTE) == 2
    # One millisecond before 13:00 it is still open ...
    assert closed_count(opens, HOUR, 3 * HOUR - 1) == 2
    # ... and at exactly 13:00 it has closed (t + tf <= now).
    assert closed_count(opens, HOUR, 3 * HOUR) == 3
    assert closed_count(opens, HOUR, 10 * HOUR) == 3


def test_closed_count_none_closed_and_empty() -> None:
    opens = np.array([5 * HOUR, 6 * HOUR], dtype=np.int64)
    assert closed_count(opens, HOUR, 5 * HOUR) == 0
    assert closed_count(opens, HOUR, 6 * HOUR - 1) == 0
    assert closed_count(opens, HOUR, 6 * HOUR) == 1
    assert closed_count(np.array([], dtype=np.int64), HOUR, 6 * HOUR) == 0


def test_closed_count_with_real_epoch_stamps() -> None:
    # 2024-01-01 00:00 UTC and the next two 1h candles; "now" is 2024-01-01 02:59:59.999.
    start = 1_704_067_200_000
    opens = start + HOUR * np.arange(3, dtype=np.int64)
    assert closed_count(opens, parse_timeframe("1h"), start + 3 * HOUR - 1) == 2


def test_closed_count_rejects_unsorted_and_names_index() -> None:
    opens = np.array([0, HOUR, HOUR, 3 * HOUR], dtype=np.int64)
    with pytest.raises(ValueError, match=r"open_ts_ms\[2\]=3600000 after open_ts_ms\[1\]"):
        closed_count(opens, HOUR, 10 * HOUR)


def test_closed_count_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tf_ms must be positive"):
        closed_count(np.array([0], dtype=np.int64), 0, HOUR)
    with pytest.raises(ValueError, match="1-D"):
        closed_count(np.zeros((2, 2), dtype=np.int64), HOUR, HOUR)
