"""Run independent exchange calls of one tick together: sequentially or on a small thread pool.

A tick reads the account (positions, open and conditional orders, balance, marks) and market data
for every contract, then sends each contract's protective orders. Those calls do not depend on
one another, and against a live venue each one may wait seconds (a timeout, a retry): run one
after the other, the protection of the last contract waits for every delay of the others. The
engine hands such calls to its :class:`Fanout` as one batch (:meth:`Fanout.run_each`, or a
:class:`Batch` built call by call):

* :data:`SEQUENTIAL` runs them in the order they were added, on the calling thread: simulation
  and paper trading stay deterministic (the composition root picks it by default);
* :class:`ThreadFanout` runs them on a small bounded pool (live trading). The calls of one
  contract stay in one job, so their order is unchanged (a replacement stop is placed before
  the old one is cancelled). How many requests actually go out at once is bounded by the pool
  and by the exchange adapter's rate limiter.

:meth:`Fanout.run_each` runs a list of calls as one batch and returns their results in order: the
same semantics as :meth:`Batch.add` then :meth:`Batch.run`; sequentially it is a plain loop, with
no :class:`Job` per call (the engine runs four batches per tick, millions in a simulation).

Either way :meth:`Batch.run` returns when every job has finished, then raises the first error
in the order the jobs were added. After a failure no further job starts (sequentially: exactly
the calls a plain loop would have made); the jobs already running finish, so no contract's
protective steps are cut in the middle.

:meth:`Fanout.run_every` is for calls that must all be tried whatever happens to the others:
each contract's protection. A read that failed inside one contract's protective step used to
end the batch there, and the stops of the contracts after it waited for the next job (a minute
in a crash). Every call runs; each call's error (or ``None``) is returned, in the order given,
for the caller to raise once it has done what must be done regardless (:func:`raise_first`).
"""

from __future__ import annotations

import contextvars
import operator
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Job(Generic[T]):
    """One call of a batch; :meth:`result` after the batch ran."""

    __slots__ = ("_batch", "_done", "_error", "_fn", "_value")

    def __init__(self, fn: Callable[[], T], batch: Batch) -> None:
        self._fn = fn
        self._batch = batch
        self._value: T | None = None
        self._error: Exception | None = None
        self._done = False

    def run(self) -> None:
        if self._batch.failed and not self._batch.independent:
            # an earlier job failed: nothing new starts (as if run one after the other)
            self._error = Skipped("not run: an earlier call of the batch failed")
            self._done = True
            return
        try:
            self._value = self._fn()
        except Exception as exc:  # kept for Batch.run to raise in order
            self._error = exc
            self._batch.failed = True
        finally:
            self._done = True

    @property
    def error(self) -> Exception | None:
        return self._error

    def result(self) -> T:
        if not self._done:
            raise RuntimeError("Job.result() before its batch ran")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # None only when T admits it


class Skipped(RuntimeError):
    """A job that did not start because an earlier job of its batch had failed."""


class Runner(Protocol):
    def run_all(self, jobs: list[Job[object]]) -> None: ...


class Batch:
    """Calls collected with :meth:`add` and run together by :meth:`run`."""

    def __init__(self, runner: Runner, *, independent: bool = False) -> None:
        self._runner = runner
        # True: a failure stops nothing, every job runs (see Fanout.run_every).
        self.independent = independent
        self._jobs: list[Job[object]] = []
        # Set by the first job that fails; read by jobs about to start. A plain attribute (one
        # store and one load, atomic under the GIL) rather than an Event: batches are built
        # several times per tick, and in simulation millions of times.
        self.failed = False

    def add(self, fn: Callable[[], T]) -> Job[T]:
        job = Job(fn, self)
        self._jobs.append(job)  # type: ignore[arg-type]  # Job is read-only in T
        return job

    def take(self) -> list[Job[object]]:
        """The jobs added since the last run, for a runner to run; the batch starts afresh."""
        jobs, self._jobs = self._jobs, []
        self.failed = False
        return jobs

    def run(self) -> None:
        """Run the jobs added since the last run; when all have finished or been skipped, raise
        the first error (in the order added). After a failure no further job starts; the jobs
        already running finish (a contract's steps are never cut in the middle)."""
        jobs = self.take()
        self._runner.run_all(jobs)
        for job in jobs:
            if job.error is not None and not isinstance(job.error, Skipped):
                raise job.error


class Fanout(Protocol):
    def batch(self) -> Batch: ...

    def run_each(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run ``calls`` as one batch; their results in order, or the first error (in the
        order given) once every started call has finished; after a failure no call starts."""
        ...

    def run_every(self, calls: Sequence[Callable[[], object]]) -> list[Exception | None]:
        """Run every one of ``calls``, whatever the others raise; each call's error, or
        ``None``, in the order given. For steps that must each be tried, such as each
        contract's protection: one contract's failed read must not hold back another's stop."""
        ...


class Sequential:
    """Jobs run one after the other on the calling thread, in the order they were added."""

    def batch(self) -> Batch:
        return Batch(self)

    def run_all(self, jobs: list[Job[object]]) -> None:
        for job in jobs:
            job.run()

    def run_each(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        # A plain loop is exactly a sequential batch: the first error propagates and no later
        # call starts (map is lazy; operator.call keeps the loop in C).
        return list(map(operator.call, calls))

    def run_every(self, calls: Sequence[Callable[[], object]]) -> list[Exception | None]:
        errors: list[Exception | None] = []
        for call in calls:
            try:
                call()
            except Exception as exc:  # the others still run; the caller raises it
                errors.append(exc)
            else:
                errors.append(None)
        return errors


SEQUENTIAL = Sequential()


def raise_first(errors: Sequence[Exception | None]) -> None:
    """Raise the first error of a :meth:`Fanout.run_every`, if any."""
    for error in errors:
        if error is not None:
            raise error


class ThreadFanout:
    """Jobs run on a bounded pool of ``workers`` threads kept for the life of the process.

    Each job runs in a copy of the caller's context (the log lines keep the tick id). A batch
    started from inside a job runs sequentially (a nested wait on the same pool could starve
    it).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"ThreadFanout needs at least one worker, got {workers}")
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._inside = threading.local()

    def batch(self) -> Batch:
        return Batch(self)

    def run_each(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        batch = Batch(self)
        jobs = [batch.add(call) for call in calls]
        batch.run()  # raises the first error: past it, every job has its result
        return [job.result() for job in jobs]

    def run_every(self, calls: Sequence[Callable[[], object]]) -> list[Exception | None]:
        batch = Batch(self, independent=True)
        jobs = [batch.add(call) for call in calls]
        self.run_all(batch.take())
        return [job.error for job in jobs]

    def run_all(self, jobs: list[Job[object]]) -> None:
        if len(jobs) <= 1 or self.workers == 1 or getattr(self._inside, "job", False):
            SEQUENTIAL.run_all(jobs)
            return
        pool = self._executor()
        futures = [pool.submit(contextvars.copy_context().run, self._run, job) for job in jobs]
        wait(futures)
        for future in futures:
            future.result()  # _run catches job errors: anything here is a bug, raise it

    def _run(self, job: Job[object]) -> None:
        self._inside.job = True
        try:
            job.run()
        finally:
            self._inside.job = False

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tick")
            return self._pool

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
