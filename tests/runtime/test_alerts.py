"""Alerts: the conditions on hand-built account states, and delivery through Apprise to a webhook
receiver on 127.0.0.1 (``json://`` URLs POST ``{"title", "message", "type", ...}`` as JSON)."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot import bootstrap
from bot.alerts import Alert, AlertRules, Destination, Notifier, apprise_destinations, conditions
from bot.bootstrap import build_paper, open_store
from bot.clock import LiveClock, SimClock
from bot.config.loader import load_config
from bot.domain.enums import (
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)
from bot.domain.instrument import Bracket, Instrument
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import sent
from tests.runtime.conftest import write_config

SYM = "TST/USDT:USDT"
T0 = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR = 3_600_000
WALL = LiveClock()
# One bracket, maintenance 1 % of notional, no deduction: maintenance = notional / 100.
INSTRUMENT = Instrument(
    symbol=SYM,
    base="TST",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D("0.001"),
    min_notional=D(5),
    brackets=(Bracket(D(0), D(10**9), D(50), D("0.01"), D(0)),),
    maker_fee=D("0.0002"),
    taker_fee=D("0.0005"),
    liquidation_fee=D("0.0125"),
)
# Apprise's PGP support imports the standard ``imghdr`` module, deprecated since Python 3.11 (a
# third-party warning on first use, not ours; pytest turns warnings into errors).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
RULES = AlertRules(
    margin_ratio=D("0.8"), liquidation_vol_units=D(3), dedup_seconds=600, max_per_hour=20
)


# --- a webhook receiver ------------------------------------------------------------------------


@dataclass
class Receiver:
    """Records every POSTed JSON body; answers ``status``. The bot's jobs only queue alerts (a
    delivery thread sends them): reading ``posts`` first waits for the notifiers it was told to
    ``watch`` to send what is due."""

    port: int = 0
    status: int = 200
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    watched: list[Notifier] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def watch(self, notifier: Notifier) -> None:
        self.watched.append(notifier)

    @property
    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        for notifier in self.watched:
            assert notifier.drain(), "the delivery thread did not finish within 10 s"
        return list(self.received)

    def titles(self) -> list[str]:
        return [body["title"] for _, body in self.posts]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # A proxy from the environment must not intercept the loopback requests.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    rec = Receiver()
    # Every notifier a bot builds (bootstrap.build_paper, build_live) is watched: what it queued
    # is delivered before the test reads what the receiver got.
    built = bootstrap.notifier_for

    def watched(*args: Any, **kwargs: Any) -> tuple[Notifier, AlertRules]:
        notifier, rules = built(*args, **kwargs)
        rec.watch(notifier)
        return notifier, rules

    monkeypatch.setattr(bootstrap, "notifier_for", watched)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            rec.received.append((self.path, body))  # before answering: delivered after
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- conditions --------------------------------------------------------------------------------


def position(qty: str, entry: str, liq: str | None = None) -> Position:
    return Position(
        SYM, D(qty), D(entry), D(5), MarginMode.ISOLATED, D(0), None if liq is None else D(liq)
    )


def order(purpose: OrderPurpose, side: OrderSide = OrderSide.SELL) -> Order:
    return Order(
        client_id=f"t-{purpose.value}-TST-1-1",
        exchange_id="1",
        symbol=SYM,
        side=side,
        type=OrderType.STOP_MARKET
        if purpose is OrderPurpose.STOP_LOSS
        else OrderType.TAKE_PROFIT_MARKET,
        purpose=purpose,
        amount=D(1),
        filled=D(0),
        status=OrderStatus.OPEN,
        reduce_only=True,
        trigger_price=D(90),
    )


def snapshot(mark: str, vol: str) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=SYM,
        asof_ms=T0,
        last_price=D(mark),
        mark_price=D(mark),
        volatility=D(vol),
        atr=D(1),
        funding=FundingInfo(D("0.0001"), D(8), T0 + HOUR),
        bar_hours=D(1),
    )


def check(
    pos: Position,
    *,
    mark: str = "100",
    wallet: str = "100000",
    resting: list[Order] | None = None,
    snap: MarketSnapshot | None = None,
) -> dict[str, Alert]:
    alerts = conditions(
        positions={SYM: pos},
        resting={SYM: [order(OrderPurpose.STOP_LOSS)] if resting is None else resting},
        marks={SYM: D(mark)},
        snapshots={} if snap is None else {SYM: snap},
        instruments={SYM: INSTRUMENT},
        wallet=D(wallet),
        rules=RULES,
    )
    keys = [a.key for a in alerts]
    assert len(keys) == len(set(keys)), keys
    return {a.key: a for a in alerts}


def test_margin_ratio_alert_at_and_above_the_threshold() -> None:
    # long 10 @ 100, mark 90: notional 900, maintenance 9; unrealised -100.
    pos = position("10", "100")
    # its stop covers all 10 (a stop of 1 would leave 9 unprotected: an alert of its own)
    stop = [replace(order(OrderPurpose.STOP_LOSS), amount=D(10))]
    # wallet 110: margin balance 10, ratio 9 / 10 = 90 % >= 80 %
    alert = check(pos, mark="90", wallet="110", resting=stop)["margin_ratio"]
    assert alert.severity == "critical"
    assert "margin ratio 90.00%" in alert.message
    assert "maintenance 9.00, margin balance 10.00" in alert.message
    # wallet 111.25: balance 11.25, ratio exactly 80 %: alerts (>=)
    ratio = check(pos, mark="90", wallet="111.25", resting=stop)["margin_ratio"]
    assert "margin ratio 80.00%" in ratio.message
    # wallet 112: balance 12, ratio 75 %: nothing
    assert check(pos, mark="90", wallet="112", resting=stop) == {}
    # wallet 100: balance 0, no margin left at all
    empty = check(pos, mark="90", wallet="100", resting=stop)["margin_ratio"]
    assert "margin ratio Infinity%" in empty.message


def test_liquidation_distance_in_daily_volatility_units() -> None:
    # a daily-vol unit at mark 100 and 40 % a year: 100 x 0.40 / sqrt(365) = 2.0937
    snap = snapshot("100", "0.40")
    # long, liquidation 95: 5 / 2.0937 = 2.39 units < 3
    alert = check(position("1", "100", "95"), snap=snap)[f"liq_distance:{SYM}"]
    assert alert.severity == "critical"
    assert "liquidation 95.00 is 2.39 daily-vol units from the mark 100.00" in alert.message
    # short, liquidation 104 above the mark: 4 / 2.0937 = 1.91 units
    short = check(position("-1", "100", "104"), snap=snap, resting=[order(OrderPurpose.STOP_LOSS)])
    assert "1.91 daily-vol units" in short[f"liq_distance:{SYM}"].message
    # liquidation 93: 7 / 2.0937 = 3.34 units, not below 3
    assert check(position("1", "100", "93"), snap=snap) == {}
    # no statistics, no volatility or no liquidation price: nothing to measure against
    assert check(position("1", "100", "95")) == {}
    assert check(position("1", "100", "95"), snap=snapshot("100", "0")) == {}
    assert check(position("1", "100"), snap=snap) == {}


def test_a_stop_placed_by_hand_counts_on_the_closing_side_only() -> None:
    """A position opened and protected by hand (a stop without the bot's client id) is not
    alerted as naked every dedup window; a by-hand stop on the wrong side is no protection."""
    by_hand = replace(
        order(OrderPurpose.STOP_LOSS), client_id="web_123", purpose=None, trigger_by=TriggerBy.MARK
    )
    assert check(position("1", "100"), resting=[by_hand]) == {}
    buy_stop = replace(by_hand, side=OrderSide.BUY)  # adds to a long: no protection
    assert f"no_stop:{SYM}" in check(position("1", "100"), resting=[buy_stop])
    assert check(position("-1", "100"), resting=[buy_stop]) == {}


def test_a_stop_placed_by_hand_that_does_not_protect_as_the_bots_is_alerted_and_named() -> None:
    """A stop placed by hand counts only as a mark-triggered, reduce-only (or close-position)
    stop-market: a last-price trigger, one the venue's reply does not name, a stop-limit or a
    plain (not reduce-only) stop leaves the position alerted as naked, and the alert says why
    the trader's stop is not counted."""
    mark_stop = replace(
        order(OrderPurpose.STOP_LOSS), client_id="web_1", purpose=None, trigger_by=TriggerBy.MARK
    )
    cases = {
        "triggered on the last price, not the mark": replace(mark_stop, trigger_by=TriggerBy.LAST),
        "the venue's reply does not say which price triggers it": replace(
            mark_stop, trigger_by=None
        ),
        "a stop-limit order, not a stop-market": replace(
            mark_stop, type=OrderType.STOP_LIMIT, price=D(89)
        ),
        "not reduce-only or close-position": replace(mark_stop, reduce_only=False),
    }
    for why, stop in cases.items():
        alert = check(position("1", "100"), resting=[stop])[f"no_stop:{SYM}"]
        assert alert.message.startswith(f"{SYM}: position 1 has no resting stop-loss; ")
        assert f"placed by hand, not counted: web_1: {why}" in alert.message
    # a close-position stop-market on the mark counts whatever its reduce-only flag
    whole = replace(mark_stop, amount=None, close_position=True, reduce_only=False)
    assert check(position("3", "100"), resting=[whole]) == {}
    # beside the bot's own stop a last-price one by hand changes nothing, and is not named
    assert (
        check(
            position("1", "100"),
            resting=[
                order(OrderPurpose.STOP_LOSS),
                cases["triggered on the last price, not the mark"],
            ],
        )
        == {}
    )


def test_position_without_a_resting_stop() -> None:
    pos = position("1", "100")
    alert = check(pos, resting=[])[f"no_stop:{SYM}"]
    assert alert.severity == "critical"
    assert alert.message == f"{SYM}: position 1 has no resting stop-loss"
    # a take-profit is no stop
    assert f"no_stop:{SYM}" in check(pos, resting=[order(OrderPurpose.TAKE_PROFIT)])
    assert check(pos) == {}  # a stop rests
    # a flat position needs nothing
    assert check(position("0", "100", "95"), resting=[], snap=snapshot("100", "0.4")) == {}


# --- delivery ----------------------------------------------------------------------------------


def notifier(
    store: SqlStore, receiver_url: str | None, rules: AlertRules = RULES
) -> tuple[Notifier, SimClock]:
    clock = SimClock(T0)
    destinations = apprise_destinations([receiver_url]) if receiver_url else None
    return Notifier(store, clock, destinations, rules, account="acct"), clock


def test_an_alert_reaches_the_webhook(store: SqlStore, receiver: Receiver) -> None:
    n, _ = notifier(store, receiver.url)
    assert sent(n, [Alert(f"no_stop:{SYM}", "critical", "TST has no stop")]) == 1
    [(path, body)] = receiver.posts
    assert path == "/hook"
    assert body["title"] == f"[acct] critical: no_stop:{SYM}"
    assert body["message"] == "TST has no stop"
    [record] = store.recent_alerts(f"no_stop:{SYM}", 0)
    assert record.delivered
    assert record.ts_ms == T0


def test_the_same_alert_is_sent_once_per_window(store: SqlStore, receiver: Receiver) -> None:
    n, clock = notifier(store, receiver.url)  # dedup window 600 s
    a = Alert("margin_ratio", "critical", "ratio high")
    assert sent(n, [a]) == 1
    clock.advance_to(T0 + 599_000)
    assert sent(n, [a]) == 0  # same key within the window: recorded, not sent
    assert sent(n, [Alert(f"no_stop:{SYM}", "critical", "other")]) == 1  # another key is sent
    assert len(receiver.posts) == 2
    records = store.recent_alerts("margin_ratio", 0)
    assert [r.delivered for r in records] == [False, True]  # newest first
    assert records[0].owed == frozenset()  # a repeat: owed to no destination
    clock.advance_to(T0 + 601_000)  # the delivered one left the window
    assert sent(n, [a]) == 1
    assert receiver.titles().count("[acct] critical: margin_ratio") == 2


def test_no_more_than_max_per_hour(store: SqlStore, receiver: Receiver) -> None:
    rules = AlertRules(D("0.8"), D(3), dedup_seconds=0, max_per_hour=2)
    n, clock = notifier(store, receiver.url, rules)
    sent(n, [Alert(f"k{i}", "warning", f"alert {i}") for i in range(4)])
    clock.advance_to(T0 + 30 * 60_000)
    sent(n, [Alert("k4", "warning", "alert 4")])  # still the same hour
    assert [b["message"] for _, b in receiver.posts] == ["alert 0", "alert 1"]
    for i in range(5):  # every alert is recorded, sent or not
        [record] = store.recent_alerts(f"k{i}", 0)
        assert record.delivered is (i < 2)
    clock.advance_to(T0 + HOUR + 1)  # the first two sends are more than an hour old
    sent(n, [Alert("k5", "warning", "alert 5")])
    assert len(receiver.posts) == 3


def test_the_hourly_limit_spends_itself_on_critical_alerts_first(
    store: SqlStore, receiver: Receiver
) -> None:
    rules = AlertRules(D("0.8"), D(3), dedup_seconds=0, max_per_hour=1)
    n, _ = notifier(store, receiver.url, rules)
    batch = [
        Alert("unreadable:account", "warning", "account unreadable"),
        Alert(f"no_stop:{SYM}", "critical", "TST has no stop"),
    ]
    sent(n, batch)
    assert [b["message"] for _, b in receiver.posts] == ["TST has no stop"]
    [warning] = store.recent_alerts("unreadable:account", 0)
    assert not warning.delivered  # recorded all the same


def test_a_failing_destination_does_not_raise(store: SqlStore, receiver: Receiver) -> None:
    receiver.status = 500
    n, clock = notifier(store, receiver.url)
    a = Alert("state:halted", "critical", "halted")
    assert sent(n, [a]) == 1
    assert len(receiver.posts) == 1  # tried
    [record] = store.recent_alerts("state:halted", 0)
    assert not record.delivered
    # an undelivered alert does not count for dedup: the retry goes out when the hook is back
    receiver.status = 200
    clock.advance_to(T0 + 60_000)
    assert sent(n, [a]) == 1
    assert len(receiver.posts) == 2
    assert [r.delivered for r in store.recent_alerts("state:halted", 0)] == [True, False]


def test_an_unreachable_destination_and_a_raising_sender_do_not_raise(store: SqlStore) -> None:
    n, _ = notifier(store, f"json://127.0.0.1:{closed_port()}/hook")
    sent(n, [Alert("a", "warning", "nobody listens")])
    assert [r.delivered for r in store.recent_alerts("a", 0)] == [False]

    def boom(title: str, body: str) -> bool:
        raise ConnectionError("the network is down")

    n = Notifier(store, SimClock(T0), boom, RULES, account="acct")
    sent(n, [Alert("b", "warning", "sender raises")])
    assert [r.delivered for r in store.recent_alerts("b", 0)] == [False]


def test_the_credentials_in_an_alert_url_never_reach_a_log_or_a_stored_text(
    store: SqlStore,
) -> None:
    """Apprise logs the request path at DEBUG and a failed connection quotes it (urllib3:
    "Max retries exceeded with url: /hook/<token>"): the URL's token and password are redacted
    wherever the bot's text goes (log sinks, events, alerts)."""
    from bot.logs import redact

    token, password = "T0KEN9af83Kq02Zx", "pw4Alerts9x"
    port = closed_port()
    url = f"json://ops:{password}@127.0.0.1:{port}/hook/{token}?rto=1&cto=1"
    [destination] = apprise_destinations([url])
    assert token not in destination.label
    assert password not in destination.label
    quoted = f"HTTPConnectionPool(host='127.0.0.1', port={port}): Max retries exceeded with url: "
    for text in (f"{quoted}/hook/{token}", f"JSON URL: {url}", f"login ops:{password} refused"):
        assert token not in redact(text)
        assert password not in redact(text)
    assert "127.0.0.1" in redact(quoted)  # an address is not a secret
    n = Notifier(store, SimClock(T0), None, RULES, account="acct")
    n.notify([Alert("x", "warning", f"delivery to {url} failed")])
    [record] = store.recent_alerts("x", 0)
    assert token not in record.message


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_secrets_without_a_digit_are_redacted_and_apprise_lines_stay_out_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verbose: bool
) -> None:
    """An ntfy topic (the only access control on ntfy.sh) and a webhook path token of letters
    only: the JSON log file (always at DEBUG) held them in Apprise's "Loaded ntfy URL" and
    "JSON POST URL" lines, at every start and every send. With ``bot --verbose`` Apprise's
    DEBUG lines are let through, and "Loaded ... URL: <the whole URL>" is logged inside
    Apprise's add(): a URL's secrets were known to the redactor only after it, and went to the
    log in clear (each case has secrets of its own: the redactor keeps what it was told)."""
    from loguru import logger

    import bot.logs
    from bot.logs import redact, setup_logging

    monkeypatch.setattr(bot.logs, "VERBOSE", verbose)  # what `bot --verbose` sets
    case = "loud" if verbose else "quiet"
    topic, token = f"perpbot{case}privatetopic", f"QwErTyUiOp{case}AsDfGhJkLzXcVbNm"
    bot_token = f"123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PA{case}w"
    port = closed_port()
    setup_logging(tmp_path, level="INFO", console=False)
    try:
        destinations = apprise_destinations(
            [
                f"ntfy://127.0.0.1:{port}/{topic}",
                f"json://127.0.0.1:{port}/hooks/{token}?rto=1&cto=1",
                f"tgram://{bot_token}/987654321",  # (Apprise puts the token in the host's place)
            ]
        )
        for d in destinations[:2]:  # nothing listens
            assert d.send("critical: no_stop:BTC/USDT:USDT", "test") is False
        logger.complete()
    finally:
        logger.remove()
    written = "".join(f.read_text() for f in tmp_path.iterdir())
    for secret in (topic, token, bot_token):
        assert secret not in written
        assert all(secret not in d.label for d in destinations)
    if verbose:
        assert "Loaded" in written  # Apprise's DEBUG lines were written (redacted)
    for secret in (topic, token):
        assert secret not in redact(f"Loaded URL http://127.0.0.1:{port}/{secret}")
    assert "hooks" in redact("/hooks/")  # a short word is not a secret


def test_apprise_urls_are_checked() -> None:
    assert apprise_destinations([]) == []
    with pytest.raises(ValueError, match="not understood by Apprise: nosuchscheme://"):
        apprise_destinations(["nosuchscheme://host/path"])


# --- end to end: the paper bot ----------------------------------------------------------------


def set_runtime(config_path: Path, **settings: str) -> None:
    """Replace ``key = ...`` lines of the example config (every runtime key is listed there, and
    a TOML key may not be given twice)."""
    text = config_path.read_text()
    for key, value in settings.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    config_path.write_text(text)


def paper_tick_with_alerts(
    directory: Path, receiver: Receiver, command: str | None = None, **settings: str
) -> None:
    """A paper bot on the bundled data with alerts to ``receiver``: one tick, then ``command``
    (posted through the database, like ``bot halt``), then one more tick."""
    config_path = write_config(directory, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]', **settings)
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(T0)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        assert runner.tick() is not None
        if command is not None:
            store.post_command(command, json.dumps({"flatten": True}), clock.now_ms())
            clock.advance_to(clock.now_ms() + HOUR)
            assert runner.tick() is not None
        assert runner.notifier.close()
    finally:
        paper.save()
        store.close()


def test_the_paper_bot_sends_its_alerts(tmp_path: Path, receiver: Receiver) -> None:
    # Any open position crosses a margin-ratio threshold this low: the alert must arrive.
    paper_tick_with_alerts(tmp_path, receiver, alert_margin_ratio="0.0001")
    assert "[main] critical: margin_ratio" in receiver.titles()


def test_a_halt_posted_through_the_database_is_alerted(tmp_path: Path, receiver: Receiver) -> None:
    paper_tick_with_alerts(tmp_path, receiver, command="halt")
    state = [
        b for _, b in receiver.posts if b["title"].startswith("[main] critical: state:halted@")
    ]
    assert len(state) == 1, receiver.titles()
    assert state[0]["message"].startswith("trading state: command ")
    assert "halt" in state[0]["message"]


def test_every_change_of_state_is_alerted_even_within_the_dedup_window(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Halt, resume and halt again within the hour: both halts reach the owner (state alerts
    were keyed by the state alone, so the dedup window swallowed the second halt)."""
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(T0)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        assert runner.tick() is not None
        for command in ("halt", "resume", "halt"):
            store.post_command(command, json.dumps({"flatten": True}), clock.now_ms())
            clock.advance_to(clock.now_ms() + 10 * 60_000)  # ten minutes apart
            runner.guard()
        assert runner.notifier.close()
    finally:
        paper.save()
        store.close()
    halts = [t for t in receiver.titles() if t.startswith("[main] critical: state:halted@")]
    assert len(halts) == 2, receiver.titles()


@pytest.fixture
def hanging() -> Iterator[tuple[str, list[socket.socket]]]:
    """A webhook that accepts connections and never answers (read timeout 1 s in the URL)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.getsockname()[1]}/hook?rto=1&cto=1", held
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_a_hanging_destination_costs_one_attempt_not_one_per_alert(
    store: SqlStore, hanging: tuple[str, list[socket.socket]], receiver: Receiver
) -> None:
    url, held = hanging
    [hangs] = apprise_destinations([url])
    [answers] = apprise_destinations([receiver.url])
    target = {"send": hangs.send}  # the one destination: hanging, then answering again
    hook = Destination("hook", "the hook", lambda title, body: target["send"](title, body))
    clock = SimClock(T0)
    n = Notifier(store, clock, [hook], RULES, account="acct")
    alerts = [Alert(f"no_stop:{i}", "critical", f"contract {i} has no stop") for i in range(6)]
    assert n.notify(alerts) == 6  # queued: the job's thread waits for no delivery
    assert n.drain()  # the one attempt waits out the read timeout (1 s), then the hook rests
    # One attempt; the five others are held, not each tried and waited for.
    assert len(held) == 1
    for i in range(6):  # all recorded, none delivered
        assert [r.delivered for r in store.recent_alerts(f"no_stop:{i}", 0)] == [False]
    # Still resting a little later: nothing is tried.
    clock.advance_to(T0 + 10_000)
    assert n.notify([Alert("state:halted", "critical", "halted")]) == 1
    assert n.drain()
    assert len(held) == 1
    # The destination answers again after the rest: what was held goes out first, then the
    # new alert.
    target["send"] = answers.send
    clock.advance_to(T0 + 60_000)
    assert n.notify([Alert("margin_ratio", "critical", "ratio high")]) == 1
    assert n.drain()
    assert receiver.titles()[-1] == "[acct] critical: margin_ratio"
    assert sorted(receiver.titles()[:-1]) == sorted(
        ["[acct] critical: state:halted"] + [f"[acct] critical: no_stop:{i}" for i in range(6)]
    )
    assert store.recent_alerts("no_stop:0", 0)[0].delivered


def test_a_stop_smaller_than_the_position_alerts_the_unprotected_part() -> None:
    """The position grew by hand (or a stop filled in part): the alert says how much is naked.
    Stops on the closing side add up; a close-position stop covers everything; a stop on the
    wrong side counts for nothing."""
    stop = order(OrderPurpose.STOP_LOSS)  # a sell stop of 1
    alert = check(position("1.5", "100"), resting=[stop])[f"part_unprotected:{SYM}"]
    assert alert.severity == "critical"
    assert alert.message == f"{SYM}: position 1.5: stops cover 1 of 1.5: 0.5 unprotected"
    second = replace(  # by hand
        stop, client_id="web_9", purpose=None, amount=D("0.5"), trigger_by=TriggerBy.MARK
    )
    assert check(position("1.5", "100"), resting=[stop, second]) == {}
    last = replace(second, trigger_by=TriggerBy.LAST)  # by hand, on the last price: not counted
    partly = check(position("1.5", "100"), resting=[stop, last])[f"part_unprotected:{SYM}"]
    assert partly.message == (
        f"{SYM}: position 1.5: stops cover 1 of 1.5: 0.5 unprotected; placed by hand, not "
        "counted: web_9: triggered on the last price, not the mark"
    )
    whole = replace(stop, amount=None, close_position=True, reduce_only=False)
    assert check(position("7.25", "100"), resting=[whole]) == {}
    wrong = replace(stop, side=OrderSide.BUY, amount=D(5))  # would add to the long
    partial = check(position("1.5", "100"), resting=[stop, wrong])
    assert "0.5 unprotected" in partial[f"part_unprotected:{SYM}"].message
    naked = check(position("1", "100"), resting=[wrong])[f"no_stop:{SYM}"]
    assert "wrong side" not in naked.message
    assert "would add to it" in naked.message
