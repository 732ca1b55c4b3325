"""Loaded market histories kept for the life of a worker process.

A worker (a local process, a Dask worker, or this process with ``--workers 1``) loads a data set
once and reuses it for every later simulation on the same data: every point of a sweep, every
policy of ``bot simulate --policy A --policy B`` that lands on it. The key is everything the
loaded series depend on: the data directory, the contracts (hedge instruments included), the
decision timeframe, the trigger source and the configured window (which picks, per series, the
finest file covering it). Histories are read-only once loaded (the replay keeps its cursors in
its own objects), so sharing them cannot change a result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.backtest.replay import load_data
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.engine.hedging import with_hedge_symbols
from bot.engine.market import candles_needed
from bot.marketdata.files import DataInventory, discover
from bot.sim.history import ContractHistory, requested_window

MAX_KEPT = 4  # data sets kept at once: a worker's memory stays bounded whatever the sweep

_KEPT: dict[tuple[Any, ...], dict[str, ContractHistory]] = {}


def shared_histories(
    config: BotConfig,
    policy: Policy,
    symbols: tuple[str, ...],
    data_dir: Path | None,
    inputs: str = "",
    verify: Callable[[], None] | None = None,
    admit: Callable[[DataInventory], None] | None = None,
) -> dict[str, ContractHistory]:
    """:func:`bot.backtest.replay.load_data`, loaded once per process for each data set.
    ``inputs``: the hash of the data files' contents when the caller knows it (a sweep), so a
    long-lived worker never serves the old content of a file edited between two sweeps.
    ``admit``: run on the data directory's listing before a fresh load chooses from it (it
    raises when the listing holds a file the caller did not pin: the selection takes the
    finest covering file, so a file added since would be chosen unseen); the load then
    chooses from that very listing.
    ``verify``: run after a fresh load, before the data set is kept (it raises when the files
    read are not the ones the caller pinned; nothing is kept then)."""
    key = (
        inputs,
        str(data_dir or config.data.dir),
        with_hedge_symbols(symbols, policy),
        policy.timeframe,
        candles_needed(policy),  # the decision candles' source depends on the warm-up
        config.simulation.trigger_source,
        requested_window(config),
    )
    got = _KEPT.get(key)
    if got is None:
        if len(_KEPT) >= MAX_KEPT:
            _KEPT.pop(next(iter(_KEPT)))  # the oldest
        inventory = discover(data_dir or config.data.dir)
        if admit is not None:
            admit(inventory)
        got = load_data(config, policy, symbols, data_dir, inventory)
        if verify is not None:
            verify()
        _KEPT[key] = got
    return got
