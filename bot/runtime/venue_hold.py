"""A venue's long hold (``Retry-After`` on a 429 or a 418 IP ban) outlives the process.

The adapter holds every request while the venue asks it to (``SharedPacer.hold``), but only
in the process that read the answer. Binance bans an IP that keeps sending after it was told
to wait, for 2 minutes up to 3 days, longer for each repeat (shared notes exchange-facts
section 7): a restart during a ban (the owner trying to "fix" a bot whose jobs all fail, a
service manager restarting it) sent its start's reads at once and lengthened the ban. The
runner records each long hold it alerts as a ``venue_hold`` event with its end; a start of
``bot run`` on prices from the venue reads the newest and refuses while it runs, naming its
end. ``--ignore-venue-hold`` starts anyway (the bot now sends from another IP address).

Bybit's IP ban (HTTP 403, capabilities.IpBan) names no end: the recorded end is the bot's own
hold, the least Bybit documents (10 minutes), renewed by each probe that finds the ban still
on, and the refusal says so. A start before it could only be refused by the venue, and a
service manager restarting a bot whose start fails kept sending into the ban.
"""

from __future__ import annotations

import re

from bot.clock import utc_text
from bot.domain.enums import EventKind
from bot.errors import BotError
from bot.ports.store import StorePort

_UNTIL_MS = re.compile(r"\(until_ms=(\d+)\)")
# In the recorded text of a hold whose end the venue did not name (an IP ban, Bybit's 403):
# the end is the bot's own, the least the venue documents.
NO_END = "gave no end"


class VenueHoldRunning(BotError):
    """A start refused: the last run recorded a hold of the venue's that has not ended."""


def hold_reason(until_ms: int, held_s: float, *, named: bool = True) -> str:
    """The recorded event's text; :func:`recorded_hold_end` reads the end back from it.
    ``named`` False: an IP ban whose answer named no end (Bybit's 403), held the least the
    venue documents (:data:`NO_END`)."""
    if not named:
        return (
            f"the venue refused this IP address and {NO_END} (an IP ban): every request held "
            f"{held_s:.0f} s, the least the venue documents, until {utc_text(until_ms)} "
            f"(until_ms={until_ms}); the ban may last longer"
        )
    return (
        f"the venue asked for no request for {held_s:.0f} s (Retry-After: its rate limit or "
        f"an IP ban): every request held until {utc_text(until_ms)} (until_ms={until_ms})"
    )


def hold_over_reason(now_ms: int) -> str:
    """The event that ends a recorded hold early: a job's requests went out."""
    return f"the venue's hold is over: a job's requests were answered (until_ms={now_ms})"


def recorded_hold_end(store: StorePort) -> tuple[int, int] | None:
    """The newest recorded hold: (its end, when it was recorded), epoch ms; None if none."""
    recorded = _newest_hold(store)
    return None if recorded is None else recorded[:2]


def hold_in_force(store: StorePort, now_ms: int) -> tuple[int, int, bool] | None:
    """The newest recorded hold while it runs at ``now_ms``: (its end, when it was recorded,
    whether the venue named that end); None when none was recorded or it is over (ended, or
    ended early by a job whose requests were answered: :func:`hold_over_reason`)."""
    recorded = _newest_hold(store)
    if recorded is None or recorded[0] <= now_ms:
        return None
    return recorded


def hold_note(until_ms: int, at_ms: int, *, named: bool) -> str:
    """A hold in force as ``bot status``, the dashboard and ``/healthz`` name it: the bot runs
    but every job fails until then, and a start is refused before it (:func:`check_no_venue_hold`),
    so "restart the bot" is the wrong advice."""
    end = (
        f"until {utc_text(until_ms)}"
        if named
        else f"until at least {utc_text(until_ms)} (an IP ban that {NO_END}: the least the "
        "venue documents, renewed while the ban is on)"
    )
    return (
        f"venue holds requests {end}, told at {utc_text(at_ms)} (its rate limit or an IP ban): "
        "every job fails until then and a start is refused before it; the resting stops stay "
        "on the exchange, act on positions in the exchange's app or website meanwhile"
    )


def _newest_hold(store: StorePort) -> tuple[int, int, bool] | None:
    """(end, when recorded, whether the venue named that end) of the newest recorded hold."""
    for event in store.recent_events(1, kinds=(EventKind.VENUE_HOLD,)):
        found = _UNTIL_MS.search(event.reason)
        if found is not None:
            return int(found.group(1)), event.ts_ms, NO_END not in event.reason
    return None


def check_no_venue_hold(store: StorePort, now_ms: int, where: str) -> None:
    """Refuse a start (:class:`VenueHoldRunning`) while the newest recorded hold runs.

    ``where`` names the state database in the message."""
    recorded = hold_in_force(store, now_ms)
    if recorded is None:
        return
    until_ms, at_ms, named = recorded
    left = f"{(until_ms - now_ms) / 60_000:.0f} min left"
    told = (
        f"was told by the venue at {utc_text(at_ms)} to send no request until {utc_text(until_ms)} "
        f"(Retry-After: its rate limit or an IP ban; {left}). A start sends its reads at "
        "once, and Binance lengthens a ban for requests sent during it (up to 3 days)"
        if named
        else f"was refused by the venue at {utc_text(at_ms)} as a banned IP address, which "
        f"{NO_END}; it holds every request until {utc_text(until_ms)} ({left}), the least the "
        "venue documents (Bybit: at least 10 minutes, usually 30, and permanent for an "
        "address that keeps breaking its limit). A start sends its reads at once, into the ban"
    )
    raise VenueHoldRunning(
        f"{where}: the last run {told}. Nothing was sent: the resting stops stay on the "
        "exchange. Start again after that time; use the exchange's app or website to act "
        "before then; --ignore-venue-hold starts anyway (only if the bot now sends from "
        "another IP address, or the venue lifted the ban)"
    )
