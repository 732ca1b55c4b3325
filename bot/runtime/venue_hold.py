"""A venue's long hold (``Retry-After`` on a 429 or a 418 IP ban) outlives the process.

The adapter holds every request while the venue asks it to (``SharedPacer.hold``), but only
in the process that read the answer. Binance bans an IP that keeps sending after it was told
to wait, for 2 minutes up to 3 days, longer for each repeat (shared notes exchange-facts
section 7): a restart during a ban (the owner trying to "fix" a bot whose jobs all fail, a
service manager restarting it) sent its start's reads at once and lengthened the ban. The
runner records each long hold it alerts as a ``venue_hold`` event with its end; a start of
``bot run`` on prices from the venue reads the newest and refuses while it runs, naming its
end. ``--ignore-venue-hold`` starts anyway (the bot now sends from another IP address).
"""

from __future__ import annotations

import re

from bot.clock import ms_to_datetime
from bot.domain.enums import EventKind
from bot.errors import BotError
from bot.ports.store import StorePort

_UNTIL_MS = re.compile(r"\(until_ms=(\d+)\)")


class VenueHoldRunning(BotError):
    """A start refused: the last run recorded a hold of the venue's that has not ended."""


def _utc(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def hold_reason(until_ms: int, held_s: float) -> str:
    """The recorded event's text; :func:`recorded_hold_end` reads the end back from it."""
    return (
        f"the venue asked for no request for {held_s:.0f} s (Retry-After: its rate limit or "
        f"an IP ban): every request held until {_utc(until_ms)} (until_ms={until_ms})"
    )


def hold_over_reason(now_ms: int) -> str:
    """The event that ends a recorded hold early: a job's requests went out."""
    return f"the venue's hold is over: a job's requests were answered (until_ms={now_ms})"


def recorded_hold_end(store: StorePort) -> tuple[int, int] | None:
    """The newest recorded hold: (its end, when it was recorded), epoch ms; None if none."""
    for event in store.recent_events(1, kinds=(EventKind.VENUE_HOLD,)):
        found = _UNTIL_MS.search(event.reason)
        if found is not None:
            return int(found.group(1)), event.ts_ms
    return None


def check_no_venue_hold(store: StorePort, now_ms: int, where: str) -> None:
    """Refuse a start (:class:`VenueHoldRunning`) while the newest recorded hold runs.

    ``where`` names the state database in the message."""
    recorded = recorded_hold_end(store)
    if recorded is None:
        return
    until_ms, at_ms = recorded
    if until_ms <= now_ms:
        return
    raise VenueHoldRunning(
        f"{where}: the last run was told by the venue at {_utc(at_ms)} to send no request "
        f"until {_utc(until_ms)} (Retry-After: its rate limit or an IP ban; "
        f"{(until_ms - now_ms) / 60_000:.0f} min left). A start sends its reads at once, and "
        "Binance lengthens a ban for requests sent during it (up to 3 days). Nothing was "
        "sent: the resting stops stay on the exchange. Start again after that time; use the "
        "exchange's app or website to act before then; --ignore-venue-hold starts anyway "
        "(only if the bot now sends from another IP address, or the venue lifted the ban)"
    )
