"""``bot sweep``: a policy's parameters searched on history, optionally walk-forward.

Every point is one :func:`bot.research.evaluate.evaluate` call sent through an
:class:`~bot.research.executors.Executor`; rows stream into ``results.csv`` as points finish
(resumable), and only the small per-point metrics stay in memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot import strict_json
from bot.atomic_file import replaced_text
from bot.backtest.metrics import DAY_MS
from bot.backtest.replay import load_data, override
from bot.catalogue import stand_in_warning
from bot.config.loader import load_config
from bot.config.policy import Policy
from bot.engine.hedging import with_hedge_symbols
from bot.errors import ConfigError, DataError
from bot.marketdata.cache import content_hash
from bot.marketdata.files import discover
from bot.outputs import prepare_dir, remove_created
from bot.research import space
from bot.research.evaluate import (
    BAD_DATA_FILE,
    INPUTS_CHANGED,
    STOPS,
    PointTask,
    catalogue_of,
    evaluate,
)
from bot.research.executors import Executor
from bot.research.overfitting import deflated_sharpe
from bot.research.results import ResultsFile, check_objective, check_spec, columns, score
from bot.research.space import Param, Scalar
from bot.research.walkforward import (
    WalkForward,
    Window,
    curve_metrics,
    day_iso,
    stitch,
    windows,
)
from bot.sim.history import simulation_window

Point = dict[str, Scalar]


@dataclass
class SweepSpec:
    config_path: Path
    base_policy: Path
    params: list[Param]
    out: Path
    search: str = "grid"
    trials: int | None = None
    objective: str = "sharpe"
    walk_forward: WalkForward | None = None
    data_dir: Path | None = None
    contracts: tuple[str, ...] | None = None
    start: date | None = None
    end: date | None = None
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "config": str(self.config_path.resolve()),
            "base_policy": str(self.base_policy.resolve()),
            "params": [
                [p.key, [str(v) for v in p.values], str(p.low), str(p.high)] for p in self.params
            ],
            "search": self.search,
            "trials": self.trials,
            "objective": self.objective,
            "walk_forward": str(self.walk_forward) if self.walk_forward else None,
            "data_dir": str(self.data_dir.resolve()) if self.data_dir else None,
            "contracts": list(self.contracts) if self.contracts else None,
            "start": str(self.start) if self.start else None,
            "end": str(self.end) if self.end else None,
            "seed": self.seed,
        }


@dataclass
class SweepOutcome:
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_point: Point | None
    summary: dict[str, Any]
    invalid: list[tuple[Point, str]] = field(default_factory=list)


Listener = Callable[[dict[str, Any], int], None]
"""Called with each finished row and the number of new tasks it completed (for a progress bar)."""


def point_id(point: Point) -> str:
    text = strict_json.dumps({k: str(v) for k, v in sorted(point.items())})
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


class Sweep:
    def __init__(self, spec: SweepSpec, executor: Executor) -> None:
        self.spec = spec
        self.executor = executor
        self.base = space.read_base(spec.base_policy)
        space.check_keys(spec.params, str(spec.base_policy))
        spec.params = space.integer_ranges(spec.params)
        check_objective(spec.objective)
        if spec.search not in ("grid", "random", "tpe"):
            raise ConfigError(f"--search {spec.search!r}: choose grid, random or tpe")
        if spec.search != "grid" and spec.trials is None:
            raise ConfigError(f"--search {spec.search} needs --trials N")
        if spec.trials is not None and spec.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {spec.trials}")
        self.config = override(load_config(spec.config_path), spec.start, spec.end)
        self.keys = [p.key for p in spec.params]
        self.points: dict[str, Point] = {}
        self.invalid: list[tuple[Point, str]] = []
        self._refusals: dict[str, str | None] = {}  # by point id: why the point cannot run
        self.listener: Listener | None = None
        self.stamp = ""  # the hash of the inputs' contents, set by run()
        self.pinned: tuple[tuple[str, str], ...] = ()  # (file, hash) the workers read, by run()
        self._tpe_batch = 1  # points asked of TPE at a time (sweep.json keeps it, see _run)
        self.pinned_each: tuple[tuple[str, str], ...] = ()  # of them, read by every point
        self.pinned_names: tuple[str, ...] = ()  # the names of every input pinned, by run()
        self.data_span: tuple[int, int] | None = None  # walk-forward: the windows' span
        # The output directory is checked (created) before any point runs, not found unusable
        # once the first one has; what this sweep creates there and finishes nothing in is
        # removed again when it fails (discard_unfinished).
        self._created = prepare_dir(spec.out, "--out")
        self._wrote_spec = False
        self._results: ResultsFile | None = None

    # --- the points ------------------------------------------------------------------------

    def policy_of(self, point: Point) -> tuple[dict[str, Any], str | None]:
        """The point's policy table and, when ``bot simulate`` would refuse it, why."""
        raw = space.apply(self.base, point)
        pid = point_id(point)
        if pid not in self._refusals:
            label = f"{self.spec.base_policy} with {space.point_label(point)}"
            _, error = space.validate(raw, label)
            self._refusals[pid] = error if error is not None else self._config_refuses(raw)
        return raw, self._refusals[pid]

    def _config_refuses(self, raw: dict[str, Any]) -> str | None:
        """The configuration's own rules about its policy (a hedge instrument that is also a
        traded contract, a leverage or stop the venue's brackets refuse): the points run with
        a copy of the configuration that never meets them, so each point is loaded here as
        ``bot simulate --policy best.toml`` would load it, from the file best.toml would be."""
        with tempfile.TemporaryDirectory(prefix="bot-sweep-") as folder:
            path = Path(folder) / "point.toml"
            path.write_text(space.to_toml(raw), encoding="utf-8")
            try:
                load_config(self.spec.config_path, policy_overrides=[path])
            except ConfigError as exc:
                return str(exc).replace(str(path), "the point's policy").replace("\n", "; ")
        return None

    def listed_points(self) -> list[Point]:
        if self.spec.search == "grid":
            return space.grid(self.spec.params)
        return space.random_points(self.spec.params, self.spec.trials or 0, self.spec.seed)

    def windows(self) -> list[Window] | None:
        wf = self.spec.walk_forward
        if wf is None:
            return None
        policy = Policy.model_validate(self.base)
        symbols = self.spec.contracts or tuple(c.symbol for c in self.config.contracts)
        histories = load_data(self.config, policy, symbols, self.spec.data_dir)
        start, end = simulation_window(histories, policy, self.config)
        self.data_span = (start, end)
        return windows(wf, start, end)

    def stand_in_warning(self) -> str | None:
        """What ``bot simulate`` warns of the contracts the points ran on stand-in figures."""
        symbols = self.spec.contracts or tuple(c.symbol for c in self.config.contracts)
        data_dir = self.spec.data_dir or self.config.data.dir
        return stand_in_warning(self.config.data.exchange, symbols, data_dir)

    def inputs(self) -> dict[str, tuple[str, str]]:
        """Every file a point's result depends on (the configuration, the base policy, the
        contracts' data files and signal files), by name: its resolved path and content hash.
        A resumed sweep whose inputs changed would mix rows of two experiments in one results
        file, so it is refused instead."""
        policy = Policy.model_validate(self.base)
        symbols = self.spec.contracts or tuple(c.symbol for c in self.config.contracts)
        data_dir = self.spec.data_dir or self.config.data.dir
        inventory = discover(data_dir)
        files = {"config": self.spec.config_path, "base policy": self.spec.base_policy}
        # every file of the contracts, not only the ones chosen now: a worker chooses from what
        # it lists itself, and one listing a file outside these stops the sweep (check_listed)
        files.update(inventory.series_files(with_hedge_symbols(symbols, policy)))
        # A signal contract's file decides every trade's side: an input like its candles.
        for contract in self.config.contracts:
            if contract.symbol in symbols and contract.signal_file is not None:
                files[f"signals {contract.symbol}"] = contract.signal_file
        files.update(catalogue_of(self.config, data_dir))
        return {name: (str(path.resolve()), content_hash(path)) for name, path in files.items()}

    def task(
        self, point: Point, phase: str, window: Window | None, *, keep_curve: bool = False
    ) -> PointTask:
        pid = point_id(point)
        self.points[pid] = point
        raw, _ = self.policy_of(point)
        if window is None:
            start, end, widx = self.spec.start, self.spec.end, 0
        else:
            start, end = window.train_dates() if phase == "train" else window.test_dates()
            widx = window.index
        meta: dict[str, Any] = {
            "point": pid,
            "window": widx,
            "phase": phase,
            "window_start": str(start or ""),
            "window_end": str(end or ""),
            **{f"param.{k}": space.text(v) for k, v in point.items()},
        }
        return PointTask(
            key=f"{phase}:{widx}:{pid}",
            config_path=str(self.spec.config_path.resolve()),
            policy=raw,
            data_dir=str(self.spec.data_dir.resolve()) if self.spec.data_dir else None,
            contracts=self.spec.contracts,
            start=start,
            end=end,
            keep_curve=keep_curve,
            meta=meta,
            inputs=self.stamp,
            pinned=self.pinned,
            pinned_each=self.pinned_each,
            pinned_names=self.pinned_names,
        )

    # --- running ---------------------------------------------------------------------------

    def total_tasks(self, n_windows: int) -> int:
        # random search draws at most the whole grid when no parameter is a range
        n = (self.spec.trials or 0) if self.spec.search == "tpe" else len(self.listed_points())
        # walk-forward: a TEST run per window and the out-of-sample run through them all
        return n * n_windows + (n_windows + 1 if self.spec.walk_forward else 0)

    def _execute(self, results: ResultsFile, tasks: list[PointTask]) -> Iterator[dict[str, Any]]:
        finished = {t.key for t in tasks if self._finished(results, t)}
        todo = [t for t in tasks if t.key not in finished]
        for t in tasks:
            if t.key in finished:
                self._resumed(results.rows[t.key])
                yield results.rows[t.key]
        for row in self.executor.run(evaluate, todo, _failed):
            curve = row.pop("curve", None)
            if curve is not None:
                self._save_curve(row["key"], curve)
            results.add(row)
            if self.listener is not None:
                self.listener(results.rows[row["key"]], 1)
            error = str(row.get("error", ""))
            if row.get("status") == "failed" and error.startswith(STOPS):
                data = error.startswith((INPUTS_CHANGED, BAD_DATA_FILE))
                stop = DataError if data else ConfigError
                raise stop(f"sweep stopped: {error}")
            yield results.rows[row["key"]]

    def _resumed(self, row: dict[str, Any]) -> None:
        """A row finished by an earlier run counts as done on the progress bar (marked
        ``resumed``: it took no time now, so it must not speed up the time-left estimate)."""
        self._progress({**row, "resumed": True}, 1)

    def _progress(self, row: dict[str, Any], n: int) -> None:
        if self.listener is not None:
            self.listener(row, n)

    def _save_curve(self, key: str, curve: tuple[list[int], list[float]]) -> None:
        """Written durably before its row (which is fsynced): a row on the disk after a power
        cut has its curve there too."""
        folder = self.spec.out / "curves"
        folder.mkdir(parents=True, exist_ok=True)
        days, closes = curve
        lines = ["day_start_ms,equity"] + [f"{d},{c!r}" for d, c in zip(days, closes, strict=True)]
        with replaced_text(self._curve_path(key), durable=True) as fh:
            fh.write("\n".join(lines) + "\n")

    def _curve_path(self, key: str) -> Path:
        return self.spec.out / "curves" / (key.replace(":", "-") + ".csv")

    def _load_curve(self, key: str) -> tuple[list[int], list[float]]:
        curve = self._read_curve(key)
        if curve is None:
            raise DataError(f"{self._curve_path(key)}: missing, empty or damaged")
        return curve

    def _read_curve(self, key: str) -> tuple[list[int], list[float]] | None:
        """The daily closes a run kept, or ``None`` when its file is missing, holds no day or
        cannot be read (lost in a crash, or by hand): its run is not finished."""
        days: list[int] = []
        closes: list[float] = []
        try:
            lines = self._curve_path(key).read_text(encoding="utf-8").splitlines()
            for line in lines[1:]:
                d, c = line.split(",")
                days.append(int(d))
                closes.append(float(c))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return (days, closes) if days and lines[0] == "day_start_ms,equity" else None

    def _finished(self, results: ResultsFile, task: PointTask) -> bool:
        """Done by an earlier run, with the curve it kept when it keeps one: a row written
        without its curve (lost in a crash; before, the resume crashed on it or stitched an
        empty out-of-sample curve) runs again."""
        if not results.done(task.key):
            return False
        if task.keep_curve and results.rows[task.key].get("status") == "ok":
            return self._read_curve(task.key) is not None
        return True

    def _search(
        self, results: ResultsFile, phase: str, window: Window | None
    ) -> list[dict[str, Any]]:
        if self.spec.search == "tpe":
            return self._tpe(results, phase, window)
        tasks: list[PointTask] = []
        for point in self.listed_points():
            _, error = self.policy_of(point)
            if error is not None:
                self._invalid(point, error)
                continue
            tasks.append(self.task(point, phase, window))
        return list(self._execute(results, tasks))

    def _invalid(self, point: Point, error: str) -> None:
        if all(p != point for p, _ in self.invalid):
            self.invalid.append((point, error))
        # one of the tasks the progress bar counts (per window), done without running
        self._progress({"status": "invalid", "error": error}, 1)

    def _distributions(self, optuna: Any) -> tuple[dict[str, Any], dict[str, dict[str, Scalar]]]:
        """Optuna's distribution per swept key, and the listed values by text (categorical)."""
        dists: dict[str, Any] = {}
        decode: dict[str, dict[str, Scalar]] = {}
        for p in self.spec.params:
            if p.low is not None and p.high is not None and p.integer:
                dists[p.key] = optuna.distributions.IntDistribution(int(p.low), int(p.high))
            elif p.low is not None and p.high is not None:
                dists[p.key] = optuna.distributions.FloatDistribution(float(p.low), float(p.high))
            else:
                decode[p.key] = {space.text(v): v for v in p.values}
                dists[p.key] = optuna.distributions.CategoricalDistribution(list(decode[p.key]))
        return dists, decode

    def _tpe(self, results: ResultsFile, phase: str, window: Window | None) -> list[dict[str, Any]]:
        try:
            import optuna
        except ImportError:
            raise ConfigError(
                "--search tpe needs Optuna: pip install 'perp-risk-bot[research]'"
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists, decode = self._distributions(optuna)
        sampler = optuna.samplers.TPESampler(seed=self.spec.seed)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        rows: list[dict[str, Any]] = []
        # Resume replays the search: the sampler, seeded as before, asks the same points in the
        # same order, and a point finished before is answered from results.csv, not run again
        # (_execute). Fed to the sampler up front instead, the finished rows shifted its draws:
        # it asked the finished points again, each counted as one of --trials, and the resumed
        # search ran fewer points than --trials and chose another best point than a clean run.
        trials = self.spec.trials or 0
        while len(study.trials) < trials:
            batch = min(self._tpe_batch, trials - len(study.trials))
            asked = [study.ask(dists) for _ in range(batch)]
            tasks: dict[str, tuple[Any, PointTask]] = {}
            for trial in asked:
                point = {
                    q.key: _decode(trial.params[q.key], decode.get(q.key), q)
                    for q in self.spec.params
                }
                _, error = self.policy_of(point)
                if error is not None:
                    self._invalid(point, error)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    continue
                t = self.task(point, phase, window)
                tasks.setdefault(t.key, (trial, t))
                if tasks[t.key][0] is not trial:  # the same point asked twice in a batch
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    self._progress({"status": "pruned"}, 1)  # a counted trial, not run
            by_key = {k: v[0] for k, v in tasks.items()}
            for row in self._execute(results, [t for _, t in tasks.values()]):
                value = score(row, self.spec.objective)
                trial = by_key[row["key"]]
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, value)
                rows.append(row)
        return _unique(rows)

    def _best(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        scored = [(s, r) for r in rows if (s := score(r, self.spec.objective)) is not None]
        if not scored:
            return None
        # ties: the first in key order, so the choice does not depend on finishing order
        return max(sorted(scored, key=lambda x: x[1]["key"]), key=lambda x: x[0])[1]

    def discard_unfinished(self) -> None:
        """After a failure, or a sweep in which no point finished (every point invalid), what
        it wrote: its ``sweep.json`` and a ``results.csv`` without a finished row (``failed``
        rows only: a data file that stopped the sweep at its first point), and the directories
        made for them while empty. Left there, they would refuse the corrected command as "a
        different sweep". A finished row (and so a sweep that has one, or that was there
        before) is never removed."""
        results = self._results
        finished = results is not None and any(map(results.done, results.rows))
        if self._wrote_spec and not finished:
            for name in ("results.csv", "sweep.json"):
                (self.spec.out / name).unlink(missing_ok=True)
        remove_created(self._created)

    def run(self) -> SweepOutcome:
        try:
            return self._run()
        except BaseException:
            self.discard_unfinished()
            raise

    def _run(self) -> SweepOutcome:
        out = self.spec.out
        wins = self.windows()
        files = self.inputs()
        inputs = {name: f"{path} {digest}" for name, (path, digest) in files.items()}
        spec: dict[str, Any] = {**self.spec.as_json(), "inputs": inputs}
        if self.spec.search == "tpe":
            # The points TPE asks depend on how many it asks before it is told results: the
            # first run's batch is the sweep's, whatever processes or cluster a resume has
            # (else a resume on another --workers asked other points and chose another best).
            # (a sweep.json of an older version holds none: its runs go on as they were)
            stored, batch = stored_tpe_batch(out)
            self._tpe_batch = batch or max(1, self.executor.workers)
            if not stored or batch is not None:
                spec["tpe_batch"] = self._tpe_batch
        self._wrote_spec = check_spec(out, spec)
        # Workers keep configs and loaded data between sweeps (a Dask worker lives on): the
        # inputs' hash in every task keeps them from serving an edited file's old content.
        self.stamp = hashlib.blake2b(
            strict_json.dumps(inputs, sort_keys=True).encode(), digest_size=12
        ).hexdigest()
        # What the workers read themselves (the base policy travels inside each task): a file
        # rewritten while the sweep runs stops it at the first point that reads it afresh.
        self.pinned = tuple(pair for name, pair in files.items() if name != "base policy")
        self.pinned_each = tuple(
            p
            for name, p in files.items()
            if name.startswith("signals ") or name == "contract catalogue"
        )
        self.pinned_names = tuple(files)
        results = self._results = ResultsFile(out / "results.csv", columns(self.keys))
        summary: dict[str, Any]
        try:
            if wins is None:
                rows = self._search(results, "all", None)
                best = self._best(rows)
                summary = {"dsr": _dsr(rows, best), "best_notes": []}
                if best is not None:
                    summary["best_notes"] = self._choice_notes(rows, best, _span_ms(best))
                    summary["best_notes"] += _dsr_missing(rows, best)
            else:
                rows, best, summary = self._walk_forward(results, wins)
        finally:
            results.close()
        best_point = self.points.get(best["point"]) if best is not None else None
        return SweepOutcome(rows, best, best_point, summary, self.invalid)

    def _walk_forward(
        self, results: ResultsFile, wins: list[Window]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]:
        all_rows: list[dict[str, Any]] = []
        # per window: its best TRAIN row (None when no point could be chosen) and what to say
        picks: list[tuple[Window, dict[str, Any] | None, dict[str, Any]]] = []
        for w in wins:
            train = self._search(results, "train", w)
            all_rows += train
            best = self._best(train)
            extra: dict[str, Any] = {"dsr": _dsr(train, best), "notes": []}
            if best is None:
                extra["notes"].append(_no_choice(train, self.spec.objective))
            else:
                extra["notes"] += self._choice_notes(train, best, w.test_start - w.train_start)
                extra["notes"] += _dsr_missing(train, best)
            picks.append((w, best, extra))
        tests = {
            w.index: self.task(self.points[b["point"]], "test", w, keep_curve=True)
            for w, b, _ in picks
            if b is not None
        }
        test_rows = {r["key"]: r for r in self._execute(results, list(tests.values()))}
        for _ in range(len(picks) - len(tests)):
            self._progress({"status": "no choice"}, 1)  # a window's TEST that never runs
        all_rows += test_rows.values()
        per_window: list[dict[str, Any]] = []
        curves: list[tuple[int, list[int], list[float]]] = []
        balance = float(self.config.account.starting_balance)
        for w, b, extra in picks:
            t = tests.get(w.index)
            test = test_rows[t.key] if t is not None else {}
            extra["notes"] += _test_notes(w, test, chosen=b is not None)
            per_window.append(
                {
                    "window": w.index,
                    "train": "{}..{}".format(*w.train_dates()),
                    "test": "{}..{}".format(*w.test_dates()),
                    "params": {k: space.text(self.points[b["point"]][k]) for k in self.keys}
                    if b is not None
                    else None,
                    "in_sample": {m: (b or {}).get(m) for m in _SHOWN},
                    "out_of_sample": {m: test.get(m) for m in _SHOWN},
                    **extra,
                }
            )
            if t is not None and test.get("status") == "ok":
                days, closes = self._load_curve(t.key)
            else:
                # Nothing was chosen (or its TEST run failed): a trader would not trade that
                # period, so a stitched curve stays flat there instead of leaving a hole that
                # its figures would silently skip.
                days = list(range(w.test_start, w.test_end, DAY_MS))
                closes = [balance] * len(days)
            curves.append((w.test_start, days, closes))
        curves, oos_notes, run = self._out_of_sample(
            results, picks, per_window, curves, [tests.get(w.index) for w, _, _ in picks], test_rows
        )
        oos_method = "one run" if run is not None else "stitched"
        ts, eq = stitch(curves, balance)
        oos = curve_metrics(ts, eq)
        if run is not None:
            _with_run_drawdown(oos, run)
        lines = ["timestamp,equity"] + [
            f"{t},{e:.2f}" for t, e in zip(ts.tolist(), eq.tolist(), strict=True)
        ]
        with replaced_text(self.spec.out / "oos_equity.csv") as fh:
            fh.write("\n".join(lines) + "\n")
        ins = {m: _mean([pw["in_sample"][m] for pw in per_window]) for m in _SHOWN}
        summary: dict[str, Any] = {
            "windows": per_window,
            "out_of_sample": oos,
            "out_of_sample_method": oos_method,
            "out_of_sample_notes": oos_notes,
            "in_sample_mean": ins,
        }
        if run is not None:
            summary["out_of_sample_run"] = {m: run.get(m) for m in _RUN_SHOWN}
        if self.data_span is not None and self.data_span[1] - wins[-1].test_end >= DAY_MS:
            # the data's last days fit no whole window: never tested, which is said
            summary["untested_tail"] = (
                f"{day_iso(wins[-1].test_end)} .. {day_iso(self.data_span[1])}: the last "
                f"{(self.data_span[1] - wins[-1].test_end) / DAY_MS:.1f} days of the data fit no "
                "whole TRAIN + TEST window and are in no test"
            )
        chosen = [(w, b, extra) for w, b, extra in picks if b is not None]
        last = chosen[-1][1] if chosen else None
        if chosen:
            w_last, _, extra_last = chosen[-1]
            summary["best_from_window"] = w_last.index
            summary["best_notes"] = list(extra_last["notes"])
            if w_last.index != wins[-1].index:
                summary["best_notes"].insert(
                    0,
                    f"the last window ({wins[-1].index}) chose no point: best.toml is "
                    f"window {w_last.index}'s choice",
                )
        return all_rows, last, summary

    def _out_of_sample(
        self,
        results: ResultsFile,
        picks: list[tuple[Window, dict[str, Any] | None, dict[str, Any]]],
        per_window: list[dict[str, Any]],
        curves: list[tuple[int, list[int], list[float]]],
        tests: list[PointTask | None],
        test_rows: dict[str, dict[str, Any]],
    ) -> tuple[list[tuple[int, list[int], list[float]]], list[str], dict[str, Any] | None]:
        """The out-of-sample curve's pieces, notes, and the row of the one run through every
        TEST period (None when it failed or nothing was chosen: the TEST runs are stitched).

        The one run is what a trader re-optimising every STEP and restarting the bot with
        the new choice would have had: positions, stops, risk state and cooldowns carry over
        from one window to the next; the days before the first choice stay flat."""
        task = self._oos_task(picks)
        run = next(iter(self._execute(results, [task])), None) if task is not None else None
        if run is not None and run.get("status") == "ok":
            first = next(i for i, (_, b, _) in enumerate(picks) if b is not None)
            days, closes = self._load_curve(run["key"])
            kept = False
            for (_, b, _), pw in zip(picks, per_window, strict=True):
                kept = kept or b is not None
                if b is None:
                    pw["notes"].append(
                        "no choice: the choice before it kept trading in the out-of-sample run"
                        if kept
                        else "no choice: flat (not traded) in the out-of-sample curve"
                    )
            return [*curves[:first], (picks[first][0].test_start, days, closes)], [], run
        notes = []
        if run is not None:
            notes.append(
                f"the out-of-sample run failed ({run.get('error') or 'no result'}): the curve "
                "is each window's TEST run alone, from a flat account, stitched"
            )
        for t, pw in zip(tests, per_window, strict=True):
            if t is None or test_rows[t.key].get("status") != "ok":
                pw["notes"].append("flat (not traded) in the out-of-sample curve")
        return curves, notes, None

    def _oos_task(
        self, picks: list[tuple[Window, dict[str, Any] | None, dict[str, Any]]]
    ) -> PointTask | None:
        """The out-of-sample run: from the first window with a choice to the last TEST end,
        each window's choice deciding from its TEST start (a window without one keeps the
        choice before it); None when no window chose."""
        chosen = [(w, self.points[b["point"]]) for w, b, _ in picks if b is not None]
        if not chosen:
            return None
        (w0, p0), later = chosen[0], chosen[1:]
        switches: list[tuple[int, dict[str, Any]]] = []
        held = p0
        for w, point in later:
            if point != held:  # the same choice again: the bot runs on, nothing to restart
                switches.append((w.test_start, self.policy_of(point)[0]))
                held = point
        choices = ",".join(f"{w.index}:{point_id(p)}" for w, p in chosen)
        key = "oos:" + hashlib.blake2b(choices.encode(), digest_size=6).hexdigest()
        task = self.task(p0, "oos", w0)
        end = picks[-1][0].test_dates()[1]
        meta = {
            **task.meta,
            "window_end": str(end),
            **{f"param.{k}": "" for k in self.keys},  # each window's choice, not one point
            "point": choices,  # window:point of every choice
        }
        return replace(task, key=key, end=end, meta=meta, keep_curve=True, switches=tuple(switches))

    def _choice_notes(
        self, rows: list[dict[str, Any]], best: dict[str, Any], span_ms: int
    ) -> list[str]:
        """What a trader must know about a window's choice: a tie, a TRAIN on stale data."""
        notes = []
        top = score(best, self.spec.objective)
        ties = sum(1 for r in rows if score(r, self.spec.objective) == top)
        if ties > 1:
            notes.append(
                f"{ties} points tie at the best {self.spec.objective} ({top:g}): "
                "chosen by key order, not by merit"
            )
        unranked = sum(
            1 for r in rows if r.get("status") == "ok" and score(r, self.spec.objective) is None
        )
        if unranked:
            notes.append(
                f"{unranked} point(s) ran but have no defined {self.spec.objective} (no trades "
                "or flat returns: the report's 0.0 there is not a result) and are not ranked"
            )
        spans = sorted({(str(r["start"]), str(r["end"])) for r in rows if r.get("status") == "ok"})
        if len(spans) > 1:
            starts = sorted({a for a, _ in spans})
            ends = sorted({b for _, b in spans})
            notes.append(
                f"points ran on different spans (start {starts[0]} .. {starts[-1]}, end "
                f"{ends[0]} .. {ends[-1]}: some points' warm-up or data moved them), so their "
                f"{self.spec.objective} is not measured on one footing; the chosen point ran "
                f"{best['start']} .. {best['end']}"
            )
        stale = best.get("stale_hours")
        span_h = span_ms / 3_600_000
        if isinstance(stale, int | float) and stale > _STALE_SHARE * span_h:
            notes.append(f"TRAIN data stale for {stale:g} h of {span_h:g} h")
        return notes


def _test_notes(w: Window, test: dict[str, Any], *, chosen: bool) -> list[str]:
    """What a trader must know about a window's TEST run: failed, stale data, cut short."""
    notes = []
    if chosen and test.get("status") != "ok":
        notes.append(f"TEST run failed: {test.get('error') or 'no result'}")
    stale = test.get("stale_hours")
    span_h = (w.test_end - w.test_start) / 3_600_000
    if isinstance(stale, int | float) and stale > _STALE_SHARE * span_h:
        notes.append(f"TEST data stale for {stale:g} h of {span_h:g} h")
    if test.get("status") == "ok":
        ran = _span_of(test)
        if ran[0] > w.test_start or ran[1] < w.test_end:
            notes.append(
                f"TEST ran {test['start']} .. {test['end']} only (warm-up or data), "
                "the rest of the window is missing from its TEST run"
            )
    return notes


def _span_of(row: dict[str, Any]) -> tuple[int, int]:
    """[start, end) in ms that a finished row simulated (its report's start and end)."""
    start, end = (
        int(datetime.fromisoformat(str(row[k]).replace("Z", "+00:00")).timestamp() * 1000)
        for k in ("start", "end")
    )
    return start, end


def _span_ms(row: dict[str, Any]) -> int:
    start, end = _span_of(row)
    return end - start


_STALE_SHARE = 0.01  # a window whose data is stale for more than this share of it is said


def _no_choice(rows: list[dict[str, Any]], objective: str) -> str:
    if not rows:
        return "no valid point to run in TRAIN"
    failed = sum(1 for r in rows if r.get("status") != "ok")
    if failed == len(rows):
        return f"every TRAIN run failed ({len(rows)}), e.g. {rows[0].get('error')}"
    return f"no TRAIN run has a finite {objective} ({len(rows) - failed} ran, {failed} failed)"


_SHOWN = ("total_return", "sharpe", "max_drawdown", "calmar")
# what the out-of-sample run reports beside its curve's figures
_RUN_SHOWN = (
    "n_trades",
    "n_stop_losses",
    "n_liquidations",
    "fees_paid",
    "funding_paid",
    "slippage_paid",
    "time_halted",
)


def _with_run_drawdown(oos: dict[str, float], run: dict[str, Any]) -> None:
    """In place: the out-of-sample curve's figures with the one run's own maximum drawdown
    where it is deeper. The curve holds daily closes, which miss a fall and recovery inside a
    day; the run's report measures every tick, as ``bot simulate`` does. The Calmar ratio
    follows the drawdown."""
    deeper = run.get("max_drawdown")
    if not isinstance(deeper, int | float) or not oos or deeper <= oos["max_drawdown"]:
        return
    oos["max_drawdown"] = float(deeper)
    oos["calmar"] = oos["cagr"] / float(deeper) if deeper > 0 else 0.0


def _mean(values: list[Any]) -> float | None:
    xs = [float(v) for v in values if isinstance(v, int | float)]
    return sum(xs) / len(xs) if xs else None


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({r["key"]: r for r in rows}.values())


def _dsr(rows: list[dict[str, Any]], best: dict[str, Any] | None) -> dict[str, Any] | None:
    """The deflated Sharpe ratio of the chosen point among every point tried in its window."""
    value, _ = _deflated(rows, best)
    return value


def _dsr_missing(rows: list[dict[str, Any]], best: dict[str, Any] | None) -> list[str]:
    """Why a chosen point has no deflated Sharpe ratio, as a note (none when it has one)."""
    _, why = _deflated(rows, best)
    if best is None or why is None:
        return []
    return [f"no deflated Sharpe ratio: {why}"]


def _deflated(
    rows: list[dict[str, Any]], best: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None]:
    if best is None:
        return None, None
    ok = [r for r in rows if r.get("status") == "ok"]
    # Points whose runs came out identical (a parameter that never binds) are one trial, not
    # several: counting them again would inflate N and shrink the trials' variance.
    distinct = {
        (r["daily_sharpe"], r.get("final_equity"), r.get("n_orders"), r.get("n_days")) for r in ok
    }
    trials = [float(d[0]) for d in distinct]
    n = int(best.get("n_days") or 0)
    moments = (float(best["daily_skew"]), float(best["daily_kurtosis"]))
    if len(trials) < 2:
        return None, f"{len(trials)} distinct trial(s) ran, nothing to deflate against"
    if n < 2:
        return None, f"the chosen point has {n} daily return(s), fewer than 2"
    if not all(math.isfinite(x) for x in moments):
        return None, "the chosen point's daily returns are flat (no trades or no data)"
    try:
        value, sr0 = deflated_sharpe(
            float(best["daily_sharpe"]),
            trials,
            n,
            float(best["daily_skew"]),
            float(best["daily_kurtosis"]),
        )
    except ValueError as exc:
        return None, str(exc)
    result = {
        "deflated_sharpe": value,
        "expected_max_daily_sharpe": sr0,
        "trials": len(trials),
        "points": len(ok),
        "daily_sharpe": float(best["daily_sharpe"]),
        "n_days": n,
    }
    return result, None


def _failed(task: PointTask, reason: str) -> dict[str, Any]:
    # "failed", not "error": the point itself never finished (its worker died, the cluster
    # lost it, it raised), so a resumed sweep runs it again instead of keeping the failure
    return {"key": task.key, **task.meta, "status": "failed", "error": reason}


def _decode(value: Any, table: dict[str, Scalar] | None, param: Param) -> Scalar:
    if table is not None:
        return table[str(value)]
    if param.integer:
        return int(value)
    return space.on_step(param, Decimal(str(value)))


def stored_tpe_batch(out: Path) -> tuple[bool, int | None]:
    """Whether ``out`` holds a readable ``sweep.json``, and the TPE batch it recorded (None:
    none; an unreadable file is check_spec's to name)."""
    try:
        stored = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, None
    if not isinstance(stored, dict):
        return False, None
    batch = stored.get("tpe_batch")
    ok = isinstance(batch, int) and not isinstance(batch, bool) and batch > 0
    return True, batch if ok else None
