"""Bybit lists one settle coin's positions when asked without a symbol, and ccxt asks for USDT
unless told: an account of USDC-settled contracts read its positions as flat (a readable answer
without them) whenever it traded more than one contract. Through real ccxt and the loopback
Bybit, which filters its answer by ``settleCoin`` as the venue does."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D

import pytest

from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Bracket, Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.reconcile import Reconciler
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.contract.test_ccxt_loopback import KEY, SECRET, RecordingClock
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter

BTC, ETH = "BTC/USDC:USDC", "ETH/USDC:USDC"


def usdc_contract(symbol: str, base: str) -> Instrument:
    brackets = (
        Bracket(D(0), D(50000), D(100), D("0.005"), D(0)),
        Bracket(D(50000), D(10) ** 9, D(50), D("0.01"), D(250)),
    )
    return Instrument(
        symbol, base, "USDC", D("0.1"), D("0.001"), D("0.001"), D(5), brackets,
        D("0.0002"), D("0.00055"), D("0.00055"),
    )  # fmt: skip


@pytest.fixture
def venue() -> Iterator[tuple[LoopbackBybit, CcxtExchange]]:
    sim = SimulatedExchange(
        {BTC: usdc_contract(BTC, "BTC"), ETH: usdc_contract(ETH, "ETH")},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.CROSS,
        quote="USDC",
    )
    for symbol, mark in ((BTC, D(60000)), (ETH, D(3000))):
        sim.set_mark(symbol, mark)
        sim.set_funding(symbol, FundingInfo(D("0.0001"), D(8), 1_700_000_000_000))
    server = LoopbackBybit(
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH]
    )
    with server:
        adapter = loopback_adapter(
            "bybit", server.base_url, RecordingClock(), key=KEY, secret=SECRET,
            account="acct1", symbols=[BTC, ETH],
        )  # fmt: skip
        try:
            # a position opened by hand (not the bot's client id): nothing but the answer says
            # it is there
            adapter.place_order(
                OrderRequest(
                    client_id="byhand-1",
                    symbol=BTC,
                    side=OrderSide.BUY,
                    type=OrderType.MARKET,
                    purpose=OrderPurpose.ENTRY,
                    amount=D("0.01"),
                    reduce_only=False,
                )
            )
            yield server, adapter
        finally:
            adapter.exchange.close()


def test_usdc_positions_are_read_when_several_contracts_are_asked_for(
    venue: tuple[LoopbackBybit, CcxtExchange],
) -> None:
    server, adapter = venue
    both = adapter.fetch_positions([BTC, ETH])
    assert both[BTC].qty == D("0.01")
    assert ETH not in both  # flat: the venue lists no open row for it
    asked = server.calls("/v5/position/list", "GET")[-1].params
    assert asked.get("settleCoin") == "USDC"


def test_reconcile_sees_a_usdc_position_it_did_not_open(
    venue: tuple[LoopbackBybit, CcxtExchange],
) -> None:
    _, adapter = venue
    reconciler = Reconciler(
        exchange=adapter,
        store=MemoryStore(),
        contracts=[ContractSpec(BTC, "follow", D(5)), ContractSpec(ETH, "follow", D(5))],
        instruments=adapter.load_instruments(),
        event=lambda *_: None,
    )
    view = reconciler.reconcile(LiveClock().now_ms())
    assert view.positions[BTC].qty == D("0.01")
