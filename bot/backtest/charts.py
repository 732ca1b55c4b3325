"""Where a simulation's charts are drawn: in this process, or in a helper process started early.

Charts are matplotlib (:mod:`bot.backtest.plots`): a few tenths of a second to import it and as
much again to lay out and encode a three-panel report. ``bot simulate`` spends most of its time in
the replay, which runs on one core; :class:`HelperCharts` starts a helper process with the
command, which imports matplotlib on another core meanwhile, then draws each chart as soon as it
is asked for while this process writes the data files. Either way the same function draws from
the same arrays, so the PNG bytes are the same.

Both painters are used the same way: ``draw(name, path, **kwargs)`` asks for a chart (``name``
is a function of :mod:`bot.backtest.plots`), ``finish()`` returns once every chart asked for is
written, raising if one could not be drawn. :class:`LocalCharts` draws at ``finish()``, after
the data files, as a plain sequential program would.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NoReturn, Protocol, Self

DRAWING = ("plot_report", "plot_comparison")
"""The functions of :mod:`bot.backtest.plots` a painter may be asked for."""

# The helper imports this very checkout (the directory holding the ``bot`` package goes first
# on its path), whatever the parent's working directory or PYTHONPATH.
_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_HELPER = (
    f"import sys; sys.path.insert(0, {_ROOT!r}); from bot.backtest.charts import helper_main; "
    "helper_main()"
)


class Charts(Protocol):
    def draw(self, name: str, path: Path, **kwargs: Any) -> None: ...

    def finish(self) -> None: ...


def _check(name: str) -> None:
    if name not in DRAWING:
        raise ValueError(f"unknown chart function {name!r}; expected one of {DRAWING}")


def _draw(name: str, path: Path, kwargs: dict[str, Any]) -> None:
    from bot.backtest import plots  # matplotlib: only once a chart is drawn

    getattr(plots, name)(path, **kwargs)


class LocalCharts:
    """Draws in this process, at :meth:`finish`."""

    def __init__(self) -> None:
        self._jobs: list[tuple[str, Path, dict[str, Any]]] = []

    def draw(self, name: str, path: Path, **kwargs: Any) -> None:
        _check(name)
        self._jobs.append((name, path, kwargs))

    def finish(self) -> None:
        jobs, self._jobs = self._jobs, []
        for name, path, kwargs in jobs:
            _draw(name, path, kwargs)

    def stop(self) -> None:
        """Drop the charts not drawn yet (the command failed), as :meth:`HelperCharts.stop`."""
        self._jobs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()  # charts not finished are not drawn, as with the helper


class HelperCharts:
    """Draws in a helper process started at construction; use it as a context manager, so the
    helper is stopped however the command ends."""

    def __init__(self) -> None:
        # Its stderr, read back when it ends: a traceback to report, or warnings to pass on.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish() or stop()
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603 - ours
                [sys.executable, "-c", _HELPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
        except BaseException:
            self._log.close()
            raise

    def draw(self, name: str, path: Path, **kwargs: Any) -> None:
        _check(name)
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("charts asked for after finish()")
        job = pickle.dumps((name, str(path), kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            # Framed by its length: the helper takes in whole jobs while it imports matplotlib
            # (a job is larger than a pipe's buffer; unread, this write would wait for it).
            proc.stdin.write(len(job).to_bytes(_LENGTH, "big") + job)
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # the helper died: finish() reports why

    def finish(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # it died: its exit status says why
                proc.stdin.close()
        code = proc.wait()
        self._log.seek(0)
        said = self._log.read().decode("utf-8", errors="replace").strip()
        self._log.close()
        if code != 0:
            raise RuntimeError(f"the chart helper process failed (exit status {code}):\n{said}")
        if said:  # matplotlib's warnings, shown as if it had drawn here
            print(said, file=sys.stderr)

    def stop(self) -> None:
        """End the helper without waiting for charts (the command failed or was interrupted)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):  # a job half sent to it
                    proc.stdin.close()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_charts() -> HelperCharts | LocalCharts:
    """A helper process when one can be started, else drawing in this process."""
    if not sys.executable or getattr(sys, "frozen", False):
        return LocalCharts()  # no interpreter to run the helper with (embedded or bundled)
    try:
        return HelperCharts()
    except OSError:  # no process can be started here (a sandbox, a process limit)
        return LocalCharts()


_LENGTH = 8  # bytes of the big-endian length before each job on the helper's stdin


def _read_jobs(stream: BinaryIO, jobs: queue.SimpleQueue[bytes | None]) -> None:
    """Put every framed job of ``stream`` on ``jobs`` as it arrives, then None at its end."""
    try:
        while len(head := stream.read(_LENGTH)) == _LENGTH:
            size = int.from_bytes(head, "big")
            job = stream.read(size)
            if len(job) != size:
                break  # cut short: the parent died mid-job
            jobs.put(job)
    finally:
        jobs.put(None)


def serve() -> None:
    """The helper process: draw every job read from stdin, in order, until its end."""
    # Ctrl-C reaches the whole process group: the parent decides, and closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Jobs are taken in from the start, so the parent never waits on a full pipe.
    jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_read_jobs, args=(sys.stdin.buffer, jobs), daemon=True).start()
    from bot.backtest import plots  # the slow part, done while the parent simulates

    while (job := jobs.get()) is not None:
        # The parent process is the only writer of this pipe.
        name, path, kwargs = pickle.loads(job)  # noqa: S301
        _check(name)
        getattr(plots, name)(Path(path), **kwargs)


def helper_main() -> NoReturn:
    """The helper process's program: :func:`serve`, then the end of the process at once.

    Every chart is written and its file closed by then, and its warnings are flushed to the
    parent's log; what is skipped is the interpreter's teardown of matplotlib and the drawn
    figures (about 0.1 s the parent would spend waiting for this process to end). A chart that
    fails raises out of :func:`serve`: a traceback and a failed exit status, as before."""
    serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
