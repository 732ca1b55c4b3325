"""Binary cache of parsed data files: parse a (gzip) CSV once, load a ``.npy`` afterwards.

Parsing a year of 1-minute candles with ``np.loadtxt`` takes most of a second; loading the same
rows from a ``.npy`` takes about a hundredth of that. An entry is keyed by the source file's size,
modification time and content hash (BLAKE2b of its bytes), so an edited, replaced or touched file
is parsed again and its old entry removed. The cached rows are the parser's raw output: every
validation of the loader still runs on them, so a cached load accepts and rejects exactly what a
parse does. An entry holds the table column by column (one record whose fields are whole
columns), so a load hands out each column as a contiguous view of the file's bytes, with no copy.

Reading and hashing a year of 1-minute candles (10 MB gzip) costs more than loading its entry, so
the hash is not recomputed on every load: a stamp beside the entries records, per source, its
size, modification and status-change times (ns), inode and device, and the entry its hash named.
While all five are unchanged the entry is used without reading the source. Any write to the file
changes its status-change time (which no tool can set back, unlike the modification time), so a
same-size edit with the modification time restored is still read and hashed. A stamp taken less
than two seconds after the file's last modification is not trusted (a file system with coarse
timestamps could hide a second write within the same tick): such a file is hashed again until
its stamp is older, as git does for its index ("racy git").

Where: ``$BOT_DATA_CACHE`` when set (``off`` disables the cache), else
``$XDG_CACHE_HOME/perp-risk-bot/data`` (``~/.cache/...``), never inside the data directory (which
may be read-only, shared, or a checked-in sample). Entry names carry a hash of the source's
directory, so two data directories with the same file names never share an entry. A cache that
cannot be written (read-only, full) is skipped silently: the cache is an optimisation, never a
condition for loading.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.atomic_file import replaced_binary, replaced_text
from bot.errors import DataError

ENV_VAR = "BOT_DATA_CACHE"
FORMAT = "v2"  # bump when the cached layout changes (v2: column by column)

Columns = dict[str, npt.NDArray[Any]]
"""A parsed table, one contiguous 1-D array per column."""


def cache_dir(source: Path) -> Path | None:
    """Where entries for ``source`` live, or None when caching is off."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured)
    home = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(home) if home else Path.home() / ".cache") / "perp-risk-bot" / "data"


def source_key(source: Path) -> str:
    """``<dir hash>-<file name>``: the stable part of every entry name of ``source``."""
    parent = str(source.resolve().parent).encode()
    return f"{hashlib.blake2b(parent, digest_size=6).hexdigest()}-{source.name}"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def entry_name(source: Path, data: bytes, size: int, mtime_ns: int) -> str:
    return f"{source_key(source)}.{FORMAT}.{size}.{mtime_ns}.{_digest(data)}.npy"


def content_hash(source: Path) -> str:
    """The hash of ``source``'s bytes that names its cache entries: read from the source's
    stamp when the file is unchanged since the stamp was taken (no read of the file), else
    computed from its bytes (a sweep pins its data files by it at every start)."""
    try:
        stat = source.stat()
    except OSError as e:
        raise DataError(f"{source}: cannot read: {e}") from e
    where = cache_dir(source)
    if where is not None:
        known = _stamped_entry(where, source_key(source), stat)
        if known is not None:
            return known.rsplit(".", 2)[1]  # <key>.<format>.<size>.<mtime>.<digest>.npy
    try:
        return _digest(source.read_bytes())
    except OSError as e:
        raise DataError(f"{source}: cannot read: {e}") from e


def load_table(
    source: Path,
    dtype: np.dtype[np.void],
    parse: Callable[[bytes], npt.NDArray[np.void]],
) -> Columns:
    """The columns of ``source``: from the cache when an entry matches, else ``parse(bytes)``
    (rows of ``dtype``, then stored). ``parse`` raises DataError for bad content; nothing is
    cached then."""
    try:
        stat = source.stat()
    except OSError as e:
        raise DataError(f"{source}: cannot read: {e}") from e
    where = cache_dir(source)
    key = source_key(source) if where is not None else ""
    if where is not None:
        known = _stamped_entry(where, key, stat)
        if known is not None and (rows := _read_entry(where / known, dtype)) is not None:
            return rows
    try:
        data = source.read_bytes()
    except OSError as e:
        raise DataError(f"{source}: cannot read: {e}") from e
    if where is None:
        return _columns_of(parse(data))
    name = entry_name(source, data, stat.st_size, stat.st_mtime_ns)
    entry = where / name
    rows = _read_entry(entry, dtype)
    if rows is None:
        rows = _columns_of(parse(data))
        _write_entry(where, entry, rows, key)
    _write_stamp(where, key, stat, name)
    return rows


def forget(source: Path) -> bool:
    """Remove ``source``'s entries and stamp (rows that failed validation: a damaged entry must
    not be blamed on the source, nor be read again). True when there was one to remove."""
    where = cache_dir(source)
    if where is None:
        return False
    key = source_key(source)
    removed = False
    for old in [*where.glob(f"{key}.*.npy"), *where.glob(f"{key}.*.stamp")]:
        try:
            old.unlink()
            removed = True
        except OSError:
            continue
    return removed


def _columns_of(rows: npt.NDArray[np.void]) -> Columns:
    return {name: np.ascontiguousarray(rows[name]) for name in rows.dtype.names or ()}


_RACY_NS = 2_000_000_000  # a stamp this close to the file's modification is not trusted


def _stamp_of(stat: os.stat_result) -> str:
    return f"{stat.st_size} {stat.st_mtime_ns} {stat.st_ctime_ns} {stat.st_ino} {stat.st_dev}"


def _stamped_entry(where: Path, key: str, stat: os.stat_result) -> str | None:
    """The entry named by ``key``'s stamp if the source is unchanged since it was taken."""
    path = where / f"{key}.{FORMAT}.stamp"
    try:
        text = path.read_text(encoding="utf-8")
        taken_ns = path.stat().st_mtime_ns
    except (OSError, UnicodeDecodeError):
        return None
    stamp, _, name = text.rstrip("\n").partition("\n")
    if stamp != _stamp_of(stat) or taken_ns < stat.st_mtime_ns + _RACY_NS:
        return None
    if not name.startswith(f"{key}.{FORMAT}.") or "/" in name or "\\" in name:
        return None  # not an entry of this source: hash it again
    return name


def _write_stamp(where: Path, key: str, stat: os.stat_result, name: str) -> None:
    path = where / f"{key}.{FORMAT}.stamp"
    text = f"{_stamp_of(stat)}\n{name}\n"
    try:
        if path.read_text(encoding="utf-8") == text and _stamped_entry(where, key, stat):
            return  # already there and trusted: no write on a warm load
    except (OSError, UnicodeDecodeError):
        pass
    try:
        where.mkdir(parents=True, exist_ok=True)
        with replaced_text(path) as fh:
            fh.write(text)
    except OSError:
        return  # the next load hashes the source again


# ``np.load`` parses the .npy header with ``ast.literal_eval``, and CPython 3.11 before 3.11.8
# can raise a spurious "SystemError: AST constructor recursion depth mismatch" when two threads
# build ASTs at once (https://github.com/python/cpython/issues/106905): ``load_histories`` reads
# two files at a time. The header is a few hundred bytes: one load at a time costs nothing.
_NPY_LOAD = threading.Lock()


def _read_entry(entry: Path, dtype: np.dtype[np.void]) -> Columns | None:
    try:
        with _NPY_LOAD:
            table = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent or damaged: parse again and overwrite
    fields = table.dtype.fields
    names = dtype.names or ()
    if table.shape != (1,) or fields is None or tuple(fields) != names:
        return None
    n = table.dtype[names[0]].shape if names else ()
    for name in names:
        column = table.dtype[name]
        if column.base != dtype[name] or column.shape != n or len(n) != 1:
            return None
    return {name: table[name][0] for name in names}


def _write_entry(where: Path, entry: Path, columns: Columns, key: str) -> None:
    n = len(next(iter(columns.values()))) if columns else 0
    table = np.empty(1, dtype=[(name, col.dtype, (n,)) for name, col in columns.items()])
    for name, col in columns.items():
        table[name][0] = col
    try:
        where.mkdir(parents=True, exist_ok=True)
        with replaced_binary(entry) as fh:  # a reader never sees half an entry
            np.save(fh, table, allow_pickle=False)
        for old in [*where.glob(f"{key}.*.npy"), *where.glob(f"{key}.*.stamp")]:
            # this source's older entries, of any cache format
            if old.name not in (entry.name, f"{key}.{FORMAT}.stamp"):
                old.unlink(missing_ok=True)
    except OSError:
        return  # read-only or full disk: loading works without the cache
