"""``sweep.png``: the objective over each pair of swept parameters (a heat map per pair; a line
for a single parameter). Cells average the objective over the other parameters' values."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure

_MAX_PAIRS = 6


def _order(values: list[str]) -> list[str]:
    try:
        return sorted(set(values), key=float)
    except ValueError:
        return sorted(set(values))


def plot_sweep(
    path: Path, keys: list[str], rows: list[tuple[dict[str, str], float]], objective: str
) -> None:
    """``rows``: (parameter values as text, objective) of every finished point."""
    if not rows or not keys:
        return
    pairs = list(itertools.combinations(keys, 2))[:_MAX_PAIRS] or [(keys[0], keys[0])]
    cols = min(3, len(pairs))
    nrows = (len(pairs) + cols - 1) // cols
    fig = Figure(figsize=(5.5 * cols, 4.5 * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, (kx, ky) in zip(axes.flat, pairs, strict=False):
        xs = _order([p[kx] for p, _ in rows])
        if kx == ky:
            means = [np.mean([v for p, v in rows if p[kx] == x]) for x in xs]
            ax.plot(range(len(xs)), means, marker="o")
            ax.set_xticks(range(len(xs)), xs, rotation=45)
            ax.set_xlabel(kx)
            ax.set_ylabel(objective)
            continue
        ys = _order([p[ky] for p, _ in rows])
        grid = np.full((len(ys), len(xs)), np.nan)
        for j, y in enumerate(ys):
            for i, x in enumerate(xs):
                vals = [v for p, v in rows if p[kx] == x and p[ky] == y]
                if vals:
                    grid[j, i] = float(np.mean(vals))
        image: Any = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), xs, rotation=45)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(kx)
        ax.set_ylabel(ky)
        fig.colorbar(image, ax=ax, label=objective)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    fig.suptitle(f"{objective} by parameter (mean over the other parameters)")
    fig.savefig(path, format="png", metadata={"Software": None})
