"""Tests for bot.backtest.plots: valid, deterministic PNG files and clear errors on bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bot.backtest.metrics import drawdown_series
from bot.backtest.plots import plot_comparison, plot_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOUR_MS = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"  # the first chunk, holding width and height
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _assert_png(path: Path) -> None:
    assert path.stat().st_size > 10_000
    assert _png_size(path) == (1600, 1000)


def _series(n: int = 24 * 200, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hourly timestamps, a random-walk price and a strategy equity (realistic shapes)."""
    rng = np.random.default_rng(seed)
    ts = T0 + HOUR_MS * np.arange(n, dtype=np.int64)
    price = 40_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.008, n)))
    equity = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.012, n)))
    return ts, price, equity


def _leverage(n: int) -> dict[str, np.ndarray]:
    steps = np.repeat(np.array([1.0, 2.5, 2.0, 3.0, 1.5, 0.0, 2.0, 2.2]), -(-n // 8))[:n]
    btc = steps.copy()
    btc[n // 3 : n // 3 + 300] = np.nan  # no position for a while
    eth = 0.6 * steps[::-1].copy()
    eth[: n // 5] = np.nan  # not traded at the start
    return {"BTC/USDT:USDT": btc, "ETH/USDT:USDT": eth}


def test_report_writes_png_with_nan_gaps(tmp_path: Path) -> None:
    ts, price, equity = _series()
    out = tmp_path / "nested" / "report.png"
    plot_report(
        out,
        title="vol_target BTC+ETH 1h",
        ts_ms=ts,
        equity=equity,
        benchmark_equity=10_000.0 * price / price[0],
        leverage=_leverage(ts.size),
    )
    _assert_png(out)
    assert plt.get_fignums() == []  # no figure left open in pyplot


def test_report_single_contract(tmp_path: Path) -> None:
    ts, price, equity = _series(n=24 * 30)
    out = tmp_path / "one.png"
    plot_report(
        out,
        title="single contract",
        ts_ms=ts,
        equity=equity,
        benchmark_equity=10_000.0 * price / price[0],
        leverage={"BTC/USDT:USDT": np.full(ts.size, 2.0)},
    )
    _assert_png(out)


def test_report_is_deterministic(tmp_path: Path) -> None:
    ts, price, equity = _series(n=24 * 20)
    kwargs = {
        "title": "same input",
        "ts_ms": ts,
        "equity": equity,
        "benchmark_equity": 10_000.0 * price / price[0],
        "leverage": _leverage(ts.size),
    }
    plot_report(tmp_path / "a.png", **kwargs)
    plot_report(tmp_path / "b.png", **kwargs)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_report_depends_on_data(tmp_path: Path) -> None:
    ts, price, equity = _series(n=24 * 20)
    bench = 10_000.0 * price / price[0]
    lev = _leverage(ts.size)
    plot_report(
        tmp_path / "a.png", title="t", ts_ms=ts, equity=equity, benchmark_equity=bench, leverage=lev
    )
    plot_report(
        tmp_path / "b.png",
        title="t",
        ts_ms=ts,
        equity=equity * 1.5,
        benchmark_equity=bench,
        leverage=lev,
    )
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize(
    ("field", "match"),
    [
        ("equity", r"plot_report: equity must have the same length as ts_ms \(100\)"),
        ("benchmark_equity", r"benchmark_equity must have the same length as ts_ms \(100\)"),
        ("leverage", r"leverage\['ETH/USDT:USDT'\] must have the same length as ts_ms \(100\)"),
    ],
)
def test_report_rejects_length_mismatch(tmp_path: Path, field: str, match: str) -> None:
    ts, price, equity = _series(n=100)
    args = {
        "ts_ms": ts,
        "equity": equity,
        "benchmark_equity": price / price[0],
        "leverage": {"BTC/USDT:USDT": np.ones(100), "ETH/USDT:USDT": np.ones(100)},
    }
    if field == "leverage":
        args["leverage"] = {"BTC/USDT:USDT": np.ones(100), "ETH/USDT:USDT": np.ones(99)}
    else:
        args[field] = np.ones(99)
    out = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=match):
        plot_report(out, title="bad", **args)
    assert not out.exists()


def test_comparison_writes_png(tmp_path: Path) -> None:
    runs = {}
    for i, name in enumerate(["fixed 1x", "fixed 3x", "vol_target", "risk_parity"]):
        ts, _, equity = _series(n=24 * 120, seed=i)
        runs[name] = (ts, equity, drawdown_series(equity))
    ts, price, _ = _series(n=24 * 120)
    out = tmp_path / "cmp.png"
    plot_comparison(
        out, title="policies BTC 1h", runs=runs, benchmark=(ts, 10_000.0 * price / price[0])
    )
    _assert_png(out)
    assert plt.get_fignums() == []


def test_comparison_single_run_without_benchmark(tmp_path: Path) -> None:
    ts, _, equity = _series(n=24 * 60)
    out = tmp_path / "cmp1.png"
    plot_comparison(
        out, title="one", runs={"only": (ts, equity, drawdown_series(equity))}, benchmark=None
    )
    _assert_png(out)


def test_comparison_rejects_length_mismatch(tmp_path: Path) -> None:
    ts, _, equity = _series(n=100)
    with pytest.raises(ValueError, match=r"run 'b': drawdown must have the same length"):
        plot_comparison(
            tmp_path / "bad.png",
            title="bad",
            runs={"a": (ts, equity, np.zeros(100)), "b": (ts, equity, np.zeros(50))},
            benchmark=None,
        )
    with pytest.raises(ValueError, match=r"benchmark: equity must have the same length"):
        plot_comparison(
            tmp_path / "bad.png",
            title="bad",
            runs={"a": (ts, equity, np.zeros(100))},
            benchmark=(ts, equity[:-1]),
        )


def test_comparison_rejects_no_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs is empty"):
        plot_comparison(tmp_path / "x.png", title="none", runs={}, benchmark=None)


def test_envelope_keeps_ends_extremes_and_gap_edges_of_every_series() -> None:
    from bot.backtest.plots import envelope

    n = 600_000  # a year of minutes and more
    rng = np.random.default_rng(3)
    a = np.cumsum(rng.normal(0.0, 1.0, n))
    b = rng.normal(0.0, 1.0, n)
    b[100_000:100_250] = np.nan  # a gap in the middle of a bucket
    keep = envelope(n, [a, b])
    assert keep is not None
    assert len(keep) < 20_000
    assert np.all(np.diff(keep) > 0)
    assert keep[0] == 0
    assert keep[-1] == n - 1
    for y in (a, b):
        assert np.nanmax(y[keep]) == np.nanmax(y)
        assert np.nanmin(y[keep]) == np.nanmin(y)
    assert {99_999, 100_000, 100_249, 100_250} <= set(keep.tolist())
    assert envelope(5_000, [a[:5_000]]) is None  # short series are drawn point by point


def test_a_minute_by_minute_year_is_drawn(tmp_path: Path) -> None:
    n = 525_600
    rng = np.random.default_rng(5)
    ts = T0 + 60_000 * np.arange(n, dtype=np.int64)
    equity = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    price = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    out = tmp_path / "minutes.png"
    plot_report(
        out,
        title="a year of minutes",
        ts_ms=ts,
        equity=equity,
        benchmark_equity=price,
        leverage=_leverage(n),
        markers={"stop-out": [int(ts[1000]), int(ts[-1])]},
    )
    _assert_png(out)
    dd = drawdown_series(equity)
    plot_comparison(
        tmp_path / "compare.png",
        title="minutes compared",
        runs={"a": (ts, equity, dd), "b": (ts, price, drawdown_series(price))},
        benchmark=(ts, price),
    )
    _assert_png(tmp_path / "compare.png")


def test_the_layout_fits_long_legends_and_labels_and_aligns_the_time_axes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panels are placed by measuring the y labels and the legends (no layout engine):
    nothing is cut at the figure's edges however long the names, and the panels share one
    time axis, left and right edges alike."""
    from matplotlib.figure import Figure

    from bot.backtest import plots

    drawn: list[Figure] = []
    save = plots._save

    def keep(fig: Figure, path: Path) -> None:
        save(fig, path)
        drawn.append(fig)

    monkeypatch.setattr(plots, "_save", keep)
    runs = {}
    for i in range(12):  # two legend columns
        ts, _, equity = _series(n=24 * 30, seed=i)
        name = f"policy {i} with a rather long descriptive name"
        runs[name] = (ts, 1_000.0 * equity, drawdown_series(equity))  # equity near 1e7
    plot_comparison(tmp_path / "cmp.png", title="long names", runs=runs, benchmark=None)
    ts, price, equity = _series(n=24 * 30)
    plot_report(
        tmp_path / "report.png",
        title="one contract",
        ts_ms=ts,
        equity=123.456 * equity,  # labels like 1250000
        benchmark_equity=price,
        leverage={"1000SHIB/USDT:USDT": np.full(ts.size, 2.0)},
        markers={"stop-out": [int(ts[10])], "liquidation": [int(ts[20])], "halt": [int(ts[30])]},
    )
    assert len(drawn) == 2
    for fig in drawn:
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        width, height = fig.bbox.width, fig.bbox.height
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
        assert len({round(b.x0, 3) for b in boxes}) == 1
        assert len({round(b.x1, 3) for b in boxes}) == 1
        assert boxes[0].width > 0.5 * width
        for ax in fig.axes:
            labels = ax.yaxis.get_tightbbox(renderer)
            assert labels is not None
            assert labels.x0 >= 0
            assert labels.y1 <= height
            dates = ax.xaxis.get_tightbbox(renderer)  # None where hidden (upper panels)
            assert dates is None or dates.y0 >= 0
            legend = ax.get_legend()
            if legend is not None:
                box = legend.get_window_extent(renderer)
                assert box.x1 <= width
                assert box.x0 > boxes[0].x1
        (title,) = (t for t in fig.texts if t.get_text() in ("long names", "one contract"))
        assert title.get_window_extent(renderer).y1 <= height
        assert title.get_window_extent(renderer).y0 > boxes[0].y1
