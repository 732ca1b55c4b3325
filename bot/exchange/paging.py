"""Reading a venue list that comes in pages, all of it or not at all.

Bybit's ``GET /v5/order/realtime`` answers at most ``limit`` rows (default 20, at most 50) and a
``nextPageCursor`` to send back as ``cursor`` for the next page
(https://bybit-exchange.github.io/docs/v5/order/open-order). A bot that reads only the first
page can miss its own stop among many resting orders and place a second one, or believe a
position naked. :func:`read_all_pages` follows the cursor to the end and refuses a partial
list: a venue that still has a next page after ``max_pages`` pages, or sends a cursor it sent
before (a loop), makes the read :class:`~bot.errors.AccountUnreadable`.

ccxt's own ``paginate`` option (``fetchPaginatedCallCursor``) is not used: it stops silently
after ``paginationCalls`` pages (default 10) and returns what it has (ccxt 4.5.90 with
``paginationCalls=1`` over 75 resting orders returns 50, no error), and it catches the
exceptions of a page itself (up to ``maxRetries``), outside the adapter's retry policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from bot.errors import AccountUnreadable
from bot.exchange.mapping import UnexpectedResponse, require_rows


@dataclass(frozen=True, slots=True)
class Paging:
    """How a venue pages a list (ccxt unified call, cursor param and where ccxt leaves it)."""

    size: int  # rows asked per page: the venue's maximum, to keep the number of calls low
    cursor_param: str  # request param that carries the cursor of the next page
    cursor_key: str  # key of the next cursor in the ``info`` of one row of a ccxt page
    max_pages: int  # more pages than this: the list is refused, not cut

    def __post_init__(self) -> None:
        if self.size < 1 or self.max_pages < 1:
            raise ValueError(f"paging: size and max_pages must be >= 1, got {self}")


def read_all_pages(
    fetch_page: Callable[[str | None], object], paging: Paging, what: str
) -> list[Mapping[str, Any]]:
    """Every row of a paged list; ``fetch_page(cursor)`` reads one page (``None``: the first).

    Each page must be a ccxt row list (:func:`~bot.exchange.mapping.require_rows`). The list
    ends at an empty page or a page without a next cursor.
    """
    rows: list[Mapping[str, Any]] = []
    cursor: str | None = None
    sent: set[str] = set()
    for number in range(1, paging.max_pages + 1):
        answer = fetch_page(cursor)
        require_rows(answer, f"{what} (page {number})")
        page = cast(list[Mapping[str, Any]], answer)  # require_rows checked the shape
        rows.extend(page)
        following = next_cursor(page, paging.cursor_key, f"{what} (page {number})")
        if not page or following is None:
            return rows
        if following in sent:
            raise AccountUnreadable(
                f"{what}: page {number} points back to a page already read (cursor "
                f"{following!r}); the list would never end"
            )
        sent.add(following)
        cursor = following
    raise AccountUnreadable(
        f"{what}: still more after {paging.max_pages} pages of {paging.size} rows; refusing to "
        "act on a partial list"
    )


def next_cursor(page: Sequence[Mapping[str, Any]], key: str, what: str) -> str | None:
    """The next page's cursor ccxt left in a row's ``info`` (``None``: the last page).

    ccxt's bybit puts the answer's ``nextPageCursor`` into the first raw row, and then sorts the
    parsed rows by time, so any row may carry it. An empty string is the last page.
    """
    found = {row["info"].get(key) for row in page if row["info"].get(key) is not None}
    if not found:
        return None
    if len(found) > 1 or not all(isinstance(c, str) for c in found):
        raise UnexpectedResponse(f"{what}: unreadable next-page cursor {sorted(map(str, found))}")
    cursor = str(found.pop())
    return cursor or None
