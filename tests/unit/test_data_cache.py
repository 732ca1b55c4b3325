"""The binary cache of parsed data files: same rows as a parse, invalidated on any change."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from bot.errors import DataError
from bot.marketdata import cache
from bot.marketdata.files import load_candles

TF = 60_000
T0 = 1_704_067_200_000


def _write(path: Path, closes: list[float]) -> None:
    lines = ["timestamp,open,high,low,close,volume"]
    for i, c in enumerate(closes):
        lines.append(f"{T0 + i * TF},{c},{c + 1},{c - 1},{c},1.5")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(root))
    return root


def test_second_load_comes_from_the_cache_with_identical_arrays(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0, 102.5])
    first = load_candles(src, "BTC/USDT:USDT", TF)
    entries = list(cache_root.glob("*.npy"))
    assert len(entries) == 1
    # A cache hit never calls the parser: make parsing impossible and load again.
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    second = load_candles(src, "BTC/USDT:USDT", TF)
    for name in ("ts", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
        assert getattr(first, name).dtype == getattr(second, name).dtype


def test_a_changed_source_is_parsed_again_and_the_old_entry_removed(
    tmp_path: Path, cache_root: Path
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0])
    load_candles(src, "BTC/USDT:USDT", TF)
    old = {p.name for p in cache_root.glob("*.npy")}
    _write(src, [200.0, 201.0, 202.0])
    stat = src.stat()
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = load_candles(src, "BTC/USDT:USDT", TF)
    assert again.close.tolist() == [200.0, 201.0, 202.0]
    new = {p.name for p in cache_root.glob("*.npy")}
    assert len(new) == 1
    assert new.isdisjoint(old)


def test_same_size_and_mtime_but_new_content_is_not_served_stale(
    tmp_path: Path, cache_root: Path
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv"
    src.write_text(f"timestamp,open,high,low,close,volume\n{T0},100,101,99,100,1\n")
    stat = src.stat()
    load_candles(src, "BTC/USDT:USDT", TF)
    src.write_text(f"timestamp,open,high,low,close,volume\n{T0},200,201,199,200,1\n")
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [200.0]


def test_a_damaged_entry_is_reparsed(tmp_path: Path, cache_root: Path) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0])
    load_candles(src, "BTC/USDT:USDT", TF)
    (entry,) = cache_root.glob("*.npy")
    entry.write_bytes(b"not numpy")
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [100.0, 101.0]


def test_bad_files_are_still_rejected_and_nothing_is_cached(
    tmp_path: Path, cache_root: Path
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv"
    src.write_text(f"timestamp,open,high,low,close,volume\n{T0},100,99,99,100,1\n")
    with pytest.raises(DataError, match=r"high 99\.0 is below max"):
        load_candles(src, "BTC/USDT:USDT", TF)
    # the rows parse, so they are cached, but validation runs on cached rows too
    with pytest.raises(DataError, match=r"high 99\.0 is below max"):
        load_candles(src, "BTC/USDT:USDT", TF)
    src.write_text("timestamp,open,high,low,close,volume\nabc,1,1,1,1,1\n")
    before = set(cache_root.glob("*.npy"))
    with pytest.raises(DataError, match="line 2"):
        load_candles(src, "BTC/USDT:USDT", TF)
    assert set(cache_root.glob("*.npy")) <= before


def test_cache_off_and_unwritable_cache_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0])
    monkeypatch.setenv(cache.ENV_VAR, "off")
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [100.0]
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker / "sub"))
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [100.0]


def _age(path: Path, seconds: int) -> None:
    """Move ``path``'s modification time ``seconds`` into the past (a file written earlier)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 1_000_000_000))


def test_an_unchanged_old_source_is_not_read_again(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0])
    _age(src, 60)
    first = load_candles(src, "BTC/USDT:USDT", TF)
    assert len(list(cache_root.glob("*.stamp"))) == 1
    # The stamp matches: the source's bytes are neither read nor hashed.
    read = Path.read_bytes
    monkeypatch.setattr(
        Path,
        "read_bytes",
        lambda self: (_ for _ in ()).throw(AssertionError("read")) if self == src else read(self),
    )
    second = load_candles(src, "BTC/USDT:USDT", TF)
    assert second.close.tolist() == first.close.tolist() == [100.0, 101.0]


def test_a_fresh_source_is_hashed_until_its_stamp_can_be_trusted(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv"
    src.write_text(f"timestamp,open,high,low,close,volume\n{T0},100,101,99,100,1\n")
    load_candles(src, "BTC/USDT:USDT", TF)  # stamp taken within 2 s of the write: racy
    hashed: list[Path] = []
    name = cache.entry_name

    def entry_name(source: Path, data: bytes, size: int, mtime_ns: int) -> str:
        hashed.append(source)
        return name(source, data, size, mtime_ns)

    monkeypatch.setattr(cache, "entry_name", entry_name)
    load_candles(src, "BTC/USDT:USDT", TF)
    assert hashed == [src]


def test_an_edit_that_restores_size_and_mtime_is_caught_by_the_stamp(
    tmp_path: Path, cache_root: Path
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv"
    src.write_text(f"timestamp,open,high,low,close,volume\n{T0},100,101,99,100,1\n")
    _age(src, 60)
    stat = src.stat()
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [100.0]
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [100.0]  # from the stamp
    src.write_text(f"timestamp,open,high,low,close,volume\n{T0},200,201,199,200,1\n")
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same (old) mtime
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [200.0]


def test_a_stamp_naming_a_missing_entry_falls_back_to_the_hash(
    tmp_path: Path, cache_root: Path
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0])
    _age(src, 60)
    load_candles(src, "BTC/USDT:USDT", TF)
    for entry in cache_root.glob("*.npy"):
        entry.unlink()
    assert load_candles(src, "BTC/USDT:USDT", TF).close.tolist() == [100.0, 101.0]
    assert len(list(cache_root.glob("*.npy"))) == 1


def test_an_entry_of_an_older_layout_is_replaced_and_columns_load_read_only(
    tmp_path: Path, cache_root: Path
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0])
    _age(src, 60)
    stale = cache_root / f"{cache.source_key(src)}.v1.1.2.abc.npy"
    cache_root.mkdir()
    np.save(stale, np.zeros(2))  # a row-by-row entry of the previous format
    load_candles(src, "BTC/USDT:USDT", TF)
    assert not stale.exists()
    cached = load_candles(src, "BTC/USDT:USDT", TF)  # from the stamp and the new entry
    assert cached.close.tolist() == [100.0, 101.0]
    assert cached.close.flags["C_CONTIGUOUS"]
    assert not cached.close.flags["WRITEABLE"]


def test_an_entry_damaged_in_place_is_never_blamed_on_the_source(
    tmp_path: Path, cache_root: Path
) -> None:
    """An entry that still loads as numpy but holds damaged numbers (a bad sector, a stray
    write): validation fails on it, so the entry is dropped and the sound source parsed again,
    instead of an error telling the user their data file is broken at some line."""
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0, 102.0, 103.0])
    load_candles(src, "BTC/USDT:USDT", TF)
    (entry,) = cache_root.glob("*.npy")
    table = np.load(entry)
    table["high"][0][1] = 1e-200  # below its open and close: fails validation
    with entry.open("wb") as fh:
        np.save(fh, table)
    again = load_candles(src, "BTC/USDT:USDT", TF)
    assert again.high.tolist() == [101.0, 102.0, 103.0, 104.0]
    # and the next load is served from a fresh, sound entry
    (fresh,) = cache_root.glob("*.npy")
    assert np.load(fresh)["high"][0].tolist() == [101.0, 102.0, 103.0, 104.0]


def test_the_content_hash_comes_from_the_stamp_when_the_source_is_unchanged(
    tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "BTC_USDT_USDT-1m.csv.gz"
    _write(src, [100.0, 101.0])
    _age(src, 60)
    computed = cache.content_hash(src)  # no stamp yet: hashed from the bytes
    load_candles(src, "BTC/USDT:USDT", TF)  # the load writes the stamp
    read = Path.read_bytes
    monkeypatch.setattr(
        Path,
        "read_bytes",
        lambda self: (_ for _ in ()).throw(AssertionError("read")) if self == src else read(self),
    )
    assert cache.content_hash(src) == computed  # from the stamp, the file not read
    monkeypatch.setattr(Path, "read_bytes", read)
    _write(src, [100.0, 102.0])
    _age(src, 60)
    assert cache.content_hash(src) != computed  # an edit is seen
