"""Signal files: timestamp forms, validation messages and the step-function lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import DataError
from bot.marketdata import load_signals

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
H = 3_600_000
HEADER = "timestamp,contract,direction"


def signal_file(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "signals.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_signals(path)
    return str(info.value)


def test_both_timestamp_forms_sorted_per_contract(tmp_path: Path) -> None:
    path = signal_file(
        tmp_path,
        "2025-01-01T02:00:00Z,BTC/USDT:USDT,-1",
        f"{T0},BTC/USDT:USDT,1",
        "2025-01-01T01:00:00+00:00,ETH/USDT:USDT,1",
        "",
        "2025-01-01T03:00:00.000Z, BTC/USDT:USDT , 0",
    )
    series = load_signals(path)
    assert sorted(series) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    btc = series["BTC/USDT:USDT"]
    assert btc.ts.tolist() == [T0, T0 + 2 * H, T0 + 3 * H]
    assert btc.direction.tolist() == [1, -1, 0]
    assert series["ETH/USDT:USDT"].ts.tolist() == [T0 + H]
    assert btc.source == str(path)


def test_direction_at_steps(tmp_path: Path) -> None:
    path = signal_file(tmp_path, f"{T0},BTC/USDT:USDT,1", f"{T0 + 2 * H},BTC/USDT:USDT,-1")
    btc = load_signals(path)["BTC/USDT:USDT"]
    assert btc.direction_at(T0 - 1) == 0
    assert btc.direction_at(T0) == 1
    assert btc.direction_at(T0 + 2 * H - 1) == 1
    assert btc.direction_at(T0 + 2 * H) == -1
    assert btc.direction_at(T0 + 99 * H) == -1


def test_non_utc_offset_is_converted(tmp_path: Path) -> None:
    path = signal_file(tmp_path, "2025-01-01T02:00:00+02:00,BTC/USDT:USDT,1")
    assert load_signals(path)["BTC/USDT:USDT"].ts.tolist() == [T0]


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        (f"{T0 + H},BTC/USDT:USDT,2", ["line 3", "direction '2' must be -1, 0 or 1"]),
        (f"{T0 + H},BTC/USDT:USDT,long", ["line 3", "direction 'long'"]),
        (f"{T0 + H},BTC/USDT:USDT,1.0", ["line 3", "direction '1.0'"]),
        (f"{T0 + H},BTC/USDT:USDT,", ["line 3", "direction ''"]),
        ("01/02/2025 10:00,BTC/USDT:USDT,1", ["line 3", "'01/02/2025 10:00'", "neither"]),
        ("yesterday,BTC/USDT:USDT,1", ["line 3", "neither epoch milliseconds nor ISO-8601"]),
        ("2025-01-01T01:00:00,BTC/USDT:USDT,1", ["line 3", "no time zone"]),
        ("2025-01-01T01:00:00.0005Z,BTC/USDT:USDT,1", ["line 3", "finer than a millisecond"]),
        ("1735693200,BTC/USDT:USDT,1", ["line 3", "seconds?"]),
        ("1735693200000000,BTC/USDT:USDT,1", ["line 3", "microseconds or nanoseconds?"]),
        ("1735693200000000000,BTC/USDT:USDT,1", ["line 3", "microseconds or nanoseconds?"]),
        ("9223372036854775808,BTC/USDT:USDT,1", ["line 3", "9223372036854775808", "too large"]),
        ("99999999999999999999999,BTC/USDT:USDT,1", ["line 3", "too large"]),
        ("9" * 5000 + ",BTC/USDT:USDT,1", ["line 3", "too large"]),
        ("9999-12-31T23:59:59+14:00,BTC/USDT:USDT,1", ["line 3", "not within 1973-03-03"]),
        ("1970-01-01T00:00:00Z,BTC/USDT:USDT,1", ["line 3", "to 2286-11-20"]),
        (f"{T0 + H},BTCUSDT,1", ["line 3", "'BTCUSDT' is not a ccxt perpetual symbol"]),
        (f"{T0 + H},BTC/USDT,1", ["line 3", "'BTC/USDT'"]),
        (f"{T0 + H},BTC/USDT:USDT", ["line 3", "expected 3 fields", "found 2"]),
        (f"{T0 + H},BTC/USDT:USDT,1,x", ["line 3", "found 4"]),
        (f"{T0},BTC/USDT:USDT,-1", ["line 3", "duplicate signal for BTC/USDT:USDT", "line 2"]),
        (
            "2025-01-01T00:00:00Z,BTC/USDT:USDT,0",
            ["line 3", "duplicate signal", "first on line 2"],
        ),
    ],
)
def test_bad_line_names_file_line_and_problem(
    tmp_path: Path, row: str, fragments: list[str]
) -> None:
    path = signal_file(tmp_path, f"{T0},BTC/USDT:USDT,1", row)
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_same_timestamp_on_two_contracts_is_fine(tmp_path: Path) -> None:
    path = signal_file(tmp_path, f"{T0},BTC/USDT:USDT,1", f"{T0},ETH/USDT:USDT,-1")
    assert {c: s.direction_at(T0) for c, s in load_signals(path).items()} == {
        "BTC/USDT:USDT": 1,
        "ETH/USDT:USDT": -1,
    }


@pytest.mark.parametrize(
    "header", ["timestamp,symbol,direction", "timestamp,contract", "ts,contract,direction", ""]
)
def test_bad_header(tmp_path: Path, header: str) -> None:
    message = load_error(signal_file(tmp_path, f"{T0},BTC/USDT:USDT,1", header=header))
    assert "line 1 (header)" in message
    assert "expected 'timestamp,contract,direction'" in message


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert "no signals" in load_error(signal_file(tmp_path))
    assert "cannot read" in load_error(tmp_path / "absent.csv")
