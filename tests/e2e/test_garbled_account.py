"""Unknown is not zero: garbled account answers through the real ccxt path (loopback Binance).

A live engine holds a protected BTC position. Then the positions endpoint answers garbage
(truncated JSON, an HTML page with status 200, an empty list, nulls where numbers belong) on
every request. Each kind must leave the account exactly as it was: no order that adds exposure,
no cancel, the stop and take-profit resting, an ``unreadable`` event per tick, and the account
in ``reducing`` after ``max_unreadable_reads`` ticks in a row. When the venue answers properly
again, trading resumes. Garbled balance and open-order answers are unreadable the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.clock import LiveClock
from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import Fault, FaultKind, LoopbackBinance
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import LoopbackServer

BTC = "BTC/USDT:USDT"
KEY, SECRET = "garble-key-51c0", "garble-secret-9d2e77"
N_UNREADABLE = 3


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("binanceusdm")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackBinance) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="garble",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            max_unreadable_reads=N_UNREADABLE,
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def _orders_after(server: LoopbackBinance, start: int) -> list[tuple[str, str]]:
    """(method, path) of every order-changing request after the ``start``-th request."""
    return [
        (r.method, r.path)
        for r in server.requests[start:]
        if r.method in ("POST", "DELETE") and "order" in r.path.lower()
    ]


@pytest.mark.parametrize("kind", ["garbled_json", "html_200", "empty_list", "null_fields"])
def test_garbled_positions_leave_the_account_untouched(
    kind: FaultKind,
    runner: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
) -> None:
    run, store = runner
    first = run.tick()
    assert first is not None
    assert first.unreadable is None
    position = backend.fetch_positions([BTC])[BTC]
    assert position.qty > 0
    resting = {o.client_id for o in backend.fetch_open_orders(BTC)}
    purposes = {o.purpose for o in backend.fetch_open_orders(BTC)}
    assert purposes == {OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT}

    server.inject(Fault("/fapi/v3/positionRisk", "GET", kind=kind, times=1000))
    start = len(server.requests)
    for n in range(1, N_UNREADABLE + 1):
        result = run.tick()
        assert result is not None
        assert result.unreadable is not None, f"tick {n} acted on a garbled {kind} answer"
        assert result.orders_sent == 0
        assert result.decisions == []
        run.guard()  # the guard job between ticks must not act on it either
    # nothing was sent or cancelled, the position and its protection are as they were
    assert _orders_after(server, start) == []
    assert backend.fetch_positions([BTC])[BTC].qty == position.qty
    assert {o.client_id for o in backend.fetch_open_orders(BTC)} == resting
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert "account unreadable" in memory.state_reason
    kinds = [e.kind for e in store.recent_events(100)]
    assert kinds.count(EventKind.UNREADABLE) >= N_UNREADABLE

    # the venue answers properly again: the account is read, reducing is lifted
    server.clear_faults()
    back = run.tick()
    assert back is not None
    assert back.unreadable is None
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE
    stops = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert len(stops) == 1


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/fapi/v3/account", "empty_list"),
        ("/fapi/v3/account", "html_200"),
        ("/fapi/v3/account", "null_fields"),
        ("/fapi/v1/openAlgoOrders", "garbled_json"),
        ("/fapi/v1/openAlgoOrders", "null_fields"),
        ("/fapi/v1/openOrders", "html_200"),
    ],
)
def test_garbled_balance_and_orders_are_unreadable(
    path: str,
    kind: FaultKind,
    runner: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
) -> None:
    run, _ = runner
    assert run.tick() is not None
    before = dict(backend.orders)
    qty = backend.fetch_positions([BTC])[BTC].qty
    server.inject(Fault(path, "GET", kind=kind, times=1000))
    start = len(server.requests)
    result = run.tick()
    assert result is not None
    assert result.unreadable is not None
    assert _orders_after(server, start) == []
    assert backend.orders.keys() == before.keys()
    assert backend.fetch_positions([BTC])[BTC].qty == qty


def test_position_closed_on_the_venue_is_confirmed_flat_then_its_stop_cancelled(
    runner: tuple[Runner, SqlStore], server: LoopbackBinance, backend: SimulatedExchange
) -> None:
    """A real disappearance (closed outside the bot) is confirmed by the per-symbol answer
    (size 0), after which the orphaned protective orders are cancelled."""
    run, store = runner
    assert run.tick() is not None
    assert backend.fetch_positions([BTC])[BTC].qty > 0
    backend.book.positions[BTC].qty = D(0)  # closed by hand on the venue's website
    backend.book.positions[BTC].isolated_margin = D(0)
    run.guard()
    assert server.calls("/fapi/v2/positionRisk", "GET")  # the confirmation was asked
    assert [o for o in backend.fetch_open_orders(BTC) if o.purpose is not None] == []
    reasons = [e.reason for e in store.recent_events(50)]
    assert any(r.startswith("position ") and "is gone" in r for r in reasons), reasons


def _set(path: tuple[str | int, ...], value: object) -> Callable[[Any], Any]:
    """An ``edit`` fault: the real reply with the field at ``path`` replaced by ``value``."""

    def edit(reply: Any) -> Any:
        node = reply
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return reply

    return edit


@pytest.mark.parametrize(
    ("path", "field", "value", "named"),
    [
        # a stop whose trigger is unreadable was "not protecting": the bot closed the position
        ("/fapi/v1/openAlgoOrders", (0, "triggerPrice"), None, "trigger price None"),
        ("/fapi/v1/openAlgoOrders", (0, "algoStatus"), "abc", "status 'abc'"),
        ("/fapi/v1/openAlgoOrders", (0, "quantity"), "", "quantity ''"),
        # a stop that lost its client id was foreign: a second stop was placed beside it
        ("/fapi/v1/openAlgoOrders", (0, "clientAlgoId"), None, "client order id"),
        # a balance row without its asset name read as a zero wallet: halted and flattened
        ("/fapi/v3/account", ("assets", 0, "asset"), None, "no asset name"),
        # a wallet that is not marginBalance - unrealizedProfit: a drawdown halt sold it all
        ("/fapi/v3/account", ("assets", 0, "walletBalance"), "1.0", "is not its marginBalance"),
        # a renamed asset row read as a zero wallet: a 100 % drawdown halt sold the position
        ("/fapi/v3/account", ("assets", 0, "asset"), "USDC", "lists no USDT row"),
        # a wallet no venue can send (ccxt reads it as inf) sized orders on it
        ("/fapi/v3/account", ("assets", 0, "walletBalance"), "1e400", "USDT walletBalance"),
        # a mark 99 % below the index of the same answer: a drawdown halt sold the position
        ("/fapi/v1/premiumIndex", ("markPrice",), "1000", "from the index"),
        # a long "liquidated" above its mark: no stop fits, the bot closed and re-bought it
        ("/fapi/v3/positionRisk", (0, "liquidationPrice"), "200000", "wrong side"),
        # a long whose notional says short: ccxt reads the side from the notional's sign
        ("/fapi/v3/positionRisk", (0, "notional"), "-1", "positionAmt is"),
        # an entry price its own row's unrealised PnL contradicts: the equity measured from it
        # made a phantom gain, an increase on it, then a drawdown halt that sold the position
        ("/fapi/v3/positionRisk", (0, "entryPrice"), "1000", "row's unRealizedProfit"),
        # a size its own row's notional contradicts: the position was closed
        ("/fapi/v3/positionRisk", (0, "positionAmt"), "5.000", "row's notional"),
        # more than the store holds (20 integer digits): every job failed at its record
        ("/fapi/v3/positionRisk", (0, "isolatedWallet"), "1e30", "isolated margin: expected"),
    ],
)
def test_garbled_fields_are_unreadable_not_acted_on(
    path: str,
    field: tuple[str | int, ...],
    value: object,
    named: str,
    runner: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
) -> None:
    run, store = runner
    assert run.tick() is not None
    qty = backend.fetch_positions([BTC])[BTC].qty
    resting = {o.client_id for o in backend.fetch_open_orders(BTC)}
    server.inject(Fault(path, "GET", kind="edit", edit=_set(field, value), times=1000))
    start = len(server.requests)
    for _ in range(2):
        result = run.tick()
        assert result is not None
        assert result.unreadable is not None, f"acted on {field}={value!r} from {path}"
        run.guard()
    assert _orders_after(server, start) == []
    assert backend.fetch_positions([BTC])[BTC].qty == qty
    assert {o.client_id for o in backend.fetch_open_orders(BTC)} == resting
    # the event says what is wrong
    reasons = [e.reason for e in store.recent_events(20) if e.kind is EventKind.UNREADABLE]
    assert any(named in r for r in reasons), reasons


# The reads of every tick and guard, and one real answer of each (captured below).
ENGINE_READS = (
    "/fapi/v3/positionRisk",
    "/fapi/v2/positionRisk",
    "/fapi/v3/account",
    "/fapi/v1/openAlgoOrders",
    "/fapi/v1/premiumIndex",
    "/fapi/v1/symbolConfig",
)
GARBAGE: list[object] = [None, "", "NaN", "1e400", "abc", [], {}, True, float("nan")]


def _leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path


def keeps_one_stop_through_garbled_reads(
    run: Runner,
    server: LoopbackServer,
    backend: SimulatedExchange,
    reads: tuple[str, ...],
    needed: set[str],
    untouched: tuple[tuple[str | int, ...], ...] = (),
) -> None:
    """Ticks and guards on answers with one field garbled, each followed by a clean tick: the
    position keeps its side and exactly one stop-loss of the bot, sized to it, never a second
    order with the same client id, never "not opened by this bot".

    One real answer of each of ``reads`` is captured first (``needed`` must be among them);
    every leaf field of each is then garbled, except the ``untouched`` fields."""
    assert run.tick() is not None
    replies: dict[str, Any] = {}

    def keeper(path: str) -> Callable[[Any], Any]:
        def keep(reply: Any) -> Any:
            replies.setdefault(path, copy.deepcopy(reply))
            return reply

        return keep

    for path in reads:
        server.inject(Fault(path, "GET", kind="edit", edit=keeper(path), times=5))
    run.guard()
    server.clear_faults()
    run.tick()
    assert set(replies) >= needed, sorted(replies)
    cases = [
        (p, f)
        for p, reply in sorted(replies.items())
        for f in _leaves(reply)
        if f and f not in untouched
    ]

    @settings(max_examples=40, derandomize=True)
    @given(case=st.sampled_from(cases), value=st.sampled_from(GARBAGE))
    def check(case: tuple[str, tuple[str | int, ...]], value: object) -> None:
        path, field = case
        server.inject(Fault(path, "GET", kind="edit", edit=_set(field, value), times=1000))
        run.tick()
        run.guard()
        server.clear_faults()
        run.tick()
        qty = backend.fetch_positions([BTC])[BTC].qty
        assert qty > 0, f"{path} {field}={value!r}: the long is gone ({qty})"
        ids = [o.client_id for o in backend.orders.values()]
        assert len(ids) == len(set(ids)), f"{path} {field}={value!r}: a client id sent twice"
        stops = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
        assert [(o.side.value, o.amount or qty) for o in stops] == [("sell", qty)], (
            f"{path} {field}={value!r}: stops {stops}"
        )
        assert BTC not in run.engine.reconciler.foreign

    check()


@pytest.mark.slow
def test_the_engine_keeps_one_stop_sized_to_the_position_through_garbled_reads(
    runner: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
) -> None:
    run, _ = runner
    keeps_one_stop_through_garbled_reads(
        run, server, backend, ENGINE_READS, {"/fapi/v3/positionRisk", "/fapi/v3/account"}
    )
