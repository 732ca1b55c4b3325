"""PNG charts of the trader's tools (matplotlib, Agg backend, no display needed).

:func:`plot_volatility`: each contract's volatility history (the policy's estimator) with the
policy's target leverage beneath it. :func:`plot_survival_grid`: stress scenarios against
leverage levels, coloured by outcome. Bare ``Figure`` objects (not pyplot), so nothing is kept
in a global registry between calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["OUTCOME_CODES", "plot_survival_grid", "plot_volatility"]

_DPI = 100
_PNG_METADATA: dict[str, str | None] = {"Software": None}
OUTCOME_CODES = {"ok": 0, "stopped": 1, "limit": 2, "liquidated": 3, "n/a": 4}
_OUTCOME_COLOURS = ("#4caf50", "#c0ca33", "#ff9800", "#e53935", "#bdbdbd")
_OUTCOME_LABELS = (
    "survives",
    "stopped out",
    "loss beyond a limit",
    "liquidation",
    "not possible",
)


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, metadata=_PNG_METADATA)


def plot_volatility(
    path: Path,
    *,
    title: str,
    series: Mapping[str, tuple[npt.NDArray[np.int64], npt.ArrayLike, npt.ArrayLike]],
    target_volatility: float | None,
) -> None:
    """Two panels sharing a UTC time axis: annualised volatility in percent (top) and target
    leverage (bottom), one line per contract. ``series`` maps a contract to ``(ts_ms, vol,
    leverage)`` of equal lengths; NaN leaves a gap."""
    if not series:
        raise ValueError("plot_volatility: no contract to draw")
    fig = Figure(figsize=(16.0, 10.0), dpi=_DPI, layout="constrained")
    ax_vol, ax_lev = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.0, 2.0]})
    fig.suptitle(title, fontsize=15)
    # Leverage lines often coincide at a bound; a line style per contract keeps each visible.
    for i, (name, (ts, vol, lev)) in enumerate(series.items()):
        x = np.asarray(ts).astype("datetime64[ms]")
        (line,) = ax_vol.plot(x, 100.0 * np.asarray(vol, dtype=float), linewidth=1.0, label=name)
        ax_lev.step(
            x,
            np.asarray(lev, dtype=float),
            where="post",
            linewidth=1.1,
            color=line.get_color(),
            linestyle=("-", "--", ":", "-.")[i % 4],
            label=name,
        )
    if target_volatility is not None:
        ax_vol.axhline(
            100.0 * target_volatility,
            color="0.2",
            linestyle="--",
            linewidth=0.9,
            label=f"target {target_volatility:.0%}",
        )
    ax_vol.set_ylabel("volatility (% a year)")
    ax_lev.set_ylabel("target leverage (x)")
    ax_lev.set_ylim(bottom=0.0)
    for ax in (ax_vol, ax_lev):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small")
    ax_vol.tick_params(labelbottom=False)
    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)  # type: ignore[no-untyped-call]
    ax_lev.xaxis.set_major_locator(locator)
    ax_lev.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    )
    ax_lev.set_xlabel("date (UTC)")
    _save(fig, path)


def plot_survival_grid(
    path: Path,
    *,
    title: str,
    scenarios: Sequence[str],
    levels: Sequence[int],
    outcomes: Sequence[Sequence[str]],
    losses: Sequence[Sequence[float | None]],
) -> None:
    """Scenarios (rows) x leverage levels (columns), each cell coloured by its outcome (a key of
    :data:`OUTCOME_CODES`) and labelled with the P&L in percent of equity (``losses`` are
    fractions, positive for a loss; None leaves the cell blank)."""
    if not scenarios:
        raise ValueError("plot_survival_grid: no scenario to draw")
    codes = np.array([[OUTCOME_CODES[o] for o in row] for row in outcomes], dtype=float)
    height = max(4.0, 0.28 * len(scenarios) + 2.0)
    fig = Figure(figsize=(11.0, height), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title, fontsize=14)
    cmap = ListedColormap(list(_OUTCOME_COLOURS))
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(_OUTCOME_COLOURS) - 0.5, aspect="auto")
    for i, row in enumerate(losses):
        for j, loss in enumerate(row):
            if loss is not None:
                ax.text(j, i, f"{-100.0 * loss:+.0f}%", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(levels)), [f"{lev}x" for lev in levels])
    ax.set_yticks(range(len(scenarios)), list(scenarios), fontsize=8)
    ax.set_xlabel("leverage of every position (same margin)")
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    handles = [
        Patch(color=c, label=label)
        for c, label in zip(_OUTCOME_COLOURS, _OUTCOME_LABELS, strict=True)
    ]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        title="cell: P&L, % of equity",
    )
    _save(fig, path)
