"""One engine tick: the same in simulation, paper and live trading.

Fixed order of steps (each a method below):

1. **reconcile**   resolve orders whose outcome is unknown, then read positions, resting orders
                   (conditional ones too) and the balance from the exchange, the source of truth;
2. **market**      read closed candles and funding; compute volatility and ATR;
3. **risk state**  update peak and daily equity and the trading state (active/reducing/halted);
4. **decide**      the policy's pure decision per contract (all flat when halted);
5. **protect**     place/replace stop-loss and take-profit for the positions held now (new before
                   old), cancel orphans and duplicates;
6. **size**        leverage setting, reduce-only trims and closes, then increases; every order
                   passes the risk gate; then protect again for the positions that changed;
7. **record**      decisions with reasons, equity, positions and events go to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from bot.clock import Clock
from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.enums import OrderPurpose, OrderStatus, TradingState
from bot.domain.market import MarketSnapshot
from bot.domain.orders import Order, OrderRequest
from bot.engine.account import AccountView
from bot.engine.client_ids import base36, make_client_id
from bot.engine.contracts import ContractSpec
from bot.engine.hedging import HedgeDesk, order_hedge_decisions
from bot.engine.market import (
    CandleWindow,
    MarketDataPort,
    annual_covariance,
    build_snapshot,
    candles_needed,
    policy_tf_ms,
)
from bot.engine.planner import IdFactory, plan_protection, plan_size
from bot.engine.reconcile import Reconciler
from bot.errors import ExchangeError, OutcomeUnknown
from bot.exchange.port import ExchangePort, SpotWalletPort
from bot.policy.decide import decide
from bot.policy.inputs import ContractView
from bot.policy.protection import distance
from bot.risk.gate import Denied, OrderContext, RiskGate
from bot.risk.limits import RiskLimits
from bot.risk.state import initial_memory, update
from bot.store.port import DecisionRecord, EquitySnapshot, RiskEvent, RiskMemory, StorePort

ZERO = Decimal(0)
# Stop distance (fraction of the mark) for a position found without a stop before the engine has
# ever seen market statistics for its contract: protection first, precision later.
FALLBACK_STOP = Decimal("0.05")


@dataclass(slots=True)
class TickResult:
    tick_id: str
    ts_ms: int
    state: TradingState
    equity: Decimal
    decisions: list[Decision] = field(default_factory=list)
    orders_sent: int = 0
    denials: int = 0


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
        spot: SpotWalletPort | None = None,
        spot_assets: Sequence[str] = (),
        quote: str = "USDT",
    ) -> None:
        self.clock = clock
        self.exchange = exchange
        self.market = market
        self.store = store
        self.policy = policy
        self.contracts = tuple(contracts)
        self.symbols = tuple(c.symbol for c in contracts)
        self.limits = limits
        self.account = account
        self.gate = RiskGate(limits)
        self.tf_ms = policy_tf_ms(policy)
        self.needed = candles_needed(policy)
        self._tick_ms = 0
        self._n = 0
        self._last_snapshot: dict[str, MarketSnapshot] = {}
        self.no_increase: set[str] = set()  # contracts whose exposure may not grow this tick
        self._last_price_ms: dict[str, int | None] = {}
        self.last_account: AccountView | None = None  # as the last tick left it (alerts)
        self.instruments = {s: exchange.instrument(s) for s in self.symbols}
        self.hedge_symbols = frozenset(c.symbol for c in self.contracts if c.direction == "hedge")
        self.traded = tuple(s for s in self.symbols if s not in self.hedge_symbols)
        self.hedge = (
            HedgeDesk(policy.hedge, policy, self.instruments, quote, spot, spot_assets)
            if policy.hedge is not None
            else None
        )
        self.reconciler = Reconciler(
            exchange=exchange,
            store=store,
            contracts=self.contracts,
            instruments=self.instruments,
            event=self._event,
        )

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        now = self.clock.now_ms()
        self._tick_ms = now
        self._n = 0
        tick_id = base36(now // 1000)
        acct = self.reconcile(now)
        snapshots, windows = self.read_market(now, acct)
        memory = self.update_risk_state(now, acct, self.stale_contracts(now))
        decisions = self.decide(now, acct, snapshots, windows, memory.state)
        if memory.state is TradingState.HALTED:
            decisions = [
                _flat(d, f"halted ({memory.state_reason}): close every position")
                if memory.flatten
                else _hold(d, acct, f"halted ({memory.state_reason}): hold, stops resting")
                for d in decisions
            ]
        result = TickResult(tick_id, now, memory.state, acct.equity(), decisions)
        for d in decisions:
            self.protect(d.symbol, acct, d.stop_loss, d.take_profit, now)
        for sym in self.symbols:
            # No decision (no data) or none with a stop: still protected. Foreign: left alone.
            if acct.qty(sym) != 0 and sym not in self.foreign:
                self.protect_without_decision(sym, acct, now)
        for d in decisions:
            self.resize(d, acct, snapshots.get(d.symbol), memory.state, now, result)
        self.record(tick_id, now, acct, snapshots, decisions, memory.state)
        self.last_account = acct
        return result

    def guard(self) -> None:
        """Between ticks: reconcile, make sure every position has its stop, cancel orphans.

        No market statistics, no decision, no size change: the protection invariant only.
        """
        now = self.clock.now_ms()
        self._tick_ms = now
        self._n = 0
        acct = self.reconcile(now)
        for sym in self.symbols:
            if sym in self.foreign:
                continue
            if acct.qty(sym) != 0:
                self.protect_without_decision(sym, acct, now)
            else:
                self.protect(sym, acct, None, None, now)

    def last_snapshots(self) -> dict[str, MarketSnapshot]:
        """The latest market statistics seen per contract (for alerts and the status view)."""
        return dict(self._last_snapshot)

    # -- 1. reconcile --------------------------------------------------------------------------

    def reconcile(self, now: int) -> AccountView:
        """Step 1 (see :mod:`bot.engine.reconcile`)."""
        return self.reconciler.reconcile(now)

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
        if hasattr(self, "_contracts") and [c.symbol for c in specs] != list(self.symbols):
            raise ValueError("contracts can change their settings, not their symbols")
        self._contracts = specs
        if hasattr(self, "reconciler"):
            self.reconciler.contracts = specs

    # -- 2. market data ------------------------------------------------------------------------

    def read_market(
        self, now: int, acct: AccountView
    ) -> tuple[dict[str, MarketSnapshot], dict[str, CandleWindow]]:
        snapshots: dict[str, MarketSnapshot] = {}
        windows: dict[str, CandleWindow] = {}
        for sym in self.symbols:
            window = self.market.closed_candles(sym, self.tf_ms, self.needed, now)
            last = self.market.last_price(sym, now)
            self._last_price_ms[sym] = last[1] if last is not None else None
            if last is None:
                continue
            funding = self.market.funding(sym, now, self.policy.funding.lookback)
            # Freshness is the last price's, unless the decision candles themselves lag (a
            # candle more than one timeframe late means the feed has stopped).
            candle_close = int(window.ts[-1]) + self.tf_ms if len(window) else 0
            asof = last[1] if now - candle_close <= self.tf_ms else min(candle_close, last[1])
            snap = build_snapshot(
                sym, window, funding, last[0], acct.marks[sym], self.policy, asof_ms=asof
            )
            if snap is not None:
                snapshots[sym] = snap
                windows[sym] = window
                self._last_snapshot[sym] = snap
        return snapshots, windows

    def stale_contracts(self, now: int) -> list[str]:
        """Contracts whose last price (read this tick) is older than the limit, or missing."""
        return [
            sym
            for sym, ts in self._last_price_ms.items()
            if ts is None or now - ts > self.limits.stale_data_ms
        ]

    # -- 3. risk state -------------------------------------------------------------------------

    def update_risk_state(
        self, now: int, acct: AccountView, stale: list[str] | None = None
    ) -> RiskMemory:
        equity = acct.equity()
        memory = self.store.load_risk_memory() or initial_memory(equity, now)
        memory, transition = update(memory, equity, now, self.limits, stale)
        self.store.save_risk_memory(memory)
        if transition is not None:
            self._event(
                now,
                "state",
                None,
                transition.after,
                f"{transition.before.value} -> {transition.after.value}: {transition.reason}",
            )
        return memory

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
        for spec in self.contracts:
            snap = snapshots.get(spec.symbol)
            if snap is None or spec.symbol in self.foreign or spec.symbol in self.hedge_symbols:
                continue  # no data: hold, keep protection as it is (see protect/resize)
            qty = acct.qty(spec.symbol)
            direction, allow = spec.resolve(now, qty)
            if spec.symbol in self.no_increase:
                allow = False  # e.g. right before an expensive funding settlement
            views.append(
                ContractView(
                    symbol=spec.symbol,
                    direction=direction,
                    allow_increase=allow,
                    max_leverage=min(spec.max_leverage, self.limits.max_leverage_per_contract),
                    instrument=self.instruments[spec.symbol],
                    market=snap,
                    position=acct.positions.get(spec.symbol),
                    resting_stop=_resting_stop(acct.resting.get(spec.symbol, [])),
                    sleeve_equity=sleeve,
                )
            )
        cov = None
        alloc = self.policy.allocation
        if alloc is not None and alloc.method == "erc":
            active = [windows[v.symbol] for v in views if v.direction != 0]
            cov = annual_covariance(active, alloc.covariance_window)
        decisions = decide(views, self.policy, cov)
        if self.hedge is not None:
            decisions += self.decide_hedge(now, acct, snapshots, windows, decisions, state)
        return decisions

    def decide_hedge(
        self,
        now: int,
        acct: AccountView,
        snapshots: dict[str, MarketSnapshot],
        windows: dict[str, CandleWindow],
        book: list[Decision],
        state: TradingState,
    ) -> list[Decision]:
        """The hedge legs' decisions (see :mod:`bot.policy.hedge`); none when the hedge
        instrument has no data or the spot holdings cannot be read (the hedge is held)."""
        if self.hedge is None:
            return []
        self.hedge.estimate_betas(windows)
        unknown = self.hedge.read_spot()
        if unknown is not None:
            self._event(now, "hedge", None, state, unknown)
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
        )
        if outcome is None:
            self._event(
                now,
                "hedge",
                None,
                state,
                "hedge held: no market data for the primary hedge instrument, or it holds a "
                "position the bot did not open",
            )
            return []
        return order_hedge_decisions(outcome.decisions, acct)

    # -- 5. protect ----------------------------------------------------------------------------

    def protect(
        self,
        symbol: str,
        acct: AccountView,
        stop: Decimal | None,
        take: Decimal | None,
        now: int,
    ) -> None:
        qty = acct.qty(symbol)
        if qty != 0 and stop is None:
            return  # the decision is to close: the resting stop stays until the close fills
        plan = plan_protection(
            symbol,
            qty,
            stop,
            take,
            acct.resting.get(symbol, []),
            self.policy.orders.protective_tolerance,
            self._id_factory(symbol),
        )
        for note in plan.notes:  # orphans and duplicates: discrepancies worth a record
            self._event(now, "reconcile", symbol, TradingState.ACTIVE, note)
        for req in plan.place:
            self._send(req, acct, now, None)
        for cid in plan.cancel:
            self._cancel(symbol, cid, now)
        if plan.place or plan.cancel:
            acct.resting[symbol] = self.exchange.fetch_open_orders(symbol)

    def protect_without_decision(self, symbol: str, acct: AccountView, now: int) -> None:
        """A position held while its market data is missing still gets a resting stop.

        The stop comes from the policy's distance on the last statistics seen for the contract,
        around the current mark; the existing stop is kept if there is one.
        """
        if _resting_stop(acct.resting.get(symbol, [])) is not None:
            return
        snap = self._last_snapshot.get(symbol)
        qty = acct.qty(symbol)
        mark = acct.marks[symbol]
        sign = 1 if qty > 0 else -1
        if snap is not None:
            dist = distance(self.policy.stop_loss.kind, self.policy.stop_loss.distance, snap, mark)
        else:
            dist = mark * FALLBACK_STOP
        stop = self.instruments[symbol].stop_price(mark - sign * dist, sign)
        self._event(
            now,
            "reconcile",
            symbol,
            TradingState.ACTIVE,
            f"position {qty} without a stop and without fresh market data: stop at {stop}",
        )
        self.protect(symbol, acct, stop, None, now)

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
        if snap is None:
            return
        pos = acct.positions.get(d.symbol)
        setting = pos.leverage if pos is not None else self.exchange.fetch_leverage(d.symbol)
        plan = plan_size(
            d,
            acct.qty(d.symbol),
            setting,
            self.instruments[d.symbol],
            snap.last_price,
            self.policy.orders.rebalance_tolerance,
            self._id_factory(d.symbol),
        )
        if not (plan.reduce or plan.increase):
            return
        for req in plan.reduce:
            result.orders_sent += self._send(req, acct, now, snap)
        if plan.leverage is not None and plan.increase:
            try:
                self.exchange.set_leverage(d.symbol, plan.leverage)
            except ExchangeError as exc:
                self._event(
                    now, "rejected", d.symbol, state, f"set leverage {plan.leverage}: {exc}"
                )
                return
        for req in plan.increase:
            sent = self._send(req, acct, now, snap)
            result.orders_sent += sent
            result.denials += 1 - sent
        if self.hedge is not None and d.symbol in self.hedge_symbols:
            self.hedge.last_change_ms = now  # the cooldown runs from the last attempt
        acct.positions = dict(self.exchange.fetch_positions(self.symbols))
        balance = self.exchange.fetch_balance()
        acct.wallet = balance.wallet
        acct.changed()
        self.protect(d.symbol, acct, d.stop_loss, d.take_profit, now)

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
            snap = snapshots[d.symbol]
            pos = acct.positions.get(d.symbol)
            records.append(
                DecisionRecord(
                    tick_id=tick_id,
                    ts_ms=now,
                    decision=d,
                    current_qty=pos.qty if pos is not None else ZERO,
                    current_leverage=pos.leverage if pos is not None else ZERO,
                    mark_price=snap.mark_price,
                    volatility=snap.volatility,
                )
            )
        self.store.record_decisions(records)
        self.store.record_positions(now, [p for p in acct.positions.values() if p.is_open])
        equity = acct.equity()
        self.store.record_equity(
            EquitySnapshot(now, acct.wallet, equity - acct.wallet, equity, state)
        )

    # -- helpers -------------------------------------------------------------------------------

    def _sleeve(self, equity: Decimal) -> Decimal:
        """Equity per traded contract (the hedge legs are sized on the whole equity)."""
        return equity / Decimal(max(1, len(self.traded)))

    def _id_factory(self, symbol: str) -> IdFactory:
        def new_id(purpose: OrderPurpose) -> str:
            self._n += 1
            while True:
                cid = make_client_id(self.account, purpose, symbol, self._tick_ms, self._n)
                if self.store.get_order(cid) is None:
                    return cid
                self._n += 1

        return new_id

    def _send(
        self, req: OrderRequest, acct: AccountView, now: int, snap: MarketSnapshot | None
    ) -> int:
        """Gate, persist the intent, send. Returns 1 if sent, 0 if denied or rejected."""
        memory = self.store.load_risk_memory()
        state = memory.state if memory is not None else TradingState.ACTIVE
        price = snap.last_price if snap is not None else acct.marks[req.symbol]
        equity = acct.equity()
        other = sum(
            (p.notional(acct.marks[s]) for s, p in acct.positions.items() if s != req.symbol),
            ZERO,
        )
        spec = next(c for c in self.contracts if c.symbol == req.symbol)
        hedged = self.hedge is not None and req.symbol in self.hedge_symbols
        ctx = OrderContext(
            state=state,
            now_ms=now,
            data_age_ms=now - snap.asof_ms if snap is not None else 0,
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
        )
        verdict = self.gate.check(req, ctx)
        if isinstance(verdict, Denied):
            self._event(now, "denied", req.symbol, state, f"{req.client_id}: {verdict.reason}")
            return 0
        self.store.save_intent(req, now)
        try:
            order = self.exchange.place_order(req)
        except OutcomeUnknown as exc:
            self.store.update_order(req.client_id, OrderStatus.UNKNOWN, now, error=str(exc))
            self._event(now, "unknown", req.symbol, state, f"{req.client_id}: {exc}")
            return 0
        except ExchangeError as exc:
            self.store.update_order(req.client_id, OrderStatus.REJECTED, now, error=str(exc))
            self._event(now, "rejected", req.symbol, state, f"{req.client_id}: {exc}")
            return 0
        fill = self.reconciler.fill_of(order, acct.positions.get(req.symbol), now)
        self.store.update_order(req.client_id, order.status, now, order=order, fill=fill)
        return 1

    def _cancel(self, symbol: str, client_id: str, now: int) -> None:
        try:
            self.exchange.cancel_order(symbol, client_id)
        except ExchangeError as exc:
            self._event(now, "cancel_failed", symbol, TradingState.ACTIVE, f"{client_id}: {exc}")
            return
        if self.store.get_order(client_id) is not None:
            self.store.update_order(client_id, OrderStatus.CANCELED, now)

    def _event(
        self, now: int, kind: str, symbol: str | None, state: TradingState, reason: str
    ) -> None:
        self.store.record_event(RiskEvent(now, kind, symbol, state, reason))


def _resting_stop(orders: Sequence[Order]) -> Decimal | None:
    for o in orders:
        if o.purpose is OrderPurpose.STOP_LOSS and o.trigger_price is not None:
            return o.trigger_price
    return None


def _hold(d: Decision, acct: AccountView, why: str) -> Decision:
    """Keep the position as it is; keep the resting stop (or place the policy's if none)."""
    resting = acct.resting.get(d.symbol, [])
    stop = _resting_stop(resting) or d.stop_loss
    take = next((o.trigger_price for o in resting if o.purpose is OrderPurpose.TAKE_PROFIT), None)
    qty = acct.qty(d.symbol)
    if qty == 0:
        return _flat(d, why)
    direction = 1 if qty > 0 else -1
    return Decision(
        d.symbol,
        direction,
        d.target_leverage,
        qty,
        stop,
        take or d.take_profit,
        f"{d.reason}; {why}",
        False,
    )


def _flat(d: Decision, why: str) -> Decision:
    return Decision(d.symbol, 0, ZERO, ZERO, None, None, f"{d.reason}; {why}", False)
