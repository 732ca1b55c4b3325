"""A halt that flattens and a venue that refuses its closes: the owner is told the position is
still held, once per incident, and the incident ends when the contract reads flat.

Defect: a drawdown halt (flatten) in a crash whose reduce-only market closes the venue refused
minute after minute (Binance -4131, PERCENT_PRICE: its answer to market orders into an empty
book on 2025-10-10) was alerted once as ``halted`` and never again: ten minutes later the
position was still open, ten ``rejected`` events were in the journal, and the owner, told by the
runbook that a halt "closes every position", had heard nothing that said it had not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.orders import Order, OrderRequest
from bot.errors import ExchangeError, OrderRejected, OutcomeUnknown
from bot.risk.gate import Denied, OrderContext, Verdict
from bot.runtime.runner import Runner
from bot.sim.paper import PaperExchange
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import Outbox
from tests.runtime.conftest import write_config

T0 = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000
PERCENT_PRICE = OrderRejected(
    'binanceusdm {"code": -4131, "msg": "The counterparty\'s best price does not meet the '
    'PERCENT_PRICE filter limit."}',
    code=-4131,
)
TIMEOUT = OutcomeUnknown("binanceusdm POST /fapi/v1/order: read timed out")


class RefusingCloses:
    """The paper venue, answering every market close or reduction with ``error`` while
    ``refusing`` (a stop is placed as usual: the book beyond the band is empty, the stop
    endpoint is not)."""

    def __init__(self, paper: PaperExchange, error: ExchangeError) -> None:
        self.place = paper.place_order
        self.error = error
        self.refusing = True
        self.refused = 0
        paper.place_order = self.place_order  # type: ignore[method-assign]

    def place_order(self, request: OrderRequest) -> Order:
        closing = request.purpose in (OrderPurpose.CLOSE, OrderPurpose.REDUCE)
        if self.refusing and closing and not request.type.is_conditional:
            self.refused += 1
            raise self.error
        return self.place(request)


class DenyingGate:
    """The engine's risk gate, denying every close or reduction while ``refusing`` (a state
    the gate misjudges: the denial is recorded, nothing is sent)."""

    def __init__(self, runner: Runner) -> None:
        self.gate = runner.engine.gate
        self.refusing = True
        self.refused = 0
        runner.engine.gate = self  # type: ignore[assignment]

    def check(self, req: OrderRequest, ctx: OrderContext) -> Verdict:
        if self.refusing and req.purpose in (OrderPurpose.CLOSE, OrderPurpose.REDUCE):
            self.refused += 1
            return Denied("order rate: 12 orders in the last minute (limit 12)")
        return self.gate.check(req, ctx)


def block_closes(how: str, runner: Runner, paper: PaperExchange) -> RefusingCloses | DenyingGate:
    if how == "venue":
        return RefusingCloses(paper, PERCENT_PRICE)
    if how == "lost":
        return RefusingCloses(paper, TIMEOUT)
    return DenyingGate(runner)


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[tuple[Runner, PaperExchange, SqlStore, SimClock, Outbox]]:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    clock = SimClock(T0)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    out = Outbox().serve(runner.notifier)
    try:
        yield runner, paper, store, clock, out
    finally:
        store.close()


def guards(runner: Runner, clock: SimClock, n: int) -> None:
    for _ in range(n):
        clock.advance_to(clock.now_ms() + MINUTE)
        runner.guard()


def held(paper: PaperExchange, symbol: str) -> D:
    pos = paper.fetch_positions([symbol]).get(symbol)
    return pos.qty if pos is not None else D(0)


@pytest.mark.parametrize(
    ("how", "says"),
    [
        pytest.param("venue", "refused by the venue: ", id="refused-by-the-venue"),
        # (a close whose answer is lost every time: the lookup at the next job finds nothing)
        pytest.param("lost", "outcome unknown: ", id="answer-lost"),
        pytest.param("gate", "denied by the risk gate: ", id="denied-by-the-gate"),
    ],
)
def test_closes_refused_after_a_halt_are_alerted_once_and_resolved_when_flat(
    bot: tuple[Runner, PaperExchange, SqlStore, SimClock, Outbox], how: str, says: str
) -> None:
    runner, paper, store, clock, out = bot
    assert runner.tick() is not None
    [symbol] = runner.engine.symbols
    key = f"flatten_pending:{symbol}"
    qty = held(paper, symbol)
    assert qty != 0
    venue = block_closes(how, runner, paper)
    paper.sim.book.wallet *= D("0.6")  # the crash: past the 25 % drawdown limit
    guards(runner, clock, 10)  # ten guard minutes, every close refused

    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED
    assert memory.flatten
    assert held(paper, symbol) == qty  # the halt could not close it
    assert venue.refused == 10  # tried again at every guard
    assert len([t for t, _ in out.sent if ": state:halted@" in t]) == 1
    [body] = out.bodies(key)  # critical, once, not once per guard
    assert "still held" in body
    assert says in body
    if how == "venue":  # the venue's own words
        assert "-4131" in body
        assert "PERCENT_PRICE" in body

    venue.refusing = False  # the book refills: the next guard's close fills
    guards(runner, clock, 2)
    assert held(paper, symbol) == 0
    [ended] = store.recent_events(10, kinds=(EventKind.FLATTEN_ENDED,))
    assert ended.symbol == symbol
    assert "closed" in ended.reason
    assert len(out.bodies(key)) == 1  # nothing more while flat


def test_a_resume_ends_the_incident_and_the_next_halt_is_alerted_again(
    bot: tuple[Runner, PaperExchange, SqlStore, SimClock, Outbox],
) -> None:
    """A person resumes while the position is held: the incident is over (the state no longer
    closes it). A second halt that flattens within the dedup hour, its closes refused again,
    is a new incident, sent again."""
    runner, paper, store, clock, out = bot
    assert runner.tick() is not None
    [symbol] = runner.engine.symbols
    key = f"flatten_pending:{symbol}"
    RefusingCloses(paper, PERCENT_PRICE)
    paper.sim.book.wallet *= D("0.6")
    guards(runner, clock, 3)
    assert len(out.bodies(key)) == 1
    store.post_command("resume", "{}", clock.now_ms())
    guards(runner, clock, 2)
    [ended] = store.recent_events(10, kinds=(EventKind.FLATTEN_ENDED,))
    assert "no longer closes positions" in ended.reason
    assert held(paper, symbol) != 0  # kept, with its stop: the person chose to
    store.post_command("halt", json.dumps({"flatten": True}), clock.now_ms())
    guards(runner, clock, 3)
    assert len(out.bodies(key)) == 2, out.sent


def test_a_close_refused_once_and_filled_at_the_next_guard_is_no_incident(
    bot: tuple[Runner, PaperExchange, SqlStore, SimClock, Outbox],
) -> None:
    """One job's grace: a refusal of the moment whose retry fills a minute later alerts the
    halt only."""
    runner, paper, store, clock, out = bot
    assert runner.tick() is not None
    [symbol] = runner.engine.symbols
    venue = RefusingCloses(paper, PERCENT_PRICE)
    paper.sim.book.wallet *= D("0.6")
    guards(runner, clock, 1)  # the halt; its close refused
    assert held(paper, symbol) != 0
    venue.refusing = False
    guards(runner, clock, 3)
    assert held(paper, symbol) == 0
    assert out.bodies(f"flatten_pending:{symbol}") == []
    assert store.recent_events(10, kinds=(EventKind.FLATTEN_PENDING,)) == []


def test_a_restart_during_the_incident_records_it_once_and_ends_it(tmp_path: Path) -> None:
    """The open incident is read back from the events at a start: the restarted bot does not
    record (nor alert) it again, and records its end when the contract reads flat."""
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    clock = SimClock(T0)
    try:
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        assert runner.tick() is not None
        [symbol] = runner.engine.symbols
        RefusingCloses(paper, PERCENT_PRICE)
        paper.sim.book.wallet *= D("0.6")
        guards(runner, clock, 3)
        paper.save()
        pending = (EventKind.FLATTEN_PENDING,)
        assert len(store.recent_events(10, kinds=pending)) == 1

        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        venue = RefusingCloses(paper, PERCENT_PRICE)
        guards(runner, clock, 3)
        assert held(paper, symbol) != 0
        assert len(store.recent_events(10, kinds=pending)) == 1  # not recorded again
        venue.refusing = False
        guards(runner, clock, 1)
        assert held(paper, symbol) == 0
        [ended] = store.recent_events(10, kinds=(EventKind.FLATTEN_ENDED,))
        assert ended.symbol == symbol
    finally:
        store.close()
