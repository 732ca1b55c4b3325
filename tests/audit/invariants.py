"""What every decision tick must leave behind, checked from outside the engine.

:class:`TickChecker` is passed to :func:`bot.backtest.replay.replay` as ``after_tick`` and
inspects the simulated exchange (the source of truth) after every tick:

* every open position of the bot has a resting reduce-only (or close-position) stop-loss sized
  to it, on the tick grid, strictly between the mark and the liquidation price; or the tick
  recorded an ``unprotected`` event for it (the escalation closes it);
* the trading state follows the loss limits: a drawdown beyond the limit from the peak the
  engine keeps is ``halted``, a day's loss beyond the daily limit is not ``active``, by the
  next tick at the latest (a breach made by the tick's own fills is the guard's, on the next
  candle);
* no entry or increase filled while the account was not ``active``;
* no fill dated inside a hole in every price series of its contract (no last-trade candle and
  no trigger bar then): no one traded there, a market order cannot have filled at a price hours
  old (the simulated venue refuses it), and a stop fills at the first bar after the hole;
* every amount is finite (no NaN or infinity) and no exposure beyond the hard caps (with
  :data:`CAP_ROOM`);
* the account's books balance: wallet = starting balance + realised PnL - fees - funding +
  what the insurance fund took beyond the wallet.

:func:`check_report` checks the written report against the run: the equity curve's end and
the final equity, fee and funding sums, no NaN, infinity or negative zero in any file.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from bot.backtest.replay import SimulationResult
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderType, TradingState
from bot.domain.orders import Fill
from bot.engine.tick import Engine
from bot.ports.store import RiskEvent, RiskMemory
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import HistoricalMarket
from bot.store.memory import MemoryStore

ZERO = Decimal(0)
# Positions drift between the order and the end of the tick (fills move the mark a little):
# the caps are checked with this much room, to catch real breaches, not rounding.
CAP_ROOM = Decimal("1.10")


@dataclass
class TickChecker:
    starting_balance: Decimal
    problems: list[str] = field(default_factory=list)
    ticks: int = 0
    positions_seen: int = 0  # open positions checked (the scenario did test something)
    _fills_seen: int = 0
    # A limit breached at the end of a tick (by the tick's own fills): the guard must act on
    # the next candle, so it is checked again at the next tick.
    _breach: str | None = None
    _events_seen: int = 0
    # Per contract the holes (from, to) of its last-trade candles and of its trigger bars.
    _holes: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = field(
        default_factory=dict
    )

    def __call__(self, t: int, engine: Engine, ex: SimulatedExchange) -> None:
        self.ticks += 1
        memory = engine.store.load_risk_memory()
        state = memory.state if memory is not None else TradingState.ACTIVE
        since_last = _events(engine)[self._events_seen :]
        self._events_seen = len(_events(engine))
        events = [e for e in since_last if e.ts_ms == t]
        unprotected = {e.symbol for e in events if e.kind is EventKind.UNPROTECTED}
        for sym in engine.symbols:
            if sym in engine.foreign:
                continue
            self._check_position(t, sym, ex, unprotected)
        moved = any(e.kind is EventKind.STATE for e in since_last)
        if self._breach is not None and state is TradingState.ACTIVE and not moved:
            self.fail(t, f"still active after {self._breach}")
        self._breach = None
        self._check_state(t, engine, ex, memory)
        new = ex.fills[self._fills_seen :]
        self._fills_seen = len(ex.fills)
        self._check_new_fills(t, new, engine, state)
        self._check_fill_times(t, new, engine)
        self._check_numbers(t, ex)
        self._check_caps(t, engine, ex)

    def fail(self, t: int, what: str) -> None:
        self.problems.append(f"t={t}: {what}")

    def _check_position(
        self, t: int, sym: str, ex: SimulatedExchange, unprot: set[str | None]
    ) -> None:
        pos = ex.book.positions[sym]
        if pos.qty == 0:
            return
        self.positions_seen += 1
        inst = ex.instrument(sym)
        mark = ex.marks[sym]
        liq = ex.book.liquidation_price(sym, ex.marks)
        sign = 1 if pos.qty > 0 else -1
        stops = [o for o in ex.fetch_open_orders(sym) if o.purpose is OrderPurpose.STOP_LOSS]
        good = []
        for o in stops:
            trig = o.trigger_price
            if trig is None or o.type is not OrderType.STOP_MARKET:
                continue
            if not (o.reduce_only or o.close_position):
                continue
            if not (o.close_position or o.amount == abs(pos.qty)):
                continue
            if trig <= 0 or trig % inst.tick_size != 0:
                continue
            if (mark - trig) * sign <= 0:
                continue
            if liq is not None and (trig - liq) * sign <= 0:
                continue
            good.append(o)
        if good:
            return
        if sym in unprot:
            return  # recorded, and the escalation closed (or tried to close) it
        self.fail(
            t,
            f"{sym}: position {pos.qty} at mark {mark} (liquidation {liq}) has no valid stop; "
            f"resting stops: {[(o.amount, o.trigger_price, o.reduce_only) for o in stops]}",
        )

    def _check_state(
        self, t: int, engine: Engine, ex: SimulatedExchange, memory: RiskMemory | None
    ) -> None:
        """A breach at the end of a tick (its own fills, a stop's slippage) must move the state
        by the next tick: the guard acts on the next candle."""
        if memory is None:
            return
        equity = ex.equity()
        limits = engine.limits
        drawdown_floor = memory.peak_equity * (1 - limits.max_drawdown)
        if equity < drawdown_floor and memory.state is not TradingState.HALTED:
            self._breach = (
                f"t={t}: equity {equity:.2f} beyond the drawdown limit from the peak "
                f"{memory.peak_equity:.2f} (state {memory.state.value})"
            )
        today = memory.day_start_ms == t - t % 86_400_000
        daily_floor = memory.day_start_equity * (1 - limits.daily_loss)
        if today and equity < daily_floor and memory.state is TradingState.ACTIVE:
            self._breach = (
                f"t={t}: equity {equity:.2f} beyond the daily-loss limit from "
                f"{memory.day_start_equity:.2f} (state active)"
            )

    def _check_new_fills(
        self, t: int, new: list[Fill], engine: Engine, state: TradingState
    ) -> None:
        if state is TradingState.ACTIVE:
            return
        recent = _events(engine)[-50:]
        changes = [e for e in recent if e.ts_ms == t and e.kind is EventKind.STATE]
        if changes and "protection failed" in changes[-1].reason:
            return  # the tick's last step moved the state, after its sizing step
        for f in new:
            if f.purpose is OrderPurpose.ENTRY and f.timestamp_ms == t:
                self.fail(t, f"{f.symbol}: {f.purpose} filled while {state.value}: {f}")

    def _check_fill_times(self, t: int, new: list[Fill], engine: Engine) -> None:
        """No fill strictly inside a hole of both the trade candles and the trigger bars."""
        market = engine.market
        assert isinstance(market, HistoricalMarket)
        for f in new:
            holes = self._holes.get(f.symbol)
            if holes is None:
                h = market.contracts[f.symbol]
                holes = self._holes[f.symbol] = (h.last.gaps(), h.trigger.gaps())
            ts = f.timestamp_ms
            if all(any(a < ts < b for a, b in series) for series in holes):
                self.fail(t, f"{f.symbol}: {f.purpose} filled inside a hole of its data: {f}")

    def _check_numbers(self, t: int, ex: SimulatedExchange) -> None:
        values = [("wallet", ex.book.wallet), ("equity", ex.equity())]
        for sym, pos in ex.book.positions.items():
            values += [(f"{sym} qty", pos.qty), (f"{sym} entry", pos.entry_price)]
            values += [(f"{sym} margin", pos.isolated_margin)]
        for sym, m in ex.marks.items():
            values.append((f"{sym} mark", m))
        for name, v in values:
            if not v.is_finite():
                self.fail(t, f"{name} is {v}")
        # A cross wallet may be negative while the unrealised profit of the positions still held
        # backs it (a stop's realised loss beyond the wallet, a hedged leg's gain): Binance's
        # wallet balance has no floor, the account is liquidated on the margin balance (wallet
        # + unrealised PnL) ("How to Check Futures Wallet Balance", Binance FAQ). Nothing held,
        # or nothing left of the equity, a negative wallet is a loss beyond it nobody took.
        backed = (
            ex.book.margin_mode is MarginMode.CROSS
            and any(p.qty != 0 for p in ex.book.positions.values())
            and ex.equity() > 0
        )
        if ex.book.wallet < 0 and not backed:
            self.fail(t, f"wallet negative: {ex.book.wallet}")
        # Money in = money out: the fills' PnL and fees (a cross liquidation's fees included,
        # whether the wallet or the insurance fund paid them), funding, and what the insurance
        # fund took beyond the wallet.
        realized = sum((f.realized_pnl for f in ex.fills), ZERO)
        fees = sum((f.fee for f in ex.fills), ZERO)
        expected = (
            self.starting_balance + realized - fees - ex.funding_paid + ex.insurance_shortfall
        )
        if abs(ex.book.wallet - expected) > Decimal("1e-6"):
            self.fail(
                t,
                f"wallet {ex.book.wallet} != start + realised - fees - funding + insurance "
                f"= {expected}",
            )

    def _check_caps(self, t: int, engine: Engine, ex: SimulatedExchange) -> None:
        equity = ex.equity()
        if equity <= 0:
            return
        gross = ZERO
        for sym, pos in ex.book.positions.items():
            if pos.qty == 0:
                continue
            notional = abs(pos.qty) * ex.marks[sym]
            gross += notional
            spec = engine._spec[sym]
            cap = min(engine.limits.max_notional_per_contract, spec.max_notional or Decimal("Inf"))
            if notional > cap * CAP_ROOM:
                self.fail(t, f"{sym}: notional {notional:.2f} above its cap {cap}")
        if gross > engine.limits.max_gross_leverage * equity * CAP_ROOM:
            self.fail(
                t,
                f"gross notional {gross:.2f} above {engine.limits.max_gross_leverage} x equity "
                f"{equity:.2f}",
            )


def _events(engine: Engine) -> list[RiskEvent]:
    """The events the simulation's store recorded (a memory store: all of them, in order)."""
    store = engine.store
    assert isinstance(store, MemoryStore)
    return store.events


def _finite_text(value: str) -> bool:
    try:
        x = float(value)
    except ValueError:
        return True  # not a number: text
    return math.isfinite(x)


def check_report(result: SimulationResult, out: Path) -> list[str]:
    """The written report agrees with the run and holds no NaN, infinity or negative zero."""
    problems: list[str] = []
    report = json.loads((out / "report.json").read_text())

    def walk(x: object, where: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{where}.{k}")
        elif isinstance(x, list):
            for k, v in enumerate(x):
                walk(v, f"{where}[{k}]")
        elif isinstance(x, float) and not math.isfinite(x):
            problems.append(f"report.json{where} = {x}")
        elif isinstance(x, str) and x.strip().startswith("-0") and _is_zero(x):
            problems.append(f"report.json{where} = {x!r} (negative zero)")

    walk(report, "")
    for name in ("equity.csv", "orders.csv", "decisions.csv", "events.csv"):
        path = out / name
        if not path.exists():
            continue
        with path.open() as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                for col, value in row.items():
                    if value is None:
                        continue
                    if not _finite_text(value):
                        problems.append(f"{name} line {n} {col} = {value!r}")
                    elif value.startswith("-0") and _is_zero(value):
                        problems.append(f"{name} line {n} {col} = {value!r} (negative zero)")
    final = float(result.exchange.equity())
    with (out / "equity.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    if rows:
        last = rows[-1]
        col = "equity" if "equity" in last else next(iter(last))
        if abs(float(last[col]) - float(result.equity[-1])) > 0.01:
            problems.append(f"equity.csv ends at {last[col]}, the run at {result.equity[-1]}")
    ex = result.exchange
    fees = sum((f.fee for f in ex.fills), ZERO)
    unpaid = fees - ex.fees_paid  # fees of fills past the bankruptcy price, the insurance fund's
    if unpaid < Decimal("-1e-9") or unpaid > ex.insurance_shortfall + Decimal("1e-9"):
        problems.append(
            f"fees of the fills {fees}, fees paid {ex.fees_paid}, "
            f"insurance {ex.insurance_shortfall}"
        )
    funding = sum((e.amount for e in ex.events if e.kind == "funding"), ZERO)
    if abs(funding - ex.funding_paid) > Decimal("1e-9"):
        problems.append(f"funding events sum to {funding}, funding paid {ex.funding_paid}")
    for key, value in (("fees_paid", ex.fees_paid), ("funding_paid", ex.funding_paid)):
        if abs(float(report[key]) - float(value)) > 0.01:
            problems.append(f"report {key} {report[key]} != the account's {value}")
    fe = report.get("final_equity")
    if fe is not None and abs(float(fe) - final) > 0.01:
        problems.append(f"report final_equity {fe} != the account's equity {final}")
    return problems


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0.0
    except ValueError:
        return False
