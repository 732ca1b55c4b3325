"""Alerts: what deserves the owner's attention, delivered through Apprise, deduplicated and
rate-limited so an outage does not flood anyone.

Conditions (:func:`conditions`): margin ratio above a threshold, a liquidation price closer than
``k`` daily-volatility units, a position without a resting stop-loss or with part of it not
covered by its stops (how much, in the message), a change of trading state, a failed tick.
Each alert has a ``key`` naming the condition and the contract: an alert whose key was
delivered within the dedup window is recorded but not sent again (an incident that goes on is
not sent at every job), and no more than ``max_per_hour`` alerts are sent in any hour (a
critical one over the limit waits for room, a warning is dropped). A
condition seen to be over (:meth:`Notifier.resolved`) ends its incident: when it comes back,
even within the window, that is a new incident and is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from loguru import logger

from bot import numbers
from bot.clock import Clock
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import worst_margin
from bot.domain.market import MarketSnapshot
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.extras import require
from bot.logs import REDACTOR, redact
from bot.risk.coverage import closing_side, coverage, plain, resting_stops, uncounted_by_hand

DAYS = Decimal(365)


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # condition + contract, e.g. "no_stop:BTC/USDT:USDT"
    severity: str  # "info" | "warning" | "critical"
    message: str


@dataclass(frozen=True, slots=True)
class AlertRules:
    margin_ratio: Decimal = Decimal("0.8")  # maintenance / margin balance
    liquidation_vol_units: Decimal = Decimal(3)  # daily-volatility units to the liquidation
    dedup_seconds: int = 3600
    max_per_hour: int = 20


def conditions(
    *,
    positions: dict[str, Position],
    resting: dict[str, list[Order]],
    marks: dict[str, Decimal],
    snapshots: dict[str, MarketSnapshot],
    instruments: dict[str, Instrument],
    wallet: Decimal,
    rules: AlertRules,
) -> list[Alert]:
    """Alerts that hold for this account state (pure)."""
    out: list[Alert] = []
    for sym, pos in positions.items():
        if not pos.is_open:
            continue
        mark = marks[sym]
        # The bot's stops, and stop orders placed by hand (not the bot's client id) that
        # protect as the bot's would (stop-market, reduce-only or close-position, mark
        # trigger), on the side that closes the position: a position opened and protected by
        # hand is not naked. A close-position stop covers it all; sized stops add up (see
        # bot.risk.coverage).
        legs = resting_stops(resting.get(sym, []))
        cover = coverage(pos.qty, legs)
        inst = instruments[sym]
        size = plain(pos.qty)  # as the coverage says it: exact, never 1.23E+5
        if cover.stops == 0:
            wrong = " (a stop rests on the side that would add to it: no protection)"
            out.append(
                Alert(
                    f"no_stop:{sym}",
                    "critical",
                    f"{sym}: position {size} has no resting stop-loss"
                    + (wrong if legs else "")
                    + _uncounted(resting.get(sym, []), pos.qty),
                )
            )
        elif not cover.complete:
            out.append(
                Alert(
                    f"part_unprotected:{sym}",
                    "critical",
                    f"{sym}: position {size}: {cover.describe()}"
                    + _uncounted(resting.get(sym, []), pos.qty),
                )
            )
        snap = snapshots.get(sym)
        liq = pos.liquidation_price
        if snap is not None and liq is not None and snap.volatility > 0:
            unit = mark * snap.volatility / DAYS.sqrt()
            units = abs(mark - liq) / unit
            if units < rules.liquidation_vol_units:
                # on the tick grid toward the mark: never more room than there is
                toward = inst.liquidation_on_grid(liq, pos.sign)
                out.append(
                    Alert(
                        f"liq_distance:{sym}",
                        "critical",
                        f"{sym}: liquidation "
                        f"{numbers.price(toward, inst.tick_size)} is "
                        f"{units:.2f} daily-vol units from the mark "
                        f"{numbers.price(mark, inst.tick_size)} "
                        f"(alert below {rules.liquidation_vol_units})",
                    )
                )
    # The pool closest to liquidation: the cross positions on the wallet, or an isolated
    # position on its own margin (an account-wide ratio hides an isolated position near its
    # liquidation behind the rest of the equity).
    held = [(p, instruments[s], marks[s]) for s, p in positions.items() if p.is_open]
    # (an isolated position whose margin the venue did not give: at least what the account-wide
    # figure says, as if the wallet carried it)
    worst = worst_margin(held, wallet) or worst_margin(
        [(replace(p, margin_mode=MarginMode.CROSS), i, m) for p, i, m in held], wallet
    )
    if worst is not None and worst.maintenance > 0 and worst.ratio >= rules.margin_ratio:
        where = "" if worst.where == "cross" else f"{worst.where} (isolated) "
        out.append(
            Alert(
                "margin_ratio",
                "critical",
                f"{where}margin ratio {worst.ratio:.2%} >= {rules.margin_ratio:.0%} "
                f"(maintenance {worst.maintenance:.2f}, margin balance {worst.balance:.2f})",
            )
        )
    return out


def _uncounted(orders: Sequence[Order], qty: Decimal) -> str:
    """The stops placed by hand on the closing side that are no protection, and why (the
    trader sees their stop on the exchange and must learn why it is not counted)."""
    named = [
        f"{o.client_id or o.exchange_id}: {why}"
        for o, why in uncounted_by_hand(orders, closing_side(qty))
    ]
    return f"; placed by hand, not counted: {'; '.join(named)}" if named else ""


class RecordedAlert(Protocol):
    """An alert as the store recorded it (bot.store.sql.AlertRecord)."""

    @property
    def id(self) -> int: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def delivered(self) -> bool: ...


class AlertStore(Protocol):
    def record_alert(
        self, ts_ms: int, key: str, severity: str, message: str, *, delivered: bool = False
    ) -> int: ...

    def mark_alert_delivered(self, alert_id: int) -> None: ...

    def recent_alerts(self, key: str, since_ms: int) -> Sequence[object]: ...


Sender = Callable[[str, str], bool]  # (title, body) -> delivered

_URL_PARTS = re.compile(r"[/?&=@#]+")


def url_secrets(url: str) -> list[str]:
    """The parts of an alert URL that may be credentials: the whole URL, every part of it
    (between ``/ ? & = @ #``) of 8 characters or more mixing letters and digits (tokens, keys,
    ``user:password``), and every other part of 6 characters or more that is not a host name or
    an address (no dot): a secret need not hold a digit. An ntfy topic is the only access
    control on ntfy.sh, a webhook path token may be letters only, and Apprise puts a token in
    the host's place (``tgram://TOKEN/CHAT``, ``discord://ID/TOKEN``). Shorter parts are left
    alone: redacting them would blank common words (``hooks``) out of every log line."""
    rest = url.split("://", 1)[-1]
    parts = [
        p
        for p in _URL_PARTS.split(rest)
        if (len(p) >= 8 and any(c.isdigit() for c in p) and any(c.isalpha() for c in p))
        or (len(p) >= 6 and "." not in p)
    ]
    if "@" in rest:  # user:password@host: the password whatever it looks like
        userinfo = rest.split("@", 1)[0].split("/", 1)[0]
        if ":" in userinfo:
            parts.append(userinfo.split(":", 1)[1])
    return [url, *parts]


def apprise_sender(urls: Sequence[str]) -> Sender | None:
    """A sender for Apprise URLs (Telegram, Discord, Slack, e-mail, json:// webhooks...)."""
    if not urls:
        return None
    require("apprise", "alerts", "runtime.alert_urls (notifications through Apprise)")
    import apprise

    app = apprise.Apprise()
    for url in urls:
        if not app.add(url):
            raise ValueError(f"alert URL not understood by Apprise: {url.split('://')[0]}://...")
        # The URL carries the destination's credentials (a Telegram bot token, a Slack or
        # Discord webhook token, a password): Apprise and urllib3 log the request path at DEBUG
        # and connection errors quote it; no sink and no stored text may show them.
        REDACTOR.add(url_secrets(url))

    def send(title: str, body: str) -> bool:
        return bool(app.notify(title=title, body=body))

    return send


# After a failed delivery the destination rests this long (doubling on each failure in a row, up
# to the maximum) before it is tried again: a webhook that hangs costs each attempt its whole
# timeout (Apprise: 4 s) on the job's thread, and a job with ten alerts would hold the next tick
# and guard for 40 s, every job. Alerts meanwhile are recorded and held (the newest per key).
FIRST_REST_S = 30.0
MAX_REST_S = 900.0
MAX_HELD = 100
_URGENCY = {"critical": 0, "warning": 1, "info": 2}


class Notifier:
    """Records every alert in the store; sends the ones that pass dedup and the rate limit.

    The store is not needed to send: when it cannot be read or written (a full disk, a lost
    database connection, the very failures worth an alert), the alert is sent anyway, with the
    dedup window kept in memory. A destination that fails rests before it is tried again (see
    ``FIRST_REST_S``); what could not be sent is held and sent first when it answers again.
    ``notify`` never raises.
    """

    def __init__(
        self,
        store: AlertStore,
        clock: Clock,
        sender: Sender | None,
        rules: AlertRules,
        *,
        account: str,
    ) -> None:
        self.store = store
        self.clock = clock
        self.sender = sender
        self.rules = rules
        self.account = account
        # deliveries of the last hour, on the clock's monotonic seconds: a wall clock stepped
        # back by hours kept them "in the last hour" as long, and critical alerts held
        self._sent: list[float] = []
        # key -> when the condition was last seen not to hold: a delivery before then was of an
        # incident that is over, and does not make the next one a duplicate
        self._resolved: dict[str, int] = {}
        self._delivered: dict[str, int] = {}  # key -> last delivery (ms), for a failing store
        self._held: dict[str, tuple[Alert, int | None]] = {}  # key -> newest unsent, oldest first
        self._rest_s = 0.0  # the current rest after failures in a row (0: none)
        self._retry_at: float | None = None  # on the clock's monotonic seconds

    def restore(self, recorded: Iterable[RecordedAlert]) -> int:
        """Hold again the critical alerts recorded within the dedup window (an hour at least)
        and never delivered (held for a failing destination when the bot stopped): they go out
        first, at the next job. A key delivered within the window is not (its undelivered
        records are duplicates). Returns how many are held."""
        # (at least the last hour: a dedup window of 0 still has alerts to restore)
        since = self.clock.now_ms() - max(self.rules.dedup_seconds, 3600) * 1000
        newest: dict[str, RecordedAlert] = {}
        delivered: set[str] = set()
        for r in recorded:
            if r.ts_ms < since:
                continue
            if r.delivered:
                delivered.add(r.key)
            elif r.key not in newest or (r.ts_ms, r.id) > (newest[r.key].ts_ms, newest[r.key].id):
                newest[r.key] = r
        for r in sorted(newest.values(), key=lambda r: (r.ts_ms, r.id)):
            if r.key not in delivered and r.severity == "critical":
                self._hold(Alert(r.key, r.severity, r.message), r.id)
        return len(self._held)

    def resolved(self, keys: Iterable[str]) -> None:
        """The conditions of ``keys`` are seen not to hold (the stop rests again, the account
        was read): if they come back, it is a new incident, sent even within the dedup window.
        Only for a condition known to be over, never for one that could not be checked."""
        now = self.clock.now_ms()
        for key in keys:
            self._resolved[key] = now

    def notify(self, alerts: Sequence[Alert]) -> int:
        """Returns how many were delivered."""
        fresh: list[tuple[Alert, int | None]] = []
        for alert in alerts:
            # an alert may quote an exchange error: no secret leaves in a payload or the store
            alert = Alert(alert.key, alert.severity, redact(alert.message))
            now = self.clock.now_ms()
            since = now - self.rules.dedup_seconds * 1000
            over = self._resolved.get(alert.key)
            if over is not None:
                # a delivery before it was of the incident that ended (one at the same moment,
                # in the job that saw it end, is of the new one)
                since = max(since, over)
            alert_id, duplicate = self._record(alert, now, since)
            if duplicate or self.sender is None:
                continue
            fresh.append((alert, alert_id))
        # Held alerts go first, unless a newer one of the same key replaces them.
        keys = {a.key for a, _ in fresh}
        batch = [held for key, held in self._held.items() if key not in keys] + fresh
        # Critical first (a stable sort: oldest first within a severity): when the hourly limit
        # leaves room for only some, a position without a stop is not the one left unsent.
        batch.sort(key=lambda held: _URGENCY.get(held[0].severity, len(_URGENCY)))
        held_keys = set(self._held)
        self._held = {}
        delivered = 0
        for alert, alert_id in batch:
            now = self.clock.now_ms()
            mono = self.clock.monotonic()
            self._sent = [t for t in self._sent if t > mono - 3600]
            if self._resting():
                self._hold(alert, alert_id)
                continue
            if len(self._sent) >= self.rules.max_per_hour:
                if alert.severity == "critical":
                    # Held, sent when the hour leaves room: a state change or an exit is keyed
                    # by its time and alerted once, so one dropped here would never be sent.
                    if alert.key not in held_keys:
                        logger.warning("alert rate limit reached; held: {}", alert.message)
                    self._hold(alert, alert_id)
                else:
                    logger.warning("alert rate limit reached; not sent: {}", alert.message)
                continue
            if self._send(alert):
                self._delivered[alert.key] = now
                self._sent.append(mono)
                delivered += 1
                if alert_id is not None:
                    self._mark_delivered(alert_id)
            else:
                self._hold(alert, alert_id)
        return delivered

    def _send(self, alert: Alert) -> bool:
        assert self.sender is not None  # noqa: S101 - notify() sends nothing without one
        title = f"[{self.account}] {alert.severity}: {alert.key}"
        try:
            ok = self.sender(title, alert.message)
        except Exception as exc:
            logger.error("alert delivery failed: {}: {}", type(exc).__name__, exc)
            ok = False
        if ok:
            self._rest_s, self._retry_at = 0.0, None
            return True
        self._rest_s = min(MAX_REST_S, self._rest_s * 2 or FIRST_REST_S)
        self._retry_at = self.clock.monotonic() + self._rest_s
        logger.error(
            "alert delivery failed; the alert destination rests {:.0f} s before the next "
            "attempt (alerts meanwhile are recorded and held; trading goes on)",
            self._rest_s,
        )
        return False

    def _resting(self) -> bool:
        return self._retry_at is not None and self.clock.monotonic() < self._retry_at

    def _hold(self, alert: Alert, alert_id: int | None) -> None:
        self._held.pop(alert.key, None)
        self._held[alert.key] = (alert, alert_id)
        while len(self._held) > MAX_HELD:
            dropped = next(iter(self._held))
            del self._held[dropped]
            logger.warning("alert {} dropped: too many held while the destination fails", dropped)

    def _record(self, alert: Alert, now: int, since: int) -> tuple[int | None, bool]:
        """Record ``alert``; returns its id (None if the store failed) and whether the same key
        was delivered within the dedup window. A delivery stamped after ``now`` (the wall clock
        went back since) is of unknown age: not counted, the alert is sent again rather than
        swallowed for as long as the clock went back."""
        seen = self._delivered.get(alert.key)
        duplicate = seen is not None and since <= seen <= now
        try:
            recent = self.store.recent_alerts(alert.key, since)
            duplicate = duplicate or any(
                getattr(r, "delivered", False) and getattr(r, "ts_ms", now) <= now for r in recent
            )
            return self.store.record_alert(now, alert.key, alert.severity, alert.message), duplicate
        except Exception as exc:
            logger.error(
                "alert {} cannot be recorded ({}: {}); sending it anyway",
                alert.key,
                type(exc).__name__,
                exc,
            )
            return None, duplicate

    def _mark_delivered(self, alert_id: int) -> None:
        try:
            self.store.mark_alert_delivered(alert_id)
        except Exception as exc:
            logger.error(
                "alert {} was sent but cannot be marked so: {}: {}",
                alert_id,
                type(exc).__name__,
                exc,
            )
