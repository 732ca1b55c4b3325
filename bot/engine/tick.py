"""One engine tick: the same in simulation, paper and live trading.

Fixed order of steps (each a method below):

1. **reconcile**   resolve orders whose outcome is unknown, then read positions, resting orders
                   (conditional ones too) and the balance from the exchange, the source of truth;
2. **market**      read closed candles and funding; compute volatility and ATR;
3. **risk state**  update peak and daily equity and the trading state (active/reducing/halted);
4. **decide**      the policy's pure decision per contract (all flat when halted), then sized:
                   a stop the risk layer accepts, the gross cap, the loss budget, the hedge
                   legs, and last every increase within the available balance read at
                   reconcile (unknown: no increase);
5. **protect**     place/replace stop-loss and take-profit for the positions held now (new before
                   old), cancel orphans and duplicates;
6. **size**        leverage setting, reduce-only trims and closes, then increases; every order
                   passes the risk gate; then protect again for the positions that changed;
7. **verify**      every position the bot manages must now have a valid resting stop; if not,
                   retry once with a fresh mark, then close the position (reduce-only) and
                   record the incident; repeated failures move the account to ``reducing``;
8. **record**      decisions with reasons, equity, positions and events go to the store.

Unknown is never zero: when the account cannot be read (:class:`~bot.errors.AccountUnreadable`)
the tick sends nothing from that point on, keeps every resting order and records the event;
after ``max_unreadable_reads`` in a row the account moves to ``reducing``.

Every stop passes the risk layer's stop placement (:mod:`bot.risk.stop_placement`) first: a
stop lies strictly between the mark and the liquidation price, on the venue's grid, or the
size is cut until one does (see :mod:`bot.engine.protection`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Literal

from bot.clock import Clock, monotonic_ms, utc_text
from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.enums import (
    EventKind,
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    TradingState,
)
from bot.domain.market import FundingInfo, MarketSnapshot, VenueRestriction
from bot.domain.orders import ForcedClose, Order, OrderRequest
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.contracts import ContractSpec
from bot.engine.fanout import SEQUENTIAL, Fanout, raise_first
from bot.engine.hedging import HedgeDesk, order_hedge_decisions
from bot.engine.market import (
    annual_covariance,
    build_snapshot,
    candles_needed,
    policy_tf_ms,
    snapshot_window,
    statistics_spec,
)
from bot.engine.planner import (
    IdFactory,
    ProtectionPlan,
    SizePlan,
    exchange_setting,
    market_orders,
    plan_protection,
    plan_size,
    size_after,
    uncarried,
)
from bot.engine.protection import (
    close_position_stops,
    liquidation_after,
    liquidation_of_held,
    position_after_fills,
    protection_gap,
    secure_decision,
    secure_stop,
    still_protects,
    stop_cover,
)
from bot.engine.read_streak import UNREADABLE, readable_reason, restored_streak, unreadable_reason
from bot.engine.readings import Reading, reading_of, worth_recording
from bot.engine.reconcile import Reconciler
from bot.engine.reentry import (
    COOLDOWN_EVENT,
    STOPPED,
    Cooldowns,
    Held,
    exit_kind,
    exits_at_start,
    held_at_start,
    held_of,
)
from bot.engine.undecided import Undecided, open_undecided, short_window_reason
from bot.engine.unflattened import Unflattened, open_incidents
from bot.errors import (
    AccountUnreadable,
    AuthenticationFailed,
    ExchangeError,
    OrderNotFound,
    OutcomeUnknown,
    PermanentExchangeError,
)
from bot.policy.decide import decide
from bot.policy.hedge import short_name
from bot.policy.inputs import ContractView
from bot.policy.leverage import setting_floor
from bot.policy.protection import crossed_by_mark, daily_vol_unit, distance
from bot.ports.client_ids import base36, make_client_id, parse_purpose
from bot.ports.exchange import ExchangePort, SpotWalletPort
from bot.ports.market import CandleWindow, MarketDataPort
from bot.ports.store import (
    DecisionRecord,
    EquitySnapshot,
    OrderRecord,
    RiskEvent,
    RiskMemory,
    StorePort,
)
from bot.risk.coverage import plain
from bot.risk.gate import Denied, OrderContext, RiskGate
from bot.risk.gross import cap_to_gross
from bot.risk.guard import equity_floor, floors
from bot.risk.limits import RiskLimits
from bot.risk.loss_budget import (
    BUDGET_EXHAUSTED,
    budget_exhausted,
    cap_to_loss_budget,
    loss_at_stop,
    no_room_to_open,
)
from bot.risk.margin_cap import cap_to_margin, sends_increase
from bot.risk.state import Transition, initial_memory, set_state, state_event, update
from bot.risk.stop_placement import is_valid_stop

ZERO = Decimal(0)
ONE = Decimal(1)
# A positions answer that contradicts the fills just confirmed is read once more after this
# pause (seconds of the injected clock) before the fills are believed over it.
TRAILING_POSITIONS_WAIT_S = 0.5
# Stop distance (fraction of the mark) for a position found without a stop before the engine has
# ever seen market statistics for its contract: protection first, precision later.
FALLBACK_STOP = Decimal("0.05")
# How far over its loss budget (fraction of the budget) a book may drift before it is cut even
# below the rebalance tolerance.
BUDGET_SLACK = Decimal("0.02")
UNPROTECTED = "protection failed"
# How far before the last tick the venue's record of forced closes is read (its clock is not
# ours: a liquidation stamped a little before the tick read may only show after it).
CLOCK_MARGIN_MS = 60_000
# How far back a start looks for the cooldowns to restore (each event carries its own end).
RESTORE_HORIZON_MS = 90 * 86_400_000
# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_STOP_LOSS, _HALTED = OrderPurpose.STOP_LOSS, TradingState.HALTED
# The orders that close a position (a flattening halt's closes: see bot.engine.unflattened).
_CLOSING = (OrderPurpose.CLOSE, OrderPurpose.REDUCE)


class SendOutcome(StrEnum):
    """What became of one order the engine tried to send."""

    SENT = "sent"
    DENIED = "denied"  # refused by the risk gate (recorded, never sent)
    REJECTED = "rejected"  # refused by the venue
    UNKNOWN = "unknown"  # sent, answer lost: resolved by client id at the next reconcile


_REFUSED = (SendOutcome.DENIED, SendOutcome.REJECTED)  # the order does not rest
# What one contract's protection check found (Engine._ensure_one).
_Checked = Literal["protected", "closed", "none"]


@dataclass(frozen=True, slots=True)
class UnrecordedSend:
    """A stop sent while the state database could not be written (see
    :meth:`Engine.protect_without_store`): what to record once it can."""

    request: OrderRequest
    ts_ms: int
    status: OrderStatus
    order: Order | None  # the venue's answer (None: refused, or the answer lost)
    error: str | None

    @property
    def may_rest(self) -> bool:
        return not self.status.is_final

    def describe(self, qty: Decimal | None) -> str:
        req = self.request
        what = f"stop {req.client_id} at {req.trigger_price}" + (
            f" for position {plain(qty)}" if qty is not None else ""
        )
        if self.status is OrderStatus.REJECTED:
            return f"{what} refused by the venue ({self.error}); sent without a record"
        if self.status is OrderStatus.UNKNOWN:
            return f"{what} sent without a record, outcome unknown ({self.error})"
        return f"{what} placed without a record ({self.status.value})"


@dataclass(slots=True)
class TickResult:
    tick_id: str
    ts_ms: int
    state: TradingState
    equity: Decimal
    decisions: list[Decision] = field(default_factory=list)
    orders_sent: int = 0
    denials: int = 0
    rejected: int = 0
    unknown: int = 0
    unreadable: str | None = None  # why the account could not be read (nothing was sent)
    unprotected: list[str] = field(default_factory=list)  # positions closed for lack of a stop


class Engine:
    """Runs ticks against one exchange port, one market data port and one store port."""

    def __init__(
        self,
        *,
        clock: Clock,
        exchange: ExchangePort,
        market: MarketDataPort,
        store: StorePort,
        policy: Policy,
        contracts: Sequence[ContractSpec],
        limits: RiskLimits,
        account: str,
        margin_mode: MarginMode = MarginMode.ISOLATED,
        fanout: Fanout = SEQUENTIAL,
        spot: SpotWalletPort | None = None,
        spot_assets: Sequence[str] = (),
        quote: str = "USDT",
    ) -> None:
        self.clock = clock
        self.exchange = exchange
        self.market = market
        self.store = store
        self.policy = policy
        self._contracts = tuple(contracts)
        self._spec = {c.symbol: c for c in self._contracts}  # the contract's settings by symbol
        self.symbols = tuple(c.symbol for c in contracts)
        self.limits = limits
        self._max_notional = self._notional_caps(self._contracts)
        self.account = account
        self.gate = RiskGate(limits)
        self.tf_ms = policy_tf_ms(policy)
        self.needed = candles_needed(policy)
        self.statistics_spec = statistics_spec(policy)
        self._tick_ms = 0
        # the clock's monotonic ms read with _tick_ms: the gate's order rate counts on it
        self._tick_mono_ms = 0
        self._n = 0
        self._last_snapshot: dict[str, MarketSnapshot] = {}
        self.no_increase: set[str] = set()  # contracts whose exposure may not grow this tick
        # What the venue allows less than trading on (live: the catalogue keeper's reading):
        # see restrict(). Contracts withdrawn whose order the venue refused since.
        self.restricted: dict[str, VenueRestriction] = {}
        # The withdrawn ones among them (no market read, no decision, no funding tick).
        self.withdrawn: frozenset[str] = frozenset()
        # contract -> the restriction the venue refused an order under; kept in the store, so
        # that a restart sends no further order the venue refuses (see restrict)
        self._refused: dict[str, VenueRestriction] = store.venue_refusals()
        # The contracts no order is sent on (see restrict), kept as a set: the protection
        # loops ask for every contract at every tick and guard run.
        self._silenced: frozenset[str] = frozenset()
        self._last_price_ms: dict[str, int | None] = {}
        self.last_account: AccountView | None = None  # as the last tick or guard left it
        # The account as the running (or last) job left it, for the runner's alert conditions
        # (see job_account); and whether an order that may have moved a position, and so the
        # wallet, went out after the job's last reading of the wallet.
        self._job_account: AccountView | None = None
        self._wallet_behind = False
        self._last_equity: Decimal | None = None  # the equity the loss limits last acted on
        # A reading that would have worsened the state, whose second reading failed (see
        # update_risk_state)
        self._breach_to_confirm = False
        self.cooldowns = Cooldowns(policy.reentry.cooldown_ms)
        # What a restart restores from the recorded events, queried by kind and age, so that no
        # number of other events since (an outage's unreadable reads, every denial) hides them.
        # (A cooldown recorded under a longer cooldown setting than today's still counts: the
        # horizon is at least RESTORE_HORIZON_MS.)
        now = clock.now_ms()
        hedge_ms = policy.hedge.cooldown_minutes * 60_000 if policy.hedge is not None else 0
        recent = store.recent_events(
            100_000,
            kinds=(COOLDOWN_EVENT,),
            since_ms=now - max(policy.reentry.cooldown_ms, hedge_ms, RESTORE_HORIZON_MS),
        )
        self.cooldowns.restore(recent, now)
        # Contracts without a decision for lack of a full window of candles, as recorded (see
        # bot.engine.undecided): a restart or a policy switch does not record them again.
        self._window_key, self._window_needed = snapshot_window(policy)
        self._undecided: dict[str, Undecided] = {
            sym: u
            for sym, u in open_undecided(
                store.recent_events(10_000, kinds=(EventKind.NO_DECISION, EventKind.DECIDING))
            ).items()
            if sym in self._spec
        }
        # A flattening halt's closes per contract, and the positions they left open, as
        # recorded (see bot.engine.unflattened): a restart does not record them again.
        self._jobs = 0  # ticks and guards run: "an earlier job" for those closes
        self.unflattened = Unflattened(
            s
            for s in open_incidents(
                store.recent_events(
                    10_000, kinds=(EventKind.FLATTEN_PENDING, EventKind.FLATTEN_ENDED)
                )
            )
            if s in self._spec
        )
        self._budget_cut: set[str] = set()  # contracts cut by the loss budget this tick
        self._stale: list[str] = []  # contracts whose data is stale this tick
        self.stale_ticks: dict[str, int] = {}  # decision ticks each contract spent stale
        self.margin_mode = margin_mode  # of new positions (held ones carry their own)
        # a restart does not reset it
        self.unreadable_streak = restored_streak(
            store.recent_events(1, kinds=(EventKind.READABLE, EventKind.UNREADABLE))
        )
        # Per contract: checks in a row that had to close its naked position (a check of
        # another contract says nothing about this one's stops: counted for the account, a
        # protected BTC reset the streak an ETH whose every stop was refused built each tick)
        self._protection_streaks: dict[str, int] = {}
        self.unprotected_since: dict[str, int] = {}
        self._venue_errors: dict[str, str] = {}  # last venue refusal of a protective order
        # The part of each position no order can protect, as last recorded (see
        # _protected_or_remainder).
        self._remainders: dict[str, Decimal] = {}
        self._size_remainders: dict[str, Decimal] = {}  # what sizing could not trade, noted
        self._held_back: dict[str, str] = {}  # increases held back for a kept stop, noted
        # The lasting conditions the last protection check of each contract noted (keys of
        # ProtectionPlan.standing): each is recorded when it starts, not at every check.
        self._standing_noted: dict[str, frozenset[str]] = {}
        # The bot's stop-losses resting when this process first read each contract's orders:
        # the only ones of its own that can lack the venue's closing flag (every stop this
        # process sends carries it), each replaced once at most (see _unflagged).
        self._stops_at_start: dict[str, set[str]] = {}
        # The risk memory as this job left it: read from the store once per job (reconcile, the
        # first step of every job, forgets it), then kept in step with every save.
        self._memory: RiskMemory | None = None
        self._memory_read = False
        self.instruments = {s: exchange.instrument(s) for s in self.symbols}
        # Independent calls of a tick (reads; different contracts' protection) run through it.
        self.fanout = fanout
        self._lock = threading.RLock()  # client-id sequence and the gate's order count
        self._id_factories: dict[str, IdFactory] = {}
        # The highest sequence number a client id was made with in the second _id_second: the
        # ids made while the store cannot be read continue from it (protect_without_store).
        self._id_second, self._id_high = -1, 0
        # For protect_without_store, as the last reconcile that completed left them: the
        # contracts whose position it found the bot's (not foreign), and those an order that
        # can add exposure was sent to since; the stop of each contract's last decision.
        self._managed: frozenset[str] = frozenset()
        self._entered: set[str] = set()
        self._decided_stops: dict[str, Decimal] = {}
        # Stops sent while the store could not be written, until record_unrecorded writes them.
        self._unrecorded: list[UnrecordedSend] = []
        self.hedge_symbols = frozenset(c.symbol for c in self.contracts if c.direction == "hedge")
        self.traded = tuple(s for s in self.symbols if s not in self.hedge_symbols)
        self._sleeves = Decimal(max(1, len(self.traded)))  # the book's equity splits this way
        self.hedge = (
            HedgeDesk(policy.hedge, policy, self.instruments, quote, spot, spot_assets)
            if policy.hedge is not None
            else None
        )
        if self.hedge is not None:
            self.hedge.restore(recent, clock.now_ms())
        self.reconciler = Reconciler(
            exchange=exchange,
            store=store,
            contracts=self.contracts,
            instruments=self.instruments,
            event=self._event,
            fanout=fanout,
            account=account,
        )
        # What is held as the last tick or guard left it (exits); at start, as the last run
        # recorded it, moved by its own orders recorded filled after that (held_at_start).
        self._held: dict[str, Held] = held_at_start(store, self.symbols)
        # A stop-loss or take-profit the last run found filled and died before naming.
        self.reconciler.restore_exits(*exits_at_start(store, self._held))
        # Since when an exit is looked for in the venue's forced closes (the last tick or
        # guard; at start, the last recorded positions).
        latest = store.latest_positions()
        self._held_ms = latest[0] if latest is not None else now
        self._exits_noted: set[str] = set()  # contracts whose exit this job recorded
        self._exits_noted_ms = -1
        # What the last record of the account said (a tick's or a guard's): a guard records
        # its reading when it differs (bot.engine.readings).
        self._recorded: Reading | None = None

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        now = self.clock.now_ms()
        self._tick_ms = now
        self._tick_mono_ms = monotonic_ms(self.clock)
        self._n = 0
        self._jobs += 1
        self.forget_job_account()
        tick_id = base36(now // 1000)
        try:
            acct = self.reconcile(now)
        except AccountUnreadable as exc:
            return self._unreadable(now, tick_id, exc)
        if self.unreadable_streak:
            self._readable(now)
        try:
            return self._tick_on(now, tick_id, acct)
        except AccountUnreadable as exc:
            return self._unreadable(now, tick_id, exc)

    def _tick_on(self, now: int, tick_id: str, acct: AccountView) -> TickResult:
        self.note_exits(acct, now)
        snapshots, windows = self.read_market(now, acct)
        # Data health is per contract: a stale contract takes no new exposure (below), the
        # others trade on; an empty list also clears a whole-account state of older versions.
        self._stale = self.stale_contracts(now)
        for sym in self._stale:
            self.stale_ticks[sym] = self.stale_ticks.get(sym, 0) + 1
        memory = self.update_risk_state(now, acct, [])
        decisions = self._on_halt(
            self.decide(now, acct, snapshots, windows, memory.state), acct, memory, self.traded
        )
        decisions = [self.secure(d, acct) for d in decisions]
        decisions = self.within_gross_cap(decisions, acct, snapshots)
        wanted, decisions = decisions, self.within_loss_budget(decisions, acct, memory, snapshots)
        memory = self.note_budget_room(now, acct, wanted, decisions, memory)
        if self.hedge is not None:
            # On the book as the loss budget left it: the hedge offsets what will be held. Its
            # stop fires when the market rises, the book's when it falls: the hedge is outside
            # the "every stop fires" budget.
            hedges = self.decide_hedge(
                now, acct, snapshots, windows, decisions, memory.state, flatten=memory.flatten
            )
            # Within the gross room the book leaves: a hedge the gate would refuse whole (a book
            # near the cap) is better part-sized than left out tick after tick.
            hedges = self.within_gross_cap(hedges, acct, snapshots, settled=decisions)
            hedges = [self._with_cooldown(d, now) for d in hedges]
            decisions += [self.secure(d, acct) for d in self._on_halt_hedges(hedges, acct, memory)]
        # Last, on every leg in the order they go out (the hedge needs margin too): the
        # increases together within the balance the account has available.
        decisions = self.within_margin(decisions, acct, snapshots)
        self._decided_stops = {d.symbol: d.stop_loss for d in decisions if d.stop_loss is not None}
        result = TickResult(tick_id, now, memory.state, acct.equity(), decisions)
        # Contracts are protected together, each contract's steps in order (new stop first).
        # A decision on the other side of the position held (a flip) protects the position it
        # will open, not this one: the resting orders stay until the sizing step closes it.
        # Every contract's step is tried: one that fails (its read) holds back no other's stop
        # (run_every); its error then ends the tick before any order sizes a position.
        decided = self.fanout.run_every(
            [
                partial(self.protect, d.symbol, acct, d.stop_loss, d.take_profit, now)
                if d.target_qty * acct.qty(d.symbol) >= 0
                else partial(self.protect, d.symbol, acct, None, None, now)
                for d in decisions
            ]
        )
        # A contract whose step failed is not tried again on what it read before the failure.
        failed = {d.symbol for d, error in zip(decisions, decided, strict=True) if error}
        # No decision (no data) or none with a stop: still protected. Foreign: left alone.
        undecided = self.fanout.run_every(
            [
                partial(self.protect_without_decision, sym, acct, now)
                for sym in self.symbols
                if acct.qty(sym) != 0 and sym not in self.reconciler.foreign and sym not in failed
            ]
        )
        raise_first(decided + undecided)
        for d in decisions:
            self.resize(d, acct, snapshots.get(d.symbol), memory.state, now, result)
        result.unprotected = self.ensure_protected(acct, now)
        self.note_unflattened(acct, now)
        self.record(tick_id, now, acct, snapshots, decisions, memory.state)
        self.last_account = self._job_account = acct
        self._held = held_of(acct, self.symbols)
        self._held_ms = now
        return result

    def restrict(self, restrictions: Mapping[str, VenueRestriction]) -> None:
        """The venue's restrictions per contract, from now on (live: each catalogue check).

        A withdrawn contract (the venue no longer trades it) gets no decision and no order that
        adds exposure (the risk gate denies them); a position on it keeps its resting stop and
        is still read and shown. Orders are not sent on it at all once the venue refused one
        of them during the withdrawal, or when the venue no longer lists the market (ccxt
        cannot even name it): a venue that does not trade a market refuses its orders, and
        each protection check would otherwise place, retry and close again every minute, all
        refused. A contract only restricted (a scheduled settlement near) is reduce-only.
        A change of a contract's restriction sends its orders again (a refusal is of that
        withdrawal; a refusal recorded before a restart holds while the restriction read after
        it is the same)."""
        self.restricted = dict(restrictions)
        if self._refused:
            self._forget_refusals_of_changed_restrictions()
        self.withdrawn = frozenset(s for s, r in self.restricted.items() if r.withdrawn)
        self.reconciler.unlisted = frozenset(
            s for s in self.withdrawn if not self.restricted[s].listed
        )
        self._silence()

    @property
    def listing_check(self) -> Callable[[str], None] | None:
        """Live: asks the venue's market list about a contract whose read the venue answered
        "no such symbol" (the catalogue keeper, which calls :meth:`restrict`; see
        :attr:`Reconciler.listing_check`)."""
        return self.reconciler.listing_check

    @listing_check.setter
    def listing_check(self, check: Callable[[str], None] | None) -> None:
        self.reconciler.listing_check = check

    def _forget_refusals_of_changed_restrictions(self) -> None:
        for symbol, under in list(self._refused.items()):
            if self.restricted.get(symbol) != under:
                self.store.forget_venue_refusal(symbol)
                del self._refused[symbol]

    def _note_refusal(self, symbol: str, exc: ExchangeError, now: int) -> None:
        """An order or a cancel on ``symbol`` failed with ``exc``: on a withdrawn contract, a
        refusal by the venue stops the orders on it until its restriction changes (see
        restrict). A failure of the moment (a rate limit, a clock out of the receive window, a
        timeout) or an order already gone is no refusal: the stop is sent again next check."""
        restriction = self.restricted.get(symbol)
        refused = isinstance(exc, PermanentExchangeError) and not isinstance(exc, OrderNotFound)
        if refused and restriction is not None and restriction.withdrawn:
            if self._refused.get(symbol) != restriction:
                self.store.record_venue_refusal(symbol, restriction, now)
                self._refused[symbol] = restriction
            self._silence()

    def _silence(self) -> None:
        """No order is sent on a contract withdrawn and unlisted, or refused (see restrict)."""
        self._silenced = frozenset(
            s for s in self.withdrawn if not self.restricted[s].listed or s in self._refused
        )

    def guard(self, observed_equity: Decimal | None = None) -> None:
        """Between ticks: the loss limits on the marks of now, then the protection invariant.

        Reconcile; apply the daily-loss and drawdown limits to the equity of this moment (the
        same :func:`bot.risk.state.update` as the tick; ``observed_equity``, when given, is a
        lower equity the account had since the last check, e.g. at a candle's adverse extreme in
        simulation); a move to ``halted`` with flatten closes every position at once. Then make
        sure every position has its stop and cancel orphans. No market statistics, no decision,
        no increase.
        """
        now = self.clock.now_ms()
        self._tick_ms = now
        self._tick_mono_ms = monotonic_ms(self.clock)
        self._n = 0
        self._jobs += 1
        self.forget_job_account()
        try:
            acct = self.reconcile(now)
        except AccountUnreadable as exc:
            self._unreadable(now, base36(now // 1000), exc)
            return
        self._readable(now)
        try:
            self.note_exits(acct, now)
            memory = self.update_risk_state(now, acct, None, observed=observed_equity)
            if memory.state is TradingState.HALTED and memory.flatten:
                self.flatten(acct, now, memory)
            # Every contract is tried (run_every): one failed read holds back no other's stop.
            raise_first(
                self.fanout.run_every(
                    [
                        partial(self.protect_without_decision, sym, acct, now)
                        if acct.qty(sym) != 0
                        else partial(self.protect, sym, acct, None, None, now)
                        for sym in self.symbols
                        if sym not in self.foreign
                    ]
                )
            )
            self.ensure_protected(acct, now)
            self.note_unflattened(acct, now)
            self.record_reading(now, acct)
            self._held = held_of(acct, self.symbols)
            self._held_ms = now
            self.last_account = self._job_account = acct
        except AccountUnreadable as exc:
            self._unreadable(now, base36(now // 1000), exc)

    def flatten(self, acct: AccountView, now: int, memory: RiskMemory) -> None:
        """Close every position of the bot's contracts with reduce-only market orders."""
        closed = False
        for sym in self._to_flatten(acct):
            flat = Decision.flat(
                sym, f"halted ({memory.state_reason}): flatten", allow_increase=False
            )
            pos = acct.positions[sym]
            plan = plan_size(
                flat,
                pos.qty,
                pos.leverage,
                self.instruments[sym],
                acct.marks[sym],
                self.policy.orders.rebalance_tolerance,
                self._id_factory(sym),
            )
            for req in plan.reduce:
                sent = self._send(req, acct, now, None) is SendOutcome.SENT
                closed = sent or closed
            self._note_uncarried(sym, pos.qty, plan, now)
        if closed:
            # (a contract the venue no longer lists cannot be read: kept as last read)
            unlisted = {s: p for s, p in acct.positions.items() if s in self.reconciler.unlisted}
            read = self.exchange.fetch_positions(self.reconciler.listed)
            self._confirm_gone(acct, read)
            acct.positions = {**read, **unlisted}
            balance = self.exchange.fetch_balance()
            acct.wallet, acct.available = balance.wallet, balance.available
            acct.changed()
            self._wallet_behind = False

    def _note_uncarried(self, symbol: str, qty: Decimal, plan: SizePlan, now: int) -> None:
        """A close under a halt that flattens that leaves part or all of the position ``qty``
        because no order can carry it (``plan.remainder``: below the venue's minimum order, off
        its quantity step) is noted for the flatten incident as a close that failed, saying
        why: only the closes sent were (:meth:`_send`), and a position no close could even be
        built for stayed open, guard after guard, under a ``halted`` the runbook says closes
        every position, and no ``flatten_pending`` was ever raised."""
        if not plan.remainder:
            return
        memory = self._risk_memory()
        if memory is None or memory.state is not _HALTED or not memory.flatten:
            return
        why = uncarried(abs(qty), self.instruments[symbol])
        self.unflattened.uncarried(symbol, self._jobs, now, why)

    def _to_flatten(self, acct: AccountView) -> list[str]:
        """The contracts a halt that flattens closes, at a guard (:meth:`flatten`) and at a tick
        (:meth:`_on_halt`) alike: every position held on the bot's contracts, except a foreign
        one (left alone until flat) and one on a market no order can go to (see restrict)."""
        foreign, silenced = self.foreign, self._silenced
        return [
            sym
            for sym in self.symbols
            if acct.qty(sym) != 0 and sym not in foreign and sym not in silenced
        ]

    def note_unflattened(self, acct: AccountView, now: int) -> None:
        """At the end of a job: record a position a flattening halt's closes left open since an
        earlier job, or the end of that incident (see :mod:`bot.engine.unflattened`)."""
        if not self.unflattened.busy:
            return  # (every job of a bot that is not flattening: nothing to look at)
        memory = self._risk_memory()
        halt = (
            memory.state_reason
            if memory is not None and memory.state is _HALTED and memory.flatten
            else None
        )
        state = memory.state if memory is not None else TradingState.ACTIVE
        held = {s: acct.qty(s) for s in self.symbols}
        for note in self.unflattened.check(self._jobs, held, halt):
            self._event(now, note.kind, note.symbol, state, note.reason)

    def _confirm_gone(self, acct: AccountView, read: Mapping[str, Position]) -> None:
        """Every position ``acct`` holds that the answer ``read`` omits must be confirmed flat
        by the venue, else the read is :class:`AccountUnreadable`. Taken as read, a close that
        filled in part (or another contract's close refused) and an answer omitting that
        position made it "flat": the protection step then cancelled its stop as an orphan."""
        for sym, pos in acct.positions.items():
            if sym in self.reconciler.unlisted or not pos.is_open or sym in read:
                continue
            if not self.exchange.confirm_flat(sym):
                raise AccountUnreadable(
                    f"{sym}: the positions answer after the closes omits the position "
                    f"{pos.qty} and the venue does not confirm it flat"
                )

    def within_gross_cap(
        self,
        decisions: list[Decision],
        acct: AccountView,
        snapshots: Mapping[str, MarketSnapshot],
        settled: Sequence[Decision] = (),
    ) -> list[Decision]:
        """Scale the increases into ``max_gross_leverage`` x equity as the gate measures it
        (see :mod:`bot.risk.gross`); positions held without a decision count at their marks.
        ``settled``: decisions sized before these (the book, when the hedge legs are sized),
        each counted at the larger of what it holds and what it is going to."""
        equity = acct.equity()
        if equity <= 0 or not decisions:
            return decisions
        decided = {d.symbol for d in (*decisions, *settled)}
        fixed = ZERO
        for sym, pos in acct.positions.items():
            if sym not in decided and pos.is_open and sym in acct.marks:
                fixed += pos.notional(acct.marks[sym])
        prices: dict[str, Decimal] = {}
        for d in (*decisions, *settled):
            snap = snapshots.get(d.symbol)
            mark = acct.marks.get(d.symbol)
            last = snap.last_price if snap is not None else mark
            if last is None or mark is None:
                return decisions  # no price to measure by: the gate judges each order
            prices[d.symbol] = last if last > mark else mark
        for d in settled:
            fixed += max(abs(acct.qty(d.symbol)), abs(d.target_qty)) * prices[d.symbol]
        held = {sym: pos.qty for sym, pos in acct.positions.items() if pos.is_open}
        return cap_to_gross(
            decisions,
            held,
            prices,
            self.instruments,
            self.limits.max_gross_leverage * equity,
            fixed,
        )

    def within_margin(
        self,
        decisions: list[Decision],
        acct: AccountView,
        snapshots: Mapping[str, MarketSnapshot],
    ) -> list[Decision]:
        """Scale the increases into the available balance read this tick, in the order the
        sizing step sends them (see :mod:`bot.risk.margin_cap`); fills priced with the
        expected stop slippage as the allowance, as the stops' liquidation check does."""
        tolerance = self.policy.orders.rebalance_tolerance
        lasts: dict[str, Decimal] = {}
        for d in decisions:
            snap = snapshots.get(d.symbol)
            if snap is not None:
                lasts[d.symbol] = snap.last_price
        if not sends_increase(decisions, acct.positions, lasts, self.instruments, tolerance):
            return decisions  # (most ticks: nothing to size)
        return cap_to_margin(
            decisions,
            acct.positions,
            lasts,
            acct.marks,
            self.instruments,
            acct.available,
            setting_of=partial(self._setting_of, acct=acct),
            slippage=self.limits.stop_slippage,
            tolerance=tolerance,
        )

    def _setting_of(self, d: Decision, price: Decimal, *, acct: AccountView) -> int:
        """The leverage setting the sizing step uses for ``d`` (see :func:`plan_size`)."""
        return exchange_setting(
            d.target_leverage,
            self.instruments[d.symbol],
            abs(d.target_qty) * price,
            self._floor(d, acct),
        )

    def _floor(self, d: Decision, acct: AccountView) -> int:
        """The lowest setting an increase of ``d``'s position may use (:func:`setting_floor`)."""
        sign = 1 if d.target_qty > 0 else -1
        return setting_floor(self.instruments[d.symbol], acct.positions.get(d.symbol), sign)

    def within_loss_budget(
        self,
        decisions: list[Decision],
        acct: AccountView,
        memory: RiskMemory,
        snapshots: Mapping[str, MarketSnapshot],
    ) -> list[Decision]:
        """Cut sizes so that if every stop fires the day stays within the loss limits (see
        :mod:`bot.risk.loss_budget`); positions without a decision count with their resting stop.
        The cuts the sizing step must make even below the rebalance tolerance for the book to
        stay within the budget: :meth:`_over_budget`."""
        floor = equity_floor(memory, self.limits)
        if floor is None:
            self._budget_cut = set()
            return decisions
        budget = acct.equity() - floor
        fixed = self._undecided_loss(decisions, acct)
        capped = cap_to_loss_budget(
            decisions, acct.marks, self.instruments, budget, self.limits.stop_slippage, fixed
        )
        self._budget_cut = set()  # cleared first: a failure below leaves no stale cut behind
        self._budget_cut = self._over_budget(capped, decisions, acct, snapshots, budget, fixed)
        return capped

    def note_budget_room(
        self,
        now: int,
        acct: AccountView,
        wanted: list[Decision],
        capped: list[Decision],
        memory: RiskMemory,
    ) -> RiskMemory:
        """An account the loss budget keeps from opening anything is said to be so.

        Within a hair of its drawdown (or daily-loss) limit, a flat account's budget has no
        room for the smallest position the policy wants: it stops trading without any limit
        reached, its state ``active``, no alert, and ``bot resume`` had nothing to reset. Now
        it moves to ``reducing`` (nothing to flatten: it holds nothing) with the reason, which
        the runner alerts; back to ``active`` once the budget has ample room again (every
        position wanted keeps half its size or more: no flapping on the odd minimum order that
        fits): the next UTC day for the daily floor; for the drawdown floor, a person's ``bot
        resume`` (which then resets the peak) or a higher limit."""
        room = no_room_to_open(wanted, capped, self._flat_book(acct))
        exhausted = budget_exhausted(memory)
        if room is True and memory.state is TradingState.ACTIVE:
            reason, daily = self._exhausted_reason(acct, memory)
            # The daily floor lifts at the next UTC day (not sticky); the drawdown floor does
            # not move by itself: sticky, or each new day would lift it and the next tick set it
            # again, two critical alerts a day saying nothing new.
            memory = set_state(memory, TradingState.REDUCING, reason, sticky=not daily)
            self._save_memory(memory, state_event(now, memory, f"active -> reducing: {reason}"))
        elif room is False and exhausted and memory.sticky:
            # Only the drawdown floor's (sticky): the daily floor's lifts at the next UTC day
            # (risk.state.update), never within the day it was reached on.
            reason = "the loss budget has room again (every position wanted keeps half its size)"
            memory = set_state(memory, TradingState.ACTIVE, reason, sticky=False)
            self._save_memory(memory, state_event(now, memory, f"reducing -> active: {reason}"))
        return memory

    def _flat_book(self, acct: AccountView) -> bool:
        """The account holds none of the contracts the loss budget sizes (the hedge's and the
        foreign positions are outside it)."""
        foreign, hedges = self.reconciler.foreign, self.hedge_symbols
        return not any(
            pos.qty != 0 and sym not in foreign and sym not in hedges
            for sym, pos in acct.positions.items()
        )

    def _exhausted_reason(self, acct: AccountView, memory: RiskMemory) -> tuple[str, bool]:
        """Why no position fits, naming the floor that binds; and whether it is the daily one."""
        limits = self.limits
        daily, drawdown = floors(memory, limits)
        equity = acct.equity()
        if daily > drawdown:
            which = (
                f"the daily-loss floor {daily:.2f} ({limits.daily_loss:.2%} of the day's start "
                f"{memory.day_start_equity:.2f}); room again at the next UTC day"
            )
        else:
            which = (
                f"the drawdown floor {drawdown:.2f} ({limits.max_drawdown:.2%} from the peak "
                f"{memory.peak_equity:.2f}); `bot resume` resets the peak to the equity, or "
                "raise risk.max_drawdown"
            )
        return (
            f"{BUDGET_EXHAUSTED}: equity {equity:.2f} is {equity - max(daily, drawdown):.2f} "
            f"above {which}: no position the policy wants fits (its loss at the stop is more)"
        ), daily > drawdown

    def _undecided_loss(self, decisions: list[Decision], acct: AccountView) -> Decimal:
        """What the positions without a decision lose if their resting stops fire."""
        decided = {d.symbol for d in decisions}
        fixed = ZERO
        for sym, pos in acct.positions.items():
            if sym in decided:
                continue
            stop = _resting_stop(acct.resting.get(sym, ()))
            if stop is None or sym not in self.instruments:
                continue
            if sym in self.hedge_symbols:
                continue  # opposite to the book's stops: see the hedge step in the tick
            mark = acct.marks[sym]
            if pos.qty != 0 and crossed_by_mark(stop, pos.sign, mark):
                # A stop the mark has crossed (about to fire, or a reading that is wrong)
                # measures no loss from here: it left the other contracts room to grow on a
                # garbled open-orders answer. Counted at the policy's stop around the mark,
                # where the protection step places the stop that replaces it.
                stop = self._wanted_stop(sym, acct)
            fixed += loss_at_stop(
                pos.qty,
                mark,
                stop,
                self.limits.stop_slippage,
                self.instruments[sym],
            )
        return fixed

    def _over_budget(
        self,
        capped: list[Decision],
        decisions: list[Decision],
        acct: AccountView,
        snapshots: Mapping[str, MarketSnapshot],
        budget: Decimal,
        fixed: Decimal,
    ) -> set[str]:
        """The contracts whose cut is made even below the rebalance tolerance: every decided
        one (the sizing step forces only the cuts among them) when the book would lose more than
        its budget if every stop fires, by more than BUDGET_SLACK (so equity moving a little
        between ticks does not churn), as held or as this tick's orders leave it; else none.

        The book the tick leaves: a cut within the tolerance is not traded while another
        contract's increase, sized on the room that cut was to free, is; the book ended the
        tick over its budget, state active. With every cut made, it ends within the targets,
        which fit the budget. Nothing to measure without a cut within the tolerance (every
        contract then ends at or below its target). The book the tick leaves is measured order
        by order (:func:`size_after`) only when a bound of it is over: each contract that
        opens or adds at its target, every other as held."""
        if not self._keeps_a_cut(capped, acct):
            return set()  # (most ticks: a few comparisons per contract)
        limit = (budget - fixed) * (1 + BUDGET_SLACK)
        held, bound = self._loss_held_and_bound(capped, decisions, acct)
        if held > limit or (bound > limit and self._loss_after(capped, acct, snapshots) > limit):
            return {c.symbol for c in capped}
        return set()

    def _keeps_a_cut(self, capped: list[Decision], acct: AccountView) -> bool:
        """Whether a decision cuts a position by less than the rebalance tolerance: the sizing
        step may keep it as held."""
        tolerance = self.policy.orders.rebalance_tolerance
        for c in capped:
            target, held = c.target_qty, acct.qty(c.symbol)
            if target * held <= 0:
                continue  # (opens, flips or closes: traded whatever the tolerance)
            size = abs(held)
            if abs(target) < size and size - abs(target) < tolerance * size:
                return True
        return False

    def _loss_held_and_bound(
        self, capped: list[Decision], decisions: list[Decision], acct: AccountView
    ) -> tuple[Decimal, Decimal]:
        """What the decided contracts lose if their decisions' stops fire: as held, and at most
        once this tick's orders fill (a contract that opens or adds at its capped target, every
        other as held)."""
        slippage = self.limits.stop_slippage
        held = bound = ZERO  # (summed left to right from zero, as sum() would)
        for c, d in zip(capped, decisions, strict=True):
            stop = d.stop_loss
            if stop is None:
                continue
            sym = d.symbol
            qty, mark, inst = acct.qty(sym), acct.marks[sym], self.instruments[sym]
            loss = loss_at_stop(qty, mark, stop, slippage, inst)
            held += loss
            target = c.target_qty
            if c.stop_loss is not None and (target * qty < 0 or abs(target) > abs(qty)):
                loss = loss_at_stop(target, mark, c.stop_loss, slippage, inst)
            bound += loss
        return held, bound

    def _loss_after(
        self, capped: list[Decision], acct: AccountView, snapshots: Mapping[str, MarketSnapshot]
    ) -> Decimal:
        """What the decided contracts lose if their stops fire once this tick's orders fill:
        each at the size the sizing step leaves (:func:`size_after`, at its price)."""
        tolerance = self.policy.orders.rebalance_tolerance
        total = ZERO
        for c in capped:
            stop = c.stop_loss
            if stop is None:
                continue
            sym = c.symbol
            snap = snapshots.get(sym)
            mark = acct.marks[sym]
            inst = self.instruments[sym]
            price = snap.last_price if snap is not None else mark
            after = size_after(
                c,
                acct.qty(sym),
                inst,
                price,
                tolerance,
                kept_whole=self._kept_whole(acct.positions.get(sym), acct),
            )
            total += loss_at_stop(after, mark, stop, self.limits.stop_slippage, inst)
        return total

    def note_exits(self, acct: AccountView, now: int) -> None:
        """Start the re-entry cooldown of contracts that shrank on the exchange's side, named
        from what the exchange says (:func:`bot.engine.reentry.exit_kind`: the bot's stop-loss,
        a liquidation or ADL the venue records, or reduced outside the bot): against the
        positions the last tick left, and, from the order records, any of the bot's stop-losses
        the reconcile found filled (also one that fired while the bot was down, when there is
        no last tick to compare with), whichever reconcile since the last naming found it
        (:meth:`Reconciler.exits_named`). A shrink nothing explains is also a recorded
        event."""
        rec = self.reconciler
        if self._exits_noted_ms != now:  # (a second reading in the same job notes nothing new)
            self._exits_noted_ms, self._exits_noted = now, set()
        for sym, before in self._held.items():
            if sym in rec.own_fills:
                continue  # the bot's own order changed it (its outcome was learnt only now)
            kind = exit_kind(
                before,
                acct,
                sym,
                stop_filled=sym in rec.stopped_out,
                take_filled=sym in rec.took_profit,
                forced=partial(self._forced_closes, sym),
            )
            if kind is None:
                continue
            if kind != STOPPED and sym not in self._exits_noted:
                self._exits_noted.add(sym)  # (whether or not a cooldown is configured)
                self._event(
                    now,
                    EventKind.EXIT,
                    sym,
                    TradingState.ACTIVE,
                    f"position {before.qty} -> {acct.qty(sym)}: {kind}",
                )
            self._cool(sym, now, kind)
        stopped = self.reconciler.stopped_out
        for sym in sorted(stopped) if stopped else ():
            if sym not in self._held:  # already judged above, against the positions held
                self._cool(sym, now, "stop-loss")
        # Named: what the reconciles since the last naming found is spent (kept until now, so
        # a fill found by a reconcile no naming followed, the runner's reading for its alerts
        # after a job that left none, still names the exit its own at the next job).
        rec.exits_named()

    def _forced_closes(self, symbol: str) -> list[ForcedClose] | None:
        """The venue's liquidations and ADL closes of ``symbol`` since the last tick, with a
        minute's margin for the venue's clock (``None``: its record cannot be read)."""
        try:
            return self.exchange.fetch_forced_closes(symbol, self._held_ms - CLOCK_MARGIN_MS)
        except (ExchangeError, AccountUnreadable):
            return None

    def _cool(self, symbol: str, now: int, why: str) -> None:
        """Start a contract's re-entry cooldown and record it (restored after a restart)."""
        end = self.cooldowns.start(symbol, now, why)
        if end is not None:
            self._event(
                now,
                COOLDOWN_EVENT,
                symbol,
                TradingState.ACTIVE,
                Cooldowns.describe(symbol, end, why),
            )

    @property
    def job_account(self) -> AccountView | None:
        """The account as the last tick or guard left it (its reading, kept in step with its
        own orders: positions and open orders read again after them), for the runner's alert
        conditions, which then need no reading of their own. None when the job leaves none
        to rely on: its reading failed (unreadable), or an order that may have moved a
        position went out after its last reading of the wallet (a close for want of a stop:
        its realised loss is not in the wallet read before it)."""
        return None if self._wallet_behind else self._job_account

    def forget_job_account(self) -> None:
        """A new job starts: :attr:`job_account` is None until its tick or guard reads the
        account (a job that runs neither leaves none to rely on, not the last job's)."""
        self._job_account, self._wallet_behind = None, False

    def last_snapshots(self) -> dict[str, MarketSnapshot]:
        """The latest market statistics seen per contract (for alerts and the status view)."""
        return dict(self._last_snapshot)

    # -- 1. reconcile --------------------------------------------------------------------------

    def reconcile(self, now: int) -> AccountView:
        """Step 1 (see :mod:`bot.engine.reconcile`)."""
        self._memory_read = False  # a new job: operator commands may have changed the memory
        acct = self.reconciler.reconcile(now)
        for sym, orders in acct.resting.items():
            if sym not in self._stops_at_start:
                self._stops_at_start[sym] = {o.client_id for o in orders if o.purpose is _STOP_LOSS}
        foreign = self.reconciler.foreign
        self._managed = frozenset(
            s for s, p in acct.positions.items() if p.is_open and s not in foreign
        )
        self._entered = set()
        return acct

    @property
    def foreign(self) -> set[str]:
        return self.reconciler.foreign

    @property
    def contracts(self) -> tuple[ContractSpec, ...]:
        return self._contracts

    @contracts.setter
    def contracts(self, specs: Sequence[ContractSpec]) -> None:
        """Replace the contract settings (same symbols), e.g. a contract switched to follow."""
        specs = tuple(specs)
        if [c.symbol for c in specs] != list(self.symbols):
            raise ValueError("contracts can change their settings, not their symbols")
        self._contracts = specs
        self._spec = {c.symbol: c for c in specs}
        self._max_notional = self._notional_caps(specs)
        self.reconciler.contracts = specs

    # -- 2. market data ------------------------------------------------------------------------

    def _notional_caps(self, specs: Sequence[ContractSpec]) -> dict[str, Decimal]:
        """Each contract's notional cap as the risk gate applies it."""
        return {c.symbol: c.notional_cap(self.limits.max_notional_per_contract) for c in specs}

    def read_market(
        self, now: int, acct: AccountView
    ) -> tuple[dict[str, MarketSnapshot], dict[str, CandleWindow]]:
        snapshots: dict[str, MarketSnapshot] = {}
        windows: dict[str, CandleWindow] = {}
        symbols = self._tradable()
        inputs = self.fanout.run_each([partial(self._market_inputs, sym, now) for sym in symbols])
        for sym, got in zip(symbols, inputs, strict=True):
            if isinstance(got, ExchangeError):
                # One contract's unreadable candles, price or funding cost that contract its
                # decision, not the whole tick: it holds, and keeps (or gets) its stop below.
                self._no_decision(now, sym, f"market data unreadable: {got}")
                continue
            window, last, funding = got
            self._last_price_ms[sym] = last[1] if last is not None else None
            if last is None or funding is None:
                continue
            # Freshness is the last price's, unless the decision candles themselves lag (a
            # candle more than one timeframe late means the feed has stopped).
            candle_close = int(window.ts[-1]) + self.tf_ms if len(window.ts) else 0
            asof = last[1] if now - candle_close <= self.tf_ms else min(candle_close, last[1])
            snap = build_snapshot(
                sym,
                window,
                funding,
                last[0],
                acct.marks[sym],
                self.policy,
                asof_ms=asof,
                spec=self.statistics_spec,
            )
            if snap is None:
                self._window_short(now, sym, window)
                continue
            if self._undecided and sym in self._undecided:
                self._window_full(now, sym, window)
            if snap.volatility <= 0:
                # Not one price change over the whole volatility window: a feed that repeats
                # its last price, or a contract the venue has halted or is settling. Sized on it,
                # the policy would take its highest leverage (nothing moves) with a stop one
                # tick away, into whatever move the price makes when it comes back.
                self._no_decision(
                    now,
                    sym,
                    f"prices did not move over the last {self.policy.volatility.window} "
                    f"{self.policy.timeframe} candles (volatility 0): a frozen feed or a halted "
                    "contract",
                )
                continue
            snapshots[sym] = snap
            windows[sym] = window
            self._last_snapshot[sym] = snap
        return snapshots, windows

    def _window_short(self, now: int, sym: str, window: CandleWindow) -> None:
        """``sym``'s candles do not fill the window (a gap cut it, or the contract is younger
        than it): no decision, recorded once per stretch (again only when the cause changes,
        e.g. a second gap), with the gap, the window needed and until when."""
        reason = short_window_reason(
            window, self._window_needed, self._window_key, self.policy.timeframe, self.tf_ms
        )
        known = self._undecided.get(sym)
        if known is not None and known.reason == reason:
            return
        self._undecided[sym] = Undecided(known.since_ms if known else now, reason)
        self._event(now, EventKind.NO_DECISION, sym, TradingState.ACTIVE, reason)

    def _window_full(self, now: int, sym: str, window: CandleWindow) -> None:
        """``sym``'s window is full again after a stretch without a decision: recorded once."""
        ended = self._undecided.pop(sym)
        first = int(window.ts[-self._window_needed])
        self._event(
            now,
            EventKind.DECIDING,
            sym,
            TradingState.ACTIVE,
            f"{self._window_needed} {self.policy.timeframe} candles without a gap since "
            f"{utc_text(first)}: decisions resume (none since {utc_text(ended.since_ms)})",
        )

    def _tradable(self) -> tuple[str, ...]:
        """The contracts the venue trades: a withdrawn one gets no market read and no
        decision (it holds, its resting stop stays; the catalogue event said why once)."""
        withdrawn = self.withdrawn
        if not withdrawn:
            return self.symbols
        for sym in withdrawn:
            self._last_price_ms.pop(sym, None)  # not "stale": not traded
        return tuple(s for s in self.symbols if s not in withdrawn)

    def _no_decision(self, now: int, sym: str, why: str) -> None:
        """``sym``'s market data cannot be decided on this tick: it holds, keeps (or gets) its
        stop, and counts as stale; the event says why."""
        self._last_price_ms[sym] = None
        self._event(
            now,
            EventKind.MARKET_DATA,
            sym,
            TradingState.ACTIVE,
            f"{why}; no decision this tick (held, protected)",
        )

    def _market_inputs(
        self, sym: str, now: int
    ) -> tuple[CandleWindow, tuple[Decimal, int] | None, FundingInfo | None] | ExchangeError:
        """One contract's candles, last price and funding (read together with the others'), or
        the venue's error that made them unreadable (rejected credentials still stop the job)."""
        try:
            window = self.market.closed_candles(sym, self.tf_ms, self.needed, now)
            last = self.market.last_price(sym, now)
            if last is None:
                return window, None, None
            ahead = last[1] - now
            if ahead > self.limits.stale_data_ms:
                # A price "from the future" would read as fresh whatever its real age (a
                # garbled time, or a feed replaying with a wrong stamp): as far ahead as a
                # stale price is behind is not a clock difference, it is not believable.
                return ExchangeError(
                    f"{sym}: the last price's time {utc_text(last[1])} is {ahead // 1000} s "
                    f"ahead of the bot's clock ({utc_text(now)}), more than the stale-data "
                    f"limit ({self.limits.stale_data_ms // 1000} s): not believable (if the "
                    "host's clock is behind, synchronise it)"
                )
            return window, last, self.market.funding(sym, now, self.policy.funding.lookback)
        except AuthenticationFailed:
            raise
        except ExchangeError as exc:
            return exc

    def stale_contracts(self, now: int) -> list[str]:
        """Contracts whose last price (read this tick) is older than the limit, or missing."""
        return [
            sym
            for sym, ts in self._last_price_ms.items()
            if ts is None or now - ts > self.limits.stale_data_ms
        ]

    # -- 3. risk state -------------------------------------------------------------------------

    def update_risk_state(
        self,
        now: int,
        acct: AccountView,
        stale: list[str] | None = None,
        *,
        observed: Decimal | None = None,
    ) -> RiskMemory:
        equity = acct.equity() if observed is None else min(acct.equity(), observed)
        # The UTC day the limits count in is the venue's: a host clock stepped forward across
        # 00:00 (a VM resumed with a wrong clock) started a new day, which lifted that day's
        # daily-loss halt and measured the day from the equity after its loss. The runner
        # measures the venue's clock again before a job once the wall clock stepped.
        day_ms = self.exchange.venue_now_ms()
        base = self._risk_memory() or initial_memory(equity, day_ms)
        memory, transition = update(base, equity, day_ms, self.limits, stale)
        worse = transition is not None and transition.worse
        if self._needs_second_reading(base, memory, transition, equity) and not (
            worse and self._breach_to_confirm
        ):
            # Remembered until a reading completes: when the second reading fails (a rate
            # limit on the read that follows at once, a garbled answer), the next job's
            # reading is the second one. Else a venue failing every other read kept the
            # limits from ever acting, and the unreadable streak from ever growing.
            self._breach_to_confirm = worse
            self._read_again(now, acct)
            equity = acct.equity() if observed is None else min(acct.equity(), observed)
            base = self._risk_memory() or initial_memory(equity, day_ms)
            memory, transition = update(base, equity, day_ms, self.limits, stale)
        self._breach_to_confirm = False
        self._last_equity = equity
        self._save_memory(
            memory,
            None
            if transition is None
            else state_event(
                now,
                memory,
                f"{transition.before.value} -> {transition.after.value}"
                f"{' (was holding its positions: closes them now)' if transition.flattens else ''}"
                f"{' (no longer lifted at the next UTC day)' if transition.sticks else ''}"
                f"{' (the daily loss limit reached during it)' if transition.recaused else ''}"
                f": {transition.reason} (equity {equity:.2f})",
            ),
        )
        if transition is not None and transition.after is not TradingState.ACTIVE:
            for sym in self.symbols:
                self._cool(sym, now, f"state {transition.after.value}")
        return memory

    def _needs_second_reading(
        self,
        base: RiskMemory,
        memory: RiskMemory,
        transition: Transition | None,
        equity: Decimal,
    ) -> bool:
        """Whether this equity must be read twice before the loss limits act on it.

        One garbled number in an answer (a wallet, a mark, a position) that passed every check
        of the adapter must not flatten the book: a reading that moves the trading state to a
        worse one is read again, and so is an equity above the last reading by more than the
        smallest loss limit (kept, it would become the peak or the day's start, and the true
        equity read next would breach a limit; the first reading after a start is compared with
        the recorded peak). So is the reading that starts a new UTC day (``memory`` rolled from
        ``base``): it becomes the day's start, which the daily limit measures from all day;
        garbled low, a real loss would not count; garbled high, the true equity read next would
        be a loss never made. A real move reads the same twice; the cost is one more account
        read, only on such a reading (and once a day).
        """
        if transition is not None and transition.worse:
            return True
        if memory.day_start_ms != base.day_start_ms:
            return True
        last = self._last_equity if self._last_equity is not None else base.peak_equity
        if last <= 0:
            return False
        limits = self.limits
        smallest = min(limits.daily_loss, limits.max_drawdown)
        return equity > last * (1 + smallest)

    def _read_again(self, now: int, acct: AccountView) -> None:
        """Read the account again into ``acct`` (the tick goes on with the second reading).

        What the first reconcile learnt about the bot's own fills and stop-outs is kept, and a
        position gone between the two readings is judged as an exit like any other.
        """
        rec = self.reconciler
        own, stopped, took = rec.own_fills, rec.stopped_out, rec.took_profit
        fresh = self.reconcile(now)
        rec.own_fills = own | rec.own_fills
        rec.stopped_out = stopped | rec.stopped_out
        rec.took_profit = took | rec.took_profit
        acct.wallet, acct.positions = fresh.wallet, fresh.positions
        acct.available = fresh.available
        acct.resting, acct.marks = fresh.resting, fresh.marks
        acct.changed()
        self.note_exits(acct, now)

    # -- 4. decide -----------------------------------------------------------------------------

    def decide(
        self,
        now: int,
        acct: AccountView,
        snapshots: dict[str, MarketSnapshot],
        windows: dict[str, CandleWindow],
        state: TradingState,
    ) -> list[Decision]:
        equity = acct.equity()
        sleeve = self._sleeve(equity) if equity > 0 else ZERO
        views: list[ContractView] = []
        foreign, cooldowns = self.reconciler.foreign, self.cooldowns
        for spec in self._contracts:
            sym = spec.symbol
            snap = snapshots.get(sym)
            if snap is None or sym in foreign or sym in self.hedge_symbols:
                continue  # no data: hold, keep protection as it is (see protect/resize)
            pos = acct.positions.get(sym)
            direction, allow = spec.resolve(now, pos.qty if pos is not None else ZERO)
            if sym in self.no_increase:
                allow = False  # e.g. right before an expensive funding settlement
            if sym in cooldowns.until and cooldowns.active(sym, now) is not None:
                allow = False  # re-entry cooldown after a stop-out or a state change
            if sym in self._stale:
                allow = False  # stale data: this contract alone takes no new exposure
            if sym in self.restricted:
                allow = False  # the venue settles it soon (withdrawn ones have no data)
            if sym in self.reconciler.unsettled:
                allow = False  # an entry of unknown outcome may still fill: not sent twice
            views.append(
                ContractView(
                    symbol=sym,
                    direction=direction,
                    allow_increase=allow,
                    max_leverage=min(spec.max_leverage, self.limits.max_leverage_per_contract),
                    instrument=self.instruments[sym],
                    market=snap,
                    position=pos,
                    resting_stop=_resting_stop(acct.resting.get(sym, ())),
                    sleeve_equity=sleeve,
                    max_notional=self._max_notional[sym],
                    exit_slippage=self.limits.stop_slippage,
                )
            )
        cov = None
        alloc = self.policy.allocation
        if alloc is not None and alloc.method == "erc":
            active = [windows[v.symbol] for v in views if v.direction != 0]
            # Of the raw returns, as if every contract were long: ``decide`` signs it by each
            # contract's direction for this tick (the book as held).
            cov = annual_covariance(active, alloc.covariance_window)
        decisions = decide(views, self.policy, cov)
        return [self._with_cooldown(d, now) for d in decisions]

    def _on_halt(
        self,
        decisions: list[Decision],
        acct: AccountView,
        memory: RiskMemory,
        among: Collection[str],
    ) -> list[Decision]:
        """The decisions for the contracts ``among`` under a halt: each holds, or, when the
        halt flattens, closes. Flattening, a position there without a decision (its market data
        unreadable this tick, its window cut by a gap, a withdrawn contract) is closed too, as
        the guard's :meth:`flatten` closes it: a reduce-only market close needs the account's
        reading alone, and left to the next guard it rode a minute or more of the market under
        a halt meant to close everything. Its close goes through the sizing step like every
        other, at the mark, noted for the flatten incident (:meth:`_send`)."""
        if memory.state is not _HALTED:
            return decisions
        if not memory.flatten:
            why = f"halted ({memory.state_reason}): hold, stops resting"
            return [_hold(d, acct, why) for d in decisions]
        why = f"halted ({memory.state_reason}): close every position"
        flats = [_flat(d, why) for d in decisions]
        decided = {d.symbol for d in decisions}
        for sym in self._to_flatten(acct):
            if sym in among and sym not in decided:
                reason = f"no decision this tick; {why}"
                flats.append(Decision.flat(sym, reason, allow_increase=False))
        return flats

    def _on_halt_hedges(
        self, decisions: list[Decision], acct: AccountView, memory: RiskMemory
    ) -> list[Decision]:
        """The hedge legs under a halt: as the book (:meth:`_on_halt`), except that a plain
        halt still lets through a cut of a held leg that lowers the absolute net exposure of
        everything held. A hedge exists only to offset the book: once the book's stops closed
        it, the hedge is a directional position nobody asked for, held naked until a person's
        ``bot resume``. The cut is reduce-only (the gate passes it in every state) and is
        measured against the positions held, the book being held too."""
        if memory.state is not _HALTED or memory.flatten or self.hedge is None or not decisions:
            return self._on_halt(decisions, acct, memory, self.hedge_symbols)
        why = f"halted ({memory.state_reason})"
        net = self.hedge.net_excluding(None, acct)
        out = []
        for d in decisions:
            held, mark = acct.qty(d.symbol), acct.marks.get(d.symbol)
            if mark is not None and held != 0 and _cuts(d.target_qty, held):
                after = net + (d.target_qty - held) * mark * self.hedge.beta(d.symbol)
                if abs(after) < abs(net):
                    note = f"{why}: a hedge cut that lowers the net exposure still goes"
                    out.append(replace(d, reason=f"{d.reason}; {note}", allow_increase=False))
                    net = after
                    continue
            out.append(_hold(d, acct, f"{why}: hold, stops resting"))
        return out

    def decide_hedge(
        self,
        now: int,
        acct: AccountView,
        snapshots: dict[str, MarketSnapshot],
        windows: dict[str, CandleWindow],
        book: list[Decision],
        state: TradingState,
        *,
        flatten: bool = False,
    ) -> list[Decision]:
        """The hedge legs' decisions (see :mod:`bot.policy.hedge`); none when the hedge
        instrument has no data or the spot holdings cannot be read (the hedge is held).
        Halted with ``flatten``: every held leg is closed, before either is read."""
        if self.hedge is None:
            return []
        if state is _HALTED and flatten:
            # Closing a leg needs neither the spot holdings nor the primary's data, nor its
            # own (closed at the mark): a flatten that waited for them would close the book and
            # leave the account net short by the whole hedge. The legs the guard would close.
            closed = set(self._to_flatten(acct))
            return [
                Decision.flat(sym, f"{short_name(sym)} hedge: close", allow_increase=False)
                for sym in self.hedge.symbols
                if sym in closed
            ]
        self.hedge.estimate_betas(windows)
        unknown = self.hedge.read_spot()
        if unknown is not None:
            self._event(now, EventKind.HEDGE, None, state, unknown)
            return []
        cap = min(
            self.limits.max_leverage_per_contract,
            *(c.max_leverage for c in self.contracts if c.symbol in self.hedge_symbols),
        )
        outcome = self.hedge.decide(
            now,
            acct,
            {s: v for s, v in snapshots.items() if s not in self.foreign},
            book,
            state is TradingState.ACTIVE,
            cap,
            acct.resting,
            book_may_grow=state is TradingState.ACTIVE,
            max_notional=min(self._max_notional[s] for s in self.hedge_symbols),
            may_open=self._hedge_may_open(now),
            foreign=self.foreign,
            stop_without_statistics=partial(self._wanted_stop, acct=acct),
        )
        if outcome is None:
            self._event(
                now,
                EventKind.HEDGE,
                None,
                state,
                "hedge held: no market data for the primary hedge instrument or a hedge leg "
                "held (only cuts are decided then, and none is due), or it holds a position "
                "the bot did not open",
            )
            return []
        if any(d.symbol not in snapshots for d in outcome.decisions):
            # Decided without the leg's statistics: its decision record may lack them, the
            # event says what was decided and why.
            self._event(now, EventKind.HEDGE, None, state, outcome.reason)
        legs = [self._before_funding(d) for d in outcome.decisions]
        return order_hedge_decisions(legs, acct)

    def _hedge_may_open(self, now: int) -> frozenset[str]:
        """The hedge legs that may take new exposure, each like any contract: fresh data, no
        venue restriction, no re-entry cooldown, not about to pay funding (``no_increase``, a
        pre-funding tick: the leg is held or cut, never grown; the trading state is checked
        apart). Per leg: a funding switch goes only to a leg that can open, the held one is
        kept otherwise."""
        return frozenset(
            s
            for s in self.hedge_symbols
            if s not in self._stale
            and s not in self.restricted
            and s not in self.reconciler.unsettled
            and s not in self.no_increase
            and self.cooldowns.active(s, now) is None
        )

    def _with_cooldown(self, d: Decision, now: int) -> Decision:
        cooldowns = self.cooldowns
        why = cooldowns.reason(d.symbol, now) if d.symbol in cooldowns.until else None
        if d.symbol in self._stale:
            stale = "stale market data: no new exposure on this contract, protection kept"
            why = stale if why is None else f"{why}; {stale}"
        restriction = self.restricted.get(d.symbol)
        if restriction is not None:
            note = f"{restriction.reason}: no new exposure"
            why = note if why is None else f"{why}; {note}"
        if d.symbol in self.reconciler.unsettled:
            note = "an entry's outcome is still unknown: no new exposure until it is settled"
            why = note if why is None else f"{why}; {note}"
        d = d if why is None else replace(d, reason=f"{d.reason}; {why}")
        return self._before_funding(d)

    def _before_funding(self, d: Decision) -> Decision:
        """``d`` with the reason a pre-funding tick holds its contract back (``no_increase``)."""
        if d.symbol not in self.no_increase:
            return d
        note = "pre-funding tick: no new exposure before the settlement"
        return replace(d, reason=f"{d.reason}; {note}")

    # -- 5. protect ----------------------------------------------------------------------------

    def protect(
        self,
        symbol: str,
        acct: AccountView,
        stop: Decimal | None,
        take: Decimal | None,
        now: int,
        *,
        tolerance: Decimal | None = None,
        buffer: Decimal | None = None,
    ) -> None:
        """Place and cancel what leaves ``symbol``'s wanted protective orders resting. The stop
        is first secured (moved inside the liquidation price by the policy's buffer, or by
        ``buffer`` when given)."""
        if symbol in self.reconciler.foreign or symbol in self._silenced:
            # a position the bot does not manage keeps its orders exactly as they are; so does
            # one on a market the venue does not trade (see restrict)
            return
        pos = acct.positions.get(symbol)
        qty = pos.qty if pos is not None else ZERO
        if qty != 0 and stop is None:
            return  # the decision is to close: the resting stop stays until the close fills
        if pos is not None and pos.is_open and stop is not None:
            secured = self._secure_stop(pos, acct, stop, buffer)
            if secured is None:
                # No valid stop for the position as held: keep what rests; the verification
                # step (ensure_protected) escalates.
                return
            stop = secured
        unflagged = self._unflagged(symbol, acct.resting.get(symbol, []))
        plan = plan_protection(
            symbol,
            qty,
            stop,
            take,
            acct.resting.get(symbol, []),
            self.policy.orders.protective_tolerance if tolerance is None else tolerance,
            self._id_factory(symbol),
            instrument=self.instruments[symbol],
            close_position=self.exchange.close_position_stops,
            still_protects=(
                still_protects(self.instruments[symbol], pos, acct, self.instruments)
                if pos is not None and pos.is_open
                else None
            ),
            unflagged=unflagged,
        )
        if unflagged:
            # Tried once: should the new stop be refused (or its answer lost), the old one
            # stays and protects as before, and is not tried again at every job.
            self._stops_at_start[symbol] -= unflagged & set(plan.cancel)
        self._record_notes(symbol, plan, now)
        self._place_then_cancel(symbol, acct, plan.place, plan.cancel, now)
        # A close-position order replaced: the new one once the old is gone; the stop that
        # bridged the swap goes only once the new one rests (else it stays, and protects).
        outcomes = [self._send(req, acct, now, None) for req in plan.then_place]
        if all(outcome is SendOutcome.SENT for outcome in outcomes):
            for cid in plan.then_cancel:
                self._cancel(symbol, cid, now)
        elif any(outcome in _REFUSED for outcome in outcomes):
            # refused: the old trigger, which still protected, goes back at once rather than
            # leave the position naked until the verification (an unknown outcome may rest:
            # the verification looks it up by its client id)
            for req in plan.restore:
                self._send(req, acct, now, None)
        if plan.place or plan.cancel or plan.then_place:
            acct.resting[symbol] = self._read_resting(symbol)

    def _unflagged(self, symbol: str, resting: Sequence[Order]) -> frozenset[str]:
        """The bot's sized stop-losses resting on ``symbol`` that the venue reports without
        its closing flag (``Order.close_on_trigger`` False: Bybit cancels such a stop when it
        triggers on an account short of free margin), among those that rested before this
        process first read the contract: placed by an older version, which sent no flag. They
        are replaced (``plan_protection`` ``unflagged``), each once. A stop this process sent
        carries the flag: reported without it, the venue dropped it, and another would fare no
        better (replaced, it would be again at every job). A reply that does not say (None)
        keeps the stop: it is read again at the next job."""
        older = self._stops_at_start.get(symbol)
        if not older:
            return frozenset()
        return frozenset(
            o.client_id
            for o in resting
            if o.client_id in older
            and o.purpose is _STOP_LOSS
            and o.close_on_trigger is False
            and o.reduce_only
            and not o.close_position
        )

    def _record_notes(self, symbol: str, plan: ProtectionPlan, now: int) -> None:
        """Record the plan's notes (orphans and duplicates: discrepancies worth a record); one
        that describes a lasting condition only when the last check of ``symbol`` did not."""
        before = self._standing_noted.get(symbol, frozenset())
        for note in plan.notes:
            if plan.standing.get(note) not in before:
                self._event(now, EventKind.RECONCILE, symbol, TradingState.ACTIVE, note)
        self._standing_noted[symbol] = frozenset(plan.standing.values())

    def _read_resting(self, symbol: str) -> list[Order]:
        """``symbol``'s open orders right after the bot's own orders changed them: the list,
        plus the bot's protective orders it recorded resting that the list omits but a lookup
        by client id finds open. A venue's list can lag its book (Binance briefly forgets a
        fresh algo order, freqtrade/freqtrade#12681): read alone, a stop just placed was
        missing, the verification took the position for naked, placed another stop, read the
        same lagging list and closed the position at market.

        So are the protective orders whose outcome is unknown (the answer to the stop was
        lost, its lookups failed): one the lagging list omits was taken for no stop and a
        second stop placed beside it. A lookup that fails makes the list unreadable
        (:class:`~bot.errors.AccountUnreadable`), never "no stop"."""
        listed = self.exchange.fetch_open_orders(symbol)
        shown = {o.client_id for o in listed}
        for record in (*self.store.open_orders(), *self.store.unresolved_orders()):
            request = record.request
            if (
                request.symbol != symbol
                or record.client_id in shown
                or not request.purpose.is_protective
            ):
                continue
            found = self._look_up_resting(record)
            if found is not None and found.status is OrderStatus.OPEN:
                listed.append(found)
        return listed

    def _look_up_resting(self, record: OrderRecord) -> Order | None:
        """A protective order the open-orders list omits, looked up by its client id (see
        :meth:`_read_resting`); a record of unknown outcome whose lookup fails: unreadable."""
        try:
            return self.exchange.fetch_order(record.request.symbol, record.client_id)
        except (AuthenticationFailed, AccountUnreadable):
            raise
        except ExchangeError as exc:
            if record.status is OrderStatus.OPEN:
                raise
            raise AccountUnreadable(
                f"{record.request.symbol}: the open-orders answer omits {record.client_id} "
                f"(a {record.request.purpose.name.lower()} of unknown outcome) and its lookup "
                f"by client id failed ({exc}): whether it rests is not known"
            ) from exc

    def _place_then_cancel(
        self,
        symbol: str,
        acct: AccountView,
        place: Sequence[OrderRequest],
        cancel: Sequence[str],
        now: int,
    ) -> None:
        """New before old: an order whose replacement does not rest stays (a stop cancelled
        after its replacement was refused left the position naked, then closed)."""
        failed: set[OrderPurpose] | None = None
        for req in place:
            if self._send(req, acct, now, None) is not SendOutcome.SENT:
                failed = {req.purpose} if failed is None else failed | {req.purpose}
        for cid in cancel:
            if failed is None or _purpose_of(acct.resting.get(symbol, ()), cid) not in failed:
                self._cancel(symbol, cid, now)

    def protect_without_decision(self, symbol: str, acct: AccountView, now: int) -> None:
        """A position without a decision this job (the guard between ticks, or its market
        data missing at a tick) still gets a resting stop.

        The stop comes from the policy's distance on the last statistics seen for the contract,
        around the current mark; the existing stop is kept if there is one (one an older
        version placed without the venue's closing flag is placed again at its trigger, with
        the flag: :meth:`_unflagged`). So is the bot's
        resting take-profit on the side that closes the position: asked for none, the plan
        cancelled it, and a stop cancelled by hand cost the take-profit the policy decided
        until the next decision tick.
        """
        resting = acct.resting.get(symbol, [])
        if symbol in self._silenced:
            return
        held = _resting_stop(resting)
        unflagged = self._unflagged(symbol, resting) if held is not None else frozenset()
        if held is not None and not unflagged:
            return
        qty = acct.qty(symbol)
        closing = OrderSide.SELL if qty > 0 else OrderSide.BUY
        take = _resting_trigger([o for o in resting if o.side is closing], OrderPurpose.TAKE_PROFIT)
        if unflagged:
            # A stop an older version placed without the venue's closing flag: placed again at
            # its own trigger, with the flag, now rather than at a decision (which may never
            # come for it: a stop within the protective tolerance is kept, and a long's
            # trailing stop never moves down in a falling market)
            old = next(o for o in resting if o.client_id in unflagged)
            self.protect(symbol, acct, old.trigger_price, take, now)
            return
        stop = self._wanted_stop(symbol, acct)
        self._event(
            now,
            EventKind.RECONCILE,
            symbol,
            TradingState.ACTIVE,
            f"position {qty} without a resting stop: stop at {stop} (the policy's distance "
            "around the mark, on the last statistics seen)",
        )
        self.protect(symbol, acct, stop, take, now)

    def _wanted_stop(self, symbol: str, acct: AccountView) -> Decimal:
        """The policy's stop around the current mark, from the last statistics seen."""
        snap = self._last_snapshot.get(symbol)
        qty = acct.qty(symbol)
        mark = acct.marks[symbol]
        sign = 1 if qty > 0 else -1
        if snap is not None:
            dist = distance(self.policy.stop_loss.kind, self.policy.stop_loss.distance, snap, mark)
        else:
            dist = mark * FALLBACK_STOP
        return self.instruments[symbol].stop_price(mark - sign * dist, sign)

    # -- the state database unavailable ----------------------------------------------------------

    def protect_without_store(self) -> dict[str, str]:
        """A job failed because the state database cannot be written (or read): a stop for
        each position of the bot's its resting stops do not cover whole, sent without a record.

        The protection invariant outranks "the intent is persisted before it is sent" for this
        one kind of order: a reduce-only or close-position stop cannot add exposure, so a
        duplicate of it costs nothing, while a position the job opened just before the store
        failed had no stop for the whole outage (docs/architecture.md, Invariants). Nothing
        else is sent: no entry or increase, no cancel (a working stop cancelled unrecorded is
        one the next reconcile cannot account for). A contract with a stop resting (the bot's,
        one by hand, valid or not) is left alone: no order every minute of the outage.

        Only the exchange is read: the store is neither written nor read (a PostgreSQL server
        down fails its reads too). The bot's positions are those the last reconcile that
        completed found its own, and those of contracts an order that can add exposure was sent
        to since (the job that opened a position and failed recording its fill). The stop is
        the contract's last decision's while it is valid for the position as held now, else
        the policy's placement around the mark (:meth:`_wanted_stop`); secured and sized by
        the same code as every stop, and passed through the risk gate. The orders sent are
        kept in memory until :meth:`record_unrecorded` writes them, and named in the result
        (contract -> what was done) for the runner's alert."""
        now = self.clock.now_ms()
        self._tick_ms = now
        self._tick_mono_ms = monotonic_ms(self.clock)
        # Client ids of the job's time, after every one this process made in that second: the
        # store cannot be asked which are taken.
        self._n = self._id_high if now // 1000 == self._id_second else 0
        own = [s for s in self.reconciler.listed if s in self._managed or s in self._entered]
        own = [s for s in own if s not in self._silenced]
        if not own:
            return {}
        listed = self.reconciler.listed
        positions = self.exchange.fetch_positions(listed)
        held = [s for s in own if s in positions and positions[s].is_open]
        if not held:
            return {}
        balance = self.exchange.fetch_balance()
        marks = {s: self.exchange.fetch_mark_price(s) for s in listed}
        acct = AccountView(balance.wallet, dict(positions), {}, marks, available=balance.available)
        done: dict[str, str] = {}
        for sym in held:
            try:
                note = self._protect_without_store(sym, acct, now)
            except ExchangeError as exc:  # one contract's read holds back no other's stop
                note = f"no stop placed: {type(exc).__name__}: {exc}"
            if note is not None:
                done[sym] = note
        return done

    def _protect_without_store(self, sym: str, acct: AccountView, now: int) -> str | None:
        """:meth:`protect_without_store` for one held contract: what was done (``None``: its
        stops protect it, nothing to do).

        Protected is what the verification means by it (:meth:`_gap`): valid stops on the
        closing side covering the whole position. A stop of the size before an increase whose
        fill the database could not record covers part of it only (on a venue of sized stops,
        Bybit): the position gets a whole stop beside it, the old one cancelled once the
        database is back (a reduce-only stop too many closes nothing twice)."""
        pos = acct.positions[sym]
        resting = acct.resting[sym] = self._resting_without_store(sym)
        gap = self._gap(pos, acct)
        if gap is None:
            return None
        inst = self.instruments[sym]
        stop = self._stop_without_store(pos, acct)
        if stop is None:
            return (
                f"position {plain(pos.qty)} without a stop: no stop can rest between mark "
                f"{plain(acct.marks[sym])} and the liquidation price"
            )
        plan = plan_protection(
            sym,
            pos.qty,
            stop,
            None,
            resting,
            ZERO,
            self._new_id_factory(sym, look_up=False),
            instrument=inst,
            close_position=close_position_stops(self.exchange.close_position_stops, pos, resting),
            still_protects=still_protects(inst, pos, acct, self.instruments),
        )
        # The stop alone: the plan's cancels (orphans, take-profits) wait for the store.
        stops = [r for r in plan.place if r.purpose is _STOP_LOSS and not r.can_add_exposure]
        if not stops:
            # Only a cancel first could mend it (Binance keeps one close-position stop a side,
            # and a position off the step has no part another stop could bridge): said, so
            # the owner is alerted, never taken for protected.
            return (
                f"position {plain(pos.qty)}: {gap}; no stop can be placed without cancelling "
                "one, which waits for the database: act on the exchange by hand"
            )
        memory = self._memory  # (as the last job read it: the store is not read now)
        state = memory.state if memory is not None else _HALTED
        notes = []
        for req in stops:
            with self._lock:
                verdict = self.gate.check(req, self._order_context(req, acct, now, None, state))
            if isinstance(verdict, Denied):
                notes.append(f"stop {req.client_id} denied by the risk gate: {verdict.reason}")
                continue
            try:
                order = self.exchange.place_order(req)
            except OutcomeUnknown as exc:
                sent = UnrecordedSend(req, now, OrderStatus.UNKNOWN, None, str(exc))
            except ExchangeError as exc:
                sent = UnrecordedSend(req, now, OrderStatus.REJECTED, None, str(exc))
            else:
                sent = UnrecordedSend(req, now, order.status, order, None)
            self._unrecorded.append(sent)
            notes.append(sent.describe(pos.qty))
        return "; ".join(notes)

    def _resting_without_store(self, sym: str) -> list[Order]:
        """``sym``'s open orders, with the stops sent earlier in the outage that the list
        omits but a lookup by client id finds open (a lagging list: see _read_resting)."""
        resting = self.exchange.fetch_open_orders(sym)
        listed = {o.client_id for o in resting}
        for sent in self._unrecorded:
            cid = sent.request.client_id
            if sent.request.symbol == sym and cid not in listed and sent.may_rest:
                found = self.exchange.fetch_order(sym, cid)
                if found is not None and found.is_open:
                    resting.append(found)
        return resting

    def _stop_without_store(self, pos: Position, acct: AccountView) -> Decimal | None:
        """The stop for ``pos``: the contract's last decision's while it is valid for the
        position as held now, else the policy's placement around the mark; secured within
        the policy's liquidation buffer, or, when that leaves no room, anywhere strictly
        before the liquidation price (the verification's last resort: a stop there is better
        than none for the rest of the outage). ``None``: no stop can rest."""
        sym = pos.symbol
        inst = self.instruments[sym]
        decided = self._decided_stops.get(sym)
        if decided is not None and is_valid_stop(
            inst,
            sign=pos.sign,
            mark=acct.marks[sym],
            trigger=decided,
            liquidation=liquidation_of_held(inst, pos, acct, self.instruments),
        ):
            wanted = decided
        else:
            wanted = self._wanted_stop(sym, acct)
        stop = self._secure_stop(pos, acct, wanted)
        return stop if stop is not None else self._secure_stop(pos, acct, wanted, ZERO)

    def record_unrecorded(self) -> None:
        """Record the stops :meth:`protect_without_store` sent (intent and outcome), before
        anything else the first job that can write does: the reconcile then knows them as the
        bot's (a fill, a cancel, an orphan). Raises as the store does while it cannot."""
        if not self._unrecorded:
            return
        now = self.clock.now_ms()
        while self._unrecorded:
            sent = self._unrecorded[0]
            req = sent.request
            if self.store.get_order(req.client_id) is None:  # (a retry after a partial record)
                self.store.save_intent(req, sent.ts_ms)
            self.store.update_order(
                req.client_id, sent.status, sent.ts_ms, order=sent.order, error=sent.error
            )
            self._event(
                now,
                EventKind.RECONCILE,
                req.symbol,
                TradingState.ACTIVE,
                f"{sent.describe(None)} at {utc_text(sent.ts_ms)} while the state database "
                "could not be written: recorded now",
            )
            self._unrecorded.pop(0)

    # -- protection: stops through the risk layer, verification and escalation ------------------

    def _buffer(self, symbol: str, mark: Decimal) -> Decimal:
        """The liquidation buffer in price units (volatility units of the last statistics)."""
        snap = self._last_snapshot.get(symbol)
        if snap is None:
            return ZERO
        return self.policy.liquidation.buffer_vol_units * daily_vol_unit(snap, mark)

    def secure(self, d: Decision, acct: AccountView) -> Decision:
        """The decision with a stop the risk layer accepts (size cut until one exists)."""
        if d.target_qty == 0 or d.symbol not in acct.marks:
            return d
        mark = acct.marks[d.symbol]
        return secure_decision(
            d,
            acct,
            self.instruments,
            mark=mark,
            buffer=self._buffer(d.symbol, mark),
            margin_mode=self.margin_mode,
            entry_slippage=self.limits.stop_slippage,
        )

    def _secure_stop(
        self, pos: Position, acct: AccountView, wanted: Decimal, buffer: Decimal | None = None
    ) -> Decimal | None:
        mark = acct.marks.get(pos.symbol)
        if mark is None:
            return None
        return secure_stop(
            self.instruments[pos.symbol],
            pos,
            acct,
            self.instruments,
            wanted=wanted,
            buffer=self._buffer(pos.symbol, mark) if buffer is None else buffer,
        )

    def ensure_protected(self, acct: AccountView, now: int) -> list[str]:
        """Step 7: every managed position has a valid resting stop, or it is closed.

        A gap is retried once with a fresh mark (a replacement stop, no tolerance); a position
        above the venue's largest market order is then cut to it (no one stop can cover more);
        a position still naked after that is closed with reduce-only market orders and recorded
        as an incident with the venue's last refusal. Returns the contracts that had to be
        closed.

        Every contract is verified: a read that fails in one contract's check (its fresh mark,
        its open orders) holds back no other's; the first such error is raised once all were
        checked (the job then fails as unreadable, as it would have).
        """
        closed: list[str] = []
        first: Exception | None = None
        for sym in self.symbols:
            try:
                found = self._ensure_one(sym, acct, now)
            except Exception as exc:  # the other contracts are still verified; raised below
                # (a check cut short proves no streak over: its count is left as it is)
                if first is None:
                    first = exc
                continue
            if found == "closed":
                closed.append(sym)
                self._protection_streaks[sym] = self._protection_streaks.get(sym, 0) + 1
            elif found == "protected":
                self._protection_streaks.pop(sym, None)
        if closed:
            self._count_protection(now, closed)
        if first is not None:
            raise first
        return closed

    @property
    def protection_failures(self) -> int:
        """The longest streak of checks in a row that had to close one contract's naked
        position (0: none)."""
        return max(self._protection_streaks.values(), default=0)

    def _cancel_orphans_on_foreign(self, sym: str, acct: AccountView, now: int) -> None:
        """The bot's own protective orders resting on a contract whose position is not the
        bot's are orphans of a position of its that is gone (the take-profit beside a stop that
        filled while no bot ran, before the trader opened one by hand): cancelled, each with an
        event, so no order of the bot's acts on the trader's position."""
        kept = []
        for o in acct.resting.get(sym, []):
            purpose = parse_purpose(o.client_id, self.account)
            if purpose is None or not purpose.is_protective:
                kept.append(o)
                continue
            self._event(
                now,
                EventKind.RECONCILE,
                sym,
                TradingState.ACTIVE,
                f"cancel orphan {purpose} {o.client_id}: the position on the contract is not "
                "the bot's (the one this order protected is gone)",
            )
            self._cancel(sym, o.client_id, now)
        if len(kept) != len(acct.resting.get(sym, [])):
            acct.resting[sym] = kept
            acct.changed()

    def _ensure_one(self, sym: str, acct: AccountView, now: int) -> _Checked:
        """:meth:`ensure_protected` for one contract: whether it found a managed position,
        protected (``"protected"``) or closed for want of a stop (``"closed"``); ``"none"``:
        no position it manages, or one on a market it sends no order to."""
        pos = acct.positions.get(sym)
        if sym in self.reconciler.foreign and sym not in self._silenced:
            self._cancel_orphans_on_foreign(sym, acct, now)
        if sym in self.reconciler.foreign or pos is None or not pos.is_open:
            self._remainders.pop(sym, None)
            if sym in self.unprotected_since or sym in self._venue_errors:
                self._protected(sym, now)  # (a no-op for any other contract)
            return "none"
        gap = self._gap(pos, acct)
        if gap is None:
            self._protected_or_remainder(pos, acct, now)
            return "protected"
        if sym in self._silenced:
            self._stranded(sym, now, gap)
            return "none"
        acct.marks[sym] = self.exchange.fetch_mark_price(sym)
        acct.changed()
        take = _resting_trigger(acct.resting.get(sym, []), OrderPurpose.TAKE_PROFIT)
        self.protect(sym, acct, self._wanted_stop(sym, acct), take, now, tolerance=ZERO)
        gap = self._gap(pos, acct)
        if gap is not None and sym in self._silenced:  # the venue refused the stop
            self._stranded(sym, now, gap)
            return "none"
        cut = self._cut_to_largest(pos, acct, now) if gap is not None else None
        if cut is not None:
            pos = cut
            self.protect(sym, acct, self._wanted_stop(sym, acct), take, now, tolerance=ZERO)
            gap = self._gap(pos, acct)
        if gap is None:
            self._protected_or_remainder(pos, acct, now)
            return "protected"
        self._unprotected(sym, now, gap)
        # Last resort, before the close: a stop anywhere strictly between the mark and the
        # liquidation price, the policy's buffer waived. The close may leave a part no order can
        # trade (off the step, below the minimum), which a close-position stop still covers, and
        # the venue may refuse the close: the position then rests protected, not naked. A stop
        # left behind by a close that filled is an orphan, cancelled below. Whatever becomes of
        # it, the close is sent.
        try:
            self.protect(
                sym, acct, self._wanted_stop(sym, acct), take, now, tolerance=ZERO, buffer=ZERO
            )
        except ExchangeError as exc:
            reason = f"the last-resort stop failed: {type(exc).__name__}: {exc}"
            self._event(now, EventKind.RECONCILE, sym, TradingState.ACTIVE, reason)
        self._close_naked(pos, acct, now)
        return "closed"

    def _cut_to_largest(self, pos: Position, acct: AccountView, now: int) -> Position | None:
        """A position above the venue's largest market order cannot have one stop sized to it
        (the venue refuses the stop): cut it to that size with reduce-only orders within it,
        rather than close it all. The position as held after the cut; ``None`` when it was not
        above the largest order, or is gone."""
        inst = self.instruments[pos.symbol]
        largest = inst.largest_order
        if largest is None or abs(pos.qty) <= largest:
            return None
        sym = pos.symbol
        self._event(
            now,
            EventKind.RECONCILE,
            sym,
            TradingState.ACTIVE,
            f"position {pos.qty} above the exchange's largest market order {largest}: no one "
            f"stop can cover it; cut to {largest} (reduce-only)",
        )
        side = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY
        size = abs(pos.qty)
        # On the step, at least the minimum order, and at most what orders can trade of a
        # position off the step (Instrument.reduction).
        cut = inst.reduction(size, size - largest)
        for req in market_orders(self._id_factory(sym), sym, side, OrderPurpose.REDUCE, cut, inst):
            self._send(req, acct, now, None)
        self._read_positions_again(acct, now)
        acct.changed()
        held = acct.positions.get(sym)
        return held if held is not None and held.is_open else None

    def _read_positions_again(self, acct: AccountView, now: int) -> None:
        """After orders were sent: the positions as the exchange holds them now, noted by the
        reconciler (its view of what the bot holds moves with them)."""
        acct.positions = dict(self.reconciler.read_positions(now, acct.resting))
        self.reconciler.note_positions(acct.positions)

    def _gap(self, pos: Position, acct: AccountView) -> str | None:
        inst = self.instruments[pos.symbol]
        return protection_gap(
            inst,
            pos,
            acct,
            self.instruments,
            acct.resting.get(pos.symbol, []),
            close_position_stops=close_position_stops(
                self.exchange.close_position_stops, pos, acct.resting.get(pos.symbol, [])
            ),
        )

    def _protected_or_remainder(self, pos: Position, acct: AccountView, now: int) -> None:
        """``pos`` is protected as well as the venue allows: the incident (if any) is over,
        unless part of it stays unprotected because no order can carry that part (off the
        venue's quantity step, on a venue without close-position stops). That part is an open
        incident, recorded when it appears or changes, never silent."""
        sym = pos.symbol
        inst = self.instruments[sym]
        if inst.orderable(abs(pos.qty)) or close_position_stops(
            self.exchange.close_position_stops, pos, acct.resting.get(sym, [])
        ):
            # (the usual case, one comparison: an order can cover it all, so the verification
            # passed only because its stops do)
            cover = None
        else:
            cover = stop_cover(inst, pos, acct, self.instruments, acct.resting.get(sym, []))
        if cover is None or cover.complete:
            self._remainders.pop(sym, None)
            if sym in self.unprotected_since or sym in self._venue_errors:
                self._protected(sym, now)
            return
        if self._remainders.get(sym) == cover.uncovered:
            return  # recorded already, unchanged
        self._remainders[sym] = cover.uncovered
        since = self.unprotected_since.setdefault(sym, now)
        self._event(
            now,
            EventKind.UNPROTECTED,
            sym,
            TradingState.ACTIVE,
            f"{'partly ' if cover.covered else ''}unprotected: position {plain(pos.qty)}, "
            f"{cover.describe()}; the "
            f"unprotected {plain(cover.uncovered)} is off the exchange's quantity step "
            f"{inst.step_size} (minimum {inst.min_qty}) and "
            + (
                "a close-position stop placed by hand that does not count (see the "
                "runbook) takes the exchange's one per side"
                if self.exchange.close_position_stops
                else "the exchange takes no close-position stop"
            )
            + ": no order can protect or close it; close it on the exchange by hand; "
            f"unprotected since {utc_text(since)}",
        )

    def _close_naked(self, pos: Position, acct: AccountView, now: int) -> None:
        side = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY
        inst = self.instruments[pos.symbol]
        new_id = self._id_factory(pos.symbol)
        held = abs(pos.qty)
        part = held if inst.orderable(held) else inst.orderable_part(held)
        if part != held:
            self._event(
                now,
                EventKind.RECONCILE,
                pos.symbol,
                TradingState.ACTIVE,
                f"closing {part} of {pos.qty}: {held - part} is off the exchange's quantity "
                f"step {inst.step_size} (minimum {inst.min_qty}); no order can close it",
            )
        if part > 0:  # (below the minimum there is no order to build: none of size 0)
            for req in market_orders(new_id, pos.symbol, side, OrderPurpose.CLOSE, part, inst):
                self._send(req, acct, now, None)
        self._read_positions_again(acct, now)
        acct.resting[pos.symbol] = self._read_resting(pos.symbol)
        acct.changed()
        if acct.qty(pos.symbol) == 0:
            # the position is gone: its protective orders are orphans now
            self.protect(pos.symbol, acct, None, None, now)

    def _unprotected(self, symbol: str, now: int, gap: str) -> None:
        since = self.unprotected_since.setdefault(symbol, now)
        venue = self._venue_errors.get(symbol)
        self._event(
            now,
            EventKind.UNPROTECTED,
            symbol,
            TradingState.ACTIVE,
            f"{UNPROTECTED}: {gap}; unprotected since {utc_text(since)}"
            + (f"; venue: {venue}" if venue else "")
            + "; closing the position (reduce-only market)",
        )

    def _stranded(self, symbol: str, now: int, gap: str) -> None:
        """A position without a valid stop on a market the venue takes no order on: not
        closed (the close would be refused as the stop was; the venue settles the position),
        recorded once as an open incident (alerted), ended like any other."""
        if symbol in self.unprotected_since:
            return
        self.unprotected_since[symbol] = now
        venue = self._venue_errors.get(symbol)
        self._event(
            now,
            EventKind.UNPROTECTED,
            symbol,
            TradingState.ACTIVE,
            f"{UNPROTECTED}: {gap}; {self.restricted[symbol].reason}: no order is sent on it "
            + (f"(venue: {venue}); " if venue else "")
            + "not closed by the bot: close it on the exchange if the venue lets you, else the "
            "venue settles it",
        )

    def _protected(self, symbol: str, now: int) -> None:
        since = self.unprotected_since.pop(symbol, None)
        self._venue_errors.pop(symbol, None)
        if since is not None:
            self._event(
                now,
                EventKind.PROTECTED,
                symbol,
                TradingState.ACTIVE,
                f"incident over: the position has a valid stop or is closed (unprotected "
                f"since {utc_text(since)}, {(now - since) // 1000} s)",
            )

    def _count_protection(self, now: int, closed: list[str]) -> None:
        """After a check that had to close ``closed``: ``reducing`` once one contract's streak
        reaches the limit. A contract's streak ends only at a check that finds its position
        protected: one that found no position there (the guard between a close and the next
        entry, flat because the bot had just closed it) says nothing about its stops. Reset
        there, a bot whose every stop the venue refused (Binance -4045, the account's cap of
        conditional orders) opened, failed to protect and closed at market every decision,
        never reaching ``reducing``."""
        streak = max(self._protection_streaks.get(sym, 0) for sym in closed)
        if streak >= self.limits.max_protection_failures:
            self._to_reducing(
                now,
                f"{UNPROTECTED}: {streak} checks in a row found a position without a valid "
                f"stop ({', '.join(closed)})",
            )

    # -- unreadable account ----------------------------------------------------------------------

    def _unreadable(self, now: int, tick_id: str, exc: AccountUnreadable) -> TickResult:
        """Nothing is sent: record, count, and move to reducing after too many in a row."""
        self.unreadable_streak += 1
        memory = self._risk_memory()
        state = memory.state if memory is not None else TradingState.ACTIVE
        self._event(
            now,
            EventKind.UNREADABLE,
            None,
            state,
            unreadable_reason(self.unreadable_streak, exc),
        )
        if self.unreadable_streak >= self.limits.max_unreadable_reads:
            state = self._to_reducing(
                now, f"{UNREADABLE}: {self.unreadable_streak} reads in a row ({exc})"
            )
        equity = self.last_account.equity() if self.last_account is not None else ZERO
        return TickResult(tick_id, now, state, equity, unreadable=str(exc))

    def _readable(self, now: int) -> None:
        if self.unreadable_streak == 0:
            return
        streak, self.unreadable_streak = self.unreadable_streak, 0
        memory = self._risk_memory()
        state = memory.state if memory is not None else TradingState.ACTIVE
        self._event(now, EventKind.READABLE, None, state, readable_reason(streak))
        if (
            memory is not None
            and memory.state is TradingState.REDUCING
            and memory.state_reason.startswith(UNREADABLE)
        ):
            memory = set_state(memory, TradingState.ACTIVE, "account readable again", sticky=False)
            self._save_memory(
                memory, state_event(now, memory, "reducing -> active: account readable")
            )

    def _to_reducing(self, now: int, reason: str) -> TradingState:
        memory = self._risk_memory()
        if memory is None or memory.state is not TradingState.ACTIVE:
            return memory.state if memory is not None else TradingState.ACTIVE
        memory = set_state(memory, TradingState.REDUCING, reason, sticky=False)
        self._save_memory(memory, state_event(now, memory, f"active -> reducing: {reason}"))
        return memory.state

    # -- 6. size -------------------------------------------------------------------------------

    def resize(
        self,
        d: Decision,
        acct: AccountView,
        snap: MarketSnapshot | None,
        state: TradingState,
        now: int,
        result: TickResult,
    ) -> None:
        pos = acct.positions.get(d.symbol)
        qty = pos.qty if pos is not None else ZERO
        if snap is not None:
            price = snap.last_price
        elif pos is not None and d.symbol in acct.marks and _cuts(d.target_qty, qty):
            # A hedge cut decided without the leg's statistics (engine/hedging.py): a
            # reduction is sized at the mark, as a flatten's closes are.
            price = acct.marks[d.symbol]
        else:
            return
        setting = pos.leverage if pos is not None else self._flat_setting(d.symbol, state, now)
        if setting is None:
            return
        plan = plan_size(
            d,
            qty,
            setting,
            self.instruments[d.symbol],
            price,
            # A position above what the loss budget allows is cut even below the tolerance.
            ZERO
            if d.symbol in self._budget_cut and abs(qty) > abs(d.target_qty)
            else self.policy.orders.rebalance_tolerance,
            self._id_factory(d.symbol),
            self._floor(d, acct),
            kept_whole=self._kept_whole(pos, acct),
        )
        self._note_size_plan(d.symbol, plan, state, now)
        if d.target_qty == 0:
            self._note_uncarried(d.symbol, qty, plan, now)  # (under a halt that flattens)
        if not (plan.reduce or plan.increase):
            return
        outcomes = [self._send(req, acct, now, snap) for req in plan.reduce]
        for outcome in outcomes:
            result_count(result, outcome)
        if plan.leverage is not None and plan.increase:
            try:
                self.exchange.set_leverage(d.symbol, plan.leverage)
            except ExchangeError as exc:
                self._event(
                    now, EventKind.REJECTED, d.symbol, state, f"set leverage {plan.leverage}: {exc}"
                )
                return
            setting = Decimal(plan.leverage)
        for req in plan.increase:
            outcomes.append(self._send(req, acct, now, snap))
            result_count(result, outcomes[-1])
        # The hedge cooldown runs between two changes: orders all denied by the gate or refused
        # by the venue changed nothing, and a cooldown started by them would keep the book
        # unhedged long after the refusal is gone. An unknown outcome may have traded: counted.
        if (
            self.hedge is not None
            and d.symbol in self.hedge_symbols
            and any(o not in _REFUSED for o in outcomes)
        ):
            paused = self.hedge.note_change(now)  # the cooldown runs from the last change
            if paused is not None:
                self._event(now, COOLDOWN_EVENT, d.symbol, state, paused)
        self._protect_after_orders(d, acct, now, setting, [*plan.reduce, *plan.increase])

    def _kept_whole(self, pos: Position | None, acct: AccountView) -> bool:
        """Whether ``pos`` is one no order can cover whole (off the venue's step or below its
        minimum, no close-position stop for it) that its valid resting stops cover whole: a
        stop kept from before (:func:`bot.engine.planner._protects_more`), which an increase
        that leaves the position off the step would have replaced by a smaller one
        (:func:`plan_size` ``kept_whole``)."""
        if pos is None or not pos.is_open:
            return False
        inst = self.instruments[pos.symbol]
        resting = acct.resting.get(pos.symbol, [])
        if inst.orderable(abs(pos.qty)) or close_position_stops(
            self.exchange.close_position_stops, pos, resting
        ):
            return False  # (the usual case, one comparison)
        return stop_cover(inst, pos, acct, self.instruments, resting).complete

    def _note_size_plan(self, sym: str, plan: SizePlan, state: TradingState, now: int) -> None:
        """Record what the sizing plan trades other than the decision says: a remainder no
        order can carry (once per remainder), or a reduction widened to the venue's minimum
        order or to the whole position (:meth:`Instrument.reduction`)."""
        if plan.remainder and self._size_remainders.get(sym) != plan.remainder:
            self._size_remainders[sym] = plan.remainder  # recorded once per remainder
            for note in plan.notes:
                self._event(now, EventKind.RECONCILE, sym, state, note)
        elif plan.rounded:
            self._event(now, EventKind.RECONCILE, sym, state, plan.rounded)
        if not plan.held_back:
            self._held_back.pop(sym, None)
        elif self._held_back.get(sym) != plan.held_back:
            self._held_back[sym] = plan.held_back  # recorded once while it holds, not each tick
            self._event(now, EventKind.RECONCILE, sym, state, plan.held_back)

    def _protect_after_orders(
        self,
        d: Decision,
        acct: AccountView,
        now: int,
        setting: Decimal,
        sent: Sequence[OrderRequest],
    ) -> None:
        """The account as the orders of ``d`` left it, then its protection.

        When the venue's positions cannot be read right after the orders, or its answer holds
        another position than the fills just confirmed give (an answer older than the fills:
        a positions endpoint can trail the order's own answer), the position the fills give
        gets its stop now (``_protect_by_fills``) and the tick fails as unreadable: the next
        reading decides. Before, the new position waited for the next guard without a stop,
        or with one sized to the position it replaced."""
        before = acct.positions.get(d.symbol)
        given = self._given_by_fills(before, sent)
        expected = given[0] if isinstance(given, tuple) else None
        self._read_after_orders(d, acct, now, before, setting, given, sent)
        if expected is not None and acct.qty(d.symbol) != expected:
            # Most often an answer a moment older than the fills: once more after a pause.
            self.clock.sleep(TRAILING_POSITIONS_WAIT_S)
            self._read_after_orders(d, acct, now, before, setting, given, sent)
        read = acct.qty(d.symbol)
        if expected is not None and read != expected:
            # Back to the position held before the orders: what the estimate starts from.
            others = {s: p for s, p in acct.positions.items() if s != d.symbol}
            acct.positions = others if before is None else {**others, d.symbol: before}
            acct.changed()
            why = f"positions answer holds {read}, the fills give {expected}"
            self._protect_by_fills(d, acct, now, before, setting, given, why, read=read)
            raise AccountUnreadable(
                f"{d.symbol}: the positions answer holds {read} but the orders just filled "
                f"give {expected} (an answer older than the fills, or a change outside the "
                "bot's orders): protected on the fills, read again at the next job"
            )
        try:
            balance = self.exchange.fetch_balance()
        except ExchangeError:  # AccountUnreadable too
            # The balance only sizes later increases; the position just changed needs its
            # stop now, on the wallet read at reconcile (the job then fails as it would).
            acct.changed()
            self.protect(d.symbol, acct, d.stop_loss, d.take_profit, now)
            raise
        acct.wallet, acct.available = balance.wallet, balance.available
        acct.changed()
        self._wallet_behind = False  # (the positions were read again before the wallet)
        self.protect(d.symbol, acct, d.stop_loss, d.take_profit, now)

    def _read_after_orders(
        self,
        d: Decision,
        acct: AccountView,
        now: int,
        before: Position | None,
        setting: Decimal,
        given: tuple[Decimal, Decimal] | str,
        sent: Sequence[OrderRequest],
    ) -> None:
        """The positions again after ``d``'s orders; unreadable: protect on the fills, raise.

        An order whose fill is not known (its answer was lost) is first looked up by its
        client id, which another endpoint answers: known, its fill sizes the stop now instead
        of at the next reading, about a minute later in the move the entry was sized on."""
        try:
            self._read_positions_again(acct, now)
        except AuthenticationFailed:
            raise
        except ExchangeError:  # AccountUnreadable too
            if isinstance(given, str):
                given = self._settle_sent(before, sent, now, given)
            self._protect_by_fills(d, acct, now, before, setting, given, "positions unreadable")
            raise

    def _given_by_fills(
        self, before: Position | None, sent: Sequence[OrderRequest]
    ) -> tuple[Decimal, Decimal] | str:
        """(qty, entry) the fills of ``sent`` give from ``before``; or the first order whose
        fill is not known, named."""
        fills = self._fills_of(sent)
        return position_after_fills(before, fills) if isinstance(fills, list) else fills

    def _settle_sent(
        self, before: Position | None, sent: Sequence[OrderRequest], now: int, unknown: str
    ) -> tuple[Decimal, Decimal] | str:
        """``sent``'s orders of unknown or open state looked up by client id, then what their
        fills give; a lookup that fails leaves the order unknown (``unknown`` and why)."""
        for req in sent:
            record = self.store.get_order(req.client_id)
            if record is None or not _fill_unknown(record):
                continue
            try:
                self.reconciler.settle(record, now)
            except AuthenticationFailed:
                raise
            except ExchangeError as exc:
                return f"{unknown}; its lookup failed too: {exc}"
        return self._given_by_fills(before, sent)

    def _fills_of(self, sent: Sequence[OrderRequest]) -> list[tuple[Decimal, Decimal]] | str:
        """The signed fills ``(qty change, price)`` of ``sent`` as recorded from the venue's
        answers, in order; or the first order whose fill is not known (an unknown outcome, an
        order still open), named. An order the gate denied was never sent and has no record."""
        fills: list[tuple[Decimal, Decimal]] = []
        for req in sent:
            record = self.store.get_order(req.client_id)
            if record is None:
                continue
            if _fill_unknown(record):
                return f"{req.client_id} ({record.status})"
            if record.filled > 0 and record.average_price is not None:
                fills.append((req.side.sign * record.filled, record.average_price))
        return fills

    def _protect_by_fills(
        self,
        d: Decision,
        acct: AccountView,
        now: int,
        before: Position | None,
        setting: Decimal,
        given: tuple[Decimal, Decimal] | str,
        why: str,
        *,
        read: Decimal | None = None,
    ) -> None:
        """The positions cannot be trusted right after orders filled (``why``): protect the
        position the fills give (``given``: its quantity and entry, from
        :func:`~bot.engine.protection.position_after_fills`).

        ``read``: the quantity the positions answer holds instead. Larger than the fills give
        on the same side, the stop covers it: the venue may hold more than the bot's fills
        explain (an order of unknown outcome that executed, a fill a lost answer hid), and a
        stop sized to the fills left the rest naked until the next job, while a reduce-only
        or close-position stop larger than the position cannot open anything.

        The estimate needs every order's outcome: ``given`` naming an order whose fill is not
        known (an unknown outcome, an order still open) leaves it to the next reading. The
        liquidation price is the engine's own (the venue's formula on the fills,
        :func:`~bot.engine.protection.liquidation_after`, from ``acct`` as it was before the
        orders), the stop the decision's, checked against it like any other; the next reading
        replaces both with the venue's.
        """
        if isinstance(given, str):
            self._event(
                now,
                EventKind.RECONCILE,
                d.symbol,
                TradingState.ACTIVE,
                f"{why} after {given}: its fill is not known, the stop waits for the next reading",
            )
            return
        qty, entry = given
        held = before.qty if before is not None else ZERO
        if qty == held or qty == 0:
            # Nothing filled: the stop resting is right. Closed: a reduce-only stop left
            # resting cannot open anything; the next reading cancels it.
            return
        if d.symbol not in acct.marks:
            return  # no mark to check a stop against
        sign = 1 if qty > 0 else -1
        fills_give = qty
        if read is not None and read != held and read * sign > abs(qty):
            # Neither the position before (an answer older than the fills) nor the fills' one,
            # and more on the same side: covered (the part the fills do not explain priced as
            # theirs).
            qty = read
        mode = before.margin_mode if before is not None and before.is_open else self.margin_mode
        kept = abs(held) if before is not None and before.is_open and before.sign == sign else ZERO
        # The price of the part added on top of what was held (the whole position after a flip
        # or from flat): what liquidation_after blends with the held entry.
        added = abs(fills_give) - kept
        added_price = (
            (abs(fills_give) * entry - kept * before.entry_price) / added
            if kept > 0 and added > 0 and before is not None
            else entry
        )
        liquidation = liquidation_after(
            self.instruments[d.symbol],
            acct,
            self.instruments,
            sign=sign,
            qty=abs(qty),
            mark=added_price,
            setting=setting,
            margin_mode=mode,
        )
        estimate = Position(
            symbol=d.symbol,
            qty=qty,
            entry_price=entry,
            leverage=setting,
            margin_mode=mode,
            isolated_margin=abs(qty) * entry / max(setting, ONE)
            if mode is MarginMode.ISOLATED
            else ZERO,
            liquidation_price=liquidation,
        )
        sized = (
            f"stop for the position their fills give ({qty} at {entry:.8g}, estimated "
            f"liquidation {liquidation})"
            if qty == fills_give
            else f"the venue holds more than the fills give ({fills_give}): stop for the "
            f"{qty} it holds (at the fills' {entry:.8g}, estimated liquidation {liquidation}; "
            "a reduce-only stop cannot open anything)"
        )
        self._event(
            now,
            EventKind.RECONCILE,
            d.symbol,
            TradingState.ACTIVE,
            f"{why} after the orders: {sized} until the next reading",
        )
        acct.positions = {**acct.positions, d.symbol: estimate}
        acct.changed()
        try:
            self.protect(d.symbol, acct, d.stop_loss, d.take_profit, now)
        except ExchangeError as exc:  # the open orders unreadable after placing: the next reading
            self._event(
                now,
                EventKind.RECONCILE,
                d.symbol,
                TradingState.ACTIVE,
                f"open orders unreadable after the stop for the estimated position: {exc}",
            )

    def _flat_setting(self, symbol: str, state: TradingState, now: int) -> Decimal | None:
        """A flat contract's leverage setting as the venue holds it; ``None`` (recorded) when
        it cannot be read: that contract takes no order this tick, while the other contracts,
        the verification and the record go on (raised, it failed the whole tick)."""
        try:
            return self.exchange.fetch_leverage(symbol)
        except ExchangeError as exc:
            self._event(
                now,
                EventKind.REJECTED,
                symbol,
                state,
                f"leverage setting unreadable, no order this tick: {exc}",
            )
            return None

    # -- 7. record -----------------------------------------------------------------------------

    def record(
        self,
        tick_id: str,
        now: int,
        acct: AccountView,
        snapshots: dict[str, MarketSnapshot],
        decisions: list[Decision],
        state: TradingState,
    ) -> None:
        records = []
        for d in decisions:
            snap = snapshots.get(d.symbol)
            pos = acct.positions.get(d.symbol)
            if snap is None:
                # A hedge cut decided without this tick's statistics: recorded at the mark
                # with the last volatility seen; none seen since the start (unknown, not
                # zero), its ``hedge`` event is the record.
                last = self._last_snapshot.get(d.symbol)
                if last is None or d.symbol not in acct.marks:
                    continue
                mark, vol = acct.marks[d.symbol], last.volatility
            else:
                mark, vol = snap.mark_price, snap.volatility
            records.append(
                DecisionRecord(
                    tick_id=tick_id,
                    ts_ms=now,
                    decision=d,
                    current_qty=pos.qty if pos is not None else ZERO,
                    current_leverage=pos.leverage if pos is not None else ZERO,
                    mark_price=mark,
                    volatility=vol,
                )
            )
        self._record_account(now, acct, state, records)

    def record_reading(self, now: int, acct: AccountView) -> None:
        """A guard's last step: the positions and equity it read (after its own closes), as a
        reading that is not a decision, when they tell something new since the last record
        (:func:`bot.engine.readings.worth_recording`). The status surfaces then show the
        account as the guard found it, not as the last tick left it: a position its stop
        closed since shown flat, the loss counted. At the job's time, after its orders: the
        orders a start counts on top of the recorded positions are those sent after them
        (``StorePort.filled_since``).

        Not while an order of the bot's sent by this job (a close, a reduction, an entry) has
        an unknown outcome: the venue may have executed it, so the reading may not hold its
        fill, and a start counts only the orders sent after a record on top of it; the next job
        that settles the order records instead (else a flatten close whose answer was lost,
        settled filled by a job that then died, was named an exit outside the bot at the
        restart, with its day's cooldown)."""
        if any(
            r.created_ms >= now and not r.request.purpose.is_protective
            for r in self.store.unresolved_orders()
        ):
            return
        memory = self._risk_memory()
        state = memory.state if memory is not None else TradingState.ACTIVE
        smallest = min(self.limits.daily_loss, self.limits.max_drawdown)
        if worth_recording(self._recorded, reading_of(acct, now, state), smallest):
            self._record_account(now, acct, state)

    def _record_account(
        self,
        now: int,
        acct: AccountView,
        state: TradingState,
        decisions: Sequence[DecisionRecord] | None = None,
    ) -> None:
        """Record the open positions (with their marks) and the equity of ``acct``, with a
        tick's ``decisions`` (None: a guard's reading, no decision), in one write."""
        equity = acct.equity()
        self.store.record_tick(
            decisions or [],
            [p for p in acct.positions.values() if p.is_open],
            EquitySnapshot(
                ts_ms=now,
                wallet=acct.wallet,
                unrealized_pnl=equity - acct.wallet,
                equity=equity,
                state=state,
                decision=decisions is not None,
            ),
            acct.marks,
        )
        self._recorded = reading_of(acct, now, state)

    # -- helpers -------------------------------------------------------------------------------

    def _sleeve(self, equity: Decimal) -> Decimal:
        """Equity per traded contract (the hedge legs are sized on the whole equity)."""
        return equity / self._sleeves

    def _risk_memory(self) -> RiskMemory | None:
        if not self._memory_read:
            self._memory = self.store.load_risk_memory()
            self._memory_read = True
        return self._memory

    def _save_memory(self, memory: RiskMemory, event: RiskEvent | None = None) -> None:
        """Save the risk memory, with the state event that says why it changed (one write)."""
        self.store.save_risk_memory(memory, event)
        self._memory, self._memory_read = memory, True

    def _id_factory(self, symbol: str) -> IdFactory:
        """The contract's client-id factory (built once: it reads the tick's time and sequence
        from the engine at each call)."""
        factory = self._id_factories.get(symbol)
        if factory is None:
            factory = self._id_factories[symbol] = self._new_id_factory(symbol)
        return factory

    def _new_id_factory(self, symbol: str, *, look_up: bool = True) -> IdFactory:
        """Client ids of the tick's time and the next sequence number; each looked up in the
        store (an id a job of the same second made is not made again), unless ``look_up`` is
        false (the store cannot be read: the ids this process made in that second are
        skipped instead, :attr:`_id_high`)."""

        def new_id(purpose: OrderPurpose) -> str:
            with self._lock:  # contracts may be protected on several threads
                self._n += 1
                while True:
                    cid = make_client_id(self.account, purpose, symbol, self._tick_ms, self._n)
                    if not look_up or self.store.get_order(cid) is None:
                        second = self._tick_ms // 1000
                        if second != self._id_second:
                            self._id_second, self._id_high = second, self._n
                        elif self._n > self._id_high:
                            self._id_high = self._n
                        return cid
                    self._n += 1

        return new_id

    def _send(
        self, req: OrderRequest, acct: AccountView, now: int, snap: MarketSnapshot | None
    ) -> SendOutcome:
        """Gate, persist the intent, send. A close under a halt that flattens is noted, with
        why it failed if it did: the position it leaves open is an incident
        (:meth:`note_unflattened`)."""
        memory = self._risk_memory()
        state = memory.state if memory is not None else TradingState.ACTIVE
        outcome, failure = self._gate_and_place(req, acct, now, snap, state)
        if state is _HALTED and memory is not None and memory.flatten and req.purpose in _CLOSING:
            self.unflattened.tried(req.symbol, self._jobs, now, failure)
        if outcome not in _REFUSED and not req.purpose.is_protective:
            self._wallet_behind = True  # (an unknown outcome may have traded too)
        return outcome

    def _gate_and_place(
        self,
        req: OrderRequest,
        acct: AccountView,
        now: int,
        snap: MarketSnapshot | None,
        state: TradingState,
    ) -> tuple[SendOutcome, str | None]:
        """:meth:`_send`'s work: the outcome, and why the order did not go through (None when
        it was sent), as recorded in its event."""
        ctx = self._order_context(req, acct, now, snap, state)
        with self._lock:
            verdict = self.gate.check(req, ctx)
        if isinstance(verdict, Denied):
            why = f"{req.client_id}: {verdict.reason}"
            self._event(now, EventKind.DENIED, req.symbol, state, why)
            return SendOutcome.DENIED, f"denied by the risk gate: {why}"
        self.store.save_intent(req, now)
        if req.can_add_exposure:
            # (sent: a position there may be its fill, the bot's own, should the job fail
            # before the next reconcile; see protect_without_store)
            self._entered.add(req.symbol)
        try:
            order = self.exchange.place_order(req)
        except OutcomeUnknown as exc:
            self.store.update_order(req.client_id, OrderStatus.UNKNOWN, now, error=str(exc))
            self._event(now, EventKind.UNKNOWN, req.symbol, state, f"{req.client_id}: {exc}")
            return SendOutcome.UNKNOWN, f"outcome unknown: {req.client_id}: {exc}"
        except ExchangeError as exc:
            self.store.update_order(req.client_id, OrderStatus.REJECTED, now, error=str(exc))
            self._rejected(req, f"{req.client_id}: {exc}", now, state)
            self._note_refusal(req.symbol, exc, now)
            return SendOutcome.REJECTED, f"refused by the venue: {req.client_id}: {exc}"
        fill = self.reconciler.fill_of(order, acct.positions.get(req.symbol), now)
        self.store.update_order(req.client_id, order.status, now, order=order, fill=fill)
        self.reconciler.note_own_fill(order)  # (what the bot's fills explain: ownership)
        outcome = self._outcome_of(req, order, now, state)
        if outcome is SendOutcome.SENT:
            return outcome, None
        return outcome, _answer_failure(req, order)

    def _order_context(
        self,
        req: OrderRequest,
        acct: AccountView,
        now: int,
        snap: MarketSnapshot | None,
        state: TradingState,
    ) -> OrderContext:
        """What the risk gate judges ``req`` on."""
        price = snap.last_price if snap is not None else acct.marks[req.symbol]
        equity = acct.equity()
        other = sum(
            (p.notional(acct.marks[s]) for s, p in acct.positions.items() if s != req.symbol),
            ZERO,
        )
        spec = self._spec[req.symbol]
        restriction = self.restricted.get(req.symbol)
        hedged = self.hedge is not None and req.symbol in self.hedge_symbols
        return OrderContext(
            state=state,
            now_ms=now,
            data_age_ms=self._data_age_ms(snap, now) if snap is not None else 0,
            price=price,
            position_qty=acct.qty(req.symbol),
            sleeve_equity=equity if hedged else self._sleeve(equity),
            equity=equity,
            gross_notional_other=other,
            max_leverage_contract=spec.max_leverage,
            max_notional_contract=spec.max_notional,
            hedge_net_other=self.hedge.net_excluding(req.symbol, acct)
            if self.hedge is not None and hedged
            else None,
            hedge_beta=self.hedge.beta(req.symbol) if self.hedge is not None else Decimal(1),
            restricted=restriction.reason if restriction is not None else None,
            monotonic_ms=self._tick_mono_ms,
        )

    def _data_age_ms(self, snap: MarketSnapshot, now: int) -> int:
        """How old ``snap``'s data is as the order is judged: its age at the job's start
        (``now``) plus the time passed since, measured when the order is gated.

        A job stalled between its market read and its orders (the process stopped, the
        machine suspended, a venue call that hung) sent an entry decided hours before on data
        the stale-data limit was checked against at the job's start only. The time passed is
        the larger of the wall and the monotonic clock's: Linux's monotonic clock stands still
        while the machine is suspended, and the wall clock may step back (NTP); either saying
        the data aged is enough to hold back new exposure, never a stop (the gate passes
        reduce-only orders whatever the data's age). On a simulated or replayed clock, which
        stands still while a job runs, both are 0 and the age is the job's."""
        wall = self.clock.now_ms() - self._tick_ms
        mono = monotonic_ms(self.clock) - self._tick_mono_ms
        return now - snap.asof_ms + max(wall, mono, 0)

    def _outcome_of(
        self, req: OrderRequest, order: Order, now: int, state: TradingState
    ) -> SendOutcome:
        """What the venue's answer says became of a sent order. An answer (or the lookup that
        settled it) saying the order was refused or ended unfilled is a refusal, one that does
        not say is an unknown outcome: counted as sent, a replacement stop the venue answered
        "rejected" cost the position its working stop (new before old cancelled the old one
        whatever the new one became), and the verification then closed the position."""
        if order.status is OrderStatus.UNKNOWN:
            self._event(now, EventKind.UNKNOWN, req.symbol, state, _answer_failure(req, order))
            return SendOutcome.UNKNOWN
        if order.status is OrderStatus.REJECTED or (
            # (a market order ended in part filled, its rest expired, did trade)
            order.status is OrderStatus.CANCELED and order.filled == 0
        ):
            self._rejected(req, _answer_failure(req, order), now, state)
            return SendOutcome.REJECTED
        return SendOutcome.SENT

    def _rejected(self, req: OrderRequest, why: str, now: int, state: TradingState) -> None:
        """Record the venue's refusal of ``req`` (raised, or said in its answer); a protective
        order's is kept as the contract's last venue error (quoted if it stays unprotected)."""
        self._event(now, EventKind.REJECTED, req.symbol, state, why)
        if req.purpose.is_protective:
            self._venue_errors[req.symbol] = why

    def _cancel(self, symbol: str, client_id: str, now: int) -> None:
        try:
            ended = self.exchange.cancel_order(symbol, client_id)
        except ExchangeError as exc:
            self._event(
                now, EventKind.CANCEL_FAILED, symbol, TradingState.ACTIVE, f"{client_id}: {exc}"
            )
            self._note_refusal(symbol, exc, now)
            return
        if ended is not None and ended.status is not OrderStatus.CANCELED:
            # It ended before the cancel: a stop that fired as the bot moved it. Its record
            # stays open, so the next reconcile settles it by its client id as any order
            # found gone (the fill recorded, the exit named), not as a cancel.
            return
        if self.store.get_order(client_id) is not None:
            self.store.update_order(client_id, OrderStatus.CANCELED, now)

    def _event(
        self, now: int, kind: EventKind, symbol: str | None, state: TradingState, reason: str
    ) -> None:
        self.store.record_event(
            RiskEvent(ts_ms=now, kind=kind, symbol=symbol, state=state, reason=reason)
        )


def result_count(result: TickResult, outcome: SendOutcome) -> None:
    """Count one sizing order's outcome in the tick's result, each kind on its own."""
    if outcome is SendOutcome.SENT:
        result.orders_sent += 1
    elif outcome is SendOutcome.DENIED:
        result.denials += 1
    elif outcome is SendOutcome.REJECTED:
        result.rejected += 1
    else:
        result.unknown += 1


def _answer_failure(req: OrderRequest, order: Order) -> str:
    """What the venue's answer ``order`` says of ``req`` that did not go through (an unknown
    outcome, a refusal), as its event records it."""
    if order.status is OrderStatus.UNKNOWN:
        return f"{req.client_id}: sent; the venue's answer does not say what became of it"
    return f"{req.client_id}: the venue answered {order.status.value}"


def _fill_unknown(record: OrderRecord) -> bool:
    """An order whose fill the bot does not know: open, of unknown outcome, or filled without
    a price."""
    return not record.status.is_final or (record.filled > 0 and record.average_price is None)


def _resting_trigger(orders: Sequence[Order], purpose: OrderPurpose) -> Decimal | None:
    """The trigger price of the first resting order of ``purpose`` (stop-loss, take-profit)."""
    for o in orders:
        if o.purpose is purpose and o.trigger_price is not None:
            return o.trigger_price
    return None


def _purpose_of(orders: Sequence[Order], client_id: str) -> OrderPurpose | None:
    return next((o.purpose for o in orders if o.client_id == client_id), None)


def _resting_stop(orders: Sequence[Order]) -> Decimal | None:
    return _resting_trigger(orders, _STOP_LOSS)


def _hold(d: Decision, acct: AccountView, why: str) -> Decision:
    """Keep the position as it is; keep the resting stop (or place the policy's if none)."""
    resting = acct.resting.get(d.symbol, [])
    stop = _resting_stop(resting) or d.stop_loss
    take = _resting_trigger(resting, OrderPurpose.TAKE_PROFIT)
    qty = acct.qty(d.symbol)
    if qty == 0:
        return _flat(d, why)
    direction = 1 if qty > 0 else -1
    return Decision(
        symbol=d.symbol,
        direction=direction,
        target_leverage=d.target_leverage,
        target_qty=qty,
        stop_loss=stop,
        take_profit=take or d.take_profit,
        reason=f"{d.reason}; {why}",
        allow_increase=False,
    )


def _cuts(target: Decimal, held: Decimal) -> bool:
    """Whether going from ``held`` to ``target`` only reduces (no flip, no increase)."""
    return held != 0 and target * held >= 0 and abs(target) < abs(held)


def _flat(d: Decision, why: str) -> Decision:
    return Decision.flat(d.symbol, f"{d.reason}; {why}", allow_increase=False)
