"""Where points run: in this process, in N local processes, or on a Dask cluster.

The sweep only sees :class:`Executor`: ``run(fn, tasks, failed)`` yields one result per task as
they complete, in any order. The local and the cluster executor are interchangeable, so the
sweep's code does not change between a laptop and a cluster. A task whose worker dies is sent
again (up to ``retries`` times, Dask: the scheduler's ``allowed-failures``); a task that still
cannot finish yields ``failed(task, reason)`` instead of stopping the sweep. At most a few tasks
per worker are in flight, so neither side holds the whole sweep in memory.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from bot.errors import ConfigError
from bot.research.fingerprint import code_fingerprint, other_code

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    workers: int

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


class InlineExecutor:
    """Runs each task in this process, one after the other (``--workers 1``)."""

    workers = 1

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]:
        for task in tasks:
            yield fn(task)

    def close(self) -> None:
        return None


class LocalExecutor:
    """``workers`` processes on this machine; a dead process is replaced and its task re-sent."""

    def __init__(self, workers: int, retries: int = 3, preload: tuple[str, ...] = ()) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.retries = retries
        # forkserver: no fork of a process that runs threads (the progress bar); the server
        # imports the simulation once and forks each worker from it.
        self._ctx = multiprocessing.get_context("forkserver")
        if preload:
            self._ctx.set_forkserver_preload(list(preload))
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._ctx,
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        )
        return self._pool

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]:
        """A dead worker breaks the whole pool, so every point in flight is suspect: each is
        sent again alone, where a death names its culprit exactly."""
        pending = iter(tasks)
        held: list[T] = []  # taken from ``pending`` but refused by a pool that just broke
        suspects: list[tuple[T, int]] = []  # (task, deaths so far), re-run one at a time
        pool = self._pool or self._new_pool()
        running: dict[Future[R], tuple[T, int]] = {}
        while True:
            try:
                self._submit_more(pool, fn, running, suspects, held, pending)
            except BrokenProcessPool:
                # A worker died since the last wait: the futures in flight say which (below);
                # with none in flight there is nothing to learn, so start afresh.
                if not running:
                    pool = self._new_pool()
                    continue
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken: list[tuple[T, int]] = []
            for fut in done:
                task, deaths = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken.append((task, deaths))
                    continue
                yield result
            if not broken:
                continue
            alone = len(broken) + len(running) == 1
            broken += list(running.values())
            running.clear()
            pool = self._new_pool()
            for task, deaths in broken:
                # only a point that ran alone is known to have killed its worker
                n = deaths + 1 if alone else deaths
                if n > self.retries:
                    yield failed(task, f"worker process died {n} times running this point")
                else:
                    suspects.append((task, n))

    def _submit_more(
        self,
        pool: ProcessPoolExecutor,
        fn: Callable[[T], R],
        running: dict[Future[R], tuple[T, int]],
        suspects: list[tuple[T, int]],
        held: list[T],
        pending: Iterator[T],
    ) -> None:
        """Fill ``running``: a suspect alone, else up to two tasks per worker. Raises
        BrokenProcessPool if the pool broke since the last wait; the refused task is kept."""
        if suspects:
            if not running:
                task, deaths = suspects[0]
                running[pool.submit(fn, task)] = (task, deaths)
                suspects.pop(0)
            return
        while len(running) < 2 * self.workers:
            nxt = held.pop(0) if held else next(pending, None)
            if nxt is None:
                return
            try:
                running[pool.submit(fn, nxt)] = (nxt, 0)
            except BrokenProcessPool:
                held.insert(0, nxt)
                raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def exit_with_parent(parent: int) -> None:
    """A pool worker's initializer: end this worker when the sweep that started it dies.

    A worker waits on a queue whose writing end it holds itself, so a parent killed with
    SIGKILL (or by the OOM killer) never sends it EOF: each worker lived on, idle, holding its
    loaded market data, until killed by hand. A daemon thread blocks on the parent's process
    descriptor (readable once the parent has exited) and ends the worker then. Linux only
    (pidfd); elsewhere the old behaviour stays."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        fd = os.pidfd_open(parent)
    except OSError:  # already gone, or no pidfd support in this kernel
        return

    def watch() -> None:
        select.select([fd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class DaskExecutor:
    """Tasks sent to a Dask distributed scheduler (``tcp://HOST:PORT``) or a client's cluster.

    Workers must be able to import this project and read the data directory at the same path.
    A cluster left without any worker for ``no_workers_s`` (all died, or none started) ends the
    run with a clear error instead of waiting for ever; the finished points are on disk. So does
    a lost scheduler, and a worker that runs other code than this process (checked at the start
    and again when a point fails on the cluster: a worker that joined later).
    """

    poll_s = 10.0  # how long one wait for a finished point lasts before the workers are counted
    no_workers_s = 120.0

    def __init__(self, address: str | Any) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(
                "--cluster needs Dask distributed: pip install 'perp-risk-bot[research]'"
            ) from None
        try:
            self._client = Client(address, timeout="20s")  # type: ignore[no-untyped-call]
            self._address = address
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--cluster {address}: cannot reach the scheduler ({exc})") from None
        try:
            self.check_code()
        except BaseException:
            self._client.close()  # type: ignore[no-untyped-call]
            raise
        self.workers = max(1, len(self._client.scheduler_info().get("workers", {})))

    def check_code(self) -> None:
        """Raise ConfigError naming every worker whose code is not this process's (an older
        checkout unpickled a newer point into its own class and ran it without a word), and
        the scheduler when its code is not (it unpickles every task too: on other code it
        failed every point as "Error during deserialization of the task graph")."""
        ours = code_fingerprint()
        try:
            theirs: dict[str, Any] = self._client.run(code_fingerprint, on_error="return")
            try:
                theirs["scheduler"] = self._client.run_on_scheduler(  # type: ignore[no-untyped-call]
                    code_fingerprint
                )
            except _LOST:
                raise
            except Exception as exc:  # the scheduler cannot even load the fingerprint
                theirs["scheduler"] = exc
        except _LOST as exc:
            raise self._lost(exc) from None
        wrong, wrong_of = [], set()
        for worker, got in sorted(theirs.items()):
            if isinstance(got, BaseException):  # too old to have the fingerprint, or broken
                got = f"unknown: {type(got).__name__}: {got}"
            if got != ours:
                wrong.append(f"{worker}: {got}")
                wrong_of.add(worker)
        if wrong:
            said = other_code("; ".join(wrong), ours, scheduler="scheduler" in wrong_of)
            raise ConfigError(f"--cluster {self._address}: {said}")

    def _lost(self, exc: BaseException) -> ConfigError:
        said = str(exc).strip().splitlines()  # Dask's runs over lines, naming every future
        why = f"{type(exc).__name__}: {said[0].rstrip(':')}" if said else type(exc).__name__
        return ConfigError(
            f"--cluster {self._address}: lost the scheduler ({why}); restart it and run the "
            "same command again (finished points are kept)"
        )

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]:
        from distributed import wait as wait_for

        pending = iter(tasks)
        limit = max(4, 2 * self._worker_count())
        owner: dict[Any, T] = {}
        running: set[Any] = set()

        def submit() -> bool:
            task = next(pending, None)
            if task is None:
                return False
            try:
                fut = self._client.submit(fn, task, pure=False)
            except _LOST as exc:
                raise self._lost(exc) from None
            owner[fut.key] = task
            running.add(fut)
            return True

        for _ in range(limit):
            if not submit():
                break
        idle_s = 0.0
        while running:
            try:
                done = wait_for(  # type: ignore[no-untyped-call]
                    list(running), timeout=self.poll_s, return_when="FIRST_COMPLETED"
                )
            except TimeoutError:
                # Points can take long; a cluster without a single worker never finishes one.
                idle_s = idle_s + self.poll_s if self._worker_count() == 0 else 0.0
                if idle_s >= self.no_workers_s:
                    raise ConfigError(
                        f"--cluster {self._address}: no worker for {idle_s:.0f} s, "
                        f"{len(running)} point(s) waiting; start `dask worker` processes and "
                        "run the same command again (finished points are kept)"
                    ) from None
                continue
            except _LOST as exc:
                # The scheduler died (its futures cancelled, its connection closed): a
                # traceback of Dask's internals said nothing of what to do.
                raise self._lost(exc) from None
            idle_s = 0.0
            for fut in done.done:
                running.discard(fut)
                yield self._outcome(fut, owner.pop(fut.key), failed)
                submit()

    def _outcome(self, fut: Any, task: T, failed: Callable[[T, str], R]) -> R:
        """A finished future's result, or its task's failure."""
        try:
            result: R = fut.result()
        except Exception as exc:
            if fut.status != "error":  # cancelled or lost with the scheduler
                raise self._lost(exc) from None
            # A worker on other code fails to unpickle the point: the sweep stops (check_code
            # raises) instead of ranking a failed row among the others.
            self.check_code()
            result = failed(task, f"cluster could not run this point: {type(exc).__name__}: {exc}")
        finally:
            fut.release()
        return result

    def _worker_count(self) -> int:
        try:
            return len(self._client.scheduler_info().get("workers", {}))
        except _LOST as exc:
            raise self._lost(exc) from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


# What the Dask client raises once its scheduler is gone: its futures cancelled
# (FuturesCancelledError is a CancelledError), its connection closed (CommClosedError is an
# OSError). A poll's TimeoutError (an OSError too) is caught before these.
_LOST = (CancelledError, OSError)


def make_executor(workers: int | None, cluster: str | None) -> Executor:
    if cluster is not None:
        if workers is not None:
            raise ConfigError(
                "--workers and --cluster exclude each other (the cluster has its own)"
            )
        return DaskExecutor(cluster)
    n = workers if workers is not None else default_workers()
    if n == 1:
        return InlineExecutor()
    return LocalExecutor(n, preload=("bot.research.evaluate",))
