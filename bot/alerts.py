"""Alerts: what deserves the owner's attention, delivered through Apprise, deduplicated and
rate-limited so an outage does not flood anyone.

Conditions (:func:`conditions`): margin ratio above a threshold, a liquidation price closer than
``k`` daily-volatility units, a position without a resting stop-loss or with part of it not
covered by its stops (how much, in the message), a change of trading state, a failed tick.
Each alert has a ``key`` naming the condition and the contract: an alert whose key was
delivered to a destination within the dedup window is recorded but not sent there again (an
incident that goes on is not sent at every job), and no more than ``max_per_hour`` alerts are
sent to a destination in any hour (a critical one over the limit waits for room, a warning is
dropped). A condition seen to be over (:meth:`Notifier.resolved`) ends its incident: when it
comes back, even within the window, that is a new incident and is sent; an alert of it still
held for a destination is sent saying since when it is over.

Delivery (:class:`Notifier`) runs on a thread of its own, never on the job's, and each URL of
``runtime.alert_urls`` is a destination apart (its dedup, limit, rest and held alerts), with
its deliveries recorded per destination (table ``alert_deliveries``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from loguru import logger

from bot import numbers
from bot.clock import Clock, LiveClock, utc_text, wait_for_news
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import worst_margin
from bot.domain.market import MarketSnapshot
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.extras import require
from bot.logs import REDACTED, REDACTOR, redact
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


class OwedRecord(Protocol):
    """A recorded critical alert still owed to some destinations (bot.store.views.OwedAlert)."""

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
    def owed_to(self) -> frozenset[str]: ...


class AlertStore(Protocol):
    def record_alert(
        self,
        ts_ms: int,
        key: str,
        severity: str,
        message: str,
        *,
        delivered: bool = False,
        destinations: Collection[str] = (),
    ) -> int: ...

    def mark_alert_delivered(
        self, alert_id: int, destination: str | None = None, *, ts_ms: int | None = None
    ) -> None: ...

    def recent_alerts(self, key: str, since_ms: int) -> Sequence[object]: ...


Sender = Callable[[str, str], bool]  # (title, body) -> delivered


@dataclass(frozen=True, slots=True)
class Destination:
    """One alert destination (one URL of ``runtime.alert_urls``)."""

    id: str  # what the store records its deliveries under (destination_id): no secret in it
    label: str  # how the log and ``bot status`` name it: the URL, its secrets redacted
    send: Sender


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


def destination_id(url: str) -> str:
    """The name the store records an alert URL's deliveries under: a digest of the URL, the
    same at every start for the same URL (a restart sends a held alert only where it did not
    arrive), and no credential in the database's text."""
    return "d" + hashlib.sha256(url.encode()).hexdigest()[:16]


def url_label(url: str) -> str:
    """``url`` as the log and ``bot status`` show it: its scheme, host and short words, each
    part :func:`url_secrets` takes for a credential replaced (``json://127.0.0.1:8080/***``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    for secret in sorted(set(url_secrets(url)[1:]), key=len, reverse=True):
        rest = rest.replace(secret, REDACTED)
    return f"{scheme}{sep}{rest}"


def apprise_destinations(urls: Sequence[str]) -> list[Destination]:
    """One destination per Apprise URL (Telegram, Discord, Slack, e-mail, json:// webhooks...),
    each with its own Apprise instance: delivered, failing and resting apart."""
    if not urls:
        return []
    require("apprise", "alerts", "runtime.alert_urls (notifications through Apprise)")
    import apprise

    # The URL carries the destination's credentials (a Telegram bot token, a Slack or Discord
    # webhook token, a password): Apprise logs the whole URL at DEBUG inside add() ("Loaded
    # JSON URL: ..."; `bot --verbose` lets its DEBUG lines through), urllib3 the request path,
    # and connection errors quote it: every URL's secrets are known to the redactor before
    # Apprise sees any of them.
    for url in urls:
        REDACTOR.add(url_secrets(url))
    out: list[Destination] = []
    for url in dict.fromkeys(urls):  # (a URL given twice is one destination)
        app = apprise.Apprise(asset=_asset(apprise))
        if not app.add(url):
            raise ValueError(f"alert URL not understood by Apprise: {url.split('://')[0]}://...")
        out.append(Destination(destination_id(url), url_label(url), _apprise_send(app)))
    return out


def _asset(apprise: Any) -> Any:
    """Apprise's settings for one destination. Apprise 2.x runs a service that has a time limit
    (``AppriseAsset._service_timeout``, 60 s by default) on its shared thread pool
    (``apprise.py`` ``_notify_sequential``, ``get_shared_executor``: a
    ``concurrent.futures.ThreadPoolExecutor``, whose worker threads the interpreter joins at
    exit): a destination trickling its answer held the bot's exit until it ended (measured:
    12 s for an answer of 8 bytes a 1.5 s apart, after the main thread was done). With the
    limit off (``service_timeout=0``) the service runs on the thread that calls it: the
    notifier's attempt thread, a daemon bounded by ``ATTEMPT_S``. (Apprise 1.x has neither the
    setting nor the pool.)"""
    try:
        return apprise.AppriseAsset(service_timeout=0)
    except Exception:  # Apprise 1.x refuses the unknown setting (AppriseImproperlyConfigured)
        return apprise.AppriseAsset()


def _apprise_send(app: Any) -> Sender:
    def send(title: str, body: str) -> bool:
        return bool(app.notify(title=title, body=body))

    return send


# After a failed delivery a destination rests this long (doubling on each failure in a row, up
# to the maximum) before it is tried again; alerts meanwhile are recorded and held for it (the
# newest per key). Each destination rests apart: one that fails holds nothing back from another.
FIRST_REST_S = 30.0
MAX_REST_S = 900.0
MAX_HELD = 100
# The longest an attempt may take (real seconds) before it counts as failed, and its destination
# rests: Apprise's timeouts (URL parameters ``cto`` 4 s to connect, ``rto`` 4 s, passed to
# requests as its read timeout, which bounds each socket read, not the answer) let a server that
# sends its answer a byte every few seconds hold a delivery until Apprise's own limit of 60 s
# per service (Apprise 2.x ``AppriseAsset._service_timeout``; none in 1.x). The attempt is left to
# finish on its own thread: one that answers late still counts as delivered (no resend), but
# its destination rests as after a failure.
ATTEMPT_S = 15.0
# Attempts past their bound still running on one destination; while there are this many, no
# new one starts there (a destination that never answers costs at most this many threads).
MAX_ABANDONED = 2
# What a shutdown waits for the alerts due to go out (real seconds): the rest stays recorded
# undelivered, sent at the next start (Notifier.restore).
CLOSE_S = 5.0
# Deliveries kept for the store while it cannot be written (beyond: sent again after a restart).
MAX_MARKS = 10_000
_URGENCY = {"critical": 0, "warning": 1, "info": 2}
_WALL = LiveClock()  # real time: the bound of an attempt is on the network's clock, not the bot's


@dataclass(slots=True)
class _Held:
    """An alert waiting for one destination."""

    alert: Alert
    alert_id: int | None  # its record (None: the store failed)
    at_ms: int  # when it was raised
    # It waited: its destination failed or rested, the hourly limit held it, or the bot
    # restarted since (Notifier.restore).
    late: bool = False
    over_ms: int | None = None  # its incident was seen over then (Notifier.resolved)
    # Held again at a start (Notifier.restore): no job of this process saw its incident go on,
    # so one seen over at the first job may have ended any time before ("over by").
    restored: bool = False
    over_by: bool = False

    def text(self) -> str:
        """The message as sent: one sent late says when it was, and one whose incident is over
        says since when (never in the present tense of a condition gone)."""
        if self.over_ms is not None:
            since = "by" if self.over_by else "since"
            when = f"at {utc_text(self.at_ms)}, over {since} {utc_text(self.over_ms)}"
            return f"{self.alert.message} ({when})"
        if self.late:
            return f"{self.alert.message} (at {utc_text(self.at_ms)})"
        return self.alert.message


@dataclass(slots=True)
class _Attempt:
    held: _Held
    deadline: float  # real monotonic seconds
    done: bool = False
    ok: bool = False


@dataclass(slots=True)
class _Channel:
    """One destination's delivery state (under the notifier's lock)."""

    destination: Destination
    held: dict[str, _Held] = field(default_factory=dict)  # key -> newest unsent, oldest first
    # deliveries of the last hour, on the clock's monotonic seconds: a wall clock stepped back
    # by hours kept them "in the last hour" as long, and critical alerts held
    sent: list[float] = field(default_factory=list)
    delivered: dict[str, int] = field(default_factory=dict)  # key -> raised (ms) of the last sent
    rest_s: float = 0.0  # the current rest after failures in a row (0: none)
    retry_at: float | None = None  # on the clock's monotonic seconds
    attempt: _Attempt | None = None  # in flight, within its bound
    abandoned: int = 0  # attempts past their bound, still running
    limited: set[str] = field(default_factory=set)  # keys said held by the hourly limit

    def hold(self, held: _Held) -> None:
        self.held.pop(held.alert.key, None)
        self.held[held.alert.key] = held
        while len(self.held) > MAX_HELD:
            dropped = next(iter(self.held))
            del self.held[dropped]
            logger.warning(
                "alert {} dropped for {}: too many held while it fails",
                dropped,
                self.destination.label,
            )


class Notifier:
    """Records every alert in the store; delivers the ones that pass dedup and the rate limit,
    to each destination apart.

    The job's thread only records and queues (:meth:`notify`): a daemon delivery thread sends,
    each attempt on a thread of its own bounded by ``ATTEMPT_S``, so a destination that hangs
    or answers a byte at a time never holds the ticks and the guard. Each destination has its
    own dedup, hourly limit, rest after failures (``FIRST_REST_S``) and held alerts: one that
    fails neither receives nor holds back anything of another's. What could not be sent is held
    (the newest per key) and sent first when the destination answers again, saying when it was
    raised, and, when its incident ended meanwhile, since when that is over.

    The store is not needed to send: when it cannot be read or written (a full disk, a lost
    database connection, the very failures worth an alert), the alert is sent anyway, with the
    dedup window kept in memory. ``notify`` never raises.
    """

    def __init__(
        self,
        store: AlertStore,
        clock: Clock,
        destinations: Sequence[Destination] | Sender | None,
        rules: AlertRules,
        *,
        account: str,
        attempt_s: float = ATTEMPT_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rules = rules
        self.account = account
        self.attempt_s = attempt_s
        self._cond = threading.Condition()
        self._channels: list[_Channel] = []
        self.use(destinations)
        # key -> when the condition was last seen not to hold: a delivery before then was of an
        # incident that is over, and does not make the next one a duplicate
        self._resolved: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        # (alert, destination, when) delivered and not yet written into the store
        self._marks: list[tuple[_Held, str, int]] = []
        self._started = False  # notify() was called: restored alerts may go out
        self._closed = False

    def use(self, destinations: Sequence[Destination] | Sender | None) -> None:
        """Deliver to ``destinations`` from now on (a bare sender is one destination)."""
        if destinations is None:
            dests: Sequence[Destination] = ()
        elif callable(destinations):
            dests = (Destination("default", "the alert destination", destinations),)
        else:
            dests = destinations
        with self._cond:
            self._channels = [_Channel(d) for d in dests]

    @property
    def destinations(self) -> list[Destination]:
        return [ch.destination for ch in self._channels]

    # -- the job's side ------------------------------------------------------------------------

    def restore(self, owed: Iterable[OwedRecord], ended: Mapping[str, int] | None = None) -> int:
        """Hold again the critical alerts recorded and never delivered to a destination (held
        for it when the bot stopped), whatever their age: a halt, an exit or a flatten that
        failed is alerted once, and one dropped here would never reach the owner. Each goes to
        the destinations still owed it, and out at the first job, saying when it was; one whose
        incident ``ended`` since (key -> when its end event was recorded) says since when that
        is over. Returns how many are held."""
        ended = ended or {}
        held: set[int] = set()
        with self._cond:
            for r in sorted(owed, key=lambda r: (r.ts_ms, r.id)):
                if r.severity != "critical":
                    continue
                over = ended.get(r.key)
                for ch in self._channels:
                    if ch.destination.id in r.owed_to:
                        alert = Alert(r.key, r.severity, r.message)
                        at_over = over if over is not None and over >= r.ts_ms else None
                        ch.hold(
                            _Held(alert, r.id, r.ts_ms, late=True, over_ms=at_over, restored=True)
                        )
                        held.add(r.id)
        return len(held)

    def resolved(self, keys: Iterable[str]) -> None:
        """The conditions of ``keys`` are seen not to hold (the stop rests again, the account
        was read): if they come back, it is a new incident, sent even within the dedup window.
        A held alert of such a key is sent saying when it was and since when it is over, not as
        if it held now. Only for a condition known to be over, never for one that could not be
        checked."""
        now = self.clock.now_ms()
        with self._cond:
            for key in keys:
                self._resolved[key] = now
                for ch in self._channels:
                    held = ch.held.get(key)
                    if held is not None and held.over_ms is None:
                        held.over_ms, held.over_by = now, held.restored

    def notify(self, alerts: Sequence[Alert]) -> int:
        """Record ``alerts`` and queue each for the destinations that did not receive its key
        within the dedup window; returns how many were queued. Never waits for a delivery."""
        self._record_deliveries()
        queued = 0
        for alert in alerts:
            # an alert may quote an exchange error: no secret leaves in a payload or the store
            alert = Alert(alert.key, alert.severity, redact(alert.message))
            now = self.clock.now_ms()
            with self._cond:
                since = now - self.rules.dedup_seconds * 1000
                over = self._resolved.get(alert.key)
                if over is not None:
                    # a delivery before it was of the incident that ended (one at the same
                    # moment, in the job that saw it end, is of the new one)
                    since = max(since, over)
                ids = {ch.destination.id for ch in self._channels}
            # (the store is read and written without the lock: a slow database holds no
            # delivery of what was queued before)
            got = self._delivered_in_store(alert, now, since, ids) if ids else set()
            with self._cond:
                # (judged again on this process's deliveries: one may have ended meanwhile)
                owed = ids - got - self._delivered_here(alert, now, since)
                queued_for = [
                    (ch, _Held(alert, None, now, late=self._waits(ch)))
                    for ch in self._channels
                    if ch.destination.id in owed
                ]
                for ch, held in queued_for:
                    ch.hold(held)
            alert_id = self._record(alert, now, owed)
            with self._cond:
                for _, held in queued_for:
                    held.alert_id = alert_id  # (a delivery meanwhile is marked once it is known)
            queued += bool(owed)
        with self._cond:
            self._started = True
            self._wake()
        return queued

    # -- delivery ------------------------------------------------------------------------------

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait, at most ``timeout_s`` real seconds, until nothing is due: every alert still
        held waits for its destination's rest or hourly limit, and no attempt is in flight
        within its bound, or the notifier is closed. True when so (for a shutdown, and for
        tests). The deliveries made are written into the store before it returns."""
        end = _WALL.monotonic() + timeout_s
        done = True
        with self._cond:
            if self._started:
                self._wake()
            while self._started and not self._closed and not self._idle():
                left = end - _WALL.monotonic()
                if left <= 0:
                    done = False
                    break
                wait_for_news(self._cond, self.clock, real_s=left)
        self._record_deliveries()
        return done

    def close(self, timeout_s: float = CLOSE_S) -> bool:
        """At shutdown: deliver what is due within ``timeout_s`` real seconds, then stop the
        delivery thread. What is left stays recorded undelivered: the next start restores it.
        Nothing goes out from a notifier never asked to notify (a declined live start sends
        nothing). True when nothing due was left."""
        done = self.drain(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return done

    def _wake(self) -> None:
        """(lock held) Have the delivery thread look again; start it if it is not running."""
        if self._closed:
            return
        if self._thread is None and self._pending():
            self._thread = threading.Thread(
                target=self._deliver, name=f"alerts-{self.account}", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _pending(self) -> bool:
        return any(ch.held or ch.attempt is not None for ch in self._channels)

    def _deliver(self) -> None:
        """The delivery thread: starts what is due, waits for news (a job's alerts, an attempt
        that ends, a rest or an attempt's bound that passes), exits when nothing is held."""
        with self._cond:
            try:
                while not self._closed and self._pending():
                    self._step()
                    self._cond.notify_all()  # (a drain waits for what the step judged)
                    wait_for_news(
                        self._cond, self.clock, clock_s=self._next_s(), real_s=self._bound_s()
                    )
            except Exception as exc:  # never into the interpreter: the next notify restarts it
                logger.opt(exception=exc).error("alert delivery stopped: {}", exc)
            finally:
                self._thread = None

    def _step(self) -> None:
        """(lock held) Judge the attempts past their bound, start the ones due."""
        mono = self.clock.monotonic()
        for ch in self._channels:
            attempt = ch.attempt
            if attempt is not None and not attempt.done and _WALL.monotonic() >= attempt.deadline:
                # Slow: a failure for the rest; left to finish on its thread (_attempt).
                ch.attempt = None
                ch.abandoned += 1
                self._failed(ch, f"no answer within {self.attempt_s:.0f} s")
            ch.sent = [t for t in ch.sent if t > mono - 3600]
            if not self._ready(ch, mono):
                continue
            if len(ch.sent) >= self.rules.max_per_hour:
                self._limit(ch)
                continue
            held = min(
                enumerate(ch.held.values()),
                key=lambda i_h: (_URGENCY.get(i_h[1].alert.severity, len(_URGENCY)), i_h[0]),
            )[1]
            ch.attempt = _Attempt(held, _WALL.monotonic() + self.attempt_s)
            title = f"[{self.account}] {held.alert.severity}: {held.alert.key}"
            body = held.text()
            threading.Thread(
                target=self._attempt,
                args=(ch, ch.attempt, title, body),
                name=f"alert-{ch.destination.id}",
                daemon=True,
            ).start()

    def _ready(self, ch: _Channel, mono: float) -> bool:
        """(lock held) Whether ``ch`` has an alert to try now."""
        return (
            bool(ch.held)
            and ch.attempt is None
            and ch.abandoned < MAX_ABANDONED
            and (ch.retry_at is None or mono >= ch.retry_at)
        )

    def _limit(self, ch: _Channel) -> None:
        """(lock held) ``ch`` reached ``max_per_hour``: a critical alert waits for room (a state
        change or an exit is keyed by its time and alerted once: one dropped would never be
        sent), a warning is dropped."""
        for key, held in list(ch.held.items()):
            if held.alert.severity == "critical":
                held.late = True
                if key not in ch.limited:
                    ch.limited.add(key)
                    logger.warning(
                        "alert rate limit reached for {}; held: {}",
                        ch.destination.label,
                        held.alert.message,
                    )
            else:
                del ch.held[key]
                logger.warning(
                    "alert rate limit reached for {}; not sent: {}",
                    ch.destination.label,
                    held.alert.message,
                )

    def _idle(self) -> bool:
        """(lock held) Nothing due: no attempt in flight within its bound, and no destination
        with an alert it could try now (resting, or at its hourly limit)."""
        mono = self.clock.monotonic()
        for ch in self._channels:
            if ch.attempt is not None:
                return False
            sent = sum(1 for t in ch.sent if t > mono - 3600)
            if self._ready(ch, mono) and (
                sent < self.rules.max_per_hour
                or any(h.alert.severity != "critical" for h in ch.held.values())
            ):
                return False
        return True

    def _next_s(self) -> float | None:
        """(lock held) Clock seconds until a destination's rest or hourly limit lets an alert
        go (None: nothing waits for either)."""
        mono = self.clock.monotonic()
        waits = []
        for ch in self._channels:
            if not ch.held:
                continue
            if ch.retry_at is not None and ch.retry_at > mono:
                waits.append(ch.retry_at - mono)
            elif len(ch.sent) >= self.rules.max_per_hour:
                waits.append(min(ch.sent) + 3600 - mono)
        return max(0.0, min(waits)) if waits else None

    def _bound_s(self) -> float | None:
        """(lock held) Real seconds until an attempt in flight reaches its bound."""
        now = _WALL.monotonic()
        left = [
            ch.attempt.deadline - now
            for ch in self._channels
            if ch.attempt is not None and not ch.attempt.done
        ]
        return max(0.0, min(left)) if left else None

    def _attempt(self, ch: _Channel, attempt: _Attempt, title: str, body: str) -> None:
        """One delivery, on its own thread. Never raises."""
        try:
            ok = bool(ch.destination.send(title, body))
        except Exception as exc:
            logger.error(
                "alert delivery to {} failed: {}: {}",
                ch.destination.label,
                type(exc).__name__,
                exc,
            )
            ok = False
        held = attempt.held
        with self._cond:
            attempt.done, attempt.ok = True, ok
            late = ch.attempt is not attempt  # judged slow meanwhile (_step)
            if late:
                ch.abandoned -= 1
            else:
                ch.attempt = None
                if not ok:
                    self._failed(ch, "refused or unreachable")
            if ok:
                if not late:
                    ch.rest_s, ch.retry_at = 0.0, None
                # (the window counts from when it was raised, as the store's records do)
                ch.delivered[held.alert.key] = held.at_ms
                ch.sent.append(self.clock.monotonic())
                ch.limited.discard(held.alert.key)
                if ch.held.get(held.alert.key) is held:
                    del ch.held[held.alert.key]
                self._marks.append((held, ch.destination.id, self.clock.now_ms()))
            self._cond.notify_all()

    def _waits(self, ch: _Channel) -> bool:
        """(lock held) Whether an alert queued for ``ch`` now waits: it rests, or its hourly
        limit is reached."""
        mono = self.clock.monotonic()
        resting = ch.retry_at is not None and mono < ch.retry_at
        return resting or sum(1 for t in ch.sent if t > mono - 3600) >= self.rules.max_per_hour

    def _failed(self, ch: _Channel, why: str) -> None:
        """(lock held) ``ch`` failed an attempt: it rests before the next one, and what is
        held for it is late."""
        ch.rest_s = min(MAX_REST_S, ch.rest_s * 2 or FIRST_REST_S)
        ch.retry_at = self.clock.monotonic() + ch.rest_s
        for held in ch.held.values():
            held.late = True
        logger.error(
            "alert delivery to {} failed ({}); it rests {:.0f} s before the next attempt "
            "(alerts meanwhile are recorded and held for it; the other destinations and "
            "trading go on)",
            ch.destination.label,
            why,
            ch.rest_s,
        )

    # -- the store -----------------------------------------------------------------------------

    def _delivered_here(self, alert: Alert, now: int, since: int) -> set[str]:
        """(lock held) The destinations this process delivered ``alert``'s key to within the
        window (``since`` to ``now``), or is sending it to now. A delivery stamped after
        ``now`` (the wall clock went back since) is of unknown age: not counted, the alert is
        sent again rather than swallowed for as long as the clock went back."""
        return {
            ch.destination.id
            for ch in self._channels
            if since <= ch.delivered.get(alert.key, since - 1) <= now
            # (being sent now, of the same incident: a repeat, unless that attempt fails, when
            # the one in flight stays held and the next job's alert replaces it)
            or (
                ch.attempt is not None
                and ch.attempt.held.alert.key == alert.key
                and ch.attempt.held.at_ms >= since
            )
        }

    def _delivered_in_store(
        self, alert: Alert, now: int, since: int, ids: Collection[str]
    ) -> set[str]:
        """The destinations of ``ids`` the store says received ``alert``'s key within the
        window (none when it cannot be read: this process's own deliveries judge alone)."""
        got: set[str] = set()
        try:
            for r in self.store.recent_alerts(alert.key, since):
                if getattr(r, "ts_ms", now) > now:
                    continue
                if getattr(r, "owed", ()):
                    got |= set(getattr(r, "delivered_to", ())) & set(ids)
                elif getattr(r, "delivered", False):
                    # (recorded before deliveries were kept per destination: it reached them all)
                    got |= set(ids)
        except Exception as exc:
            logger.error(
                "alert {}: earlier deliveries cannot be read ({}: {}); judged on this "
                "process's own",
                alert.key,
                type(exc).__name__,
                exc,
            )
        return got

    def _record(self, alert: Alert, now: int, owed: Collection[str]) -> int | None:
        """Record ``alert``, owed to ``owed``; its id, None if the store failed (it is sent
        anyway)."""
        try:
            return self.store.record_alert(
                now, alert.key, alert.severity, alert.message, destinations=owed
            )
        except Exception as exc:
            logger.error(
                "alert {} cannot be recorded ({}: {}); sending it anyway",
                alert.key,
                type(exc).__name__,
                exc,
            )
            return None

    def _record_deliveries(self) -> None:
        """Write the deliveries made since the last call into the store, on the caller's
        thread (a job's, or the shutdown's): the store is used by one thread, as every other
        write of the bot's (a SQLite file moved away under the bot, the check before each job
        refuses the job; a delivery thread writing meanwhile opened a new empty file there). A
        store that fails keeps them for the next call; a process that dies first sends them
        again at the next start (a duplicate, never a loss)."""
        with self._cond:
            marks, self._marks = self._marks, []
        for at, (held, destination, ms) in enumerate(marks):
            if held.alert_id is None:  # (its record failed: nothing to mark)
                continue
            try:
                self.store.mark_alert_delivered(held.alert_id, destination, ts_ms=ms)
            except Exception as exc:
                logger.error(
                    "alerts sent but not yet marked so (kept for the next job): {}: {}",
                    type(exc).__name__,
                    exc,
                )
                with self._cond:
                    self._marks[:0] = marks[at:][-MAX_MARKS:]
                return
