"""The paper or live account as the bot recorded it in the state database (never the exchange:
the dashboard may run beside the bot, and must work when the exchange does not answer)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.bootstrap import risk_limits
from bot.catalogue import resolve_with_sources
from bot.config.models import BotConfig
from bot.dashboard.liveness import failure_since
from bot.dashboard.model import (
    NOT_SENT,
    AlertLine,
    ContractView,
    Curve,
    JournalTable,
    Overview,
)
from bot.domain.enums import EventKind, OrderPurpose
from bot.domain.instrument import Instrument
from bot.domain.margin import worst_margin
from bot.domain.position import Position
from bot.engine.read_streak import restored_streak
from bot.engine.reconcile import open_foreign
from bot.engine.reentry import COOLDOWN_EVENT, Cooldowns
from bot.engine.undecided import open_undecided
from bot.errors import BotError
from bot.instruments import instrument_for
from bot.logs import redact
from bot.numbers import fixed, money, price, qty
from bot.ports.store import DecisionRecord, EquitySnapshot, RiskMemory
from bot.risk.coverage import coverage, recorded_stops
from bot.risk.state import DAY_MS
from bot.runtime.venue_hold import hold_in_force, hold_note
from bot.stats.timeframes import parse_timeframe
from bot.store import views
from bot.store.incidents import unprotected_since
from bot.store.sql import AlertRecord, SqlStore
from bot.store.views import TimeWindow

DAYS = Decimal(365)
ZERO = Decimal(0)


def known_instruments(config: BotConfig, symbols: list[str]) -> dict[str, Instrument | None]:
    """Each contract's specification as the bot resolves it: the user's catalogue under the
    data directory first (``bot contracts sync``), then the bundled snapshot; ``None`` for a
    contract in neither (no margin figures, raw precision). A catalogue that cannot be read
    falls back to the snapshot: the dashboard still shows the account."""
    try:
        found, _ = resolve_with_sources(config.data.exchange, symbols, config.data.dir)
        return {s: found[s][0] if s in found else None for s in symbols}
    except BotError:
        out: dict[str, Instrument | None] = {}
        for sym in symbols:
            try:
                out[sym] = instrument_for(config.data.exchange, sym)
            except ValueError:
                out[sym] = None
        return out


def unreadable_run(store: SqlStore) -> tuple[int | None, int]:
    """Since when the account has been unreadable, and how many reads in a row, when its newest
    read failed (as the engine counts them: bot.engine.read_streak); (None, 0) when the newest
    read succeeded or none was recorded."""
    reads = (EventKind.READABLE, EventKind.UNREADABLE)
    newest = store.recent_events(1, kinds=reads)
    if not newest or newest[0].kind is not EventKind.UNREADABLE:
        return None, 0
    streak = max(1, restored_streak(newest))
    ended = store.recent_events(1, kinds=(EventKind.READABLE,))
    run = store.recent_events(
        streak, kinds=(EventKind.UNREADABLE,), since_ms=ended[0].ts_ms if ended else None
    )
    return run[-1].ts_ms, streak


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class _PaperExtras:
    marks: dict[str, Decimal]
    funding: dict[str, tuple[Decimal, int | None]]
    saved_ms: int | None  # when the paper exchange saved them (the start of its last job)


class AccountSource:
    """Reads one account (``config.account.name``) from the store at every call."""

    kind = "account"

    def __init__(
        self,
        config: BotConfig,
        store: SqlStore,
        *,
        guard_ms: int | None = None,
        on_wall_clock: bool = True,
    ) -> None:
        """``guard_ms``: how often the bot runs its guard job, when not its configuration's
        ``runtime.guard_seconds`` (a replay too fast for guard jobs: its decision interval).
        ``on_wall_clock``: the dashboard judges ages on the wall clock (False: on the clock of
        the replay it runs inside), so a replay's recorded times are not judged on it."""
        self.on_wall_clock = on_wall_clock
        self.config = config
        self.store = store
        self.name = config.account.name
        policy = config.policies[0]
        self.limits = risk_limits(config, policy)
        self.interval_ms = parse_timeframe(policy.timeframe)
        self.guard_ms = config.runtime.guard_seconds * 1000 if guard_ms is None else guard_ms
        self._curve_lock = threading.Lock()  # pages are served from a thread pool
        self._curve_last_id = 0
        self._curve_ts: list[int] = []
        self._curve_eq: list[float] = []
        self.instruments = known_instruments(config, self.symbols())

    def legs(self) -> list[tuple[str, str]]:
        """(symbol, direction) of every contract the bot trades: the configured ones, then the
        policy's hedge legs (direction "hedge")."""
        hedge = self.config.policies[0].hedge
        out = [(c.symbol, str(c.direction)) for c in self.config.contracts]
        return out + [(h, "hedge") for h in (hedge.instruments if hedge is not None else ())]

    def symbols(self) -> list[str]:
        return [sym for sym, _ in self.legs()]

    # -- overview -------------------------------------------------------------------------------

    def overview(self, now_ms: int) -> Overview:
        store = self.store
        # The account as last read (a decision tick's record, or a guard's reading since: the
        # orders shown beside it are as fresh); "last tick" is the last decision's.
        equity = store.latest_equity()
        tick = store.latest_equity(decision=True)
        memory = store.load_risk_memory()
        snap = views.recorded_positions(store)
        # No positions recorded yet (the bot has not ticked, or never read the account): every
        # position is unknown, not flat.
        positions = snap.positions if snap else None
        extras = self._paper_extras()
        unreadable_since, unreadable_reads = unreadable_run(store)
        contracts = self._contracts(equity, snap, extras, now_ms)
        if unreadable_since is not None:
            # what the positions and their stops are now is not known: as last read
            contracts = [
                replace(c, unverified_since_ms=unreadable_since) if c.qty else c for c in contracts
            ]
        change = views.last_state_change(store)
        heartbeat = store.last_heartbeat()
        alerts = [self._line(a) for a in views.recent_alerts(store, 8)]
        # every critical alert the path failed to carry, not just those among the newest lines
        missed = [self._line(a) for a in missed_alerts(self.config, store)]
        return Overview(
            title=f"account {self.name}",
            kind=self.kind,
            quote=self.config.account.quote,
            as_of_ms=equity.ts_ms if equity else None,
            equity=equity.equity if equity else None,
            wallet=equity.wallet if equity else None,
            unrealized_pnl=equity.unrealized_pnl if equity else None,
            peak_equity=memory.peak_equity if memory else None,
            drawdown=_drawdown(equity, memory),
            max_drawdown_limit=self.limits.max_drawdown,
            state=memory.state.value if memory else "unknown",
            state_reason=memory.state_reason if memory else None,
            state_since_ms=change.ts_ms if change else None,
            daily_loss=_daily_loss(equity, memory, now_ms),
            daily_loss_limit=self.limits.daily_loss,
            margin_ratio=self._margin_ratio(equity, positions, contracts),
            last_tick_ms=tick.ts_ms if tick else None,
            positions_ms=snap.ts_ms if snap else None,
            interval_ms=self.interval_ms,
            contracts=contracts,
            alerts=alerts,
            missed_alerts=missed,
            pending=views.pending_commands(store),
            unreadable_since_ms=unreadable_since,
            unreadable_reads=unreadable_reads,
            last_job_ms=heartbeat.ts_ms if heartbeat else None,
            last_job=heartbeat.job if heartbeat else None,
            guard_ms=self.guard_ms,
            replayed=self.on_wall_clock and views.latest_run_mode(store) == views.REPLAY_RUN_MODE,
            **_trouble(store, heartbeat.ts_ms if heartbeat else None, now_ms),
        )

    def _line(self, alert: AlertRecord) -> AlertLine:
        return AlertLine(
            alert.ts_ms, alert.severity, alert.message, delivery(self.config, self.store, alert)
        )

    def _paper_extras(self) -> _PaperExtras:
        """Marks and funding the paper exchange last saw, and when it saved them (a live
        account has neither stored)."""
        saved = views.paper_state(self.store, self.name)
        if saved is None:
            return _PaperExtras({}, {}, None)
        payload, saved_ms = saved
        state: dict[str, Any] = json.loads(payload)
        marks = {s: Decimal(v) for s, v in state.get("marks", {}).items()}
        funding = {
            s: (Decimal(f["rate"]), f.get("next_settlement_ms"))
            for s, f in state.get("funding", {}).items()
        }
        return _PaperExtras(marks, funding, saved_ms)

    def _contracts(
        self,
        equity: EquitySnapshot | None,
        snap: views.RecordedPositions | None,
        extras: _PaperExtras,
        now_ms: int,
    ) -> list[ContractView]:
        positions = snap.positions if snap is not None else None
        symbols = self.symbols()
        last = views.latest_decisions(self.store, symbols)
        resting: dict[tuple[str, OrderPurpose], Decimal | None] = {}
        open_orders = views.open_orders(self.store)
        for o in open_orders:
            if o.request.purpose.is_protective:
                resting[(o.request.symbol, o.request.purpose)] = o.request.trigger_price
        incidents = unprotected_since(
            views.events_of_kinds(self.store, ("unprotected", "protected"), 1000)
        )
        undecided = open_undecided(
            views.events_of_kinds(self.store, ("no_decision", "deciding"), 10_000)
        )
        foreign = open_foreign(
            views.events_of_kinds(self.store, ("foreign", "foreign_gone"), 10_000)
        )
        cooling = Cooldowns(1)
        cooling.restore(views.events_of_kinds(self.store, (COOLDOWN_EVENT,), 500), now_ms)
        sleeve = (
            equity.equity / Decimal(len(self.config.contracts))
            if equity is not None and equity.equity > 0
            else None
        )
        out = []
        for sym, direction in self.legs():
            # A hedge leg is sized on the whole equity, a traded contract on its sleeve.
            base = equity.equity if direction == "hedge" and equity is not None else sleeve
            inst = self.instruments.get(sym)
            pos = positions.get(sym) if positions is not None else None
            rec = last.get(sym)
            mark, mark_ms = _newest_mark(sym, extras, snap, rec)
            vol = rec.volatility if rec else None
            q = None if positions is None else pos.qty if pos else ZERO
            notional = abs(q) * mark if q is not None and mark is not None else None
            liq = pos.liquidation_price if pos and pos.is_open else None
            dist = abs(mark - liq) / mark if liq is not None and mark else None
            dist_vol = dist / (vol / DAYS.sqrt()) if dist is not None and vol else None
            rate, next_ms = extras.funding.get(sym, (None, None))
            stretch = undecided.get(sym)
            out.append(
                ContractView(
                    symbol=sym,
                    direction=direction,
                    tick=inst.tick_size if inst else None,
                    step=inst.step_size if inst else None,
                    qty=q,
                    entry=pos.entry_price if pos and pos.is_open else None,
                    mark=mark,
                    mark_ms=mark_ms,
                    notional=notional,
                    leverage=notional / base if notional is not None and base else None,
                    target_leverage=rec.decision.target_leverage if rec else None,
                    liquidation=liq,
                    liq_distance=dist,
                    liq_distance_vol=dist_vol,
                    volatility=vol,
                    stop_loss=resting.get((sym, OrderPurpose.STOP_LOSS)),
                    take_profit=resting.get((sym, OrderPurpose.TAKE_PROFIT)),
                    funding_rate=rate,
                    next_funding_ms=next_ms,
                    increase_allowed=rec.decision.allow_increase if rec else None,
                    decided_ms=rec.ts_ms if rec else None,
                    reason=rec.decision.reason if rec else None,
                    unprotected_since_ms=incidents.get(sym),
                    cooldown=cooling.reason(sym, now_ms),
                    no_decision_since_ms=stretch.since_ms if stretch else None,
                    no_decision=stretch.reason if stretch else None,
                    foreign=self._foreign(pos, direction, foreign),
                    # as the alerts count it (bot.risk.coverage): how much no stop covers
                    unprotected_qty=coverage(pos.qty, recorded_stops(open_orders, sym)).uncovered
                    if pos is not None and pos.is_open
                    else None,
                )
            )
        return out

    def _foreign(self, pos: Position | None, direction: str, foreign: set[str]) -> bool:
        """A position the bot did not open, as the engine's reconcile decided and recorded it
        (``foreign``: the contracts of its ``foreign`` events not flat since): open, on a
        contract not set to ``follow``."""
        if pos is None or not pos.is_open or direction == "follow":
            return False
        return pos.symbol in foreign

    def _margin_ratio(
        self,
        equity: EquitySnapshot | None,
        positions: dict[str, Position] | None,
        contracts: list[ContractView],
    ) -> Decimal | None:
        """Maintenance over margin balance of the pool closest to liquidation (>= 1:
        liquidation): the cross positions on the wallet, each isolated position on its own
        margin (bot.domain.margin.worst_margin); None when any of it is unknown."""
        if equity is None or positions is None:
            return None  # positions unknown: so is their requirement
        held = []
        for c in contracts:
            pos = positions.get(c.symbol)
            if pos is None or not pos.is_open:
                continue
            inst = self.instruments.get(c.symbol)
            if inst is None or c.mark is None:
                return None  # a position whose requirement is unknown: the ratio is unknown
            held.append((pos, inst, c.mark))
        worst = worst_margin(held, equity.wallet)
        return worst.ratio if worst is not None else None

    # -- history --------------------------------------------------------------------------------

    def curve(self) -> Curve:
        """The equity history; only snapshots recorded since the last call are read."""
        with self._curve_lock:
            for p in views.equity_series(self.store, self._curve_last_id):
                self._curve_ts.append(p.ts_ms)
                self._curve_eq.append(float(p.equity))
                self._curve_last_id = p.id
            ts, eq = list(self._curve_ts), list(self._curve_eq)
        return Curve(ts, eq, drawdowns(eq))

    def journal(self, window: TimeWindow, limit: int) -> list[JournalTable]:
        store = self.store
        spec = {s: self.instruments.get(s) for s in self.symbols()}

        def px(sym: str, v: Decimal | None) -> str:
            inst = spec.get(sym)
            return price(v, inst.tick_size if inst else None)

        def q(sym: str, v: Decimal | None) -> str:
            inst = spec.get(sym)
            return qty(v, inst.step_size if inst else None)

        decisions = [
            [
                iso(r.ts_ms),
                r.decision.symbol,
                fixed(r.current_leverage, 2),
                fixed(r.decision.target_leverage, 2),
                q(r.decision.symbol, r.decision.target_qty),
                px(r.decision.symbol, r.mark_price),
                r.decision.reason,
            ]
            for r in views.decisions(store, window, limit)
        ]
        orders = [
            [
                iso(o.updated_ms),
                o.request.symbol,
                o.client_id,
                o.request.purpose.name.lower(),
                o.request.side.value,
                q(o.request.symbol, o.request.amount),
                px(o.request.symbol, o.request.trigger_price),
                o.status.value,
                redact(o.error or ""),  # rows recorded before errors were redacted on write
            ]
            for o in views.orders(store, window, limit)
        ]
        fills = [
            [
                iso(f.timestamp_ms),
                f.symbol,
                f.client_id,
                f.side.value,
                q(f.symbol, f.qty),
                px(f.symbol, f.price),
                money(f.fee),
                money(f.realized_pnl),
                "liquidation" if f.liquidation else "",
            ]
            for f in views.fills(store, window, limit)
        ]
        events = [
            [iso(e.ts_ms), e.kind, e.symbol or "", e.state.value, e.reason]
            for e in views.events(store, window, limit)
        ]
        return [
            JournalTable(
                "decisions",
                ["time", "contract", "lev setting", "target lev", "target qty", "mark", "reason"],
                decisions,
            ),
            JournalTable(
                "orders",
                [
                    *("updated", "contract", "client id", "purpose", "side", "amount"),
                    *("trigger", "status", "error"),
                ],
                orders,
            ),
            JournalTable(
                "fills",
                ["time", "contract", "client id", "side", "qty", "price", "fee", "realised", ""],
                fills,
            ),
            JournalTable("events", ["time", "kind", "contract", "state", "reason"], events),
        ]


def _trouble(store: SqlStore, last_job_ms: int | None, now_ms: int) -> dict[str, Any]:
    """The Overview's fields of a running bot in trouble: its newest failed job when none
    completed since, and the venue's hold in force (bot.dashboard.liveness)."""
    failure = failure_since(store, last_job_ms)
    hold = hold_in_force(store, now_ms)
    return {
        "failed_ms": failure.ts_ms if failure else None,
        "failed": failure.reason if failure else None,
        "venue_hold_until_ms": hold[0] if hold else None,
        "venue_hold": hold_note(hold[0], hold[1], named=hold[2]) if hold else None,
    }


def _newest_mark(
    symbol: str,
    extras: _PaperExtras,
    snap: views.RecordedPositions | None,
    decided: DecisionRecord | None,
) -> tuple[Decimal | None, int | None]:
    """The newest mark known of ``symbol`` and its time: the paper exchange's (saved at every
    job), the one its position was recorded at (a tick's or a guard's reading), or the last
    decision's (a live account's flat contract: as old as that decision)."""
    known: list[tuple[int, Decimal]] = []
    paper = extras.marks.get(symbol)
    if paper is not None and extras.saved_ms is not None:
        known.append((extras.saved_ms, paper))
    if snap is not None and symbol in snap.marks:
        known.append((snap.ts_ms, snap.marks[symbol]))
    if decided is not None:
        known.append((decided.ts_ms, decided.mark_price))
    if not known:
        return None, None
    ts, mark = max(known, key=lambda k: k[0])
    return mark, ts


def delivery(config: BotConfig, store: SqlStore, alert: AlertRecord) -> str:
    """Whether ``alert`` reached the trader (see :class:`AlertLine`)."""
    if alert.delivered:
        return "sent"
    if not config.runtime.alert_urls:
        return "no destination"
    if alert.owed:  # queued for each of these destinations (bot.alerts.Notifier)
        if alert.delivered_to:
            return f"sent to {len(alert.delivered_to)} of {len(alert.owed)}"
        return NOT_SENT
    # A repeat within the dedup window, or recorded before deliveries were kept per
    # destination (revision 0008): judged by whether one of its key was delivered before.
    window = config.runtime.alert_dedup_minutes * 60_000
    earlier = store.recent_alerts(alert.key, alert.ts_ms - window)
    if any(
        (e.delivered or e.delivered_to) and (e.ts_ms, e.id) < (alert.ts_ms, alert.id)
        for e in earlier
    ):
        return "repeat"
    return NOT_SENT


@dataclass(frozen=True, slots=True)
class FailingDestination:
    """A configured alert destination that critical alerts are still owed to."""

    label: str  # its URL, the credentials redacted (bot.alerts.url_label)
    alerts: int  # how many
    since_ms: int  # the oldest one's time


def owed_alerts(
    config: BotConfig, store: SqlStore
) -> tuple[list[AlertRecord], list[FailingDestination]]:
    """The critical alerts that reached none of the configured destinations and are still
    owed to them (newest first): the trader is not being paged; and each destination that
    critical alerts are still owed to (the others received them). An alert counts until it
    reaches the destination, or one of its key at the same time or later does (its incident
    reached it), whatever its age and whatever other alert was delivered since."""
    from bot.alerts import destination_id, url_label

    urls = list(dict.fromkeys(config.runtime.alert_urls))
    ids = frozenset(destination_id(u) for u in urls)
    owed = views.owed_critical(store, ids, dedup_ms=config.runtime.alert_dedup_minutes * 60_000)
    missed = [
        AlertRecord(o.id, o.ts_ms, o.key, o.severity, o.message, False, o.owed_to)
        for o in owed
        if o.owed_to == ids
    ]
    failing = []
    for url in urls:
        mine = [o for o in owed if destination_id(url) in o.owed_to]
        if mine:
            failing.append(FailingDestination(url_label(url), len(mine), mine[-1].ts_ms))
    return missed, failing


def missed_alerts(config: BotConfig, store: SqlStore) -> list[AlertRecord]:
    """Every critical alert that should have paged the trader and reached no one, not just
    those among the newest lines (see :func:`owed_alerts`)."""
    return owed_alerts(config, store)[0]


def drawdowns(equity: list[float]) -> list[float]:
    """Drawdown from the running peak at each point (fraction)."""
    out = []
    peak = 0.0
    for e in equity:
        peak = max(peak, e)
        out.append((peak - e) / peak if peak > 0 else 0.0)
    return out


def _drawdown(equity: EquitySnapshot | None, memory: RiskMemory | None) -> Decimal | None:
    if equity is None or memory is None or memory.peak_equity <= 0:
        return None
    return max(ZERO, (memory.peak_equity - equity.equity) / memory.peak_equity)


def _daily_loss(
    equity: EquitySnapshot | None, memory: RiskMemory | None, now_ms: int
) -> Decimal | None:
    """Loss since the start of the UTC day of ``now_ms``: unknown until the bot has recorded
    that day's start (its first job after midnight) and an equity within the day; yesterday's
    loss is not today's."""
    if equity is None or memory is None or memory.day_start_equity <= 0:
        return None
    today = now_ms - now_ms % DAY_MS
    if memory.day_start_ms != today or equity.ts_ms < today:
        return None
    return max(ZERO, (memory.day_start_equity - equity.equity) / memory.day_start_equity)
