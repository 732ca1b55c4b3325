"""``results.csv``: one row per point and window, appended and flushed as each point finishes.

The file is the sweep's memory: a restarted sweep reads it and skips every key already there, so a
killed run loses at most the points that were running. ``sweep.json`` beside it pins what the
sweep is (config, base policy, parameters, search, windows); restarting with a different sweep in
the same directory is refused instead of mixing two experiments in one file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.research.evaluate import DAILY_STATS, REPORT_METRICS

LEAD_COLUMNS = ("key", "point", "window", "phase", "window_start", "window_end")
TAIL_COLUMNS = ("status", "error", *REPORT_METRICS, *DAILY_STATS)
NUMERIC = frozenset(c for c in (*REPORT_METRICS, *DAILY_STATS) if c not in ("start", "end"))


def columns(param_keys: list[str]) -> list[str]:
    return [*LEAD_COLUMNS, *(f"param.{k}" for k in param_keys), *TAIL_COLUMNS]


def check_spec(out: Path, spec: dict[str, Any]) -> None:
    """Write ``sweep.json``, or check a restarted sweep is the same sweep."""
    path = out / "sweep.json"
    text = json.dumps(spec, indent=2, sort_keys=True, default=str) + "\n"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if old != text:
            raise ConfigError(
                f"{out}: holds a different sweep ({path.name} differs); resume it with the same "
                "options or choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class ResultsFile:
    def __init__(self, path: Path, cols: list[str]) -> None:
        self.path = path
        self.cols = cols
        self.rows: dict[str, dict[str, Any]] = {}
        if path.exists() and path.stat().st_size > 0:
            self._read()
        else:
            with path.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(cols)
        self._fh = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=cols, extrasaction="ignore")

    def _read(self) -> None:
        with self.path.open(newline="", encoding="utf-8") as fh:
            text = fh.read()
        # A kill can cut the last line short: keep whole lines only.
        if not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
            self.path.write_text(text, encoding="utf-8")
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames != self.cols:
            raise ConfigError(f"{self.path}: columns differ from this sweep's; use another --out")
        for raw in reader:
            self.rows[raw["key"]] = parse_row(raw)

    def done(self, key: str) -> bool:
        return key in self.rows

    def add(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: _cell(row.get(k)) for k in self.cols})
        self._fh.flush()
        os.fsync(self._fh.fileno())  # a finished point survives a power cut
        self.rows[row["key"]] = parse_row({k: _cell(row.get(k)) for k in self.cols})

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows.values())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_row(raw: dict[str, str]) -> dict[str, Any]:
    """CSV strings back to numbers for the metric columns (the same floats that were written)."""
    out: dict[str, Any] = dict(raw)
    for k, v in raw.items():
        if k in NUMERIC and v != "":
            f = float(v)
            out[k] = int(f) if f.is_integer() and k.startswith(("n_", "bars", "decision")) else f
        elif k == "window" and v != "":
            out[k] = int(v)
    return out


def write_parquet(csv_path: Path) -> Path | None:
    """``results.parquet`` beside ``results.csv`` when pyarrow is installed, else None."""
    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        return None
    table = pacsv.read_csv(str(csv_path))
    out = csv_path.with_suffix(".parquet")
    pq.write_table(table, str(out))
    return out


def score(row: dict[str, Any], objective: str) -> float | None:
    """The objective of a finished row (higher is better), None when it has none."""
    if row.get("status") != "ok":
        return None
    sign, name = (-1.0, objective[1:]) if objective.startswith("-") else (1.0, objective)
    value = row.get(name)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return sign * float(value)


def check_objective(objective: str) -> None:
    name = objective.removeprefix("-")
    if name not in NUMERIC:
        raise ConfigError(
            f"--objective {objective!r}: not a metric; choose one of {', '.join(sorted(NUMERIC))} "
            "(prefix - to minimise, e.g. -max_drawdown)"
        )
