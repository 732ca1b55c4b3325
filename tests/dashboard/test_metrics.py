"""/metrics parsed by prometheus_client's own parser, values checked against the store."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bot.bootstrap import open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.metrics import RuntimeMetrics
from bot.dashboard.security import Guard
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.ports.store import RiskEvent
from bot.runtime.events import record_event_now
from bot.runtime.venue_hold import hold_reason
from bot.store import views


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def close(a: float, b: Decimal | float) -> bool:
    return abs(a - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def test_metrics_agree_with_the_store(paper_account: Path) -> None:
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        equity = store.latest_equity()
        memory = store.load_risk_memory()
        snap = store.latest_positions()
        assert equity is not None
        assert memory is not None
        assert snap is not None
        now = equity.ts_ms + 90_000
        runtime = CollectorRegistry()
        RuntimeMetrics.create(runtime)
        app = create_app(
            {config.account.name: AccountSource(config, store)},
            store=store,
            guard=Guard(None),
            clock=SimClock(now),
            registry=runtime,
        )
        m = scrape(TestClient(app, base_url="http://127.0.0.1"))
        assert close(m[("bot_equity", ())], equity.equity)
        assert close(m[("bot_wallet_balance", ())], equity.wallet)
        dd = (memory.peak_equity - equity.equity) / memory.peak_equity
        assert close(m[("bot_drawdown_ratio", ())], max(dd, Decimal(0)))
        day = (memory.day_start_equity - equity.equity) / memory.day_start_equity
        assert close(m[("bot_daily_loss_ratio", ())], max(day, Decimal(0)))
        assert m[("bot_trading_state", (("state", "active"),))] == 1
        assert m[("bot_trading_state", (("state", "halted"),))] == 0
        assert m[("bot_last_tick_timestamp_seconds", ())] == equity.ts_ms / 1000
        assert m[("bot_last_tick_age_seconds", ())] == 90
        counts = views.order_counts(store)
        for status, n in counts.items():
            assert m[("bot_orders_total", (("status", status),))] == n
        assert sum(v for (k, _), v in m.items() if k == "bot_orders_total") == sum(counts.values())
        stops = {
            o.request.symbol
            for o in views.open_orders(store)
            if o.request.purpose is OrderPurpose.STOP_LOSS
        }
        paper = store.load_paper_state(config.account.name)
        assert paper is not None
        for pos in snap[1]:
            label = (("symbol", pos.symbol),)
            expected_stop = 0 if pos.symbol in stops or pos.qty == 0 else 1
            assert m[("bot_position_without_stop", label)] == expected_stop
            assert pos.liquidation_price is not None
            notional = m[("bot_position_notional", label)]
            mark = Decimal(str(notional)) / abs(pos.qty)
            liq = m[("bot_liquidation_distance_ratio", label)]
            assert abs(liq - float(abs(mark - pos.liquidation_price) / mark)) < 1e-9
        decided = views.latest_decisions(store, [c.symbol for c in config.contracts])
        for sym, rec in decided.items():
            label = (("symbol", sym),)
            assert close(m[("bot_target_leverage", label)], rec.decision.target_leverage)
        # the running bot's own metrics are exported beside the account's
        assert m[("bot_tick_duration_seconds_count", ())] == 0
        assert ("bot_margin_ratio", ()) in m
    finally:
        store.close()


def test_an_unprotected_position_is_flagged(paper_account: Path) -> None:
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        for o in views.open_orders(store):
            if o.request.purpose is OrderPurpose.STOP_LOSS and o.request.symbol.startswith("ETH"):
                store.update_order(o.client_id, OrderStatus.CANCELED, o.updated_ms + 1)
        app = create_app(
            {config.account.name: AccountSource(config, store)},
            store=store,
            guard=Guard(None),
            clock=SimClock(0),
        )
        m = scrape(TestClient(app, base_url="http://127.0.0.1"))
        assert m[("bot_position_without_stop", (("symbol", "ETH/USDT:USDT"),))] == 1
        assert m[("bot_position_without_stop", (("symbol", "BTC/USDT:USDT"),))] == 0
        # a stop rests, but the bot recorded it as invalid (an open incident): flagged too
        memory = store.load_risk_memory()
        assert memory is not None
        btc_stop = RiskEvent(
            ts_ms=1,
            kind=EventKind.UNPROTECTED,
            symbol="BTC/USDT:USDT",
            state=memory.state,
            reason="stop refused",
        )
        store.record_event(btc_stop)
        m = scrape(TestClient(app, base_url="http://127.0.0.1"))
        assert m[("bot_position_without_stop", (("symbol", "BTC/USDT:USDT"),))] == 1
        store.record_event(
            RiskEvent(
                ts_ms=2,
                kind=EventKind.PROTECTED,
                symbol="BTC/USDT:USDT",
                state=memory.state,
                reason="placed",
            )
        )
        m = scrape(TestClient(app, base_url="http://127.0.0.1"))
        assert m[("bot_position_without_stop", (("symbol", "BTC/USDT:USDT"),))] == 0
    finally:
        store.close()


def test_tick_durations_and_retries_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics.create(registry)

    class Engine:
        def tick(self) -> str:
            return "done"

    engine = Engine()
    metrics.time_ticks(engine)
    assert engine.tick() == "done"
    assert engine.tick() == "done"
    assert registry.get_sample_value("bot_tick_duration_seconds_count") == 2
    import ccxt
    from loguru import logger

    from bot.exchange.retry import RetryPolicy, call_with_retry

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ccxt.NetworkError("connection reset")
        return "ok"

    sink = metrics.count_retries()
    try:
        answer = call_with_retry(
            flaky,
            clock=SimClock(0),
            policy=RetryPolicy(),
            retry_after_of=lambda _exc: None,
            resync=lambda: None,
            what="fetch_positions",
        )
        logger.warning("retry 1 of something else")  # another module: not counted
    finally:
        logger.remove(sink)
    assert answer == "ok"
    assert registry.get_sample_value("bot_exchange_retries_total", {"call": "read"}) == 2


def test_monitoring_docs_use_only_exported_metrics(paper_account: Path) -> None:
    import re

    import yaml

    root = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
    rules = yaml.safe_load((root / "alerts.yml").read_text())
    assert {r["alert"] for g in rules["groups"] for r in g["rules"]} >= {
        "PositionWithoutStop",
        "LiquidationClose",
        "StaleTick",
    }
    config = load_config(paper_account)
    store = open_store(config, create=True)
    try:
        runtime = CollectorRegistry()
        RuntimeMetrics.create(runtime)
        equity = store.latest_equity()
        assert equity is not None
        # a venue's hold in force: its series is exported only then
        until = equity.ts_ms + 3_600_000
        record_event_now(store, equity.ts_ms, EventKind.VENUE_HOLD, None, hold_reason(until, 3600))
        app = create_app(
            {config.account.name: AccountSource(config, store)},
            store=store,
            guard=Guard(None),
            clock=SimClock(equity.ts_ms + 60_000),  # (the day's loss is known within its day)
            registry=runtime,
        )
        exported = {name for name, _ in scrape(TestClient(app, base_url="http://127.0.0.1"))}
    finally:
        store.close()
    for doc in ("alerts.yml", "grafana-dashboard.json"):
        used = set(re.findall(r"\bbot_[a-z_]+", (root / doc).read_text()))
        assert used, doc
        assert used <= exported, (doc, sorted(used - exported))
