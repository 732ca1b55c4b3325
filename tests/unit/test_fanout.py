"""The tick's fan-out: sequential in order, or concurrent on a bounded pool; errors after all."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import pytest
from loguru import logger

from bot.clock import SimClock
from bot.engine.fanout import SEQUENTIAL, ThreadFanout, raise_first
from bot.exchange.ccxt_clients import ClientPool, Hedge, SharedPacer, VenueAskedToWait


@pytest.fixture
def pool() -> Iterator[ThreadFanout]:
    fan = ThreadFanout(3)
    yield fan
    fan.shutdown()


def test_sequential_runs_in_order_on_the_calling_thread() -> None:
    seen: list[tuple[int, str]] = []
    name = threading.current_thread().name
    batch = SEQUENTIAL.batch()

    def job(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i

    jobs = [batch.add(functools.partial(job, i)) for i in range(4)]
    batch.run()
    assert [j.result() for j in jobs] == [0, 1, 2, 3]
    assert seen == [(i, name) for i in range(4)]


def test_threads_run_jobs_at_the_same_time(pool: ThreadFanout) -> None:
    # three jobs that can only finish together: run one after the other they would time out
    barrier = threading.Barrier(3, timeout=10)
    batch = pool.batch()

    def job(i: int) -> int:
        barrier.wait()
        return i

    jobs = [batch.add(functools.partial(job, i)) for i in range(3)]
    batch.run()
    assert [j.result() for j in jobs] == [0, 1, 2]


def test_no_more_than_the_pool_runs_at_once(pool: ThreadFanout) -> None:
    lock = threading.Lock()
    running, peak = [0], [0]

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.02)
        with lock:
            running[0] -= 1

    batch = pool.batch()
    for _ in range(12):
        batch.add(job)
    batch.run()
    assert peak[0] <= 3


def test_the_first_error_is_raised_after_the_running_jobs_finished(pool: ThreadFanout) -> None:
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        release.wait(5)
        finished.append("slow")
        return "slow"

    def failing() -> str:
        release.set()
        raise ValueError("contract B failed")

    batch = pool.batch()
    batch.add(slow)
    batch.add(failing)
    with pytest.raises(ValueError, match="contract B failed"):
        batch.run()
    assert finished == ["slow"]  # the other contract's steps were not cut


def test_sequentially_nothing_starts_after_a_failure() -> None:
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise KeyError("first")

    batch = SEQUENTIAL.batch()
    batch.add(fail)
    skipped = batch.add(lambda: calls.append(2))
    with pytest.raises(KeyError):
        batch.run()
    assert calls == [1]
    with pytest.raises(RuntimeError, match="earlier call"):
        skipped.result()


def test_jobs_keep_the_callers_log_context(pool: ThreadFanout) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["extra"].get("tick", "-")), level="INFO")
    try:
        with logger.contextualize(tick="t42"):
            batch = pool.batch()
            for _ in range(3):
                batch.add(lambda: logger.info("from a worker"))
            batch.run()
    finally:
        logger.remove(sink)
    assert lines == ["t42"] * 3


def test_a_batch_inside_a_job_runs_sequentially(pool: ThreadFanout) -> None:
    def outer() -> list[int]:
        inner = pool.batch()
        jobs = [inner.add(functools.partial(_identity, i)) for i in range(5)]
        inner.run()  # would wait on the busy pool if it were submitted there
        return [j.result() for j in jobs]

    batch = pool.batch()
    jobs = [batch.add(outer) for _ in range(3)]
    batch.run()
    assert all(j.result() == [0, 1, 2, 3, 4] for j in jobs)


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        ThreadFanout(0)


# -- ccxt clients ---------------------------------------------------------------------------------


def test_the_shared_pacer_keeps_one_clients_rate_across_clients() -> None:
    clock = SimClock(0)
    pacer = SharedPacer(clock, burst=0.1)

    class Client:
        rateLimit = 50  # ms per unit of cost, as ccxt's binance

        def fetch(self, url: str) -> str:  # ccxt's one HTTP method
            return url

    a, b = Client(), Client()
    pacer.install(a)
    pacer.install(b)
    for client in (a, b, a, b, a, b):
        client.throttle(1)  # type: ignore[attr-defined]
    # 6 x 50 ms of budget, 100 ms of it as a burst: the last one starts at 150 ms
    assert clock.monotonic() == pytest.approx(0.150)
    b.throttle(None)  # type: ignore[attr-defined]
    assert clock.monotonic() == pytest.approx(0.200)
    clock.sleep(10)  # idle: the burst is available again, not the whole idle time
    for _ in range(3):
        a.throttle(1)  # type: ignore[attr-defined]
    assert clock.monotonic() == pytest.approx(10.2)
    a.throttle(4)  # type: ignore[attr-defined]
    assert clock.monotonic() == pytest.approx(10.25)


def test_a_hold_stops_every_clients_requests_until_it_ends() -> None:
    """SharedPacer.hold (a venue's Retry-After): every client's request fails unsent."""
    clock = SimClock(0)
    pacer = SharedPacer(clock)
    sent: list[str] = []

    class Client:
        rateLimit = 50

        def fetch(self, url: str) -> str:
            sent.append(url)
            return url

    a, b = Client(), Client()
    pacer.install(a)
    pacer.install(b)
    pacer.hold(30)
    clock.sleep(10)
    for client in (a, b):
        with pytest.raises(VenueAskedToWait) as info:
            client.fetch("/positions")
        assert info.value.retry_after == pytest.approx(20)
    assert sent == []
    pacer.hold(5)  # a shorter wait read later does not shorten the hold
    clock.sleep(20)
    assert b.fetch("/positions") == "/positions"
    assert sent == ["/positions"]


class FakeClient:
    made = 0

    def __init__(self) -> None:
        FakeClient.made += 1
        self.options: dict[str, object] = {}
        self.markets: dict[str, object] = {}
        self.currencies: dict[str, object] = {}
        self.loaded: object = None

    def set_markets(self, markets: object, currencies: object) -> None:
        self.loaded = markets


def test_each_thread_gets_its_own_client_with_the_primarys_state() -> None:
    primary = FakeClient()
    primary.options = {"timeDifference": 5, "leverageBrackets": {"BTCUSDT": [1]}}
    primary.markets = {"BTC/USDT:USDT": {"id": "BTCUSDT"}}
    prepared: list[FakeClient] = []
    clients = ClientPool(primary, spawn=FakeClient, prepare=prepared.append)
    assert clients.current() is primary
    seen: list[FakeClient] = []
    worker = threading.Thread(target=lambda: seen.extend([clients.current(), clients.current()]))
    worker.start()
    worker.join()
    clone = seen[0]
    assert seen == [clone, clone]
    assert clone is not primary
    assert clone.loaded == primary.markets
    assert clone.options == primary.options
    assert clone.options is not primary.options
    assert prepared == [primary, clone]
    primary.options["timeDifference"] = 9
    clients.share_time_difference(primary)
    assert clone.options["timeDifference"] == 9


def test_without_spawn_threads_share_the_primary() -> None:
    primary = FakeClient()
    clients = ClientPool(primary, spawn=None, prepare=lambda c: None)
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(clients.current()))
    worker.start()
    worker.join()
    assert seen == [primary]


# -- hedged reads ---------------------------------------------------------------------------------


def test_a_slow_read_is_sent_again_and_the_first_answer_wins() -> None:
    hedge = Hedge(0.05)
    release = threading.Event()
    calls: list[str] = []

    def read() -> str:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            release.wait(5)  # the first copy hangs (a lost answer)
            return "late"
        return "copy"

    assert hedge.call(read) == "copy"
    release.set()
    assert len(calls) == 2


def test_a_quick_read_is_sent_once() -> None:
    calls: list[int] = []

    def read() -> int:
        calls.append(1)
        return 7

    assert Hedge(5).call(read) == 7
    assert calls == [1]


def test_a_quick_failure_is_raised_without_a_copy() -> None:
    calls: list[int] = []

    def read() -> int:
        calls.append(1)
        raise TimeoutError("refused")

    with pytest.raises(TimeoutError, match="refused"):
        Hedge(5).call(read)
    assert calls == [1]


def test_when_both_copies_fail_the_first_error_is_raised() -> None:
    count = [0]
    lock = threading.Lock()

    def read() -> int:
        with lock:
            count[0] += 1
            n = count[0]
        threading.Event().wait(0.2 if n == 1 else 0.0)
        raise ValueError(f"copy {n}")

    with pytest.raises(ValueError, match="copy 1"):
        Hedge(0.05).call(read)


def test_hedging_off_calls_on_the_calling_thread() -> None:
    assert Hedge(None).call(lambda: threading.current_thread().name) == (
        threading.current_thread().name
    )
    with pytest.raises(ValueError, match="> 0"):
        Hedge(0)


def _identity(i: int) -> int:
    return i


def test_run_each_returns_the_results_in_order_sequentially() -> None:
    seen: list[int] = []

    def job(i: int) -> int:
        seen.append(i)
        return i * 10

    assert SEQUENTIAL.run_each([functools.partial(job, i) for i in range(4)]) == [0, 10, 20, 30]
    assert seen == [0, 1, 2, 3]
    assert SEQUENTIAL.run_each([]) == []


def test_run_each_stops_at_the_first_error_sequentially() -> None:
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise KeyError("first")

    with pytest.raises(KeyError, match="first"):
        SEQUENTIAL.run_each([lambda: calls.append(0), fail, lambda: calls.append(2)])
    assert calls == [0, 1]


def test_run_each_on_threads_returns_results_in_order(pool: ThreadFanout) -> None:
    # three calls that can only finish together: run one after the other they would time out
    barrier = threading.Barrier(3, timeout=5)

    def job(i: int) -> int:
        barrier.wait()
        return i

    assert pool.run_each([functools.partial(job, i) for i in range(3)]) == [0, 1, 2]


def test_run_each_on_threads_raises_the_first_error_in_order(pool: ThreadFanout) -> None:
    release = threading.Event()
    finished: list[str] = []

    def slow_fail() -> None:
        release.wait(5)
        finished.append("slow")
        raise KeyError("first")

    def fast_fail() -> None:
        finished.append("fast")
        release.set()
        raise ValueError("second")

    with pytest.raises(KeyError, match="first"):
        pool.run_each([slow_fail, fast_fail])
    assert sorted(finished) == ["fast", "slow"]


def test_run_every_runs_every_call_and_returns_each_error_sequentially() -> None:
    calls: list[int] = []

    def fail(i: int) -> None:
        calls.append(i)
        raise KeyError(f"call {i}")

    errors = SEQUENTIAL.run_every(
        [lambda: calls.append(0), functools.partial(fail, 1), lambda: calls.append(2)]
    )
    assert calls == [0, 1, 2]  # the call after the failure ran
    assert [type(e) for e in errors] == [type(None), KeyError, type(None)]
    with pytest.raises(KeyError, match="call 1"):
        raise_first(errors)
    raise_first([None, None])  # nothing to raise


def test_run_every_on_threads_runs_every_call_after_a_failure(pool: ThreadFanout) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        with lock:
            calls.append(i)
        if i in (0, 3):
            raise ValueError(f"call {i}")

    # more calls than workers: the ones queued behind the failure still start
    errors = pool.run_every([functools.partial(call, i) for i in range(8)])
    assert sorted(calls) == list(range(8))
    assert [str(e) if e else None for e in errors] == [
        "call 0",
        None,
        None,
        "call 3",
        None,
        None,
        None,
        None,
    ]
