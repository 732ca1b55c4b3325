"""The margin ratio of an isolated position is its own: its maintenance over its isolated margin
plus its unrealised PnL. The account-wide figure (all maintenance over the equity) hid an
isolated position one small move from liquidation behind the rest of the equity, on the
dashboard, in /metrics (bot_margin_ratio > 0.8) and in the margin-ratio alert."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from bot.alerts import AlertRules, conditions
from bot.bootstrap import open_store
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.domain.decision import Decision
from bot.domain.enums import MarginMode
from bot.domain.instrument import Bracket, Instrument
from bot.domain.margin import maintenance_margin, worst_margin
from bot.domain.position import Position
from bot.ports.store import DecisionRecord
from tests.conftest import record_book
from tests.runtime.conftest import write_config

BTC = "BTC/USDT:USDT"
T0 = 1_748_822_400_000
# maintenance = 1 % of the notional, no deduction
TST = Instrument(
    symbol="TST/USDT:USDT",
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


def isolated(qty: str, entry: str, margin: str, symbol: str = TST.symbol) -> Position:
    return Position(symbol, D(qty), D(entry), D(10), MarginMode.ISOLATED, isolated_margin=D(margin))


def test_the_worst_pool_is_an_isolated_position_on_its_own_margin() -> None:
    # long 1 at 100 on 10 margin (10x), mark 91: balance 10 - 9 = 1, maintenance 0.91
    pos = isolated("1", "100", "10")
    worst = worst_margin([(pos, TST, D(91))], wallet=D(10000))
    assert worst is not None
    assert worst.where == TST.symbol
    assert worst.ratio == D("0.91")
    # a cross position: the wallet outside isolated margins and its PnL carry it
    cross = Position(TST.symbol, D("-1"), D(100), D(10), MarginMode.CROSS)
    part = worst_margin([(cross, TST, D(109))], wallet=D(100))
    assert part is not None
    assert part.ratio == D("1.09") / D(91)  # short: the mark rose, it lost 9
    # an isolated position whose margin the venue did not give: unknown, not 0
    assert worst_margin([(isolated("1", "100", "0"), TST, D(91))], wallet=D(10000)) is None


def test_the_alert_fires_for_an_isolated_position_near_liquidation() -> None:
    alerts = conditions(
        positions={TST.symbol: isolated("1", "100", "10")},
        resting={},
        marks={TST.symbol: D(91)},
        snapshots={},
        instruments={TST.symbol: TST},
        wallet=D(10000),
        rules=AlertRules(margin_ratio=D("0.8")),
    )
    [alert] = [a for a in alerts if a.key == "margin_ratio"]
    assert "(isolated) margin ratio 91.00%" in alert.message


def test_the_dashboard_shows_the_isolated_positions_ratio(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    try:
        # long 0.5 BTC at 60000 on 3000 margin (10x); the mark fell to 54500: 250 left
        record_book(store, T0, [isolated("0.5", "60000", "3000", BTC)])
        d = Decision(
            symbol=BTC,
            direction=1,
            target_leverage=D(10),
            target_qty=D("0.5"),
            stop_loss=D(50000),
            take_profit=None,
            reason="why",
            allow_increase=True,
        )
        store.record_decisions([DecisionRecord("t", T0, d, D("0.5"), D(10), D(54500), D("0.5"))])
        source = AccountSource(config, store)
        ov = source.overview(T0)
    finally:
        store.close()
    inst = source.instruments[BTC]
    assert inst is not None
    assert ov.margin_ratio == maintenance_margin(inst, D(27250)) / D(250)
    assert ov.margin_ratio is not None
    assert ov.margin_ratio > D("0.4")  # was ~0.01 (its maintenance over the 10000 equity)
