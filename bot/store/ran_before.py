"""Whether a bot ran on a PostgreSQL state database, as this machine remembers it.

On SQLite the lock file beside the database remembers it (:attr:`InstanceLock.used_before`): a
database file gone since is refused, not replaced by an empty one. A PostgreSQL database keeps
nothing of the kind outside itself: dropped and created again empty (``DROP DATABASE``, a
container's volume made anew, a restore that failed), it only read as "no schema: migrate it",
and migrating it started the bot afresh, having forgotten a halt a person set, the drawdown
peak and which positions are its own.

So ``bot run`` leaves a mark in the log directory once it has opened the database at its
schema: ``state-database-<hash of the URL>.ran``, holding the process id. A start that finds the
mark and an empty database is refused with a message that says so. The mark is per URL (the
password left out): the same database reached by another URL is not recognised (the refusal
then is the plain "no schema" one). Deleting the mark forgets it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bot.atomic_file import replaced_text
from bot.store.migrate import safe_url

MARK_SUFFIX = ".ran"


def mark_path(url: str, directory: Path) -> Path | None:
    """Where a bot that ran on the database at ``url`` leaves its mark; None for SQLite (its
    lock file is the mark) and in-memory databases."""
    if url.startswith("sqlite"):
        return None
    digest = hashlib.sha256(safe_url(url).encode()).hexdigest()[:16]
    return directory / f"state-database-{digest}{MARK_SUFFIX}"


def mark_ran(url: str, directory: Path, pid: int) -> None:
    """Remember that process ``pid`` ran a bot on the database at ``url`` (at its schema)."""
    path = mark_path(url, directory)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_text(path) as fh:
        fh.write(f"{pid} {safe_url(url)}\n")


def ran_before(url: str, directory: Path) -> str | None:
    """The process that last ran a bot on the database at ``url``, as its mark says; None when
    no mark was left (never ran here, a SQLite database, or the mark was deleted)."""
    path = mark_path(url, directory)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):  # (runtime.log_dir a file: no mark in it)
        return None
    except (OSError, UnicodeDecodeError):  # a mark is there: a bot ran, which one is unknown
        return "unknown"
    return text.split(" ", 1)[0] or "unknown"
