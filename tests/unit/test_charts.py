"""bot.backtest.charts: a chart drawn by the helper process is the one drawn here, byte for byte;
a helper that fails says why; a stopped helper leaves no process behind."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bot.backtest.charts import HelperCharts, LocalCharts

T0 = 1_704_067_200_000


def _job() -> dict[str, object]:
    rng = np.random.default_rng(11)
    n = 24 * 60
    ts = T0 + 3_600_000 * np.arange(n, dtype=np.int64)
    equity = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    return {
        "title": "helper or here",
        "ts_ms": ts,
        "equity": equity,
        "benchmark_equity": equity[::-1].copy(),
        "leverage": {"BTC/USDT:USDT": np.full(n, 2.0)},
        "markers": {"stop-out": [int(ts[100])], "liquidation": [], "halt": []},
    }


def test_the_helper_draws_the_same_bytes_as_this_process(tmp_path: Path) -> None:
    here = LocalCharts()
    here.draw("plot_report", tmp_path / "here.png", **_job())
    assert not (tmp_path / "here.png").exists()  # drawn at finish(), after the data files
    here.finish()
    with HelperCharts() as helper:
        helper.draw("plot_report", tmp_path / "helper" / "report.png", **_job())
        helper.finish()
    drawn = (tmp_path / "helper" / "report.png").read_bytes()
    assert len(drawn) > 10_000
    assert drawn == (tmp_path / "here.png").read_bytes()


def test_a_chart_the_helper_cannot_draw_is_an_error_naming_why(tmp_path: Path) -> None:
    job = _job()
    job["equity"] = np.ones(3)  # not the length of ts_ms
    with HelperCharts() as helper:
        helper.draw("plot_report", tmp_path / "bad.png", **job)
        with pytest.raises(RuntimeError, match="equity must have the same length as ts_ms"):
            helper.finish()
    assert not (tmp_path / "bad.png").exists()


def test_a_stopped_helper_is_gone_and_takes_no_more_charts(tmp_path: Path) -> None:
    helper = HelperCharts()
    proc = helper._proc
    assert proc is not None
    helper.draw("plot_report", tmp_path / "never.png", **_job())
    helper.stop()  # the command failed: no chart, no process left
    assert proc.poll() is not None
    with pytest.raises(RuntimeError, match="after finish"):
        helper.draw("plot_report", tmp_path / "late.png", **_job())


def test_only_the_report_functions_can_be_asked_for(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown chart function 'savefig'"):
        LocalCharts().draw("savefig", tmp_path / "x.png")


def test_without_an_interpreter_to_start_the_charts_are_drawn_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.backtest import charts

    monkeypatch.setattr(sys, "executable", "")
    with charts.start_charts() as painter:
        assert isinstance(painter, LocalCharts)
        painter.draw("plot_report", tmp_path / "here.png", **_job())
        painter.finish()
    assert (tmp_path / "here.png").stat().st_size > 10_000
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with charts.start_charts() as painter:  # the helper cannot start: drawn here too
        assert isinstance(painter, LocalCharts)


def test_the_helper_takes_in_whole_framed_jobs_and_stops_at_a_cut_one() -> None:
    """Jobs reach the helper framed by their length (read by a thread while matplotlib is
    imported); a job cut short (the parent died mid-write) is dropped, and the end is said."""
    import io
    import queue

    from bot.backtest.charts import _LENGTH, _read_jobs

    def framed(payload: bytes) -> bytes:
        return len(payload).to_bytes(_LENGTH, "big") + payload

    big = bytes(range(256)) * 1024  # larger than a pipe's buffer
    stream = io.BytesIO(framed(b"first") + framed(big) + framed(b"cut short")[:-3])
    jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    _read_jobs(stream, jobs)
    assert [jobs.get_nowait() for _ in range(3)] == [b"first", big, None]
    assert jobs.empty()


def test_the_helper_draws_every_job_sent_before_it_was_ready(tmp_path: Path) -> None:
    """Several charts sent at once, the helper still importing matplotlib: each is drawn."""
    with HelperCharts() as helper:
        for k in range(3):
            helper.draw("plot_report", tmp_path / f"r{k}.png", **_job())
        helper.finish()
    first = (tmp_path / "r0.png").read_bytes()
    assert len(first) > 10_000
    assert all((tmp_path / f"r{k}.png").read_bytes() == first for k in (1, 2))
