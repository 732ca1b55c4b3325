"""Alert delivery off the job's thread and per destination (bot.alerts.Notifier).

A job only records and queues its alerts: a destination that answers a byte at a time holds no
tick and no guard, and an attempt past its bound counts as failed. Each destination of
``runtime.alert_urls`` keeps its own deliveries, rest and held alerts: one that fails neither
floods the others with copies nor holds new alerts back from them, and ``bot status`` names it.
A critical alert held while the destinations fail is sent at the next start whatever its age,
saying when it was; one whose incident ended meanwhile says since when that is over.

The destinations are webhook servers on 127.0.0.1 that answer, refuse or trickle their answer
as the test says; real time is only waited for, never measured."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.alerts import Alert, AlertRules, Notifier, apprise_destinations, destination_id
from bot.bootstrap import notifier_for, open_store
from bot.cli.reports import status_data, status_tables
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent
from bot.store import views
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts import Receiver, closed_port, receiver, set_runtime

# Apprise's PGP support imports the deprecated ``imghdr`` (see tests/runtime/test_alerts.py).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
__all__ = ["receiver"]  # the webhook receiver fixture

T0 = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
RULES = AlertRules(D("0.8"), D(3), dedup_seconds=3600, max_per_hour=20)
HALT = Alert("state:halted@2025-06-02T00:00:00Z", "critical", "trading state: drawdown limit")
NAKED = Alert("no_stop:BTC/USDT:USDT", "critical", "BTC/USDT:USDT: position 0.5 has no stop")


# --- a destination that trickles its answer ---------------------------------------------------


@dataclass
class Trickle:
    """A webhook that answers each POST with its headers at once, then its body of ``size``
    bytes one byte every ``drip_s`` (real) seconds: Apprise's read timeout (4 s) is per read,
    it never trips. ``prompt``: answer at once from now on."""

    port: int = 0
    drip_s: float = 0.2
    size: int = 100_000  # (not done within any test)
    prompt: bool = False
    posts: list[dict[str, Any]] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)  # a slow answer done
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hooks/Tr1ckleToken"

    def serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.posts.append(json.loads(body))
                if self.prompt:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
                for _ in range(self.size):
                    if self.stop.wait(self.drip_s):
                        return
                    conn.sendall(b" ")
                self.answered.set()
            except OSError:
                return


@pytest.fixture
def trickle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trickle]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    hook = Trickle(port=server.getsockname()[1])

    def accept() -> None:
        server.settimeout(0.1)
        while not hook.stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=hook.serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.stop.set()
        thread.join(timeout=5)
        server.close()


def wait_for(what: Any, timeout_s: float = 10.0) -> None:
    """Wait (at most ``timeout_s`` real seconds) until ``what()`` holds."""
    done = threading.Event()
    for _ in range(int(timeout_s / 0.05)):
        if what():
            return
        done.wait(0.05)
    raise AssertionError(f"not within {timeout_s} s")


def records(store: SqlStore, key: str) -> list[bool]:
    return [r.delivered for r in store.recent_alerts(key, 0)]


def test_a_destination_that_trickles_its_answer_holds_no_job(
    store: SqlStore, trickle: Trickle
) -> None:
    """Apprise gave up on such a destination at its own limit, 60 s per attempt, on the job's
    thread: the next tick, the guard and the stop it would place waited as long."""
    clock = SimClock(T0)
    [hook] = apprise_destinations([trickle.url])
    n = Notifier(store, clock, [hook], RULES, account="acct", attempt_s=1.0)
    alerts = [Alert(f"no_stop:{s}", "critical", f"{s} has no stop") for s in ("BTC", "ETH", "SOL")]
    # The destination answers only once the test lets it: had the job waited for it, this
    # would not return.
    assert n.notify(alerts) == 3
    wait_for(lambda: len(trickle.posts) == 1)  # the first is on its way, the job went on
    assert n.drain()  # the attempt passed its bound: failed, and the destination rests
    assert not trickle.answered.is_set()
    assert [records(store, a.key) for a in alerts] == [[False]] * 3
    clock.advance_to(T0 + 10_000)  # still resting: nothing more is tried, nothing waits
    assert n.notify([HALT]) == 1
    assert n.drain()
    assert len(trickle.posts) == 1
    # It answers again after its rest: what was held goes out, the halt first (the hook's
    # first attempt still trickles on its own thread, abandoned).
    trickle.prompt = True
    clock.advance_to(T0 + 31_000)
    n.notify([])
    assert n.drain()
    assert [p["title"] for p in trickle.posts[1:]] == [
        f"[acct] critical: {a.key}" for a in [*alerts, HALT]
    ]
    assert [records(store, a.key) for a in [HALT, *alerts]] == [[True]] * 4


def test_an_answer_slower_than_the_bound_counts_as_a_failure_and_is_not_sent_twice(
    store: SqlStore, trickle: Trickle
) -> None:
    """A destination that answers, but slowly, was a success: every alert cost its whole
    answer, one after another, on the job's thread."""
    trickle.size, trickle.drip_s = 8, 0.5  # done after 4 s
    clock = SimClock(T0)
    n = Notifier(store, clock, apprise_destinations([trickle.url]), RULES, account="acct")
    n.attempt_s = 1.0
    n.notify([HALT])
    assert n.drain()  # past its bound: the destination rests
    clock.advance_to(T0 + 5_000)
    n.notify([NAKED])  # held for the rest
    wait_for(trickle.answered.is_set)
    # It arrived, late: delivered (recorded so once the notifier hears of it), never sent again.
    wait_for(lambda: n.drain() and records(store, HALT.key) == [True])
    assert records(store, NAKED.key) == [False]
    assert len(trickle.posts) == 1
    trickle.prompt = True
    clock.advance_to(T0 + 31_000)  # the rest is over
    n.notify([])
    assert n.drain()
    assert [p["title"] for p in trickle.posts] == [
        f"[acct] critical: {HALT.key}",
        f"[acct] critical: {NAKED.key}",
    ]
    assert records(store, NAKED.key) == [True]


def test_shutting_down_waits_seconds_not_for_a_trickling_destination(
    store: SqlStore, trickle: Trickle
) -> None:
    """What is undelivered at the end stays recorded undelivered: the next start sends it."""
    n = Notifier(store, SimClock(T0), apprise_destinations([trickle.url]), RULES, account="acct")
    n.notify([HALT])
    wait_for(lambda: len(trickle.posts) == 1)
    assert not n.close(timeout_s=0.5)  # gave up waiting: the attempt is still on its way
    [owed] = views.owed_critical(store, [destination_id(trickle.url)], dedup_ms=3_600_000)
    assert owed.key == HALT.key


# --- two destinations, one failing ------------------------------------------------------------


def two_destinations(tmp_path: Path, working: str) -> tuple[BotConfig, str]:
    """A paper bot's configuration with ``working`` and a destination that refuses every
    connection (nothing listens: an SMTP relay down, a webhook gone); and that one's URL."""
    failing = f"json://127.0.0.1:{closed_port()}/second/Ma1lToken99"
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=json.dumps([working, failing]))
    return load_config(config_path), failing


def test_a_failing_destination_neither_floods_nor_holds_back_the_working_one(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Apprise's answer was False when any destination failed: the alert was held and sent
    again to both at every retry (the working one received the same halt 8 times in 50
    minutes, and again after a restart), and the failing one's rest, up to 15 minutes, held
    every new alert back from the working one."""
    config, failing = two_destinations(tmp_path, receiver.url)
    store = open_store(config, create=True)
    clock = SimClock(T0)
    try:
        n, _ = notifier_for(config, store, clock)
        n.notify([HALT])
        for minute in range(1, 61):  # an hour of jobs, a guard a minute
            clock.advance_to(T0 + minute * MINUTE)
            n.notify([])
        assert n.drain()
        assert receiver.titles() == [f"[main] critical: {HALT.key}"]
        # A position loses its stop: the working destination hears it at once.
        n.notify([NAKED])
        assert n.drain()
        assert receiver.titles()[-1] == f"[main] critical: {NAKED.key}"
        # bot status: nothing reached no one; the failing destination is named, redacted.
        data = status_data(config, store, clock.now_ms())
        assert data["alerts_not_delivered"] == 0
        [down] = data["alert_destinations_failing"]
        assert down["destination"] == failing.replace("second/Ma1lToken99", "***/***")
        assert down["alerts"] == 2
        console = Console(width=300, record=True)
        for table in status_tables(data):
            console.print(table)
        shown = console.export_text()
        assert f"ALERT DESTINATION FAILING │ {down['destination']}: 2 critical alert(s)" in shown
        assert "Ma1lToken99" not in shown
        assert "ALERTS NOT DELIVERED" not in shown
        n.close()
        # A restart: the halt is owed to the failing destination only.
        again, _ = notifier_for(config, store, clock)
        clock.advance_to(T0 + 62 * MINUTE)
        again.notify([])
        assert again.drain()
        assert receiver.titles().count(f"[main] critical: {HALT.key}") == 1
        assert {
            o.key for o in views.owed_critical(store, [destination_id(failing)], dedup_ms=0)
        } == {
            HALT.key,
            NAKED.key,
        }
        again.close()
    finally:
        store.close()


# --- held across a restart, and when its incident is over ---------------------------------------


def one_destination(tmp_path: Path, url: str) -> BotConfig:
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=json.dumps([url]))
    return load_config(config_path)


def test_a_halt_held_for_hours_reaches_the_owner_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A start restored only the alerts of the last hour: a halt held longer while the
    destination failed was dropped, and ``bot status`` stopped counting it as soon as any later
    alert got through."""
    config = one_destination(tmp_path, receiver.url)
    store = open_store(config, create=True)
    clock = SimClock(T0)
    try:
        receiver.status = 500
        n, _ = notifier_for(config, store, clock)
        n.notify([HALT])
        assert n.close()
        # The destination answers again and a later alert gets through (a process that did not
        # hold the halt): the halt still reached no one.
        receiver.status = 200
        clock.advance_to(T0 + 2 * HOUR)
        other = Notifier(store, clock, apprise_destinations([receiver.url]), RULES, account="x")
        other.notify([Alert("clock_offset", "critical", "host clock 12 s off the venue's")])
        assert other.close()
        assert receiver.titles()[-1] == "[x] critical: clock_offset"
        data = status_data(config, store, clock.now_ms())
        assert data["alerts_not_delivered"] == 1
        assert data["alert_destinations_failing"][0]["alerts"] == 1
        # Three hours after the halt, the bot restarts: the halt goes out, saying when it was.
        clock.advance_to(T0 + 3 * HOUR)
        n, _ = notifier_for(config, store, clock)
        n.notify([])
        assert n.close()
        refused, halt = [b for _, b in receiver.posts if b["title"].endswith(HALT.key)]
        assert refused["message"] == HALT.message
        assert halt["message"] == f"{HALT.message} (at 2025-06-02 00:00:00 UTC)"
        data = status_data(config, store, clock.now_ms())
        assert data["alerts_not_delivered"] == 0
        assert data["alert_destinations_failing"] == []
    finally:
        store.close()


def test_an_incident_over_before_its_alert_is_sent_is_not_sent_as_current(
    store: SqlStore, receiver: Receiver
) -> None:
    receiver.status = 500
    clock = SimClock(T0)
    n = Notifier(store, clock, apprise_destinations([receiver.url]), RULES, account="acct")
    n.notify([NAKED])  # the guard at 00:00: no stop; the destination fails
    assert n.drain()
    clock.advance_to(T0 + MINUTE)
    n.resolved([NAKED.key])  # the next guard: the stop rests again
    n.notify([])
    receiver.status = 200
    clock.advance_to(T0 + MINUTE + 30_000)  # the rest is over
    n.notify([])
    assert n.drain()
    [(_, body)] = receiver.posts[1:]
    assert body["message"] == (
        f"{NAKED.message} (at 2025-06-02 00:00:00 UTC, over since 2025-06-02 00:01:00 UTC)"
    )


def test_an_incident_that_ended_before_a_restart_is_sent_as_over(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A start held again what a failing destination held, as if it held now: a position
    closed for lack of a stop was still "unprotected" in the alert after its ``protected``
    event."""
    config = one_destination(tmp_path, receiver.url)
    store = open_store(config, create=True)
    clock = SimClock(T0)
    sym = config.contracts[0].symbol
    unprotected = Alert(f"unprotected:{sym}", "critical", f"{sym}: stop rejected; closed")
    try:
        receiver.status = 500
        n, _ = notifier_for(config, store, clock)
        n.notify([unprotected])
        assert n.close()
        clock.advance_to(T0 + 10 * MINUTE)
        store.record_event(
            RiskEvent(
                ts_ms=clock.now_ms(),
                kind=EventKind.PROTECTED,
                symbol=sym,
                state=TradingState.ACTIVE,
                reason="a stop rests again",
            )
        )
        receiver.status = 200
        clock.advance_to(T0 + 20 * MINUTE)
        n, _ = notifier_for(config, store, clock)
        n.notify([])
        assert n.close()
        [body] = [b for _, b in receiver.posts if b["title"].endswith(unprotected.key)][1:]
        assert body["message"] == (
            f"{unprotected.message} (at 2025-06-02 00:00:00 UTC, over since "
            "2025-06-02 00:10:00 UTC)"
        )
    finally:
        store.close()


def test_a_condition_held_across_a_restart_and_over_at_the_first_job_is_over_by_then(
    store: SqlStore, receiver: Receiver
) -> None:
    """No end event says when a stop rested again: the first job after the restart sees it
    over, and the alert says it was over by then, not since then."""
    here = apprise_destinations([receiver.url])
    store.record_alert(T0, NAKED.key, NAKED.severity, NAKED.message, destinations=[here[0].id])
    clock = SimClock(T0 + 2 * HOUR)
    n = Notifier(store, clock, here, RULES, account="acct")
    assert n.restore(views.owed_critical(store, [here[0].id], dedup_ms=3_600_000)) == 1
    n.resolved([NAKED.key])  # the first job: the stop rests
    n.notify([])
    assert n.drain()
    [(_, body)] = receiver.posts
    assert body["message"] == (
        f"{NAKED.message} (at 2025-06-02 00:00:00 UTC, over by 2025-06-02 02:00:00 UTC)"
    )
