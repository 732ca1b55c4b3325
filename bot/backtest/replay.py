"""The dry-run simulation: history through the simulated exchange, driven by the real engine.

The loop advances a :class:`~bot.clock.SimClock` from one decision tick to the next. Between
ticks the simulated exchange processes the finer trigger bars (vectorised, no policy calls);
at each tick the :class:`~bot.engine.tick.Engine` runs exactly as it does live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.bootstrap import build_simulation, config_instruments
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.domain.instrument import Instrument
from bot.marketdata.files import discover
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import (
    ContractHistory,
    HistoricalMarket,
    load_histories,
    simulation_window,
)
from bot.sim.triggers import advance
from bot.stats.timeframes import parse_timeframe
from bot.store.memory import MemoryStore

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
    starting_balance: Decimal = Decimal(0)


def run_simulation(
    config: BotConfig,
    policy: Policy,
    *,
    symbols: tuple[str, ...] | None = None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    symbols = symbols or tuple(c.symbol for c in config.contracts)
    inventory = discover(data_dir or config.data.dir)
    histories = load_histories(
        inventory, symbols, policy.timeframe, config.simulation.trigger_source
    )
    instruments = _instruments(config, symbols)
    start, end = simulation_window(histories, policy, config)
    return replay(config, policy, histories, instruments, start, end, progress)


def _instruments(config: BotConfig, symbols: tuple[str, ...]) -> dict[str, Instrument]:
    """The simulation's instruments: the bundled ones, with the configured fee override."""
    fee = config.simulation.fee_override_taker
    out = config_instruments(config, symbols)
    if fee is None:
        return out
    return {s: replace(inst, taker_fee=fee) for s, inst in out.items()}


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
    for sym in symbols:
        _set_last(exchange, market, sym, start)
    ticks = np.arange(start, end, tf, dtype=np.int64)
    n = len(ticks)
    equity = np.empty(n)
    lev = {s: np.zeros(n) for s in symbols}
    base_px = {s: float(exchange.marks.get(s, 0)) for s in symbols}
    bench = np.empty(n)
    for k, t in enumerate(ticks.tolist()):
        advance(exchange, series, tapes, t)
        clock.advance_to(t)
        for sym in symbols:
            _set_last(exchange, market, sym, t)
        if all(sym in exchange.marks for sym in symbols):
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
        gaps={
            s: [(a, b) for a, b in h.gaps() if b > start and a < end] for s, h in histories.items()
        },
        starting_balance=balance,
    )


def _set_last(exchange: SimulatedExchange, market: HistoricalMarket, sym: str, t: int) -> None:
    last = market.last_price(sym, t)
    if last is not None:
        exchange.lasts[sym] = last[0]
