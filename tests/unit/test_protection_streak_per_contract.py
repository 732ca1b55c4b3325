"""The protection-failure streak is counted per contract: a check that finds BTC protected says
nothing about ETH, whose every stop the venue refuses (-4045). Counted for the account, BTC's
protected stop reset the streak ETH built at each guard, and ETH was entered, left naked and
closed at market every decision without the account ever reaching ``reducing``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from bot.config.loader import load_policy
from bot.domain.enums import MarginMode, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.errors import OrderRejected
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket

ETH = "ETH/USDT:USDT"


class EthStopsRefused(SimulatedExchange):
    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.STOP_LOSS and request.symbol == ETH:
            raise OrderRejected("Reach max stop order limit.", code=-4045)
        return super().place_order(request)


def test_a_protected_contract_does_not_end_another_contracts_streak(
    instruments: dict[str, Instrument],
) -> None:
    ex, clock = make_exchange(instruments, mode=MarginMode.ISOLATED, balance="10000")
    market = FakeMarket()
    px, _ = market.last_price(BTC, 0) or (Decimal(0), 0)
    ex.set_mark(BTC, px)
    ex.set_mark(ETH, px)
    ex.__class__ = EthStopsRefused
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[
            ContractSpec(BTC, "long", Decimal(125)),
            ContractSpec(ETH, "long", Decimal(125)),
        ],
        limits=LIMITS,
        account="t",
        margin_mode=MarginMode.ISOLATED,
    )
    for job in ("tick", "guard", "tick", "guard", "tick"):
        clock.advance(timedelta(minutes=1))
        getattr(engine, job)()
    btc = ex.fetch_positions([BTC]).get(BTC)
    assert btc is not None
    assert btc.is_open
    eth_entries = [
        r
        for r in store.orders.values()
        if r.request.purpose is OrderPurpose.ENTRY and r.request.symbol == ETH
    ]
    assert len(eth_entries) == LIMITS.max_protection_failures
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert ETH in memory.state_reason
