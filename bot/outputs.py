"""Where a command writes its outputs (``--out DIR``, ``--plot FILE``), checked before any work.

A location that cannot be written (an existing file where a directory is wanted, a path under a
file, a directory without write permission, a name longer than the file system allows) is found
when the command starts, as one :class:`~bot.errors.ConfigError` naming the flag and the path,
not as a traceback once a simulation of minutes is over. The check is the real operation (the
directory is created, a file is opened there), so whatever the operating system would refuse
later it refuses now.

What a failed command created for its outputs is removed again (:func:`remove_created`): a
directory it made and left empty, never one that was there before or holds anything.

:func:`staged_dir` goes further for a command whose outputs belong together (``bot simulate``:
each policy's files and the comparison chart): they are written into a hidden directory inside
the target and moved into place only once every one of them is written, so a failed run leaves
no half of them and overwrites nothing; files of the target the run does not write are kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from bot.errors import ConfigError

__all__ = ["STAGING_PREFIX", "prepare_dir", "prepare_file", "remove_created", "staged_dir"]

STAGING_PREFIX = ".unfinished-"
"""The hidden directory a staged command writes into, inside its target (left only by a kill)."""


def _refused(flag: str, path: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or type(exc).__name__
    # a parent directory the path needs is the one refused: named (never a probe file's name)
    where = Path(exc.filename) if exc.filename else path
    said = f" ({where})" if where in path.parents else ""
    return ConfigError(f"{flag} {path}: cannot write there: {reason}{said}")


def prepare_dir(path: Path, flag: str, *, named: Path | None = None) -> list[Path]:
    """Make sure ``path`` is a directory this process can write files into: create it and its
    missing parents, and create and remove a file in it. Returns the directories created,
    outermost first (for :func:`remove_created`); a ConfigError naming ``flag`` and what it
    gave (``named``, by default ``path``) otherwise."""
    named = path if named is None else named
    created: list[Path] = []
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for folder in reversed(missing):  # outermost first
            folder.mkdir()
            created.append(folder)
        if not path.is_dir():
            what = "is" if named == path else f"{path} is"
            raise ConfigError(f"{flag} {named}: {what} a file, not a directory")
        fd, probe = tempfile.mkstemp(dir=path, prefix=".bot-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        remove_created(created)
        raise _refused(flag, named, exc) from None
    except BaseException:
        remove_created(created)
        raise
    return created


def prepare_file(path: Path, flag: str) -> list[Path]:
    """Make sure ``path`` can be written as a file (a chart): its folder as
    :func:`prepare_dir`, then the file itself opened to append (an existing one is left as it
    is, a new one removed again). Returns the directories created."""
    try:
        if path.is_dir():
            raise ConfigError(f"{flag} {path}: is a directory, not a file")
    except OSError as exc:
        raise _refused(flag, path, exc) from None
    created = prepare_dir(path.parent, flag, named=path)
    try:
        existed = path.exists()
        with path.open("ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        remove_created(created)
        raise _refused(flag, path, exc) from None
    return created


def remove_created(created: list[Path]) -> None:
    """Remove the directories :func:`prepare_dir` created, innermost first, each only while it is
    empty (a directory something was written into stays, with what it holds)."""
    for folder in reversed(created):
        with suppress(OSError):
            folder.rmdir()


@contextmanager
def staged_dir(
    path: Path, flag: str, *, before_discard: Callable[[], None] | None = None
) -> Iterator[Path]:
    """A directory to write a command's outputs into, moved into ``path`` when the block ends
    normally; when it raises, removed with everything in it (and ``path`` itself when this call
    created it), after ``before_discard`` (stop whatever still writes there)."""
    created = prepare_dir(path, flag)
    try:
        staging = Path(tempfile.mkdtemp(dir=path, prefix=STAGING_PREFIX))
    except OSError as exc:
        remove_created(created)
        raise _refused(flag, path, exc) from None
    try:
        yield staging
        _move_into(staging, path, flag)
    except BaseException:
        if before_discard is not None:
            before_discard()
        shutil.rmtree(staging, ignore_errors=True)
        remove_created(created)
        raise
    shutil.rmtree(staging)  # its directories, emptied


def _move_into(staging: Path, target: Path, flag: str) -> None:
    """Every file under ``staging`` to the same place under ``target``: the files a run writes
    replace those of the same name, others are left alone. Where a file and a directory would
    meet, nothing is moved (ConfigError naming the place)."""
    for rel, is_dir in _entries(staging):
        there = target / rel
        if there.exists() and there.is_dir() != is_dir:
            kind = "a directory" if there.is_dir() else "a file"
            raise ConfigError(f"{flag} {target}: {there} is {kind}; the run writes one there")
    try:
        for rel, is_dir in _entries(staging):
            there = target / rel
            if is_dir:
                there.mkdir(exist_ok=True)
            else:
                os.replace(staging / rel, there)
    except OSError as exc:
        raise _refused(flag, target, exc) from None


def _entries(root: Path) -> Iterator[tuple[Path, bool]]:
    """Every path under ``root``, relative to it, parents before what they hold, in name order
    (and whether it is a directory)."""
    for name in sorted(os.listdir(root)):
        full = root / name
        if full.is_dir():
            yield Path(name), True
            yield from (((Path(name) / rel), d) for rel, d in _entries(full))
        else:
            yield Path(name), False
