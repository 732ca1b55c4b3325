"""The dry-run simulation: history through the simulated exchange, driven by the real engine.

The loop advances a :class:`~bot.clock.SimClock` from one decision tick to the next. Between
ticks the simulated exchange processes the finer trigger bars (vectorised, no policy calls);
at each tick the :class:`~bot.engine.tick.Engine` runs exactly as it does live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.catalogue import resolve_instruments
from bot.clock import Clock, SimClock, datetime_to_ms
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.fanout import SEQUENTIAL, Fanout
from bot.engine.market import MarketDataPort, candles_needed
from bot.engine.tick import Engine
from bot.errors import ConfigError, DataError
from bot.exchange.port import ExchangePort
from bot.marketdata.files import discover
from bot.marketdata.signals import load_signals
from bot.risk.guard import equity_floor
from bot.risk.limits import RiskLimits
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import ContractHistory, HistoricalMarket, load_histories
from bot.sim.operator import resume_if_due
from bot.sim.slippage import BPS, SlippageModel
from bot.sim.triggers import FundingTape, TriggerSeries, advance, to_decimal
from bot.stats.timeframes import parse_timeframe
from bot.store.memory import MemoryStore
from bot.store.port import StorePort

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class SimulationResult:
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
    stale_hours: dict[str, float] = field(default_factory=dict)  # per contract


def risk_limits(config: BotConfig, policy: Policy) -> RiskLimits:
    """The stricter of the configuration's hard limits and the policy's own."""
    r = config.risk
    return RiskLimits(
        max_leverage_per_contract=r.max_leverage_per_contract,
        max_gross_leverage=r.max_gross_leverage,
        max_notional_per_contract=r.max_notional_per_contract,
        daily_loss=min(r.daily_loss_limit, policy.limits.daily_loss),
        max_drawdown=min(r.max_drawdown, policy.limits.max_drawdown),
        stale_data_ms=r.stale_data_seconds * 1000,
        max_orders_per_minute=r.max_orders_per_minute,
        on_daily_loss=r.on_daily_loss,
        stop_slippage=r.expected_stop_slippage_bps / 10000,
        max_unreadable_reads=r.max_unreadable_reads,
        max_protection_failures=r.max_protection_failures,
    )


def slippage_model(config: BotConfig) -> SlippageModel:
    """The configured slippage model (see :mod:`bot.sim.slippage`)."""
    sim = config.simulation
    if sim.slippage_model == "fixed":
        return SlippageModel.fixed(sim.slippage_bps)
    return SlippageModel(
        floor=sim.slippage_bps * BPS,
        range_fraction=sim.slippage_range_fraction,
        impact=sim.slippage_impact,
    )


def contract_specs(config: BotConfig, symbols: tuple[str, ...]) -> list[ContractSpec]:
    by_symbol = {c.symbol: c for c in config.contracts}
    specs = []
    for sym in symbols:
        c = by_symbol.get(sym)
        direction = c.direction if c is not None else "long"
        signal = None
        if c is not None and c.direction == "signal" and c.signal_file is not None:
            series = load_signals(c.signal_file)
            if sym not in series:
                raise DataError(f"{c.signal_file}: no signals for {sym}")
            signal = series[sym]
        cap = c.max_leverage if c is not None and c.max_leverage is not None else Decimal(125)
        notional = c.max_notional if c is not None else None
        specs.append(ContractSpec(sym, direction, cap, signal, notional))
    return specs


def _day_ms(d: date) -> int:
    return datetime_to_ms(datetime.combine(d, time(0), tzinfo=UTC))


def simulation_window(
    histories: dict[str, ContractHistory], policy: Policy, config: BotConfig
) -> tuple[int, int]:
    """[start, end) in ms: the configured dates, or where every contract has warm-up data."""
    tf = parse_timeframe(policy.timeframe)
    warm = candles_needed(policy)
    first = max(
        max(int(h.decision.ts[min(warm, len(h.decision) - 1)]), int(h.trigger.ts[0]))
        for h in histories.values()
    )
    last = min(int(h.trigger.ts[-1]) + h.trigger.tf_ms for h in histories.values())
    sim = config.simulation
    start = _day_ms(sim.start) if sim.start is not None else first
    end = _day_ms(sim.end + timedelta(days=1)) if sim.end is not None else last
    start = max(start, first)
    end = min(end, last)
    start += (-start) % tf
    if end - start < tf:
        raise DataError(
            f"no simulation window: data for {', '.join(histories)} with {warm} {policy.timeframe} "
            f"candles of warm-up covers {_iso(first)} .. {_iso(last)}, asked "
            f"{sim.start or 'start'} .. {sim.end or 'end'}"
        )
    return start, end


def requested_window(config: BotConfig) -> tuple[int | None, int | None]:
    """[start, end) in ms of the configured simulation dates (None where not set): the window
    the data files are chosen to cover (:mod:`bot.marketdata.coverage`)."""
    sim = config.simulation
    return (
        _day_ms(sim.start) if sim.start is not None else None,
        _day_ms(sim.end + timedelta(days=1)) if sim.end is not None else None,
    )


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
) -> SimulationResult:
    """Simulate ``policy``.

    ``not_before`` moves the start later (a shared window). ``histories``: the loaded history of
    ``symbols`` at the policy's timeframe, when the caller already holds it (a sweep worker
    reuses it for every point); loaded here otherwise. ``window``: [start, end) in ms instead
    of :func:`simulation_window`'s (policies compared on one footing share one window)."""
    symbols = symbols or tuple(c.symbol for c in config.contracts)
    if histories is None:
        histories = load_data(config, policy, symbols, data_dir)
    instruments = _instruments(config, symbols, data_dir)
    own_start, own_end = simulation_window(histories, policy, config)
    start, end = window if window is not None else (own_start, own_end)
    if not_before is not None and not_before > start:
        start = not_before + (-not_before) % parse_timeframe(policy.timeframe)
    result = replay(config, policy, histories, instruments, start, end, progress)
    asked = config.simulation.start
    result.requested_start_ms = _day_ms(asked) if asked is not None else None
    if result.requested_start_ms is not None and start > result.requested_start_ms:
        why = (
            f"the policy's warm-up ({candles_needed(policy)} {policy.timeframe} candles) "
            "and the data's first candles"
        )
        if start > own_start:
            why = "the shared window of the policies compared (the latest warm-up decides)"
        result.start_note = (
            f"requested start {_iso(result.requested_start_ms)} moved to {_iso(start)}: {why}"
        )
    return result


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
    config: BotConfig, policy: Policy, symbols: tuple[str, ...], data_dir: Path | None = None
) -> dict[str, ContractHistory]:
    """The history :func:`run_simulation` replays for ``policy`` on ``symbols`` (per series the
    finest timeframe covering the configured window, see :mod:`bot.marketdata.coverage`)."""
    inventory = discover(data_dir or config.data.dir)
    return load_histories(
        inventory,
        symbols,
        policy.timeframe,
        config.simulation.trigger_source,
        requested_window(config),
    )


def config_instruments(
    config: BotConfig, symbols: Sequence[str], data_dir: Path | None = None
) -> dict[str, Instrument]:
    """The specifications of ``symbols`` on the configured exchange: the user's catalogue under
    the data directory first, then the bundled snapshot (see :mod:`bot.catalogue`); a ConfigError
    names any contract in neither, both places and the command that fixes it. ``data_dir`` (a
    ``--data`` override) holds the catalogue instead of the configured data directory."""
    try:
        return resolve_instruments(config.data.exchange, symbols, data_dir or config.data.dir)
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: contracts: {exc}") from None


def _instruments(
    config: BotConfig, symbols: tuple[str, ...], data_dir: Path | None = None
) -> dict[str, Instrument]:
    """The simulation's instruments: the bundled ones, with the configured fee override."""
    fee = config.simulation.fee_override_taker
    out = config_instruments(config, symbols, data_dir)
    if fee is None:
        return out
    return {s: replace(inst, taker_fee=fee) for s, inst in out.items()}


def engine_for(
    config: BotConfig,
    policy: Policy,
    symbols: Sequence[str],
    *,
    clock: Clock,
    exchange: ExchangePort,
    market: MarketDataPort,
    store: StorePort,
    fanout: Fanout = SEQUENTIAL,
) -> Engine:
    """The engine for ``config`` and ``policy``: the same wiring in simulation, paper and live.

    ``fanout`` runs a tick's independent exchange calls: one after the other (simulation and
    paper, deterministic) unless live trading passes a thread pool."""
    return Engine(
        clock=clock,
        exchange=exchange,
        market=market,
        store=store,
        policy=policy,
        contracts=contract_specs(config, tuple(symbols)),
        limits=risk_limits(config, policy),
        account=config.account.name,
        margin_mode=MarginMode(config.account.margin_mode),
        fanout=fanout,
    )


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
) -> SimulationResult:
    """Replay ``histories`` from ``start`` to ``end`` through the engine and a simulated
    exchange (``exchange_type``: a subclass may observe or constrain it, e.g. in tests)."""
    symbols = tuple(histories)
    tf = parse_timeframe(policy.timeframe)
    clock = SimClock(start)
    balance = config.account.starting_balance
    exchange = exchange_type(
        instruments,
        clock,
        starting_balance=balance,
        margin_mode=MarginMode(config.account.margin_mode),
        slippage_bps=config.simulation.slippage_bps,
        quote=config.account.quote,
        slippage_model=slippage_model(config),
    )
    market = HistoricalMarket(histories)
    series = market.trigger_series()
    tapes = market.funding_tapes()
    for s in series.values():
        s.cursor = max(0, int(np.searchsorted(s.ts, start, side="left")) - 1)
    for tape in tapes.values():
        tape.cursor = int(np.searchsorted(tape.ts, start, side="right"))
    advance(exchange, series, {}, start)  # marks as of the start, no events before it
    for sym in symbols:
        _set_last(exchange, market, sym, start)
    store = MemoryStore()
    engine = engine_for(
        config, policy, symbols, clock=clock, exchange=exchange, market=market, store=store
    )
    ticks = np.arange(start, end, tf, dtype=np.int64)
    resume = config.simulation.resume_after_halt
    resume_ms = parse_timeframe(resume) if resume is not None else None
    n = len(ticks)
    equity = np.empty(n)
    lev = {s: np.zeros(n) for s in symbols}
    base_px = {s: float(exchange.marks.get(s, 0)) for s in symbols}
    bench = np.empty(n)
    for k, t in enumerate(ticks.tolist()):
        _advance_guarded(exchange, series, tapes, t, engine, market, clock)
        clock.advance_to(t)
        for sym in symbols:
            _set_last(exchange, market, sym, t)
        if all(sym in exchange.marks for sym in symbols):
            if resume_ms is not None:
                resume_if_due(store, t, exchange.equity(), resume_ms)
            engine.tick()
        eq = exchange.equity()
        equity[k] = float(eq)
        sleeve = eq / len(symbols) if eq > 0 else Decimal(1)
        ratio = 0.0
        for sym in symbols:
            pos = exchange.book.positions[sym]
            mark = exchange.marks.get(sym, Decimal(0))
            if pos.qty != 0:
                lev[sym][k] = float(abs(pos.qty) * mark / sleeve)
            ratio += float(mark) / base_px[sym] if base_px[sym] > 0 else 1.0
        bench[k] = float(balance) * ratio / len(symbols)
        if progress is not None and (k % 256 == 0 or k == n - 1):
            progress(k + 1, n)
    return SimulationResult(
        policy=policy,
        symbols=symbols,
        start_ms=start,
        end_ms=end,
        ts=ticks,
        equity=equity,
        benchmark=bench,
        leverage=lev,
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
        stale_hours={s: n * tf / 3_600_000 for s, n in engine.stale_ticks.items()},
    )


def _advance_guarded(
    exchange: SimulatedExchange,
    series: dict[str, TriggerSeries],
    tapes: dict[str, FundingTape],
    end_ms: int,
    engine: Engine,
    market: HistoricalMarket,
    clock: SimClock,
) -> None:
    """Bring the exchange to ``end_ms``, running the engine's guard (the same one paper and live
    run every minute) at the close of every candle whose worst equity reaches the loss limits'
    floor: the search for that candle is vectorised, so quiet candles cost no Python."""
    while True:
        floor = equity_floor(engine.store.load_risk_memory(), engine.limits)
        hit = advance(exchange, series, tapes, end_ms, floor)
        if hit is None:
            return
        clock.advance_to(hit.ts_ms)
        for sym in engine.symbols:
            _set_last(exchange, market, sym, hit.ts_ms)
        engine.guard(observed_equity=hit.equity)


def _set_last(exchange: SimulatedExchange, market: HistoricalMarket, sym: str, t: int) -> None:
    last = market.last_price(sym, t)
    if last is not None:
        exchange.lasts[sym] = last[0]
    if exchange.slippage_model.data_driven:
        # Market orders pay for the candle that just closed (its range and volume), looked up
        # only when an order fills.
        exchange.candle_lookup = lambda symbol: _closed_candle(market, symbol, t)


def _closed_candle(market: HistoricalMarket, symbol: str, t: int) -> tuple[Decimal, Decimal] | None:
    c = market.contracts[symbol].last
    i = int(c.ts.searchsorted(t - c.tf_ms, side="right")) - 1
    if i < 0 or c.open[i] <= 0:
        return None
    return to_decimal((c.high[i] - c.low[i]) / c.open[i]), to_decimal(c.volume[i])
