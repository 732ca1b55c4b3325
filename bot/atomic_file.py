"""Files replaced in one step: a reader sees the old file or the new one, never half of it.

The new content goes to a temporary file in the target's directory (the final rename then stays
on one filesystem, where it is atomic), which :func:`os.replace` renames over the target once
it is complete. If writing fails, the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO, cast

__all__ = ["replaced_binary", "replaced_text"]


@contextmanager
def replaced_text(path: Path, *, durable: bool = False) -> Iterator[TextIO]:
    """A UTF-8 text file to write; ``path`` is replaced by it when the block ends normally.
    ``durable``: its content reaches the disk before the rename, and the rename before the
    block returns (a record written after it may count on it surviving a power cut)."""
    with _replaced(path, "w", durable=durable) as fh:
        yield cast(TextIO, fh)


@contextmanager
def replaced_binary(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write; ``path`` is replaced by it when the block ends normally."""
    with _replaced(path, "wb") as fh:
        yield cast(BinaryIO, fh)


@contextmanager
def _replaced(path: Path, mode: str, *, durable: bool = False) -> Iterator[object]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            if durable:
                # without it a rename may reach the disk before the data: after a power cut,
                # the file is there and empty
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            _sync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync_dir(folder: Path) -> None:
    """The directory's entries (a rename) on the disk; POSIX only (Windows opens no folder)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
