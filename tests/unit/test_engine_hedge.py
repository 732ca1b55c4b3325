"""The engine with a hedge leg: opened, protected and gated like any position."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.config.loader import load_policy
from bot.config.policy import Policy
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo, VenueRestriction
from bot.domain.orders import Order, OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine, SendOutcome
from bot.errors import ExchangeError, InsufficientMargin
from bot.exchange.spot import ConfiguredSpotWallet
from bot.ports.market import CandleWindow
from bot.risk.limits import RiskLimits
from bot.risk.state import set_state
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
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


def hedged(**hedge: object) -> Policy:
    """The shipped hedged policy, market-neutral (target 0, band 0.1, no cooldown) unless
    ``hedge`` says otherwise."""
    policy = load_policy(ROOT / "policies" / "vol_target_hedged.toml")
    assert policy.hedge is not None
    params = {"target_net_exposure": D(0), "band": D("0.1"), "cooldown_minutes": 0, **hedge}
    return policy.model_copy(update={"hedge": policy.hedge.model_copy(update=params)})


def build(
    instruments: dict[str, Instrument],
    spot: object = None,
    policy: Policy | None = None,
    ex: SimulatedExchange | None = None,
) -> tuple[Engine, SimulatedExchange, MemoryStore]:
    ex, clock = (ex, ex.clock) if ex is not None else make_exchange(instruments)
    market = TwoContracts()
    for sym in (BTC, ETH):
        px, _ = market.last_price(sym, T0) or (D(0), 0)
        ex.set_mark(sym, px)
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=policy or hedged(),
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


class ThreeContracts(TwoContracts):
    """SOL traded, BTC and ETH the hedge instruments (all beta 1); funding per contract, and a
    contract's last price can be stale or missing."""

    def __init__(self) -> None:
        super().__init__()
        self.base[SOL] = 150.0
        self.rates = {BTC: D("0.0001"), ETH: D("0.0001"), SOL: D("0.0001")}
        self.stale: set[str] = set()
        self.missing: set[str] = set()

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(self.rates[symbol], D(8), now_ms + HOUR)

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        got = super().last_price(symbol, now_ms)
        if got is None or symbol in self.missing:
            return None
        return got[0], got[1] - 10 * HOUR if symbol in self.stale else got[1]


def build_switching(
    instruments: dict[str, Instrument],
) -> tuple[Engine, SimulatedExchange, MemoryStore, ThreeContracts]:
    """SOL long hedged with BTC, or ETH when BTC's funding costs more than 0.1 % over 24 h."""
    ex, clock = make_exchange(instruments)
    market = ThreeContracts()
    for sym in (BTC, ETH, SOL):
        px, _ = market.last_price(sym, T0) or (D(0), 0)
        ex.set_mark(sym, px)
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=hedged(instruments=(BTC, ETH), max_funding_cost=D("0.001"), band=D("0.05")),
        contracts=[
            ContractSpec(SOL, "long", D(20)),
            ContractSpec(BTC, "hedge", D(125)),
            ContractSpec(ETH, "hedge", D(125)),
        ],
        limits=LIMITS,
        account="t",
    )
    return engine, ex, store, market


def hedge_notional(ex: SimulatedExchange) -> D:
    return sum((p.qty * ex.marks[s] for s, p in ex.fetch_positions([BTC, ETH]).items()), D(0))


@pytest.mark.parametrize("why", ["stale", "restricted"])
def test_a_switch_to_an_instrument_that_cannot_open_keeps_the_held_hedge(
    instruments: dict[str, Instrument], why: str
) -> None:
    """BTC's funding turns expensive while ETH, the cheaper alternative, may take no new
    exposure (its data stale, or the venue restricting it). The switch closed the BTC short and
    ETH's open was refused: the book unhedged, its net exposure from 0.16x to 0.99x equity."""
    engine, ex, _, market = build_switching(instruments)
    engine.tick()
    assert ex.fetch_positions([SOL])[SOL].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0  # BTC short against the SOL long
    assert ETH not in ex.fetch_positions([ETH])
    market.rates[BTC] = D("-0.001")  # shorts now pay 0.1 %/8h on BTC
    ex.set_mark(SOL, ex.marks[SOL] * D("1.2"))  # the net exposure leaves the band
    if why == "stale":
        market.stale.add(ETH)
    else:
        engine.restrict({ETH: VenueRestriction("ETH settles soon", withdrawn=False)})
    engine.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    result = engine.tick()
    (btc,) = [d for d in result.decisions if d.symbol == BTC]
    assert ETH not in ex.fetch_positions([ETH])
    assert BTC in ex.fetch_positions([BTC]), btc.reason  # the hedge stays on BTC...
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    assert "ETH may take no new exposure now -> BTC" in btc.reason
    book = ex.fetch_positions([SOL])[SOL].qty * ex.marks[SOL]
    assert abs(book + hedge_notional(ex)) < D("0.1") * result.equity


class Refusing(SimulatedExchange):
    """The venue refuses every order that is not reduce-only on the contracts in ``refuse``."""

    refuse: frozenset[str] = frozenset()

    def place_order(self, request: OrderRequest) -> Order:
        if request.symbol in self.refuse and not request.reduce_only:
            raise InsufficientMargin("Margin is insufficient.", code=-2019)
        return super().place_order(request)


@pytest.mark.parametrize("refused", [BTC, ETH])
def test_a_hedge_order_that_never_traded_does_not_start_the_cooldown(
    instruments: dict[str, Instrument], refused: str
) -> None:
    """The first hedge's open is refused: by the venue (BTC: margin), or by the gate because
    the book's own entry was refused (ETH: a short hedge against no book raises the net
    exposure). Nothing changed, yet ``[hedge] cooldown_minutes`` started: the book stayed
    unhedged for four hours after the refusal was gone."""
    clock = make_exchange(instruments)[1]
    ex = Refusing(instruments, clock, starting_balance=D(10000), margin_mode=MarginMode.ISOLATED)
    ex.refuse = frozenset({refused})
    engine, _, store = build(instruments, policy=hedged(cooldown_minutes=240), ex=ex)
    engine.tick()
    assert BTC not in ex.fetch_positions([BTC])
    refusal = EventKind.REJECTED if refused == BTC else EventKind.DENIED
    assert [e for e in store.events if e.kind is refusal and e.symbol == BTC]
    assert not [e for e in store.events if e.kind is EventKind.COOLDOWN]
    ex.refuse = frozenset()
    clock.advance(timedelta(hours=1))
    result = engine.tick()
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0, hedge.reason
    assert [e for e in store.events if e.kind is EventKind.COOLDOWN and e.symbol == BTC]


class FlakyWallet:
    def __init__(self) -> None:
        self.broken = False

    def fetch_spot_balances(self, assets: object) -> dict[str, D]:
        if self.broken:
            raise ExchangeError("spot wallet: HTTP 503")
        return {"BTC": D("0.01")}


def halt_and_flatten(store: MemoryStore) -> None:
    """What the runner does for ``bot halt --flatten`` before the next tick."""
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(
        set_state(memory, TradingState.HALTED, "bot halt", sticky=True, flatten=True)
    )


def test_a_flatten_closes_the_hedge_when_the_spot_wallet_is_unreadable(
    instruments: dict[str, Instrument],
) -> None:
    """The tick that applies ``bot halt --flatten`` cannot read the spot wallet: it closed the
    book and held the short hedge, the account net short by the whole hedge. Closing the hedge
    needs no spot holdings."""
    wallet = FlakyWallet()
    engine, ex, store = build(instruments, wallet)
    engine.tick()
    assert ex.fetch_positions([ETH])[ETH].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    halt_and_flatten(store)
    wallet.broken = True
    engine.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    result = engine.tick()
    assert result.state is TradingState.HALTED
    assert ex.fetch_positions([ETH, BTC]) == {}, [d.reason for d in result.decisions]
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert "close every position" in hedge.reason


def test_a_flatten_closes_an_alternative_hedge_leg_when_the_primary_has_no_data(
    instruments: dict[str, Instrument],
) -> None:
    """The hedge is on ETH (BTC's funding too dear) and BTC, the primary every beta is measured
    against, has no price at the flatten: the hedge was held ("no market data for the primary
    hedge instrument") and the account left net short by it."""
    engine, ex, store, market = build_switching(instruments)
    market.rates[BTC] = D("-0.001")
    engine.tick()
    assert ex.fetch_positions([SOL])[SOL].qty > 0
    assert ex.fetch_positions([ETH])[ETH].qty < 0
    halt_and_flatten(store)
    market.missing.add(BTC)
    engine.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    result = engine.tick()
    assert result.state is TradingState.HALTED
    assert ex.fetch_positions([SOL, ETH, BTC]) == {}, [d.reason for d in result.decisions]


def test_a_flatten_closes_a_hedge_leg_without_market_data_of_its_own(
    instruments: dict[str, Instrument],
) -> None:
    """The hedge is on BTC, whose price cannot be read at the flatten: its leg had no
    statistics, so the tick's close skipped it and the account stayed net short by the hedge
    until the next guard. A close is sized at the mark: it needs no market data."""
    engine, ex, store, market = build_switching(instruments)
    engine.tick()
    assert ex.fetch_positions([SOL])[SOL].qty > 0
    assert ex.fetch_positions([BTC])[BTC].qty < 0
    halt_and_flatten(store)
    market.missing.add(BTC)
    engine.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    result = engine.tick()
    assert result.state is TradingState.HALTED
    assert ex.fetch_positions([SOL, ETH, BTC]) == {}, [d.reason for d in result.decisions]
    (hedge,) = [d for d in result.decisions if d.symbol == BTC]
    assert hedge.target_qty == 0
