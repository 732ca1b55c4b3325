"""The gross cap sizes increases instead of letting the gate veto the last contracts' orders.

With targets that together exceed ``max_gross_leverage`` x equity, the risk gate used to
refuse whichever contract's increase came last, tick after tick (312 denials in the bundled
four months with ``max_gross_leverage = 1``); the increases are now scaled into the cap, and
the cap never forces a reduction (as the gate never does).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.decision import Decision
from bot.domain.enums import EventKind, OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.risk.gate import OrderContext, check_gross
from bot.risk.gross import cap_to_gross
from tests.unit.test_engine import BTC, LIMITS, build

INSTRUMENTS = load_instruments("binanceusdm")
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")


def decision(sym: str, qty: D) -> Decision:
    return Decision(
        symbol=sym,
        direction=(qty > 0) - (qty < 0),
        target_leverage=D(2),
        target_qty=qty,
        stop_loss=None,
        take_profit=None,
        reason="test",
    )


def test_increases_are_scaled_alike_and_reductions_kept() -> None:
    prices = {SYMBOLS[0]: D(100_000), SYMBOLS[1]: D(4_000), SYMBOLS[2]: D(200)}
    held = {SYMBOLS[0]: D("0.1"), SYMBOLS[1]: D(3)}
    wanted = [
        decision(SYMBOLS[0], D("0.3")),  # +20,000
        decision(SYMBOLS[1], D(2)),  # a reduction: kept as it is
        decision(SYMBOLS[2], D(100)),  # +20,000
    ]
    # held 10,000 + 12,000; increases 40,000; cap 42,000 -> room 41,958 - 22,000 = 19,958
    out = cap_to_gross(wanted, held, prices, INSTRUMENTS, D(42_000))
    assert out[1] == wanted[1]
    btc_more = out[0].target_qty - held[SYMBOLS[0]]
    sol_more = out[2].target_qty
    assert btc_more * prices[SYMBOLS[0]] <= D(20_000) / 2
    assert abs(btc_more * prices[SYMBOLS[0]] - sol_more * prices[SYMBOLS[2]]) <= D(200)
    assert "gross cap: held 22000.00 + increases 40000.00 > 42000.00" in out[0].reason


def test_within_the_cap_nothing_changes() -> None:
    wanted = [decision(SYMBOLS[0], D("0.1"))]
    prices = {SYMBOLS[0]: D(100_000)}
    assert cap_to_gross(wanted, {}, prices, INSTRUMENTS, D(10_000)) == wanted


def test_a_book_above_the_cap_is_not_forced_down() -> None:
    prices = {SYMBOLS[0]: D(100_000)}
    held = {SYMBOLS[0]: D(1)}
    wanted = [decision(SYMBOLS[0], D("1.2"))]
    [out] = cap_to_gross(wanted, held, prices, INSTRUMENTS, D(50_000))
    assert out.target_qty == D(1)  # no increase, and no cut below what is held


sides = st.sampled_from([D(-1), D(0), D(1)])
sizes = st.decimals(min_value=D(0), max_value=D(50), places=2)


@given(
    held=st.lists(st.tuples(sides, sizes), min_size=3, max_size=3),
    targets=st.lists(st.tuples(sides, sizes), min_size=3, max_size=3),
    prices=st.lists(
        st.decimals(min_value=D(1), max_value=D(2000), places=2), min_size=3, max_size=3
    ),
    cap=st.decimals(min_value=D(100), max_value=D(200_000), places=0),
)
@settings(max_examples=300)
def test_no_increase_is_refused_by_the_gates_gross_check_in_any_order(
    held: list[tuple[D, D]],
    targets: list[tuple[D, D]],
    prices: list[D],
    cap: D,
) -> None:
    """The orders go out contract by contract, each contract's reduction before its increase;
    whatever the contracts' order, no increase takes the book over the cap."""
    instruments = {
        s: replace(INSTRUMENTS[s], step_size=D("0.01"), min_qty=D("0.01")) for s in SYMBOLS
    }
    px = dict(zip(SYMBOLS, prices, strict=True))
    have = {s: sign * q for s, (sign, q) in zip(SYMBOLS, held, strict=True) if sign * q != 0}
    wanted = [decision(s, sign * q) for s, (sign, q) in zip(SYMBOLS, targets, strict=True)]
    equity = D(10_000)
    max_gross = cap / equity
    limits = replace(LIMITS, max_gross_leverage=max_gross)
    out = cap_to_gross(wanted, have, px, instruments, max_gross * equity)
    for order in (SYMBOLS, SYMBOLS[::-1]):
        book = dict(have)
        for sym in order:
            [d] = [x for x in out if x.symbol == sym]
            now = book.get(sym, D(0))
            if now != 0 and now * d.target_qty <= 0:
                book[sym] = now = D(0)  # closed (reduce-only) before the new side opens
            elif abs(d.target_qty) < abs(now):
                book[sym] = now = d.target_qty  # reduced
            more = abs(d.target_qty) - abs(now)
            if more <= 0:
                continue
            others = sum((abs(q) * px[s] for s, q in book.items() if s != sym), D(0))
            before = gross_before(have, px)
            side = OrderSide.BUY if d.target_qty > 0 else OrderSide.SELL
            req = OrderRequest("t", sym, side, OrderType.MARKET, OrderPurpose.ENTRY, more, False)
            ctx = OrderContext(
                state=TradingState.ACTIVE,
                now_ms=0,
                data_age_ms=0,
                price=px[sym],
                position_qty=now,
                sleeve_equity=equity,
                equity=equity,
                gross_notional_other=others,
                max_leverage_contract=D(1000),
                monotonic_ms=0,
            )
            if before <= max_gross * equity:  # a book already above the cap may not grow at all
                assert check_gross(req, ctx, limits) is None, (order, sym, out)
            book[sym] = d.target_qty


def gross_before(have: dict[str, D], px: dict[str, D]) -> D:
    return sum((abs(q) * px[s] for s, q in have.items()), D(0))


def test_the_engine_sizes_a_lone_contract_within_a_gross_cap_below_its_leverage(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments, limits=replace(LIMITS, max_gross_leverage=D("0.5")))
    result = engine.tick()
    pos = ex.fetch_positions([BTC])[BTC]
    equity = result.equity
    assert 0 < pos.qty * ex.marks[BTC] <= D("0.5") * equity
    assert "gross cap" in result.decisions[0].reason
    assert not [e for e in store.events if e.kind is EventKind.DENIED]
