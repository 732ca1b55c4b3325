"""The dry-run simulation: history through the simulated exchange, driven by the real engine.

The loop advances a :class:`~bot.clock.SimClock` from one decision tick to the next. Between
ticks the simulated exchange processes the finer trigger bars (vectorised, no policy calls);
at each tick the :class:`~bot.engine.tick.Engine` runs exactly as it does live.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from bot.backtest.collector import fewer_collections
from bot.backtest.metrics import drawdown_series
from bot.backtest.operator import resume_if_due
from bot.bootstrap import build_simulation, config_instruments, simulation_engine
from bot.clock import SimClock, datetime_to_ms
from bot.config.hedge import spot_symbol
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.domain.instrument import Instrument
from bot.engine.hedging import ExposureRecord, hedge_symbols, with_hedge_symbols
from bot.engine.market import candles_needed
from bot.engine.tick import Engine
from bot.errors import ConfigError, DataError
from bot.marketdata.files import DataInventory, discover
from bot.ports.store import RiskMemory
from bot.risk.guard import equity_floor
from bot.risk.limits import RiskLimits
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import (
    TRIGGER_ON_TRADES,
    ClosedCandle,
    ContractHistory,
    HistoricalMarket,
    data_end,
    late_marks,
    late_starts,
    load_histories,
    mark_candles,
    mark_ends_first,
    requested_window,
    set_lasts,
    simulation_window,
)
from bot.sim.triggers import FundingTape, TriggerSeries, advance
from bot.stats.timeframes import parse_timeframe
from bot.store.memory import MemoryStore

Progress = Callable[[int, int], None]
Switch = tuple[int, Policy]  # from this time (ms), this policy decides
P = ParamSpec("P")
R = TypeVar("R")
AfterTick = Callable[[int, Engine, SimulatedExchange], None]
ZERO = Decimal(0)
ONE = Decimal(1)


@dataclass(slots=True)
class SimulationResult:
    """A replay's outcome. ``ts``, ``equity``, ``benchmark``, ``leverage`` and ``spot_value``
    hold one point per decision tick and a last one at ``end_ms``: the account brought through
    the last interval to the end of the run, where no decision is taken."""

    policy: Policy
    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    ts: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    benchmark: npt.NDArray[np.float64]
    leverage: dict[str, npt.NDArray[np.float64]]
    store: MemoryStore
    exchange: SimulatedExchange
    bars: int
    trigger_sources: dict[str, str]
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    data_selection: dict[str, list[str]] = field(default_factory=dict)
    starting_balance: Decimal = Decimal(0)
    requested_start_ms: int | None = None  # the configured start, when one was asked
    start_note: str = ""  # why the run starts later than asked ("" when it does not)
    end_note: str = ""  # why the run ends earlier than asked or than some data ("" if not)
    stale_hours: dict[str, float] = field(default_factory=dict)  # per contract
    hedge_symbols: tuple[str, ...] = ()
    hedge_log: list[ExposureRecord] = field(default_factory=list)
    spot_value: npt.NDArray[np.float64] | None = None  # spot holdings at the marks, per tick

    @property
    def decision_ticks(self) -> int:
        """The decision ticks of the run (every point of ``ts`` but the one at ``end_ms``)."""
        return len(self.ts) - 1

    def curve_from_start(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """``(equity, ts)`` from the starting balance at the start of the run, then each tick's.

        What the summary figures read (drawdown, CAGR, Calmar, Sharpe), so that they start where
        ``total_return`` starts: the first tick's equity is already net of its entry's fees and
        slippage, which are a loss like any other. This also keeps the figures defined when the
        first tick took the account to zero or below (a very large entry paying the square-root
        impact of the candles' volume): "everything lost"."""
        balance = float(self.starting_balance)
        return np.r_[balance, self.equity], np.r_[np.int64(self.start_ms), self.ts]

    def drawdown(self) -> npt.NDArray[np.float64]:
        """Each tick's drawdown from the highest equity so far, the starting balance included."""
        return drawdown_series(self.equity, start=float(self.starting_balance))


def _day_ms(d: date) -> int:
    return datetime_to_ms(datetime.combine(d, time(0), tzinfo=UTC))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def run_simulation(
    config: BotConfig,
    policy: Policy,
    *,
    symbols: tuple[str, ...] | None = None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
    not_before: int | None = None,
    histories: dict[str, ContractHistory] | None = None,
    window: tuple[int, int] | None = None,
    switches: Sequence[Switch] = (),
) -> SimulationResult:
    """Simulate ``policy`` (then each policy of ``switches`` from its time, see :func:`replay`).

    ``not_before`` moves the start later (a shared window). ``histories``: the loaded history of
    ``symbols`` at the policy's timeframe, when the caller already holds it (a sweep worker
    reuses it for every point); loaded here otherwise. The policy's hedge instruments are
    simulated with the contracts. ``window``: [start, end) in ms instead
    of :func:`simulation_window`'s (policies compared on one footing share one window)."""
    if symbols is not None:
        for p in (policy, *(p for _, p in switches)):
            refuse_traded_hedge(p, symbols)
    symbols = with_hedge_symbols(symbols or tuple(c.symbol for c in config.contracts), policy)
    if histories is None:
        histories = load_data(config, policy, symbols, data_dir)
    instruments = _instruments(config, symbols, data_dir)
    own_start, own_end = simulation_window(histories, policy, config)
    start, end = window if window is not None else (own_start, own_end)
    if not_before is not None and not_before > start:
        start = not_before + (-not_before) % parse_timeframe(policy.timeframe)
    result = replay(config, policy, histories, instruments, start, end, progress, switches=switches)
    asked = config.simulation.start
    result.requested_start_ms = _day_ms(asked) if asked is not None else None
    if result.requested_start_ms is not None and start > result.requested_start_ms:
        warm = candles_needed(policy)
        why = (
            f"the policy's warm-up ({warm} {policy.timeframe} candles) and the data's first candles"
        )
        late = late_starts(histories, warm, start)
        if late:
            # a file holding the warm-up passed over for its holes: named, not "first candles"
            why = f"the policy's warm-up ({warm} {policy.timeframe} candles): " + "; ".join(late)
        marks = late_marks(histories, warm, start, parse_timeframe(policy.timeframe))
        if marks:
            # the stops trigger on the mark ("auto"): a mark file starting after the warm-up
            # holds the run, not the warm-up nor the trade candles
            why = "; ".join(marks) + "; " + TRIGGER_ON_TRADES
        if start > own_start:
            why = "the shared window of the policies compared (the latest warm-up decides)"
        result.start_note = (
            f"requested start {_iso(result.requested_start_ms)} moved to {_iso(start)}: {why}"
        )
    result.end_note = _end_note(config, histories, end)
    return result


def refuse_traded_hedge(policy: Policy, symbols: Sequence[str]) -> None:
    """A ConfigError when ``symbols`` (``--contracts``) names one of ``policy``'s hedge
    instruments: the configuration refuses a hedge instrument that is also a traded contract
    (``bot.config.models._validate_hedge``: two decisions for one position), and the flag may
    not bring one in. The engine would make it the hedge leg only, and the unhedged replay of
    ``bot simulate`` would trade it as a book contract: two different books compared."""
    if policy.hedge is None:
        return
    for i, sym in enumerate(policy.hedge.instruments):
        if sym in symbols:
            raise ConfigError(
                f'--contracts names "{sym}": policy {policy.name!r} hedge.instruments[{i}]: is '
                "also a traded contract; a hedge leg needs its own"
            )


def _end_note(config: BotConfig, histories: dict[str, ContractHistory], end: int) -> str:
    """Why the run ends before the configured end, or before some contract's data does: the
    contract whose data ends first ends every contract's run (a delisting, a download that
    stopped), which is said, not hidden ("" when nothing was cut)."""
    ends = {s: data_end(h) for s, h in histories.items()}
    first = min(ends.values())
    cutting = [h for s, h in histories.items() if ends[s] == first]
    cut_by = ", ".join(h.symbol for h in cutting)
    # The stops trigger on the mark ("auto"): a mark file that ends before the trade candles
    # ends the run, and is named with its span, not "the data" (whose trade candles go on).
    marks = [mark_candles(h) for h in cutting if mark_ends_first(h)]
    trades = [h.symbol for h in cutting if not mark_ends_first(h)]
    said = "; ".join(
        ([f"the data of {', '.join(trades)} ends there"] if trades else [])
        + ([" and ".join(marks) + " end there", TRIGGER_ON_TRADES] if marks else [])
    )
    asked = config.simulation.end
    if asked is not None:
        wanted = _day_ms(asked) + 86_400_000
        if end < wanted:
            why = said if end == first else "the shared window"
            return f"requested end {_iso(wanted)} moved to {_iso(end)}: {why}"
        return ""
    latest = max(ends.values())
    if marks and end == first:
        # (one contract too: its trade candles run on past its mark's end)
        more = f" (other contracts' data runs to {_iso(latest)})" if end < latest else ""
        return f"the run ends at {_iso(end)}: {said}{more}"
    if end < latest:
        return (
            f"the run ends at {_iso(end)}, where the data of {cut_by} ends "
            f"(other contracts' data runs to {_iso(latest)})"
        )
    return ""


def shared_start(
    config: BotConfig,
    symbols: tuple[str, ...] | None = None,
    data_dir: Path | None = None,
) -> int:
    """The latest start of the configured policies' windows: policies compared in one run
    share one window."""
    symbols = symbols or tuple(c.symbol for c in config.contracts)
    inventory = discover(data_dir or config.data.dir)
    starts = []
    for policy in config.policies:
        histories = load_histories(
            inventory, symbols, policy.timeframe, config.simulation.trigger_source
        )
        starts.append(simulation_window(histories, policy, config)[0])
    return max(starts)


def load_data(
    config: BotConfig,
    policy: Policy,
    symbols: tuple[str, ...],
    data_dir: Path | None = None,
    inventory: DataInventory | None = None,
) -> dict[str, ContractHistory]:
    """The history :func:`run_simulation` replays for ``policy`` on ``symbols`` (per series the
    finest timeframe covering the configured window, see :mod:`bot.marketdata.coverage`).
    ``inventory``: the listing of the data directory to choose from, when the caller listed it
    (a sweep worker checks it against the files the sweep pinned); listed here otherwise."""
    if inventory is None:
        inventory = discover(data_dir or config.data.dir)
    _hedge_data_present(policy, inventory.symbols(), data_dir or config.data.dir)
    return load_histories(
        inventory,
        with_hedge_symbols(symbols, policy),
        policy.timeframe,
        config.simulation.trigger_source,
        requested_window(config),
        candles_needed(policy),
    )


def _hedge_data_present(policy: Policy, available: list[str], folder: Path) -> None:
    """A hedge instrument without data is named as the policy key it comes from (the data
    layer's own error names only the symbol, which reads like a traded contract's)."""
    if policy.hedge is None:
        return
    for i, sym in enumerate(policy.hedge.instruments):
        if sym not in available:
            raise DataError(
                f"policy {policy.name!r}: hedge.instruments[{i}] = {sym!r} has no data in "
                f"{folder}; available: {', '.join(available)}"
            )


def _instruments(
    config: BotConfig, symbols: tuple[str, ...], data_dir: Path | None = None
) -> dict[str, Instrument]:
    """The simulation's instruments: the bundled ones, with the configured fee override."""
    fee = config.simulation.fee_override_taker
    out = config_instruments(config, symbols, data_dir)
    if fee is None:
        return out
    return {s: replace(inst, taker_fee=fee) for s, inst in out.items()}


def _in_default_decimal_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` computing in Python's default decimal context, whatever the calling thread's."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with decimal.localcontext(decimal.Context()):
            return fn(*args, **kwargs)

    return run


@_in_default_decimal_context
def replay(
    config: BotConfig,
    policy: Policy,
    histories: dict[str, ContractHistory],
    instruments: dict[str, Instrument],
    start: int,
    end: int,
    progress: Progress | None = None,
    *,
    exchange_type: type[SimulatedExchange] = SimulatedExchange,
    after_tick: AfterTick | None = None,
    switches: Sequence[Switch] = (),
) -> SimulationResult:
    """Replay ``histories`` from ``start`` to ``end`` through the engine and a simulated
    exchange (``exchange_type``: a subclass may observe or constrain it, e.g. in tests;
    ``after_tick(t, engine, exchange)``: called after every decision tick, e.g. to check the
    invariants the tick must leave behind).

    ``switches``: ``(time, policy)`` pairs, in time order: from the first decision tick at or
    after each time, that policy decides, as when a trader restarts the bot with another
    policy file (a walk-forward's re-optimised choice): the engine is built anew on the same
    exchange, clock and store, so positions, their stops, the risk state and the cooldowns
    carry over. Every policy decides on the same timeframe and contracts as ``policy``.

    The replay computes in Python's default decimal context, whatever the calling thread's:
    the same ticks give the same digits in any process (ccxt changes the context of a thread
    that rounded an order with a client the bot did not prepare, see
    :func:`bot.exchange.ccxt_clients.keep_decimal_context`)."""
    symbols = tuple(histories)
    # a switch at or before the start (a run that starts late for its warm-up or its data):
    # the latest of them decides from the start
    policy = next((p for t, p in reversed(switches) if t <= start), policy)
    tf = parse_timeframe(policy.timeframe)
    balance = config.account.starting_balance
    clock, exchange, market, store, engine = build_simulation(
        config, policy, histories, instruments, start, exchange_type=exchange_type
    )
    series = market.trigger_series()
    tapes = market.funding_tapes()
    for s in series.values():
        s.cursor = max(0, int(np.searchsorted(s.ts, start, side="left")) - 1)
    for tape in tapes.values():
        tape.cursor = int(np.searchsorted(tape.ts, start, side="right"))
    advance(exchange, series, {}, start)  # marks as of the start, no events before it
    candle = ClosedCandle(market, start)
    set_lasts(exchange, market, symbols, start, candle)
    ticks = np.arange(start, end, tf, dtype=np.int64)
    for s in series.values():
        # The bars between two ticks are searched for triggers every tick: their extremes at once.
        s.plan_windows(np.searchsorted(s.ts, ticks - s.tf_ms, side="right"))
    resume = config.simulation.resume_after_halt
    resume_ms = parse_timeframe(resume) if resume is not None else None
    pending = _checked_switches(policy, switches, start, end)
    stale: dict[str, int] = {}
    hedge_log: list[ExposureRecord] = []
    n = len(ticks)
    spot_qty = {
        spot_symbol(a, config.account.quote): float(q)
        for a, q in (config.spot.configured() if config.spot is not None else {}).items()
    }
    figures = _Figures(n + 1, symbols, engine.hedge_symbols, exchange.marks, balance, spot_qty)
    need = set(symbols)
    guard = _Guard(engine, exchange, series, tapes, market, clock, candle)
    with fewer_collections():  # the loop's objects die young (see bot.backtest.collector)
        for k, t in enumerate(ticks.tolist()):
            guard.advance(t)
            clock.advance_to(t)
            if pending and t >= pending[0][0]:
                _, following = pending.pop(0)
                _add_counts(stale, engine.stale_ticks)
                hedge_log += engine.hedge.log if engine.hedge is not None else []
                engine = simulation_engine(config, following, clock, exchange, market, store)
                guard.engine = engine
            set_lasts(exchange, market, symbols, t, candle)
            if exchange.marks.keys() >= need:
                if resume_ms is not None:
                    resume_if_due(store, t, exchange.equity(), resume_ms)
                engine.tick()
                if after_tick is not None:
                    after_tick(t, engine, exchange)
            figures.record(k, exchange)
            if progress is not None and (k % 256 == 0 or k == n - 1):
                progress(k + 1, n)
        # The last interval, from the last tick to ``end``: the report, positions.csv and
        # account.json say the account as of ``end``, so the exchange is brought there as between
        # two ticks (stops, liquidations, the guard), with no decision at ``end`` (the run is
        # [start, end)). A settlement at ``end`` is the next window's, as one at ``start`` is
        # this one's (on the flat account a run starts with: nothing), so consecutive windows
        # neither charge one twice nor skip one.
        guard.advance(end, settle_until=end - 1)
        clock.advance_to(end)
        set_lasts(exchange, market, symbols, end, candle)
        figures.record(n, exchange)
    return SimulationResult(
        policy=policy,
        symbols=symbols,
        start_ms=start,
        end_ms=end,
        ts=np.r_[ticks, np.int64(end)],
        equity=figures.equity,
        benchmark=figures.bench,
        leverage=figures.lev,
        store=store,
        exchange=exchange,
        bars=int(
            sum(np.searchsorted(s.ts, end) - np.searchsorted(s.ts, start) for s in series.values())
        ),
        trigger_sources={s: series[s].source for s in symbols},
        data_selection={s: list(h.selection) for s, h in histories.items()},
        gaps={
            s: [(a, b) for a, b in h.gaps() if b > start and a < end] for s, h in histories.items()
        },
        starting_balance=balance,
        stale_hours={
            s: n * tf / 3_600_000 for s, n in _add_counts(stale, engine.stale_ticks).items()
        },
        hedge_symbols=tuple(s for s in symbols if s in engine.hedge_symbols),
        hedge_log=hedge_log + (engine.hedge.log if engine.hedge is not None else []),
        spot_value=figures.spot_value if spot_qty else None,
    )


def _checked_switches(
    policy: Policy, switches: Sequence[Switch], start: int, end: int
) -> list[Switch]:
    """``switches`` inside the run, in order; a policy on another timeframe or with other
    contracts (a hedge instrument of its own) cannot take over the run: ConfigError."""
    out = [(t, p) for t, p in switches if start < t < end]
    if any(b[0] < a[0] for a, b in pairwise(out)):
        raise ConfigError("policy switches must be in time order")
    for t, p in out:
        if p.timeframe != policy.timeframe:
            raise ConfigError(
                f"policy {p.name!r} (from {_iso(t)}) decides on {p.timeframe} candles, the run on "
                f"{policy.timeframe}: one run switches only between policies of one timeframe"
            )
        if frozenset(hedge_symbols(p)) != frozenset(hedge_symbols(policy)):
            raise ConfigError(
                f"policy {p.name!r} (from {_iso(t)}) hedges with other instruments than "
                f"{policy.name!r}: one run switches only between policies on the same contracts"
            )
    return out


def _add_counts(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for key, count in more.items():
        into[key] = into.get(key, 0) + count
    return into


class _Figures:
    """The per-tick series of a run: equity, each contract's leverage (a traded contract on its
    sleeve of the equity, a hedge leg on the whole), the buy-and-hold benchmark of the book, the
    spot holdings' value."""

    def __init__(
        self,
        n: int,
        symbols: tuple[str, ...],
        hedge_symbols: Collection[str],
        start_marks: dict[str, Decimal],
        balance: Decimal,
        spot_qty: dict[str, float],
    ) -> None:
        self.equity = np.empty(n)
        self.lev = {s: np.zeros(n) for s in symbols}
        self.bench = np.empty(n)
        self.spot_value = np.zeros(n)
        book = [s for s in symbols if s not in hedge_symbols]  # the benchmark holds the book
        self.n_book = max(1, len(book))
        self.balance = float(balance)
        self.spot_qty = spot_qty
        # Per contract: its leverage column, whether it is in the book, its start price.
        self.columns = [(s, self.lev[s], s in book, float(start_marks.get(s, 0))) for s in symbols]

    def record(self, k: int, exchange: SimulatedExchange) -> None:
        eq = exchange.equity()
        self.equity[k] = float(eq)
        marks = exchange.marks
        positions = exchange.book.positions
        sleeve: Decimal | None = None  # a traded contract's share of the equity
        ratio = 0.0
        for sym, column, in_book, px0 in self.columns:
            mark = marks.get(sym, ZERO)
            qty = positions[sym].qty
            if qty != 0:
                if eq <= 0:
                    base = ONE
                elif in_book:
                    if sleeve is None:
                        sleeve = eq / self.n_book
                    base = sleeve
                else:
                    base = eq
                column[k] = float(abs(qty) * mark / base)
            if in_book:
                ratio += float(mark) / px0 if px0 > 0 else 1.0
        self.bench[k] = self.balance * ratio / self.n_book
        if self.spot_qty:
            self.spot_value[k] = sum(q * float(marks.get(s, 0)) for s, q in self.spot_qty.items())


class _Guard:
    """Brings the exchange to each tick, running the engine's guard (the same one paper and live
    run every minute) at the close of every candle whose worst equity reaches the loss limits'
    floor: the search for that candle is vectorised, so quiet candles cost no Python. In cross
    margin it runs too at the close of a candle on which a fill or a settlement moved the wallet
    and left a resting stop beyond the new liquidation price (``advance``'s ``check_stops``):
    the guard's protection pass places it again, as the minute guard would."""

    def __init__(
        self,
        engine: Engine,
        exchange: SimulatedExchange,
        series: dict[str, TriggerSeries],
        tapes: dict[str, FundingTape],
        market: HistoricalMarket,
        clock: SimClock,
        candle: ClosedCandle,
    ) -> None:
        self.engine = engine
        self.exchange = exchange
        self.series = series
        self.tapes = tapes
        self.market = market
        self.clock = clock
        self.candle = candle
        self.floor = _EquityFloor()

    def advance(self, end_ms: int, settle_until: int | None = None) -> None:
        """Bring the exchange to ``end_ms`` (settlements up to ``settle_until``, by default
        ``end_ms``: see :func:`~bot.sim.triggers.advance`)."""
        engine, exchange = self.engine, self.exchange
        while True:
            floor = self.floor(engine.store.load_risk_memory(), engine.limits)
            hit = advance(
                exchange,
                self.series,
                self.tapes,
                end_ms,
                floor,
                check_stops=True,
                settle_until=settle_until,
            )
            if hit is None:
                return
            self.clock.advance_to(hit.ts_ms)
            set_lasts(exchange, self.market, engine.symbols, hit.ts_ms, self.candle)
            engine.guard(observed_equity=hit.equity)


class _EquityFloor:
    """:func:`~bot.risk.guard.equity_floor`, computed again only when the risk memory or the
    limits are other objects than last time: both are frozen, and the store holds a new memory
    whenever the risk state changes."""

    __slots__ = ("_floor", "_of")

    def __init__(self) -> None:
        self._of: tuple[RiskMemory | None, RiskLimits] | None = None
        self._floor: Decimal | None = None

    def __call__(self, memory: RiskMemory | None, limits: RiskLimits) -> Decimal | None:
        known = self._of
        if known is None or known[0] is not memory or known[1] is not limits:
            self._floor = equity_floor(memory, limits)
            self._of = (memory, limits)
        return self._floor


def override(config: BotConfig, start: date | None, end: date | None) -> BotConfig:
    """``config`` with the simulation window moved to ``start`` / ``end`` (``--start``,
    ``--end``); a ConfigError when the window is empty."""
    sim = config.simulation
    changes: dict[str, Any] = {}
    if start is not None:
        changes["start"] = start
    if end is not None:
        changes["end"] = end
    if not changes:
        return config
    new_sim = sim.model_copy(update=changes)
    if new_sim.start is not None and new_sim.end is not None and new_sim.start >= new_sim.end:
        # name where each date comes from: a flag, or the configuration file
        where = f"({config.source.name})"
        first = f"--start {start}" if start else f"simulation.start {new_sim.start} {where}"
        last = f"--end {end}" if end else f"simulation.end {new_sim.end} {where}"
        raise ConfigError(f"{first} must be before {last}")
    return config.model_copy(update={"simulation": new_sim})
