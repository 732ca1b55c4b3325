"""``results.csv``: one row per point and window, appended and flushed as each point finishes.

The file is the sweep's memory: a restarted sweep reads it and skips every key already there, so a
killed run loses at most the points that were running. ``sweep.json`` beside it pins what the
sweep is (config, base policy, parameters, search, windows); restarting with a different sweep in
the same directory is refused instead of mixing two experiments in one file.

A metric that is not finite (the CAGR and Calmar ratio of a short run with a large gain) stays
``inf`` / ``nan`` here and in ``results.parquet``: a float column holds it, and every CSV and
Parquet reader reads it back. The JSON files (``sweep.json``, ``summary.json``) write it
``null`` with a ``not_finite`` note instead (:mod:`bot.strict_json`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loguru import logger

from bot import strict_json
from bot.atomic_file import replaced_binary, replaced_text
from bot.errors import ConfigError
from bot.research.evaluate import DAILY_STATS, DATA_FIGURES, REPORT_METRICS

LEAD_COLUMNS = ("key", "point", "window", "phase", "window_start", "window_end")
TAIL_COLUMNS = ("status", "error", *REPORT_METRICS, *DATA_FIGURES, *DAILY_STATS)
NUMERIC = frozenset(
    c for c in (*REPORT_METRICS, *DATA_FIGURES, *DAILY_STATS) if c not in ("start", "end")
)


def columns(param_keys: list[str]) -> list[str]:
    return [*LEAD_COLUMNS, *(f"param.{k}" for k in param_keys), *TAIL_COLUMNS]


def check_spec(out: Path, spec: dict[str, Any]) -> bool:
    """Write ``sweep.json``, or check a restarted sweep is the same sweep; whether it was
    written now (a new sweep)."""
    path = out / "sweep.json"
    text = strict_json.dumps(spec, indent=2, sort_keys=True, default=str) + "\n"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if old != text:
            raise ConfigError(
                f"{out}: holds a different sweep ({path.name} differs: {_differences(old, spec)}); "
                "resume it with the same options and inputs or choose another --out"
            )
        return False
    out.mkdir(parents=True, exist_ok=True)
    with replaced_text(path) as fh:  # a kill now leaves no half-written sweep.json
        fh.write(text)
    return True


def _differences(old_text: str, spec: dict[str, Any]) -> str:
    """What differs between the stored sweep and this one, by entry (inputs: by file)."""
    try:
        old = json.loads(old_text)
    except ValueError:
        return "unreadable"
    if not isinstance(old, dict):
        return "unreadable"
    new = json.loads(strict_json.dumps(spec, default=str))
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "inputs" and isinstance(a, dict) and isinstance(b, dict):
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            names.append("changed input files: " + ", ".join(changed))
        else:
            names.append(key)
    return "; ".join(names) or "formatting"


class ResultsFile:
    def __init__(self, path: Path, cols: list[str]) -> None:
        self.path = path
        self.cols = cols
        self.rows: dict[str, dict[str, Any]] = {}
        self._superseded = False
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
            _rewrite(self.path, text)
        if not text:  # cut inside the header: nothing finished yet
            _rewrite(self.path, ",".join(self.cols) + "\r\n")
            return
        lines = text.splitlines(keepends=True)
        reader = csv.DictReader(lines)
        if reader.fieldnames != self.cols:
            raise ConfigError(f"{self.path}: columns differ from this sweep's; use another --out")
        rows = list(reader)
        for i, raw in enumerate(rows):
            try:
                row = _checked_row(raw, self.cols)
            except ValueError as exc:
                if i < len(rows) - 1:
                    raise ConfigError(
                        f"{self.path}: line {i + 2} ({raw.get('key') or 'no key'}) is damaged: "
                        f"{exc}; remove that line to run its point again"
                    ) from None
                # The last line, whole but unreadable (a crash that left zeros or half a row
                # followed by a newline): dropped like a cut line, its point runs again.
                logger.warning(
                    "{}: last row ({}) is damaged ({}): dropped, its point runs again",
                    self.path,
                    raw.get("key") or "no key",
                    exc,
                )
                _rewrite(self.path, "".join(lines[: i + 1]))
                break
            self.rows[row["key"]] = row

    def done(self, key: str) -> bool:
        """A finished point: ``ok`` or its own ``error``; a ``failed`` one runs again."""
        row = self.rows.get(key)
        return row is not None and row.get("status") != "failed"

    def add(self, row: dict[str, Any]) -> None:
        cells = {k: _cell(row.get(k)) for k in self.cols}
        self._writer.writerow(cells)
        self._fh.flush()
        os.fsync(self._fh.fileno())  # a finished point survives a power cut
        if row["key"] in self.rows:
            self._superseded = True  # a failed point run again: its old line goes at close
        self.rows[row["key"]] = parse_row(cells)

    def close(self) -> None:
        self._fh.close()
        if self._superseded:
            # One line per point and window, the latest: a reader never counts a point twice.
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=self.cols)
            writer.writeheader()
            for r in self.rows.values():
                writer.writerow({k: _cell(r.get(k)) for k in self.cols})
            _rewrite(self.path, text.getvalue())
            self._superseded = False

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows.values())


def _rewrite(path: Path, text: str) -> None:
    """``path`` replaced by ``text`` in one step: a kill now never loses the finished rows."""
    with replaced_binary(path) as fh:
        fh.write(text.encode("utf-8"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _checked_row(raw: dict[str | None, Any], cols: list[str]) -> dict[str, Any]:
    """A row read back from the file, or ValueError naming what is wrong with it."""
    if None in raw:
        raise ValueError(f"{len(cols) + len(raw[None])} fields, expected {len(cols)}")
    missing = [c for c in cols if raw.get(c) is None]
    if missing:
        raise ValueError(f"{len(cols) - len(missing)} fields, expected {len(cols)}")
    text = {str(k): str(v) for k, v in raw.items()}
    if "\x00" in "".join(text.values()):
        raise ValueError("NUL bytes in it")
    if not text["key"] or text.get("status") not in ("ok", "error", "failed"):
        raise ValueError(f"status {text.get('status')!r} is not ok, error or failed")
    try:
        return parse_row(text)
    except ValueError as exc:
        raise ValueError(f"a number does not parse ({exc})") from None


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
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        return None
    with csv_path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    # Only the metrics are numbers. Left to pyarrow's guess, a point id of ten digits became an
    # integer and a swept 0.12345678901234567891 a float64 (0.12345678901234568, not the
    # value in results.csv and best.toml): the two files disagreed.
    text = {c: pa.string() for c in header if c not in NUMERIC and c != "window"}
    table = pacsv.read_csv(
        str(csv_path),
        convert_options=pacsv.ConvertOptions(
            column_types=text, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    out = csv_path.with_suffix(".parquet")
    pq.write_table(table, str(out))
    return out


def score(row: dict[str, Any], objective: str) -> float | None:
    """The objective of a finished row (higher is better), None when it has none: a failed
    row, a NaN or infinite value, or a ratio the report writes as 0.0 because it is undefined
    (see :func:`undefined_ratio`)."""
    if row.get("status") != "ok":
        return None
    sign, name = (-1.0, objective[1:]) if objective.startswith("-") else (1.0, objective)
    value = row.get(name)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if undefined_ratio(row, name):
        return None
    return sign * float(value)


def undefined_ratio(row: dict[str, Any], name: str) -> bool:
    """Whether ``name`` is a ratio report.json writes as 0.0 where it is undefined (0/0 or x/0).

    A point that never trades has flat equity: its Sharpe and Sortino ratios are 0/0 and its
    Calmar ratio x/0, all written 0.0 by bot.backtest.metrics. Scored as 0.0, such a point
    would beat every point with a negative ratio and be chosen for not trading. The row says
    when: fewer than 2 daily returns or flat ones (``n_days``, ``daily_skew`` NaN, as for the
    deflated Sharpe ratio), no losing day (Sortino 0.0), no drawdown (Calmar)."""
    if name not in ("sharpe", "sortino", "calmar", "daily_sharpe"):
        return False
    n_days, skew = row.get("n_days"), row.get("daily_skew")
    flat = not isinstance(skew, int | float) or not math.isfinite(skew)
    if name in ("sharpe", "daily_sharpe", "sortino") and (
        not isinstance(n_days, int | float) or n_days < 2 or flat
    ):
        return True
    if name == "sortino":
        return row.get(name) == 0.0  # no losing day: the downside deviation is 0
    if name == "calmar":
        return row.get("max_drawdown") == 0.0
    return False


def check_objective(objective: str) -> None:
    name = objective.removeprefix("-")
    if name not in NUMERIC:
        raise ConfigError(
            f"--objective {objective!r}: not a metric; choose one of {', '.join(sorted(NUMERIC))} "
            "(prefix - to minimise, e.g. -max_drawdown)"
        )
