"""Live trading keeps its contract specifications fresh.

Brackets and filters change (Binance and Bybit move risk limits and tick sizes without notice).
The live bot re-reads them from the venue (markets and leverage tiers, through the adapter) at
start and then about hourly (:data:`REFRESH_MS`, at the first tick or guard after it): a
contract the venue withdraws without notice is seen within the hour, not a day later while its
reads fail every tick, for two requests an hour; the guard's check (:meth:`refresh_when_due`)
costs a time check while no refresh is due, and refuses nothing. A read the venue answers "no
such symbol" asks at once, whatever job is running (:meth:`confirm_withdrawn`). A difference
from what it used before, or from the user's catalogue / bundled snapshot at start, is recorded
as a ``catalogue`` event. When the last successful read is older than ``[data]
catalogue_max_age_hours`` the tick refuses to run (the guard job, which keeps stops resting, is
not affected) until a refresh succeeds. A refresh that fails is tried again at the first tick
or guard :data:`RETRY_MS` later.

A contract the venue stops trading (absent from its markets, or listed with a status other
than trading) is **withdrawn**, that contract alone: the refresh succeeds for the others and
keeps its last specification, and the engine gives it no decision and no order that adds
exposure (:meth:`bot.engine.tick.Engine.restrict`). Each change (withdrawn, why, trading
again) is one ``catalogue`` event and one critical alert. What was reported is kept in the store
(``ListingReport``) once its alerts are recorded and queued (a critical one a failing
destination holds is sent after a restart too): a restart (a crash loop, a redeploy) compares the
venue's listing with it and reports only what changed. A settlement the venue schedules for
a perpetual it delists (Binance ``deliveryDate``, Bybit ``deliveryTime``) is one event and one
warning alert; from ``settlement_lead_hours`` before it the contract is reduce-only, and
withdrawn once that time has passed. The bot never closes it for the trader: the venue settles
what is still held.

The live bot never rewrites the user's catalogue file: ``bot contracts sync`` does that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from loguru import logger

from bot.alerts import Alert, Notifier
from bot.catalogue import resolve_with_sources
from bot.catalogue_sync import describe_change
from bot.clock import Clock, ms_to_datetime
from bot.domain.enums import EventKind
from bot.domain.instrument import Instrument
from bot.domain.market import VenueRestriction
from bot.errors import BotError, ConfigError
from bot.exchange.ccxt_adapter import ABSENT, CcxtExchange, Listing
from bot.ports.store import ListingReport, StorePort
from bot.runtime.events import record_event_now

# A little under an hour: an hourly tick, whose time jitters by milliseconds, refreshes at each
# one (55 min after the last read), never every other one.
REFRESH_MS = 55 * 60_000
RETRY_MS = 10 * 60_000  # after a failed refresh (not at every tick of a 1m policy)
# A read answered "no such symbol" re-reads the market list at once (confirm_withdrawn), at
# most once per guard interval: a contract the list still has trading (a symbol the bot got
# wrong, a list behind the venue's own answers) fails the jobs that read it, as before, each
# minute at most one more list read.
CONFIRM_EVERY_MS = 60_000


class StaleCatalogue(ConfigError):
    """The contract specifications are older than the configured maximum age."""


class CatalogueKeeper:
    def __init__(
        self,
        exchange: CcxtExchange,
        *,
        exchange_name: str,
        data_dir: Path | None,
        symbols: Sequence[str],
        store: StorePort,
        clock: Clock,
        max_age_hours: int,
        refresh_every_ms: int = REFRESH_MS,
        on_refresh: Callable[[dict[str, Instrument]], None] | None = None,
        on_restrict: Callable[[Mapping[str, VenueRestriction]], None] | None = None,
        notifier: Notifier | None = None,
        settlement_lead_hours: int = 24,
    ) -> None:
        self._ex = exchange
        # Given the specifications of every refresh (the engine trades on them: kept from its
        # start, it rounded on a grid ccxt and the venue no longer use).
        self._on_refresh = on_refresh
        self._name = exchange_name
        self._data_dir = data_dir
        self._symbols = list(symbols)
        self._store = store
        self._clock = clock
        self._max_age_ms = max_age_hours * 3_600_000
        self._every = refresh_every_ms
        self._next_attempt_ms: int | None = None  # None: at the first check
        self.read_at_ms: int | None = None  # last successful read from the venue
        self.last_failure: BotError | None = None  # why the last read failed (None: it did not)
        self._known: dict[str, Instrument] = {}
        # Contracts whose known figures are a labelled stand-in (bot.catalogue), not the venue's
        # own, until the venue's are read: a difference from those is no change by the venue.
        self._stand_ins: set[str] = set()
        # Given the venue's restrictions at every check (the engine trades on them).
        self._on_restrict = on_restrict
        self._notifier = notifier
        self._lead_ms = settlement_lead_hours * 3_600_000
        self._held: list[Alert] | None = None  # alerts kept until the start is confirmed
        # As last reported (an event and an alert each), kept in the store: a restart (a crash
        # loop, a redeploy) reports what changed since, not again what was said before it.
        reported = {s: r for s, r in store.listing_reports().items() if s in self._symbols}
        # symbol -> why the venue does not trade it
        self.withdrawn: dict[str, str] = {
            s: r.withdrawn for s, r in reported.items() if r.withdrawn is not None
        }
        # symbol -> when the venue settles it (epoch ms)
        self.settles: dict[str, int] = {
            s: r.settles_ms for s, r in reported.items() if r.settles_ms is not None
        }
        # Contracts whose report changed, written to the store once their alerts are sent (a
        # start declined at the prompt sent none: the next start reports them again).
        self._unsaved: set[str] = set()
        # Withdrawn contracts the venue still lists (a status other than trading) but whose
        # reads it answers "no such symbol": read no more, as those it no longer lists.
        self._unanswered: set[str] = set()
        self._confirmed_ms: int | None = None  # the last market-list read confirm_withdrawn made

    def check(self, *, hold_alerts: bool = False) -> None:
        """Refresh when due; raise :class:`StaleCatalogue` when the specs are too old.

        ``hold_alerts``: keep this check's alerts until :meth:`release_alerts` or the next
        check (the live start's check runs before the trader confirms the start: a start
        declined at the prompt records its events and sends nothing)."""
        self.release_alerts()  # (held by the start's check: the start went on)
        if hold_alerts:
            self._held = []
        now = self._clock.now_ms()
        if self._due(now):
            self._refresh_safely(now)
        self._apply(now)
        if self.read_at_ms is None or now - self.read_at_ms > self._max_age_ms:
            when = (
                "never"
                if self.read_at_ms is None
                else f"{(now - self.read_at_ms) // 60000} min ago"
            )
            why = f" (the last read failed: {self.last_failure})" if self.last_failure else ""
            raise StaleCatalogue(
                f"contract specifications last read from {self._name} {when}, more than "
                f"[data] catalogue_max_age_hours = {self._max_age_ms // 3_600_000} h: not trading "
                f"until a refresh succeeds{why}"
            )

    def refresh_when_due(self) -> None:
        """Before a guard job: the refresh when it is due (:meth:`check`'s), so that a contract
        the venue withdrew is seen within the hour whatever the policy's timeframe (the guard
        runs every minute; a 1d policy's tick once a day). No refresh due: a time check, no
        request. Never raises :class:`StaleCatalogue`: the guard keeps the stops resting
        whatever the catalogue's age (only the decision ticks wait for a fresh one)."""
        now = self._clock.now_ms()
        if not self._due(now):
            return
        self._refresh_safely(now)
        self._apply(now)

    def confirm_withdrawn(self, symbol: str) -> None:
        """The venue answered a read of ``symbol`` that it has no such symbol: read its market
        list now (at most once per :data:`CONFIRM_EVERY_MS`), whatever job is running, and give
        the restrictions to ``on_restrict`` (the engine's reconcile asks, through
        ``Engine.listing_check``, and reads on without the contract once it is unlisted).

        The answer alone withdraws nothing: a contract the list still has trading stays as it
        is (the read fails, as any failed read does). One the list no longer has is withdrawn
        as the hourly refresh would have found it (one ``catalogue`` event, one critical
        alert). One it lists as not trading (withdrawn, whose reads were still made) is read
        no more from now on either (see :meth:`restrictions`), said once."""
        now = self._clock.now_ms()
        recent = self._confirmed_ms is not None and now - self._confirmed_ms < CONFIRM_EVERY_MS
        if symbol not in self.withdrawn and not recent:
            self._confirmed_ms = now
            self._refresh_safely(now)
        why = self.withdrawn.get(symbol)
        if why is not None and why != ABSENT and symbol not in self._unanswered:
            self._unanswered.add(symbol)
            self._say_unanswered(now, symbol, why)
        self._apply(now)

    def _due(self, now: int) -> bool:
        return self._next_attempt_ms is None or now >= self._next_attempt_ms

    def _refresh_safely(self, now: int) -> None:
        """:meth:`refresh`; one that fails is recorded and tried again :data:`RETRY_MS` later."""
        self._next_attempt_ms = now + min(self._every, RETRY_MS)
        try:
            self.refresh(now)
            self._next_attempt_ms = now + self._every
            self.last_failure = None
        except BotError as exc:
            self.last_failure = exc
            logger.warning("contract catalogue refresh failed: {}", str(exc))
            self._event(now, None, f"refresh from {self._name} failed: {exc}")

    def _apply(self, now: int) -> None:
        """Keep the reports (unless alerts are held) and give the restrictions of ``now``."""
        if self._held is None:
            self._save_reports()
        if self._on_restrict is not None:
            self._on_restrict(self.restrictions(now))

    def _say_unanswered(self, now: int, symbol: str, why: str) -> None:
        """One event and one critical alert: the venue lists ``symbol`` not trading (``why``)
        and answers "no such symbol" to its reads. Said once: not again when the contract's
        newest ``catalogue`` event says it already (a restart)."""
        reason = (
            f"{symbol}: withdrawn by the venue ({why}), and it answers that it has no such "
            "symbol to the reads of it: its position and orders are shown as last read (never "
            "flat) and no order is sent (the venue settles what is still held)"
        )
        told = self._store.recent_events(200, kinds=(EventKind.CATALOGUE,))
        newest = next((e.reason for e in told if e.symbol == symbol), None)
        if newest == reason:
            return
        self._event(now, symbol, reason)
        self._alert(now, f"{symbol}:reads", "critical", reason)

    def refresh(self, now: int) -> dict[str, str]:
        """Re-read the venue's specs; record and return what changed (symbol -> difference)."""
        if not self._known:  # at start: compare with the catalogue the simulation would use
            found, _ = resolve_with_sources(self._name, self._symbols, self._data_dir)
            self._known = {s: inst for s, (inst, _) in found.items()}
            self._stand_ins = {s for s, (_, catalogue) in found.items() if catalogue.is_stand_in(s)}
        listing = self._ex.read_listing(self._symbols)
        fresh = listing.instruments
        changes: dict[str, str] = {}
        for sym in self._symbols:
            new = fresh.get(sym)
            old = self._known.get(sym)
            if new is not None and old is not None and _differs(old, new):
                changes[sym] = describe_change(old, new)
                said = (
                    "the venue's own figures differ from the STAND-IN the simulation uses"
                    if sym in self._stand_ins
                    else "the venue changed the contract"
                )
                self._event(now, sym, f"{sym}: {said}: {changes[sym]}")
            if new is not None:
                self._known[sym] = new
                self._stand_ins.discard(sym)
        self.read_at_ms = now
        self._note_withdrawn(now, listing)
        self._note_settles(now, listing)
        if self._on_refresh is not None:
            self._on_refresh({s: fresh[s] for s in self._symbols if s in fresh})
        logger.info(
            "contract specifications refreshed from {} ({} changed)", self._name, len(changes)
        )
        return changes

    def restrictions(self, now: int) -> dict[str, VenueRestriction]:
        """What the venue allows less than trading on, as of ``now``: the withdrawn contracts,
        and the ones whose scheduled settlement is within the lead time (reduce-only)."""
        out = {
            sym: VenueRestriction(
                f"{sym}: withdrawn by the venue ({why})",
                listed=why != ABSENT and sym not in self._unanswered,
            )
            for sym, why in self.withdrawn.items()
        }
        for sym, when in self.settles.items():
            if sym in out or now < when - self._lead_ms:
                continue
            if now >= when:  # settled by now, whatever the next refresh reads
                out[sym] = VenueRestriction(f"{sym}: settled by the venue at {_utc(when)}")
                continue
            out[sym] = VenueRestriction(
                f"{sym}: the venue settles this perpetual at {_utc(when)}, within the "
                f"{self._lead_ms // 3_600_000} h lead (settlement_lead_hours)",
                withdrawn=False,
            )
        return out

    def _note_withdrawn(self, now: int, listing: Listing) -> None:
        """One event and one critical alert per change: withdrawn, withdrawn for another
        reason, trading again."""
        for sym in self._symbols:
            old, new = self.withdrawn.get(sym), listing.withdrawn.get(sym)
            if old == new:
                continue
            self._unanswered.discard(sym)  # (of that withdrawal: read again, asked again)
            if new is None:
                reason = (
                    f"{sym}: the venue trades this contract again (it was withdrawn: {old}); "
                    "managed again"
                )
            else:
                held = (
                    "the venue answers nothing about it: its position and orders are shown as "
                    "last read (never flat) and no order is sent"
                    if new == ABSENT
                    else "a position still held is read and shown, its resting stop stays; no "
                    "order is sent once the venue refuses one"
                )
                reason = (
                    f"{sym}: withdrawn by the venue ({new}): no new exposure; {held} (the venue "
                    "settles what is still held)"
                )
            self._event(now, sym, reason)
            self._alert(now, f"{sym}:listing", "critical", reason)
            self._unsaved.add(sym)
        self.withdrawn = dict(listing.withdrawn)

    def _note_settles(self, now: int, listing: Listing) -> None:
        """One event and one warning alert per settlement the venue schedules (or cancels)."""
        for sym in self._symbols:
            old, new = self.settles.get(sym), listing.settles.get(sym)
            if old == new:
                continue
            if new is None:
                reason = f"{sym}: the venue no longer schedules a settlement (was {_utc(old)})"
            else:
                reason = (
                    f"{sym}: the venue settles this perpetual at {_utc(new)}; reduce-only from "
                    f"{self._lead_ms // 3_600_000} h before (no new exposure). The bot does not "
                    "close it: close it yourself before then, or the venue settles what is held"
                )
            self._event(now, sym, reason)
            self._alert(now, f"{sym}:settlement", "warning", reason)
            self._unsaved.add(sym)
        self.settles = dict(listing.settles)

    def _alert(self, now: int, what: str, severity: str, message: str) -> None:
        """``what``: the contract and which of its news (its listing, its settlement): a
        withdrawal and a settlement read in one check are two alerts, not one and a duplicate."""
        if self._notifier is None:
            return
        # keyed by the change's time: each change is news, even within the dedup window
        alert = Alert(f"catalogue:{what}@{_utc(now)}", severity, message)
        if self._held is not None:
            self._held.append(alert)
            return
        self._send([alert])

    def release_alerts(self) -> None:
        """Send the alerts a check held (``hold_alerts``), and every later one as it comes."""
        held, self._held = self._held or [], None
        if held:
            self._send(held)
        self._save_reports()

    def _save_reports(self) -> None:
        """Keep what was reported of each contract whose listing changed (see __init__)."""
        if not self._unsaved:
            return
        now = self._clock.now_ms()
        for sym in sorted(self._unsaved):
            report = ListingReport(sym, self.withdrawn.get(sym), self.settles.get(sym))
            self._store.record_listing_report(report, now)
        self._unsaved.clear()

    def _send(self, alerts: list[Alert]) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify(alerts)
        except Exception as exc:  # the event is recorded; the next job's alerts go on
            logger.error("the catalogue alert cannot be sent: {}: {}", type(exc).__name__, exc)

    def _event(self, now: int, symbol: str | None, reason: str) -> None:
        record_event_now(self._store, now, EventKind.CATALOGUE, symbol, reason)


def _utc(ms: int | None) -> str:
    return "?" if ms is None else ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


def _differs(old: Instrument, new: Instrument) -> bool:
    fields = ("tick_size", "step_size", "min_qty", "min_notional", "brackets")
    return any(getattr(old, f) != getattr(new, f) for f in fields)
