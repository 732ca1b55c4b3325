"""Unreadable account reads in a row, counted across restarts.

After ``risk.max_unreadable_reads`` unreadable reads in a row the account moves to
``reducing``. A bot that a supervisor restarts after each garbled answer would never get there
if the count lived in memory only, so it is carried by the recorded events: each unreadable
read records an ``unreadable`` event that says how many came in a row, and the first readable
read after them records a ``readable`` event that ends the run. At start, the newest of the two
tells where the count stands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.domain.enums import EventKind
from bot.ports.store import RiskEvent

UNREADABLE = "account unreadable"
_IN_A_ROW = re.compile(r"^" + re.escape(UNREADABLE) + r" \((\d+) in a row\)")


def unreadable_reason(streak: int, cause: object) -> str:
    """The reason of the ``unreadable`` event of the ``streak``-th unreadable read in a row."""
    return f"{UNREADABLE} ({streak} in a row): {cause}; nothing sent, resting orders kept"


def readable_reason(streak: int) -> str:
    """The reason of the ``readable`` event that ends a run of ``streak`` unreadable reads."""
    return f"account readable again after {streak} unreadable read(s) in a row"


def restored_streak(events_newest_first: Iterable[RiskEvent]) -> int:
    """Unreadable reads in a row at the end of the recorded events (0 after a readable one)."""
    return run_in_a_row(events_newest_first, EventKind.UNREADABLE, EventKind.READABLE, _IN_A_ROW)


def run_in_a_row(
    events_newest_first: Iterable[RiskEvent],
    counted: EventKind,
    ended_by: EventKind,
    in_a_row: re.Pattern[str],
) -> int:
    """How long the run of ``counted`` events is at the end of the recorded events: the count
    the newest of them says (its reason matched by ``in_a_row``, group 1), 0 when an
    ``ended_by`` event is newer. Used to carry a count across restarts."""
    for e in events_newest_first:
        if e.kind is ended_by:
            return 0
        if e.kind is counted:
            match = in_a_row.search(e.reason)
            if match is not None:
                return int(match.group(1))
    return 0
