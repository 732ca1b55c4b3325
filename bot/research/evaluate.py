"""One point of a sweep, evaluated where it runs (a local process or a Dask worker).

A task names its inputs (config file, policy table, data directory, window) and never carries
market data: each worker loads a contract's history once and keeps it for every later point with
the same data, contracts, timeframe and trigger source. The point is simulated by the same entry
point as ``bot simulate`` (:func:`bot.backtest.replay.run_simulation`) and its metrics come from the
same report builder, so a point's figures equal ``bot simulate``'s to the last digit. Only the
metrics (and, when asked, the daily equity closes) travel back: memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bot.backtest.metrics import _daily_returns, daily_closes
from bot.backtest.replay import override, run_simulation
from bot.backtest.report import build_report
from bot.catalogue import catalogue_path
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.engine.hedging import with_hedge_symbols
from bot.engine.market import candles_needed
from bot.errors import BotError, DataError
from bot.marketdata.cache import content_hash
from bot.marketdata.files import DataFileError, DataInventory
from bot.research.fingerprint import OTHER_CODE, code_fingerprint, other_code
from bot.research.histories import shared_histories

REPORT_METRICS = (
    "start",
    "end",
    "bars",
    "decision_ticks",
    "final_equity",
    "total_return",
    "cagr",
    "max_drawdown",
    "sharpe",
    "sortino",
    "calmar",
    "n_orders",
    "n_trades",
    "n_stop_losses",
    "n_take_profits",
    "n_liquidations",
    "n_denials",
    "n_stops_rejected",
    "fees_paid",
    "funding_paid",
    "avg_leverage",
    "max_leverage",
    "buy_and_hold_return",
    "time_in_market",
    "time_halted",
    "slippage_paid",
    "loss_beyond_wallet",
)
"""The scalar metrics of report.json, in its order (elapsed time left out: not a result)."""

DATA_FIGURES = ("stale_hours",)
"""How much of the run sat on stale data: the most hours any contract spent without fresh
market data (report.json's ``stale_hours``, its worst contract); a window inside a data gap
trades nothing and says so here."""

DAILY_STATS = ("daily_sharpe", "daily_skew", "daily_kurtosis", "n_days")
"""Per-day (not annualised) Sharpe, skewness and kurtosis of the daily returns: the inputs of
the deflated Sharpe ratio."""


@dataclass(frozen=True, slots=True)
class PointTask:
    key: str
    config_path: str
    policy: dict[str, Any]
    data_dir: str | None = None
    contracts: tuple[str, ...] | None = None
    start: date | None = None
    end: date | None = None
    keep_curve: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    inputs: str = ""  # hash of the config, policy and data files' contents (cache key)
    pinned: tuple[tuple[str, str], ...] = ()  # (file, content hash) the sweep started with
    # the pinned files every point reads afresh (signal files): checked at every point
    pinned_each: tuple[tuple[str, str], ...] = ()
    # (time ms, policy table): from the first decision tick at or after each time, that policy
    # decides in the same run (a walk-forward's re-optimised choices, see replay's switches)
    switches: tuple[tuple[int, dict[str, Any]], ...] = ()
    # the names of every input pinned ("data BTC/USDT:USDT 5m", "contract catalogue", see
    # Sweep.inputs): a data file of the contracts, or a catalogue, under no pinned name is not
    # one the sweep started with (None: nothing pinned, a task made by hand)
    pinned_names: tuple[str, ...] | None = None
    # the fingerprint of the code that made the task: a worker on other code refuses it
    code: str = field(default_factory=code_fingerprint)

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], PointTask], tuple[dict[str, Any]]]:
        # Pickled by field name, not by position (the default of a slots dataclass): a worker
        # whose class has other fields paired the values with its own fields in order and
        # silently dropped the rest (an older worker lost a walk-forward's switches).
        return _point_task, ({f.name: getattr(self, f.name) for f in fields(self)},)


def _point_task(state: dict[str, Any]) -> PointTask:
    """A pickled :class:`PointTask` again, refused when its fields are not this code's."""
    names = {f.name for f in fields(PointTask)}
    missing, unknown = sorted(names - set(state)), sorted(set(state) - names)
    if missing or unknown:
        said = [f"missing {', '.join(missing)}"] if missing else []
        said += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise TypeError(
            f"{OTHER_CODE}: a point's fields are not this worker's ({'; '.join(said)}): "
            "install the same project version on every worker"
        )
    return PointTask(**state)


INPUTS_CHANGED = "an input changed during the sweep"
"""How a point's error starts when a file it reads is not the one the sweep started with: the
sweep stops (its finished rows stay valid for the inputs it pinned)."""

BAD_DATA_FILE = "a data file cannot be used"
"""How a point's error starts when a file it read is unusable (a bad line, another contract's
prices, :class:`~bot.marketdata.files.DataFileError`): a fact about the file, not the point,
that every point reading it would meet. The sweep stops instead of recording it as each point's
result (and, with no point finished, leaves nothing that would refuse the corrected command)."""

STOPS = (INPUTS_CHANGED, OTHER_CODE, BAD_DATA_FILE)
"""How the error of a point starts that stops the sweep: its inputs or its worker's code are
not the sweep's, so no later row could be compared with the earlier ones; or a file it read
cannot be used, so no point reading it can have a result."""


class InputsChanged(DataError):
    """A file a point read (the configuration, a data file) changed since the sweep started,
    or a point would read a file the sweep did not start with."""


class OtherCode(BotError):
    """The worker runs other code than the sweep that made the point."""


def check_pinned(pinned: tuple[tuple[str, str], ...]) -> None:
    """Raise :class:`InputsChanged` unless every pinned file still has its pinned content.

    Run after a worker reads the files afresh (a data set or a configuration it did not hold
    yet): a data file rewritten by a download job while a long sweep runs would otherwise feed
    the later points other data than the earlier ones, in one results file. Cheap: the data
    cache's stamp answers for an unchanged file without reading it."""
    for path, digest in pinned:
        try:
            now = content_hash(Path(path))
        except DataError as e:
            raise InputsChanged(f"{INPUTS_CHANGED}: {e}") from e
        if now != digest:
            raise InputsChanged(
                f"{INPUTS_CHANGED}: {path} is not the file the sweep started with (content "
                f"{digest}, now {now}); the rows finished before stay in results.csv for the "
                "old content: start a new --out to sweep the new one"
            )


def unpinned(files: Mapping[str, Path], names: tuple[str, ...]) -> list[Path]:
    """The files of ``files`` (by input name) under no pinned name."""
    known = set(names)
    return [path for name, path in files.items() if name not in known]


def check_listed(files: Mapping[str, Path], names: tuple[str, ...] | None) -> None:
    """Raise :class:`InputsChanged` when a point would choose from a file the sweep did not pin.

    :func:`check_pinned` sees only the pinned files; the selection takes the finest file
    covering the window from what the worker lists itself, so a finer file that appeared since
    the sweep started (a download job finishing) or that only this worker's data directory
    holds fed some points other data than the others, unseen, in one results file."""
    if names is None:
        return
    extra = unpinned(files, names)
    if extra:
        raise InputsChanged(
            f"{INPUTS_CHANGED}: {', '.join(str(p) for p in extra)} is not among the files the "
            "sweep started with (added since, or held by this worker's data directory only), "
            "and the data would be chosen from it; the rows finished before stay in "
            "results.csv for the files pinned: start a new --out to sweep the data as it is now"
        )


def catalogue_of(config: BotConfig, data_dir: Path | None) -> dict[str, Path]:
    """The user's contract catalogue the run reads, by its input name, when there is one."""
    path = catalogue_path(data_dir or config.data.dir, config.data.exchange)
    return {"contract catalogue": path} if path.is_file() else {}


_CONFIGS: dict[tuple[str, str], BotConfig] = {}


def _config(path: str, inputs: str, verify: Callable[[], None] = lambda: None) -> BotConfig:
    """The configuration at ``path`` as of the sweep whose inputs hash to ``inputs`` (a later
    sweep after the file was edited gets the new content, even in a long-lived worker).
    ``verify`` runs after a read of the file (not when the configuration is held already)."""
    cfg = _CONFIGS.get((path, inputs))
    if cfg is None:
        cfg = load_config(Path(path))
        verify()
        if len(_CONFIGS) >= 8:
            _CONFIGS.pop(next(iter(_CONFIGS)))
        _CONFIGS[(path, inputs)] = cfg
    return cfg


def evaluate(task: PointTask) -> dict[str, Any]:
    """The metrics of one point; ``status`` is ``ok`` or ``error`` (with ``error`` set).

    A bad point (invalid policy, no data in its window) is a result, not a crash of the sweep;
    a data file that cannot be used is not the point's: ``failed`` (:data:`BAD_DATA_FILE`)."""
    row: dict[str, Any] = {"key": task.key, **task.meta}
    try:
        ours = code_fingerprint()
        if task.code != ours:
            raise OtherCode(other_code(ours, task.code))
        policy = Policy.model_validate(task.policy)
        switches = [(t, Policy.model_validate(raw)) for t, raw in task.switches]

        def verify() -> None:
            check_pinned(task.pinned)

        base = _config(task.config_path, task.inputs, verify)
        config = override(base.model_copy(update={"policies": (policy,)}), task.start, task.end)
        symbols = task.contracts or tuple(c.symbol for c in config.contracts)
        data_dir = Path(task.data_dir) if task.data_dir else None
        # the data chosen for the longest warm-up serves every policy of the run
        longest = max([policy, *(p for _, p in switches)], key=candles_needed)

        def admit(inventory: DataInventory) -> None:
            check_listed(
                inventory.series_files(with_hedge_symbols(symbols, longest)), task.pinned_names
            )

        histories = shared_histories(config, longest, symbols, data_dir, task.inputs, verify, admit)
        # read by the run itself, not kept by the worker: the signals, the catalogue
        check_listed(catalogue_of(config, data_dir), task.pinned_names)
        check_pinned(task.pinned_each)
        result = run_simulation(
            config,
            policy,
            symbols=symbols,
            data_dir=data_dir,
            histories=histories,
            switches=switches,
        )
    except (InputsChanged, OtherCode) as exc:
        # "failed" with the reason first: the sweep stops on it (see STOPS)
        row.update(status="failed", error=str(exc).replace("\n", "; "))
        return row
    except DataFileError as exc:
        # (a "failed" row runs again on resume: the file's, not the point's)
        error = f"{BAD_DATA_FILE}: {exc}".replace("\n", "; ")
        row.update(status="failed", error=error)
        return row
    except (BotError, ValueError) as exc:
        row.update(status="error", error=str(exc).replace("\n", "; "))
        return row
    except Exception as exc:
        # A bug met by this point (not a property of the point): said on its row as "failed",
        # so one point cannot end a long sweep and a resumed sweep runs it again. The cluster
        # executor reports a point that raised the same way.
        text = f"{type(exc).__name__}: {exc}".replace("\n", "; ")
        row.update(status="failed", error=f"the point raised {text}")
        return row
    report = build_report(result, 0.0)
    row.update(status="ok", error="")
    row.update({k: report[k] for k in REPORT_METRICS})
    row["stale_hours"] = max(report["stale_hours"].values(), default=0.0)
    row.update(daily_stats(_daily_returns(*result.curve_from_start(), opening=True, closing=True)))
    if task.keep_curve:
        days, closes = daily_closes(result.equity, result.ts, closing=True)
        row["curve"] = (days.tolist(), closes.tolist())
    return row


def daily_stats(returns: Any) -> dict[str, float]:
    """The daily returns' statistics, over the same returns as the report's Sharpe ratio."""
    r = np.asarray(returns, dtype=np.float64)
    n = int(r.size)
    if n < 2 or float(np.std(r)) < 1e-12:
        # Flat (no trades, no data) or too short: the Sharpe ratio is 0 as in the report, the
        # higher moments are undefined (NaN), so no deflated Sharpe ratio is made up from them.
        nan = float("nan")
        return {"daily_sharpe": 0.0, "daily_skew": nan, "daily_kurtosis": nan, "n_days": n}
    mu, sd = float(np.mean(r)), float(np.std(r, ddof=1))
    z = (r - mu) / float(np.std(r))
    return {
        "daily_sharpe": mu / sd,
        "daily_skew": float(np.mean(z**3)),
        "daily_kurtosis": float(np.mean(z**4)),
        "n_days": n,
    }
