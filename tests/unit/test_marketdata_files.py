"""Loading market data files: validation messages, candle/funding series operations, sample data."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import DataError
from bot.marketdata import (
    Candles,
    FundingSeries,
    discover,
    format_timeframe,
    load_candles,
    load_funding,
    parse_timeframe,
    stem_to_symbol,
    symbol_to_stem,
)
from bot.marketdata.files import settlement_minute

H = 3_600_000
M15 = 900_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
HEADER = "timestamp,open,high,low,close,volume"
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
# The full data set, when this machine has it (BOT_SHARED_DATA names the shared directory).
SHARED_ENV = os.environ.get("BOT_SHARED_DATA", "")
SHARED = Path(SHARED_ENV) / "data" if SHARED_ENV else None


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def candle_rows(n: int, start: int = T0, step: int = H) -> list[str]:
    return [f"{start + i * step},100.0,101.5,99.5,100.5,{i}.25" for i in range(n)]


def candle_file(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    return write(tmp_path / "BTC_USDT_USDT-1h.csv.gz", "\n".join([header, *rows]) + "\n")


def load_error(path: Path, tf_ms: int = H) -> str:
    with pytest.raises(DataError) as info:
        load_candles(path, "BTC/USDT:USDT", tf_ms)
    return str(info.value)


# --- loading ------------------------------------------------------------------------------


def test_loads_gzip_candles_into_readonly_typed_arrays(tmp_path: Path) -> None:
    c = load_candles(candle_file(tmp_path, candle_rows(3)), "BTC/USDT:USDT", H)
    assert len(c) == 3
    assert c.ts.dtype == np.int64
    assert c.ts.tolist() == [T0, T0 + H, T0 + 2 * H]
    assert c.high.tolist() == [101.5] * 3
    assert c.volume.tolist() == [0.25, 1.25, 2.25]
    assert (c.symbol, c.kind, c.tf_ms) == ("BTC/USDT:USDT", "trade", H)
    assert c.source.endswith("BTC_USDT_USDT-1h.csv.gz")
    assert not c.close.flags.writeable


def test_loads_plain_csv_single_row_crlf_and_trailing_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "ETH_USDT_USDT-1h-mark.csv", f"{HEADER}\r\n{candle_rows(1)[0]}\r\n\n\n")
    c = load_candles(path, "ETH/USDT:USDT", H, "mark")
    assert c.ts.tolist() == [T0]
    assert c.kind == "mark"


@pytest.mark.parametrize(
    ("header", "fragments"),
    [
        ("timestamp,open,high,low,close", ["missing column(s): volume"]),
        (HEADER + ",trades", ["unexpected column(s): trades"]),
        ("time,open,high,low,close,volume", ["renamed", "'time' instead of 'timestamp'"]),
        ("timestamp,open,low,high,close,volume", ["wrong order"]),
    ],
)
def test_header_problems_are_named(tmp_path: Path, header: str, fragments: list[str]) -> None:
    path = candle_file(tmp_path, candle_rows(2), header=header)
    message = load_error(path)
    assert str(path) in message
    assert "line 1 (header)" in message
    for fragment in fragments:
        assert fragment in message


def test_empty_file_and_header_only_file(tmp_path: Path) -> None:
    empty = write(tmp_path / "BTC_USDT_USDT-1h.csv.gz", "")
    assert "empty file" in load_error(empty)
    header_only = write(tmp_path / "ETH_USDT_USDT-1h.csv", HEADER + "\n")
    message = load_error(header_only)
    assert str(header_only) in message
    assert "no data rows" in message


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT_USDT-1h.csv.gz"
    path.write_bytes(gzip.compress(b"timestamp,open\n1,2\n" * 100)[:40])
    assert "corrupt gzip" in load_error(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in load_error(tmp_path / "nope.csv.gz")


@pytest.mark.parametrize(
    ("bad_row", "fragments"),
    [
        (f"{T0 + 2 * H},100.0,abc,99.5,100.5,1", ["line 4", "'high'", "cannot parse 'abc'"]),
        (f"{T0 + 2 * H},100.0,,99.5,100.5,1", ["line 4", "'high'", "cannot parse ''"]),
        (f"{T0 + 2 * H}.5,100.0,101,99.5,100.5,1", ["line 4", "'timestamp'", "integer"]),
        (f"{T0 + 2 * H},100.0,101,99.5,100.5", ["line 4", "expected 6 fields", "found 5"]),
        (f"{T0 + 2 * H},100.0,101,99.5,100.5,1,", ["line 4", "found 7"]),
        ("", ["line 4", "empty line"]),
        (f"{T0 + 2 * H},100.0,nan,99.5,100.5,1", ["line 4", "high is not finite: nan"]),
        (f"{T0 + 2 * H},100.0,101,99.5,100.5,inf", ["line 4", "volume is not finite: inf"]),
        (f"{T0 + 2 * H},0.0,101,0.0,100.5,1", ["line 4", "open is not positive: 0.0"]),
        (f"{T0 + 2 * H},-1,101,-2,100.5,1", ["line 4", "open is not positive: -1.0"]),
        (
            f"{T0 + 2 * H},100.0,100.2,99.5,100.5,1",
            ["line 4", "high 100.2 is below max(open, close)", "close=100.5"],
        ),
        (f"{T0 + 2 * H},100.0,101,100.1,100.5,1", ["line 4", "low 100.1 is above min(open"]),
        (f"{T0 + 2 * H},100.0,101,99.5,100.5,-0.5", ["line 4", "volume is negative: -0.5"]),
        (f"{T0 + 2 * H + 60_000},100.0,101,99.5,100.5,1", ["line 4", "off the 1h grid"]),
        (f"{(T0 + 2 * H) // 1000},100.0,101,99.5,100.5,1", ["line 4", "seconds?"]),
        (f"{(T0 + 2 * H) * 1000},100.0,101,99.5,100.5,1", ["line 4", "microseconds or nano"]),
        (f"{(T0 + 2 * H) * 10**6},100.0,101,99.5,100.5,1", ["line 4", "too large"]),
        (f"{T0 + 2 * H},1e12,1e12,99.5,100.5,1", ["line 4", "open 1000000000000.0 is absurd"]),
        (f"{T0 + 2 * H},1e300,1e300,99.5,100.5,1", ["line 4", "open 1e+300 is absurd"]),
        (f"{T0 + 2 * H},1e-12,101,1e-12,100.5,1", ["line 4", "open 1e-12 is absurd"]),
        (
            f"{T0 + 2 * H},1e9,1e9,99.5,100.5,1",
            ["line 4", "moves by a factor of 9.95e+06 from the close 100.5", "(line 3)"],
        ),
        (
            f"{T0 + 2 * H},100.0,10151,99.5,100.5,1",
            ["line 4", "factor of 101 from the close 100.5 of the candle before it (line 3)"],
        ),
        (
            f"{T0 + 2 * H},100.0,101,0.95,100.5,1",
            ["line 4", "factor of 106 from the close 100.5", "high=101.0, low=0.95"],
        ),
    ],
)
def test_bad_row_names_file_line_and_problem(
    tmp_path: Path, bad_row: str, fragments: list[str]
) -> None:
    rows = candle_rows(4)
    rows[2] = bad_row  # file line 4: the header is line 1
    path = candle_file(tmp_path, rows)
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_real_wicks_and_moves_across_a_hole_are_kept(tmp_path: Path) -> None:
    rows = candle_rows(6)
    rows[1] = f"{T0 + H},100.0,9000.0,99.5,100.5,1"  # a wick to 90 times the close before
    rows[2] = f"{T0 + 2 * H},100.0,101.5,1.2,100.5,1"  # and one down to an 80th of it
    del rows[3]  # a hole of one hour, then prices 500 times dearer: no candle moved that much
    rows[3:] = [f"{T0 + i * H},50000.0,50500.0,49900.0,50250.0,1" for i in (4, 5)]
    c = load_candles(candle_file(tmp_path, rows), "BTC/USDT:USDT", H)
    assert c.high.tolist() == [101.5, 9000.0, 101.5, 50500.0, 50500.0]


def test_a_candle_wider_than_a_hundred_times_is_refused_after_a_hole_too(tmp_path: Path) -> None:
    rows = candle_rows(4)
    rows[2] = f"{T0 + 3 * H},100.0,10100.0,99.5,100.5,1"  # after a hole: measured on its own
    del rows[3]
    path = candle_file(tmp_path, rows)
    message = load_error(path)
    assert message.startswith(f"{path}: line 4: the candle spans a factor of 102 from its low")


def test_mark_candles_are_held_to_the_same_bounds(tmp_path: Path) -> None:
    rows = candle_rows(3)
    rows[1] = f"{T0 + H},100.0,1e12,99.5,100.5,0"
    path = write(tmp_path / "BTC_USDT_USDT-1h-mark.csv.gz", "\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(DataError) as info:
        load_candles(path, "BTC/USDT:USDT", H, "mark")
    assert str(info.value).startswith(f"{path}: line 3: high 1000000000000.0 is absurd")


def test_decreasing_timestamp_names_both_lines_and_stamps(tmp_path: Path) -> None:
    rows = candle_rows(4)
    rows[2], rows[3] = rows[3], rows[2]
    message = load_error(candle_file(tmp_path, rows))
    assert "line 5: timestamps not strictly increasing" in message
    assert f"{T0 + 2 * H} (2025-01-01 02:00:00.000 UTC) follows {T0 + 3 * H}" in message
    assert "on line 4" in message


def test_duplicate_timestamp_names_both_lines(tmp_path: Path) -> None:
    rows = candle_rows(4)
    rows[3] = rows[2]
    message = load_error(candle_file(tmp_path, rows))
    assert f"line 5: duplicate timestamp {T0 + 2 * H}" in message
    assert "as line 4" in message


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        load_candles(candle_file(tmp_path, candle_rows(2)), "BTC/USDT:USDT", H, "index")


# --- funding files --------------------------------------------------------------------------


def funding_file(tmp_path: Path, rows: list[str], header: str = "timestamp,funding_rate") -> Path:
    return write(tmp_path / "BTC_USDT_USDT-funding.csv.gz", "\n".join([header, *rows]) + "\n")


def test_loads_funding(tmp_path: Path) -> None:
    f = load_funding(funding_file(tmp_path, [f"{T0},0.0001", f"{T0 + 8 * H},-5.893e-05"]), "X")
    assert f.ts.tolist() == [T0, T0 + 8 * H]
    assert f.rate.tolist() == [0.0001, -5.893e-05]


@pytest.mark.parametrize(
    ("rows", "header", "fragments"),
    [
        ([f"{T0},0.0001"], "timestamp,rate", ["line 1 (header)", "'rate' instead of"]),
        ([f"{T0},0.0001", f"{T0 + H},nan"], None, ["line 3", "funding_rate is not finite"]),
        ([f"{T0},0.0001", f"{T0 + H},0.5"], None, ["line 3", "0.5 is absurd", "> 0.1"]),
        ([f"{T0},0.0001", f"{T0 + H},-0.2"], None, ["line 3", "-0.2 is absurd"]),
        ([f"{T0},0.0001", f"{T0},0.0002"], None, ["line 3", "duplicate settlement"]),
        ([f"{T0 + H},0.0001", f"{T0},0.0002"], None, ["line 3", "not strictly increasing"]),
        ([f"{T0},1%"], None, ["line 2", "'funding_rate'", "cannot parse '1%'"]),
        ([f"{T0},0.0001", f"{(T0 + H) * 1000},0.0001"], None, ["line 3", "microseconds or"]),
        ([], None, ["no data rows"]),
    ],
)
def test_bad_funding_file(
    tmp_path: Path, rows: list[str], header: str | None, fragments: list[str]
) -> None:
    path = funding_file(tmp_path, rows, header or "timestamp,funding_rate")
    with pytest.raises(DataError) as info:
        load_funding(path, "BTC/USDT:USDT")
    assert str(path) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_funding_stamps_are_taken_to_the_nearest_minute(tmp_path: Path) -> None:
    # The venues' raw settlement stamps carry milliseconds of jitter (Binance fundingTime
    # 08:00:00.011; the shared data README: up to ~30 ms): kept as they were, a settlement
    # came after the simulation's decision tick of its minute and was priced an hour late.
    rows = [f"{T0 + 11},0.0001", f"{T0 + 8 * H - 9},0.0002", f"{T0 + 16 * H + 29_999},0.0003"]
    f = load_funding(funding_file(tmp_path, rows), "BTC/USDT:USDT")
    assert f.ts.tolist() == [T0, T0 + 8 * H, T0 + 16 * H]
    assert f.rate.tolist() == [0.0001, 0.0002, 0.0003]
    assert [f.interval_hours_at(i) for i in range(3)] == [8.0, 8.0, 8.0]
    assert settlement_minute(T0 + 30_000) == T0 + 60_000
    assert settlement_minute(T0 - 1) == T0


def test_a_settlement_repeated_in_its_minute_is_one_at_one_rate(tmp_path: Path) -> None:
    # Two dumps merged: one keeps the venue's jittered stamp, the other the minute. At the same
    # rate the copy is dropped (it was charged twice, and the 7 ms step read as a change of
    # interval with -1 settlements missing); at another rate the file is refused, both lines
    # named: nothing says which rate the venue charged.
    rows = [f"{T0},0.0001", f"{T0 + 8 * H},0.0002", f"{T0 + 8 * H + 7},0.0002"]
    rows += [f"{T0 + 8 * H + 11},2e-4", f"{T0 + 16 * H},0.0003"]
    f = load_funding(funding_file(tmp_path, rows), "BTC/USDT:USDT")
    assert f.ts.tolist() == [T0, T0 + 8 * H, T0 + 16 * H]
    assert f.rate.tolist() == [0.0001, 0.0002, 0.0003]
    assert [f.step_at(i) for i in range(3)] == [(8.0, 0)] * 3
    rows[2] = f"{T0 + 8 * H + 7},0.00021"
    path = funding_file(tmp_path, rows)
    with pytest.raises(DataError) as info:
        load_funding(path, "BTC/USDT:USDT")
    message = str(info.value)
    assert message.startswith(f"{path}: line 4: duplicate settlement: ")
    assert "on line 3" in message
    assert "0.00021 against 0.0002" in message


def test_funding_interval_uses_previous_and_first_uses_next() -> None:
    ts = np.array([T0, T0 + 8 * H, T0 + 12 * H, T0 + 16 * H], dtype=np.int64)
    f = FundingSeries(ts, np.array([1e-4, 2e-4, 3e-4, 4e-4]), symbol="X", source="test")
    assert [f.interval_hours_at(i) for i in range(4)] == [8.0, 8.0, 4.0, 4.0]
    assert f.interval_hours_at(-1) == 4.0
    with pytest.raises(IndexError):
        f.interval_hours_at(4)
    single = FundingSeries(ts[:1], np.array([1e-4]), symbol="X", source="one.csv")
    with pytest.raises(DataError, match=r"one\.csv"):
        single.interval_hours_at(0)


def test_funding_between_is_open_on_the_left_closed_on_the_right() -> None:
    ts = np.array([T0, T0 + 8 * H, T0 + 16 * H], dtype=np.int64)
    f = FundingSeries(ts, np.zeros(3), symbol="X", source="test")
    assert f.between(T0, T0 + 16 * H) == range(1, 3)
    assert f.between(T0 - 1, T0) == range(1)
    assert list(f.between(T0 + 1, T0 + 8 * H - 1)) == []
    assert list(f.between(T0 + 16 * H, T0 + 99 * H)) == []
    assert list(f.between(T0 + 16 * H, T0)) == []


# --- discovery --------------------------------------------------------------------------------


def test_discover_lists_series_per_symbol(tmp_path: Path) -> None:
    for name in [
        "BTC_USDT_USDT-1h.csv.gz",
        "BTC_USDT_USDT-5m.csv",
        "BTC_USDT_USDT-8h-mark.csv.gz",
        "BTC_USDT_USDT-1h-mark.csv.gz",
        "BTC_USDT_USDT-funding.csv.gz",
        "SOL_USDT_USDT-1h.csv.gz",
        "README.md",
        "BTC_USDT_USDT-1h-futures.feather",
    ]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "bybit").mkdir()
    inv = discover(tmp_path)
    assert inv.symbols() == ["BTC/USDT:USDT", "SOL/USDT:USDT"]
    assert inv.trade_timeframes("BTC/USDT:USDT") == ["5m", "1h"]
    assert inv.mark_timeframes("BTC/USDT:USDT") == ["1h", "8h"]
    assert inv.has_funding("BTC/USDT:USDT")
    assert not inv.has_funding("SOL/USDT:USDT")
    assert inv.mark_timeframes("SOL/USDT:USDT") == []
    assert inv.candle_path("BTC/USDT:USDT", "5m") == tmp_path / "BTC_USDT_USDT-5m.csv"
    assert inv.candle_path("BTC/USDT:USDT", "8h", "mark").name == "BTC_USDT_USDT-8h-mark.csv.gz"
    with pytest.raises(DataError, match="no funding file for SOL/USDT:USDT"):
        inv.funding_path("SOL/USDT:USDT")
    with pytest.raises(DataError, match="no mark 1h candles"):
        inv.candle_path("SOL/USDT:USDT", "1h", "mark")
    with pytest.raises(DataError, match="no data for 'XRP/USDT:USDT'; available: BTC"):
        inv.trade_timeframes("XRP/USDT:USDT")


def test_discover_skips_files_of_second_candles(tmp_path: Path) -> None:
    # Nothing downstream takes a timeframe in seconds: such a file crashed simulate and vol.
    for name in ["BTC_USDT_USDT-1h.csv.gz", "BTC_USDT_USDT-1s.csv", "ETH_USDT_USDT-30s-mark.csv"]:
        (tmp_path / name).write_bytes(b"")
    inv = discover(tmp_path)
    assert inv.symbols() == ["BTC/USDT:USDT"]
    assert inv.trade_timeframes("BTC/USDT:USDT") == ["1h"]
    assert inv.mark_timeframes("BTC/USDT:USDT") == []


def test_discover_rejects_missing_empty_and_ambiguous_dirs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no market data files"):
        discover(tmp_path)
    (tmp_path / "BTC_USDT_USDT-1h.csv").write_text("")
    (tmp_path / "BTC_USDT_USDT-1h.csv.gz").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"both BTC_USDT_USDT-1h\.csv and BTC_USDT_USDT-1h\.csv\.gz"
    ):
        discover(tmp_path)


@pytest.mark.parametrize("kind", ["", "-mark"])
def test_discover_rejects_two_names_of_one_series(tmp_path: Path, kind: str) -> None:
    """-60m and -1h hold the same candles: which file was used was down to the listing order."""
    (tmp_path / f"BTC_USDT_USDT-1h{kind}.csv").write_text("")
    (tmp_path / f"BTC_USDT_USDT-60m{kind}.csv").write_text("")
    with pytest.raises(DataError, match=rf"-1h{kind}\.csv and .*-60m{kind}\.csv hold the same"):
        discover(tmp_path)


def test_symbol_stem_and_timeframe_spellings() -> None:
    assert symbol_to_stem("BTC/USDT:USDT") == "BTC_USDT_USDT"
    assert stem_to_symbol("1000PEPE_USDT_USDT") == "1000PEPE/USDT:USDT"
    with pytest.raises(ValueError, match="BASE_QUOTE_SETTLE"):
        stem_to_symbol("BTC_USDT")
    assert [parse_timeframe(t) for t in ("1m", "5m", "1h", "8h", "1d")] == [
        60_000,
        300_000,
        H,
        8 * H,
        24 * H,
    ]
    assert [format_timeframe(ms) for ms in (60_000, 900_000, 4 * H, 24 * H)] == [
        "1m",
        "15m",
        "4h",
        "1d",
    ]
    with pytest.raises(ValueError, match="unknown timeframe"):
        parse_timeframe("1M")


# --- Candles operations ---------------------------------------------------------------------


def make_candles(ts: list[int], tf_ms: int = M15, seed: int = 1) -> Candles:
    rng = np.random.default_rng(seed)
    n = len(ts)
    close = 100 + rng.integers(-50, 50, n).astype(np.float64)
    open_ = 100 + rng.integers(-50, 50, n).astype(np.float64)
    high = np.maximum(open_, close) + rng.integers(0, 5, n).astype(np.float64)
    low = np.minimum(open_, close) - rng.integers(0, 5, n).astype(np.float64)
    volume = rng.integers(0, 10, n).astype(np.float64)
    return Candles(
        np.array(ts, dtype=np.int64), open_, high, low, close, volume, tf_ms,
        "BTC/USDT:USDT", "trade", "hand-made",
    )  # fmt: skip


def test_resample_is_exact_and_drops_the_bucket_with_a_gap() -> None:
    # Hour 0 complete, hour 1 misses its 3rd quarter, hour 2 complete.
    ts = [T0 + i * M15 for i in range(12) if i != 6]
    c = make_candles(ts)
    h = c.resample(H)
    assert h.tf_ms == H
    assert h.ts.tolist() == [T0, T0 + 2 * H]
    first, last = slice(0, 4), slice(7, 11)  # rows of hour 0 and hour 2 in c
    assert h.open.tolist() == [c.open[0], c.open[7]]
    assert h.close.tolist() == [c.close[3], c.close[10]]
    assert h.high.tolist() == [c.high[first].max(), c.high[last].max()]
    assert h.low.tolist() == [c.low[first].min(), c.low[last].min()]
    assert h.volume.tolist() == [c.volume[first].sum(), c.volume[last].sum()]


def test_resample_aligns_to_epoch_buckets_not_to_the_first_candle() -> None:
    c = make_candles([T0 + i * M15 for i in range(2, 10)])  # starts at 00:30
    assert c.resample(H).ts.tolist() == [T0 + H]  # 00:00 bucket is incomplete, 02:00 too


def test_resample_rejects_non_multiples_and_handles_trivial_cases() -> None:
    c = make_candles([T0 + i * M15 for i in range(8)])
    with pytest.raises(ValueError, match="whole multiple"):
        c.resample(20 * 60_000)
    with pytest.raises(ValueError, match="whole multiple"):
        c.resample(5 * 60_000)
    assert c.resample(M15).ts.tolist() == c.ts.tolist()
    assert len(c.slice_time(0, 1).resample(H)) == 0


@settings(max_examples=60)
@given(present=st.lists(st.booleans(), min_size=1, max_size=40), seed=st.integers(0, 1000))
def test_resample_matches_bucket_by_bucket_definition(present: list[bool], seed: int) -> None:
    ts = [T0 + i * M15 for i, keep in enumerate(present) if keep]
    if not ts:
        return
    c = make_candles(ts, seed=seed)
    h = c.resample(H)
    expected = []
    for start in range(T0, T0 + len(present) * M15, H):
        rows = np.flatnonzero((c.ts >= start) & (c.ts < start + H))
        if len(rows) == 4:
            expected.append(
                (start, c.open[rows[0]], c.high[rows].max(), c.low[rows].min(),
                 c.close[rows[-1]], c.volume[rows].sum())
            )  # fmt: skip
    got = list(zip(h.ts, h.open, h.high, h.low, h.close, h.volume, strict=True))
    assert got == expected


def test_segments_gaps_slices_and_lookup() -> None:
    ts = [T0, T0 + M15, T0 + 2 * M15, T0 + 5 * M15, T0 + 7 * M15, T0 + 8 * M15]
    c = make_candles(ts)
    assert c.segments() == [
        (T0, T0 + 2 * M15),
        (T0 + 5 * M15, T0 + 5 * M15),
        (T0 + 7 * M15, T0 + 8 * M15),
    ]
    assert c.gaps() == [(T0 + 3 * M15, T0 + 5 * M15), (T0 + 6 * M15, T0 + 7 * M15)]
    part = c.slice_time(T0 + M15, T0 + 7 * M15)
    assert part.ts.tolist() == [T0 + M15, T0 + 2 * M15, T0 + 5 * M15]
    assert np.shares_memory(part.close, c.close)
    assert len(c.slice_time(T0 + 9 * M15, T0)) == 0
    assert c.index_at_or_before(T0 - 1) is None
    assert c.index_at_or_before(T0) == 0
    assert c.index_at_or_before(T0 + 4 * M15) == 2
    assert c.index_at_or_before(T0 + 99 * M15) == 5
    empty = c.slice_time(0, 1)
    assert empty.segments() == []
    assert empty.gaps() == []


def test_candles_reject_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="equal length"):
        Candles(
            np.zeros(2, dtype=np.int64), np.ones(2), np.ones(2), np.ones(2), np.ones(2),
            np.ones(3), H, "X", "trade", "test",
        )  # fmt: skip


# --- bundled sample data --------------------------------------------------------------------

SAMPLE_SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
YEAR_FROM, YEAR_TO = 1_727_740_800_000, 1_759_273_200_000  # 2024-10-01 00:00, 2025-09-30 23:00
SUMMER_FROM, SUMMER_TO = 1_748_736_000_000, 1_759_276_500_000  # 2025-06-01 00:00, 09-30 23:55


def test_sample_inventory_is_complete() -> None:
    inv = discover(SAMPLE)
    assert inv.symbols() == SAMPLE_SYMBOLS
    for symbol in SAMPLE_SYMBOLS:
        assert inv.trade_timeframes(symbol) == ["5m", "1h"]
        assert inv.mark_timeframes(symbol) == ["1h"]
        assert inv.has_funding(symbol)


@pytest.mark.parametrize("symbol", SAMPLE_SYMBOLS)
def test_every_sample_file_loads_with_the_promised_range(symbol: str) -> None:
    inv = discover(SAMPLE)
    for kind in ("trade", "mark"):
        hourly = inv.load_candles(symbol, "1h", kind)
        assert hourly.segments() == [(YEAR_FROM, YEAR_TO)]
        assert len(hourly) == 8760
    five = inv.load_candles(symbol, "5m")
    assert five.segments() == [(SUMMER_FROM, SUMMER_TO)]
    assert len(five) == 35136
    # 5m candles aggregate to hours that exist in the 1h file (both are last-trade candles).
    hourly = inv.load_candles(symbol, "1h").slice_time(SUMMER_FROM, SUMMER_TO + H)
    assert five.resample(H).ts.tolist() == hourly.ts.tolist()
    funding = inv.load_funding(symbol)
    assert (int(funding.ts[0]), int(funding.ts[-1])) == (YEAR_FROM, YEAR_TO - 7 * H)
    assert len(funding) == 1095
    assert {funding.interval_hours_at(i) for i in range(len(funding))} == {8.0}


def test_sample_total_size_stays_small() -> None:
    assert sum(p.stat().st_size for p in SAMPLE.iterdir()) < 6_000_000


@pytest.mark.slow
@pytest.mark.skipif(
    SHARED is None or not SHARED.is_dir(),
    reason="the full data set is not on this machine (set BOT_SHARED_DATA to its directory)",
)
def test_sample_script_reproduces_the_bundled_files(tmp_path: Path) -> None:
    script = REPO / "scripts" / "make_sample_data.py"
    subprocess.run(
        [sys.executable, str(script), "--src", str(SHARED), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    produced = sorted(p.name for p in tmp_path.iterdir())
    assert produced == sorted(p.name for p in SAMPLE.iterdir())
    for name in produced:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
