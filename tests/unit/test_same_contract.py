"""The files chosen for one contract hold one contract's prices (``check_same_contract``).

ETH's hourly mark file saved as SOL's was accepted: the simulation bought SOL at 200 and put its
stop at ETH's 3874 mark, above the entry, and reported the nonsense that followed. So did ETH's
trade files as SOL's (SOL bought at 4390 with a stop at 185). The trade file is now compared with
the mark file, and every other trade file read for the decision candles with the trade file, by
the median ratio of their closes at the same instants; real data (a crash wick, a basis of a few
percent) never comes near the limit.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.clock import datetime_to_ms
from bot.errors import DataError
from bot.marketdata.candles import Candles
from bot.marketdata.files import DataFileError, discover
from bot.sim.history import (
    FOREIGN_RUN_MS,
    _same_times,
    check_same_contract,
    load_history,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
MIN5, HOUR = 300_000, 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
SOL = "SOL/USDT:USDT"


def series(tf: int, closes: np.ndarray, kind: str, source: str, start: int = T0) -> Candles:
    ts = start + tf * np.arange(len(closes), dtype=np.int64)
    c = np.asarray(closes, dtype=np.float64)
    return Candles(ts, c, c * 1.001, c * 0.999, c, np.zeros(len(c)), tf, SOL, kind, source)


def _day(y: int, m: int, d: int) -> int:
    return datetime_to_ms(datetime(y, m, d, tzinfo=UTC))


def _sol_history(data: Path) -> None:
    load_history(
        discover(data), SOL, "1h", window=(_day(2025, 9, 1), _day(2025, 9, 11)), warmup=200
    )


@pytest.mark.parametrize(
    ("swap", "named"),
    [
        ({"SOL_USDT_USDT-1h-mark.csv.gz": "ETH_USDT_USDT-1h-mark.csv.gz"}, "1h-mark"),
        (
            {
                "SOL_USDT_USDT-5m.csv.gz": "ETH_USDT_USDT-5m.csv.gz",
                "SOL_USDT_USDT-1h.csv.gz": "ETH_USDT_USDT-1h.csv.gz",
            },
            "1h-mark",
        ),
        ({"SOL_USDT_USDT-5m.csv.gz": "ETH_USDT_USDT-5m.csv.gz"}, "SOL_USDT_USDT-1h.csv"),
    ],
    ids=["eth_mark_as_sol", "eth_trades_as_sol", "eth_5m_as_sol_5m_only"],
)
def test_another_contracts_file_under_a_contracts_name_is_refused(
    tmp_path: Path, swap: dict[str, str], named: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    for dst, src in swap.items():
        shutil.copy(SAMPLE / src, data / dst)
    with pytest.raises(DataFileError) as caught:
        _sol_history(data)
    said = str(caught.value)
    # both files named, with the first row where they disagree and a question to the trader
    assert "SOL_USDT_USDT-5m.csv.gz line " in said
    assert named in said
    assert "not the same contract?" in said
    assert isinstance(caught.value, DataError)  # `bot simulate` refuses with exit status 2


def test_the_sample_loads_as_it_always_did(tmp_path: Path) -> None:
    _sol_history(SAMPLE)  # SOL's own files: no refusal


def test_the_error_names_both_files_and_the_first_row_where_they_disagree() -> None:
    trade = series(MIN5, np.full(72, 150.0), "trade", "sol-5m.csv")
    mark = series(HOUR, np.full(6, 3000.0), "mark", "eth-1h-mark.csv")
    with pytest.raises(DataFileError) as caught:
        check_same_contract(trade, mark)
    # the first 5m candle closing with the first hourly mark bar: the 12th row, line 13
    assert str(caught.value).startswith(
        "sol-5m.csv line 13 close 150.0 vs eth-1h-mark.csv line 2 close 3000.0 (a factor of 20, "
        "both closing at 2025-01-01 01:00): not the same contract? the median of their 6 closes "
        "at the same times differs by a factor of 20"
    )


def test_a_crash_wick_far_off_the_mark_is_no_other_contract() -> None:
    """A thin book's last price 80 % under the mark for a few minutes, closes included."""
    mark = 100.0 * np.exp(np.cumsum(np.full(24 * 12, -0.001)))
    last = mark * 1.003
    last[100:106] = mark[100:106] * 0.2
    check_same_contract(
        series(MIN5, last, "trade", "t"), series(MIN5, mark, "mark", "m")
    )  # no error


def test_a_day_of_another_contracts_prices_inside_a_file_is_refused() -> None:
    """Two downloads joined: the median holds (most of the file is right), the run does not."""
    hours = 24 * 10
    mark = np.full(hours, 150.0)
    last = mark.copy()
    last[100 : 100 + 25] = 3000.0  # 25 hourly closes in a row: a day from the first to the last
    with pytest.raises(DataFileError, match=r"line 102 close 3000.0 .* from 2025-01-05 05:00 to"):
        check_same_contract(series(HOUR, last, "trade", "t"), series(HOUR, mark, "mark", "m"))
    last[100 + 24] = 150.0  # 24 closes: 23 hours
    check_same_contract(series(HOUR, last, "trade", "t"), series(HOUR, mark, "mark", "m"))
    assert FOREIGN_RUN_MS == 24 * HOUR


def test_files_with_too_few_closes_in_common_are_not_compared() -> None:
    trade = series(HOUR, np.full(100, 150.0), "trade", "t")
    mark = series(HOUR, np.full(4, 3000.0), "mark", "m", start=T0 + 96 * HOUR)
    check_same_contract(trade, mark)  # four closes in common: no verdict on so few


@given(
    st.sets(st.integers(0, 400), max_size=200),
    st.sets(st.integers(0, 400), min_size=1, max_size=200),
    st.sampled_from([1, 3, 12]),
)
def test_the_times_in_common_are_those_a_search_finds(
    short_slots: set[int], long_slots: set[int], per: int
) -> None:
    """The grid lookup (with a search after holes) finds exactly the common times."""
    step = MIN5 * per
    long_ = T0 + step * np.array(sorted(long_slots), dtype=np.int64)
    short = T0 + MIN5 * np.array(sorted(short_slots), dtype=np.int64)
    i_short, i_long = _same_times(short, long_, step)
    _, expect_short, expect_long = np.intersect1d(short, long_, return_indices=True)
    assert i_short.tolist() == expect_short.tolist()
    assert i_long.tolist() == expect_long.tolist()
    assert (short[i_short] == long_[i_long]).all()
