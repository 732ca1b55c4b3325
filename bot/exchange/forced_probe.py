"""Where a venue keeps its record of the closes it made on its own (liquidations, ADL).

A module of its own: the venue profiles (:mod:`bot.exchange.capabilities`) name one per venue and
the answer's parser (:mod:`bot.exchange.mapping`) reads by it, and neither may import the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.domain.enums import ForcedKind

DAY_MS = 86_400_000
# At most this many requests (windows) for one lookup: 13 weeks, Binance's whole record (90
# days). A lookup further back is unknown (None), not a walk of a hundred windows inside a job.
MAX_WINDOWS = 13
# How far the venue's clock may be ahead of the bot's reading of it: the open-ended last window
# reaches at least this far past the time the bot reads (a close made "now" on the venue).
VENUE_CLOCK_SLACK_MS = 60_000


@dataclass(frozen=True, slots=True)
class ForcedProbe:
    """The venue's raw record of the closes it made on its own (liquidation, auto-deleveraging):
    read window by window, each one page of at most ``limit`` rows, from ``since_param`` to
    ``until_param``, a window at most ``window_ms`` long, over the last ``kept_ms`` only."""

    method: str  # ccxt implicit API method
    params: Mapping[str, object]  # besides ``symbol`` (the market id), the times and ``limit``
    since_param: str
    until_param: str
    # The longest time one request may span: the venue answers only that much from a start
    # without an end, and refuses (or cuts) a longer start-to-end.
    window_ms: int
    kept_ms: int  # how far back the venue keeps the record
    limit: int  # rows in one answer at most (sent as ``limit``): a full page may have been cut
    rows_path: str  # dotted path of the row list in the answer; "" = the answer
    kind_key: str  # the row field that says what made the close
    kinds: Mapping[str, ForcedKind]  # a value of ``kind_key`` (or its prefix) -> the kind
    qty_key: str
    time_key: str

    def windows(self, since_ms: int, now_ms: int) -> list[tuple[int, int | None]] | None:
        """The requests that read ``since_ms`` to the venue's ``now_ms`` whole: consecutive
        windows of ``window_ms``, each but the last with its end (``endTime - startTime`` within
        the venue's rule), the last open-ended (a start alone answers ``window_ms`` from it,
        which reaches past now). ``None`` when that cannot be read: the start is older than
        the record the venue keeps, or it would take more than :data:`MAX_WINDOWS` requests."""
        if since_ms < now_ms - self.kept_ms:
            return None
        out: list[tuple[int, int | None]] = []
        start = since_ms
        while start + self.window_ms <= now_ms + VENUE_CLOCK_SLACK_MS:
            out.append((start, start + self.window_ms - 1))
            start += self.window_ms
            if len(out) >= MAX_WINDOWS:
                return None
        out.append((start, None))
        return out
