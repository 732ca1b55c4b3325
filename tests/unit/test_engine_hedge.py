"""The engine with a hedge leg: opened, protected and gated like any position."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import numpy as np

from bot.config.loader import load_policy
from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine, SendOutcome
from bot.errors import ExchangeError
from bot.exchange.spot import ConfiguredSpotWallet
from bot.ports.market import CandleWindow
from bot.risk.limits import RiskLimits
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
HOUR = 3_600_000
LIMITS = RiskLimits(
    max_leverage_per_contract=D(5),
    max_gross_leverage=D(8),
    max_notional_per_contract=D(10**6),
    # Wide loss limits: the loss budget (every stop firing) does not cut the sizes here.
    daily_loss=D("0.5"),
    max_drawdown=D("0.5"),
    stale_data_ms=2 * HOUR,
    max_orders_per_minute=60,
)


class TwoContracts:
    """ETH moves exactly like BTC (beta 1): the same seeded walk at two price levels."""

    def __init__(self, n: int = 400) -> None:
        rng = np.random.default_rng(11)
        self.path = np.exp(np.cumsum(rng.normal(0, 0.006, n)))
        self.ts = T0 - HOUR * np.arange(n, 0, -1, dtype=np.int64)
        self.base = {BTC: 60000.0, ETH: 3000.0}

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        close = self.base[symbol] * self.path
        open_ = np.concatenate([[close[0]], close[:-1]])
        end = int(np.searchsorted(self.ts, now_ms - tf_ms, side="right"))
        sl = slice(max(0, end - count), end)
        hi, lo = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
        return CandleWindow(self.ts[sl], open_[sl], hi[sl], lo[sl], close[sl], tf_ms)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(D("0.0001"), D(8), now_ms + HOUR)

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        return D(f"{self.base[symbol] * self.path[-1]:.1f}"), int(self.ts[-1]) + HOUR


class BrokenWallet:
    def fetch_spot_balances(self, assets: object) -> dict[str, D]:
        raise ExchangeError("spot wallet: HTTP 503")


def build(
    instruments: dict[str, Instrument], spot: object = None
) -> tuple[Engine, SimulatedExchange, MemoryStore]:
    ex, clock = make_exchange(instruments)
    market = TwoContracts()
    for sym in (BTC, ETH):
        px, _ = market.last_price(sym, T0) or (D(0), 0)
        ex.set_mark(sym, px)
    policy = load_policy(ROOT / "policies" / "vol_target_hedged.toml")
    assert policy.hedge is not None
    hedge = policy.hedge.model_copy(
        update={"target_net_exposure": D(0), "band": D("0.1"), "cooldown_minutes": 0}
    )
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=policy.model_copy(update={"hedge": hedge}),
        contracts=[ContractSpec(ETH, "long", D(125)), ContractSpec(BTC, "hedge", D(125))],
        limits=LIMITS,
        account="t",
        spot=spot,  # type: ignore[arg-type]
        spot_assets=("BTC",) if spot is not None else (),
    )
    return engine, ex, store


def test_the_hedge_leg_opens_short_with_its_stop(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments)
    result = engine.tick()
    eth = ex.fetch_positions([ETH])[ETH]
    btc = ex.fetch_positions([BTC])[BTC]
    assert eth.qty > 0
    assert btc.qty < 0
    # Beta 1, market-neutral: the short offsets the ETH notional to within a step.
    net = eth.qty * ex.marks[ETH] + btc.qty * ex.marks[BTC]
    assert abs(net) <= instruments[BTC].step_size * ex.marks[BTC]
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert len(stops) == 1
    assert stops[0].amount == -btc.qty
    assert stops[0].reduce_only
    (decision,) = [d for d in result.decisions if d.symbol == BTC]
    assert "book beta-delta" in decision.reason
    assert result.denials == 0
    assert not [e for e in store.events if e.kind == "denied"]


def test_a_hedge_order_that_raises_net_exposure_is_a_recorded_denial(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    now = engine.clock.now_ms()
    acct = engine.reconcile(now)
    more_short = OrderRequest(
        "t-test-1", BTC, OrderSide.SELL, OrderType.MARKET, OrderPurpose.ENTRY, D("0.05"), False
    )
    assert engine._send(more_short, acct, now, None) is SendOutcome.DENIED
    (denied,) = [e for e in store.events if e.kind == "denied"]
    assert denied.symbol == BTC
    assert "hedge order would raise net exposure" in denied.reason
    assert ex.orders.get("t-test-1") is None  # never sent
    # Shrinking the hedge leg with a reduce-only order always passes.
    trim = OrderRequest(
        "t-test-2", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.REDUCE, D("0.001"), True
    )
    assert engine._send(trim, acct, now, None) is SendOutcome.SENT


def test_spot_holdings_are_hedged_too(instruments: dict[str, Instrument]) -> None:
    engine, ex, _ = build(instruments, ConfiguredSpotWallet({"BTC": D("0.05")}))
    engine.tick()
    eth = ex.fetch_positions([ETH])[ETH]
    btc = ex.fetch_positions([BTC])[BTC]
    book = eth.qty * ex.marks[ETH] + D("0.05") * ex.marks[BTC]
    assert abs(book + btc.qty * ex.marks[BTC]) <= instruments[BTC].step_size * ex.marks[BTC]


def test_an_unreadable_spot_wallet_holds_the_hedge(instruments: dict[str, Instrument]) -> None:
    engine, ex, store = build(instruments, BrokenWallet())
    engine.tick()
    assert BTC not in ex.fetch_positions([BTC])  # no hedge decision: nothing opened
    assert ex.fetch_positions([ETH])[ETH].qty > 0  # the book itself is decided as usual
    notes = [e.reason for e in store.events if e.kind == "hedge"]
    assert any("spot holdings unknown" in n for n in notes)
