"""PNG charts for simulation reports (matplotlib, Agg backend, no display needed).

Times are integer UTC epoch milliseconds and are drawn as UTC dates. Equity is in quote currency
(e.g. USDT); drawdowns are passed as fractions and drawn in percent; leverage is notional / equity.
Figures are 1600x1000 px (16x10 in at 100 dpi). The same input gives the same bytes: nothing
random is drawn and the matplotlib version is left out of the PNG metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

# Before anything pulls in pyplot: reports are written on servers and in CI, without a display.
matplotlib.use("Agg")

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.backtest.metrics import drawdown_series

__all__ = ["plot_comparison", "plot_report"]

F64 = npt.NDArray[np.float64]

_FIGSIZE_IN = (16.0, 10.0)
_DPI = 100
# No "Software: Matplotlib version ..." entry, so an upgrade alone does not change the bytes.
_PNG_METADATA: dict[str, str | None] = {"Software": None}
# zlib level 3 instead of Pillow's 6: the chart is written in 0.02 s less (a tenth of drawing
# it, which bot simulate waits for at its end) for a file about 12 % larger (~180 KB).
_PNG_OPTIONS = {"compress_level": 3}


def _dates(ts_ms: npt.ArrayLike, what: str) -> npt.NDArray[np.datetime64]:
    ts = np.asarray(ts_ms)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"{what}: ts_ms must be a non-empty 1-D array, got shape {ts.shape}")
    if not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"{what}: ts_ms must hold integer epoch milliseconds, got {ts.dtype}")
    # numpy datetime64 carries no zone; matplotlib draws it as UTC, which is what epoch ms are.
    return ts.astype("datetime64[ms]")


def _values(values: npt.ArrayLike, n: int, what: str, name: str) -> F64:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(
            f"{what}: {name} must have the same length as ts_ms ({n}), got shape {arr.shape}"
        )
    return arr


def _style_time_axis(ax: Axes) -> None:
    # matplotlib's stubs leave these two constructors unannotated.
    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("date (UTC)")


def _new_figure(title: str, height_ratios: list[float]) -> tuple[Figure, list[Axes]]:
    # A bare Figure (not pyplot) is never registered in pyplot's global list, so nothing leaks
    # across a long batch of runs even if a caller forgets to close; it is freed with the object.
    # No layout engine: :func:`_fit` places the panels once, before the one draw (constrained
    # layout drew every axis once more to measure it, half the cost of a chart).
    fig = Figure(figsize=_FIGSIZE_IN, dpi=_DPI)
    FigureCanvasAgg(fig)  # the canvas that measures the text in _fit and writes the PNG
    axes = fig.subplots(
        len(height_ratios), 1, sharex=True, gridspec_kw={"height_ratios": height_ratios}
    )
    fig.suptitle(title, fontsize=15)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def _legend(ax: Axes, entries: int, rows: int = 8) -> None:
    # Outside, right of the panel: a legend inside would hide data wherever the curves happen to
    # be. _fit narrows every panel of the column alike, so time axes stay aligned.
    # (loc="best" is avoided: slow on long series, and matplotlib warns about it.)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(_LEGEND_GAP, 1.0),
        borderaxespad=0.0,
        fontsize="small",
        ncols=1 + (entries - 1) // rows,
    )


_LEGEND_GAP = 1.005  # where a legend starts, in its panel's widths from the panel's left edge
# The fixed part of the layout, in pixels: the title (15 pt) with room for an axis's offset
# text ("1e6") above the top panel; the date tick labels, ConciseDateFormatter's offset line and
# the x label below the bottom one; the gap between panels (their x tick labels are hidden: one
# time axis, shared); the margin left of the y labels and right of the legends.
_TOP_PX = 58.0
_BOTTOM_PX = 62.0
_GAP_PX = 16.0
_EDGE_PX = 10.0
_MIN_PLOT_WIDTH = 0.3  # of the figure: what the panels keep beside absurdly long legends


def _fit(fig: Figure, axes: Sequence[Axes]) -> None:
    """Place the panels: top, bottom and the gaps fixed; left and right measured, so that the
    widest y-axis labels and the widest legend fit (each panel's width is the same, so the time
    axes stay aligned). Only the y axes' labels and the legends are measured, not the date axis
    (the costly one), and nothing is drawn twice."""
    width, height = fig.bbox.width, fig.bbox.height
    n = len(axes)
    panel = (height - _TOP_PX - _BOTTOM_PX - (n - 1) * _GAP_PX) / n
    fig.subplots_adjust(top=1.0 - _TOP_PX / height, bottom=_BOTTOM_PX / height)
    if n > 1:
        fig.subplots_adjust(hspace=_GAP_PX / panel)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    # The y tick values depend on the panels' heights (set above), not on their widths.
    left = _EDGE_PX + max(_labels_left_of(ax, renderer) for ax in axes)
    legends = [legend for ax in axes if (legend := ax.get_legend()) is not None]
    beside = max((leg.get_window_extent(renderer).width for leg in legends), default=0.0)
    # The legend starts (_LEGEND_GAP - 1) plot widths right of the panel.
    gap = _LEGEND_GAP - 1.0
    right = (gap * (width - left) + beside + _EDGE_PX) / (1.0 + gap) if legends else _EDGE_PX
    right = min(right, width * (1.0 - _MIN_PLOT_WIDTH) - left)
    fig.subplots_adjust(left=left / width, right=1.0 - right / width)


def _labels_left_of(ax: Axes, renderer: RendererBase) -> float:
    """How far, in pixels, the y axis's tick labels and label reach left of the panel."""
    drawn = ax.yaxis.get_tightbbox(renderer)
    return 0.0 if drawn is None else max(0.0, ax.get_window_extent(renderer).x0 - drawn.x0)


_BUCKETS = 2000  # columns of the envelope: more than the plot area's width in pixels
_THIN_ABOVE = 20_000  # points per series drawn as they are up to this many


def envelope(n: int, series: Sequence[F64]) -> npt.NDArray[np.intp] | None:
    """Indices of the points that draw the same picture as all ``n`` of them at a chart's
    resolution, or None when there are few enough to draw them all.

    The points are cut into ``_BUCKETS`` runs of consecutive points (narrower than a pixel of
    the plot); of each run the first, the last, and every series' lowest and highest point are
    kept, and both sides of every NaN gap. Extremes (the worst drawdown, the highest leverage)
    are drawn exactly; a minute-by-minute year costs as much to draw as a few days.
    """
    if n <= _THIN_ABOVE:
        return None
    size = -(-n // _BUCKETS)
    pad = size * _BUCKETS - n
    starts = np.arange(_BUCKETS, dtype=np.intp) * size
    keep = [starts, starts + size - 1, np.array([n - 1], dtype=np.intp)]
    for y in series:
        missing = np.isnan(y)
        low = np.pad(np.where(missing, np.inf, y), (0, pad), constant_values=np.inf)
        high = np.pad(np.where(missing, -np.inf, y), (0, pad), constant_values=-np.inf)
        keep.append(starts + low.reshape(_BUCKETS, size).argmin(axis=1))
        keep.append(starts + high.reshape(_BUCKETS, size).argmax(axis=1))
        edges = np.flatnonzero(missing[1:] != missing[:-1])
        keep += [edges, edges + 1]
    idx = np.unique(np.concatenate(keep))
    return idx[idx < n]


def _save(fig: Figure, path: Path) -> None:
    _fit(fig, fig.axes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, metadata=_PNG_METADATA, pil_kwargs=_PNG_OPTIONS)


def plot_report(
    path: Path,
    *,
    title: str,
    ts_ms: npt.ArrayLike,
    equity: npt.ArrayLike,
    benchmark_equity: npt.ArrayLike,
    leverage: Mapping[str, npt.ArrayLike],
    markers: Mapping[str, Sequence[int]] | None = None,
    starting_balance: float | None = None,
) -> None:
    """Write a three-panel PNG report of one run to ``path`` (parent folders are created).

    Panels, sharing the UTC time axis: equity (quote currency) against ``benchmark_equity``
    (buy-and-hold at 1x); drawdown of both in percent; leverage per contract (step lines, one per
    key of ``leverage``; NaN leaves a gap, e.g. no position). Every array must have the length of
    ``ts_ms``; otherwise ``ValueError`` names the offending array. ``starting_balance``: the
    account before the first sample; the strategy's drawdown is measured from there too (as the
    report's ``max_drawdown`` is).
    """
    what = "plot_report"
    x = _dates(ts_ms, what)
    n = x.size
    eq = _values(equity, n, what, "equity")
    bench = _values(benchmark_equity, n, what, "benchmark_equity")
    lev = {name: _values(v, n, what, f"leverage[{name!r}]") for name, v in leverage.items()}

    fig, (ax_eq, ax_dd, ax_lev) = _new_figure(title, [3.0, 1.6, 1.6])

    # Drawdowns and markers from every point; the curves drawn through their envelope.
    full_x, full_eq = x, eq
    dd_pct = -100.0 * drawdown_series(eq, start=starting_balance)
    bench_dd_pct = -100.0 * drawdown_series(bench)
    keep = envelope(n, [eq, bench, dd_pct, bench_dd_pct, *lev.values()])
    if keep is not None:
        x = x[keep]
        eq, bench, dd_pct, bench_dd_pct = (a[keep] for a in (eq, bench, dd_pct, bench_dd_pct))
        lev = {name: v[keep] for name, v in lev.items()}
    ax_eq.plot(x, eq, color="tab:blue", linewidth=1.4, label="strategy")
    ax_eq.plot(x, bench, color="0.45", linewidth=1.1, label="buy & hold, 1x")
    ax_eq.set_ylabel("equity (quote)")
    _mark_events(ax_eq, markers or {}, np.asarray(ts_ms, dtype=np.int64), full_eq, full_x)
    _legend(ax_eq, 2 + len([k for k, v in (markers or {}).items() if v]))

    ax_dd.fill_between(x, dd_pct, 0.0, color="tab:red", alpha=0.35, linewidth=0)
    ax_dd.plot(x, dd_pct, color="tab:red", linewidth=0.8, label="strategy")
    ax_dd.plot(x, bench_dd_pct, color="0.45", linewidth=0.8, label="buy & hold, 1x")
    ax_dd.set_ylabel("drawdown (%)")
    _legend(ax_dd, 2)

    for name, values in lev.items():
        ax_lev.step(x, values, where="post", linewidth=1.1, label=name)
    ax_lev.axhline(0.0, color="0.2", linewidth=0.6)
    ax_lev.set_ylabel("leverage (x)")
    if lev:
        _legend(ax_lev, len(lev))
    else:
        ax_lev.text(0.5, 0.5, "no leverage data", transform=ax_lev.transAxes, ha="center")

    for ax in (ax_eq, ax_dd):
        ax.tick_params(labelbottom=False)
    _style_time_axis(ax_lev)
    _save(fig, path)


MARKER_STYLE = {
    "stop-out": ("v", "tab:orange"),
    "liquidation": ("X", "tab:red"),
    "halt": ("s", "black"),
}


def _mark_events(
    ax: Axes,
    markers: Mapping[str, Sequence[int]],
    ts: npt.NDArray[np.int64],
    eq: npt.NDArray[np.float64],
    x: npt.NDArray[np.datetime64],
) -> None:
    """Stop-outs, liquidations and halts on the equity curve, at the tick that followed them."""
    for name, times in markers.items():
        if not times or len(ts) == 0:
            continue
        idx = np.clip(np.searchsorted(ts, np.asarray(times, dtype=np.int64)), 0, len(ts) - 1)
        shape, colour = MARKER_STYLE.get(name, ("o", "tab:purple"))
        ax.scatter(x[idx], eq[idx], marker=shape, color=colour, s=28, zorder=3, label=name)


def plot_comparison(
    path: Path,
    *,
    title: str,
    runs: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]],
    benchmark: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> None:
    """Write a two-panel PNG comparing several runs to ``path`` (parent folders are created).

    ``runs`` maps a policy name to ``(ts_ms, equity, drawdown)``: equity in quote currency,
    drawdown as a fraction (as from :func:`bot.backtest.metrics.drawdown_series`). Top: equity
    curves; bottom: drawdowns in percent. ``benchmark`` is an optional ``(ts_ms, equity)`` drawn
    in black.
    Runs may have different timestamps; within a run, lengths must match (``ValueError``).
    """
    if not runs:
        raise ValueError("plot_comparison: runs is empty, nothing to plot")
    series = []
    for name, (ts, eq, dd) in runs.items():
        what = f"plot_comparison run {name!r}"
        x = _dates(ts, what)
        curve = (x, _values(eq, x.size, what, "equity"), _values(dd, x.size, what, "drawdown"))
        keep = envelope(x.size, curve[1:])
        if keep is not None:
            curve = (curve[0][keep], curve[1][keep], curve[2][keep])
        series.append((name, *curve))
    bench = None
    if benchmark is not None:
        bx = _dates(benchmark[0], "plot_comparison benchmark")
        b_eq = _values(benchmark[1], bx.size, "plot_comparison benchmark", "equity")
        b_dd = -100.0 * drawdown_series(b_eq)
        keep = envelope(bx.size, [b_eq, b_dd])
        bench = (bx, b_eq, b_dd) if keep is None else (bx[keep], b_eq[keep], b_dd[keep])

    fig, (ax_eq, ax_dd) = _new_figure(title, [2.2, 1.0])
    # tab10 repeats after 10 runs; a line style per block of 10 keeps every run distinguishable.
    colors = matplotlib.colormaps["tab10"]
    if bench is not None:
        # Black, because tab10 has a grey of its own (run 8).
        ax_eq.plot(bench[0], bench[1], color="black", linewidth=1.0, label="buy & hold, 1x")
        ax_dd.plot(bench[0], bench[2], color="black", linewidth=0.7)
    for i, (name, x, eq, dd) in enumerate(series):
        color, style = colors(i % 10), ("-", "--", ":", "-.")[(i // 10) % 4]
        ax_eq.plot(x, eq, color=color, linestyle=style, linewidth=1.3, label=name)
        ax_dd.plot(x, -100.0 * dd, color=color, linestyle=style, linewidth=0.9)
    ax_eq.set_ylabel("equity (quote)")
    _legend(ax_eq, len(series) + (bench is not None), rows=24)
    ax_dd.set_ylabel("drawdown (%)")
    ax_eq.tick_params(labelbottom=False)
    _style_time_axis(ax_dd)
    _save(fig, path)
