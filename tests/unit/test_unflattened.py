"""The incident of a flattening halt's closes that leave a position open (bot.engine.unflattened):
recorded once, after one job's grace, with the last failure; ended when the contract reads flat or
the state no longer flattens; read back from the events at a start."""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import EventKind, TradingState
from bot.engine.unflattened import Unflattened, open_incidents
from bot.ports.store import RiskEvent

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
T0 = 1_748_822_400_000
HALT = "drawdown 31.38% from peak 10000.00 >= limit 25.00%"
REFUSED = "refused by the venue: m-cl-BTC-1: binanceusdm -4131 PERCENT_PRICE"


def test_recorded_once_at_the_end_of_a_later_job_still_holding_the_position() -> None:
    watch = Unflattened()
    watch.tried(BTC, 1, T0, REFUSED)
    assert watch.check(1, {BTC: D("0.117")}, HALT) == []  # the job that tried: grace
    watch.tried(BTC, 2, T0 + 60_000, REFUSED)
    [note] = watch.check(2, {BTC: D("0.117")}, HALT)
    assert note.symbol == BTC
    assert note.kind is EventKind.FLATTEN_PENDING
    assert "0.117 is still held" in note.reason
    assert "2 close order(s) since 2025-06-02 00:00:00 UTC" in note.reason
    assert REFUSED in note.reason
    for job in range(3, 10):  # it goes on: nothing more
        watch.tried(BTC, job, T0 + job * 60_000, REFUSED)
        assert watch.check(job, {BTC: D("0.117")}, HALT) == []
    [over] = watch.check(10, {BTC: D(0)}, HALT)
    assert over.kind is EventKind.FLATTEN_ENDED
    assert "closed" in over.reason
    assert not watch.busy


def test_a_close_that_fills_at_the_next_job_is_no_incident() -> None:
    watch = Unflattened()
    watch.tried(BTC, 1, T0, REFUSED)
    assert watch.check(1, {BTC: D("0.117")}, HALT) == []
    watch.tried(BTC, 2, T0 + 60_000, None)
    assert watch.check(2, {}, HALT) == []
    assert not watch.busy


def test_a_sent_close_that_left_part_of_the_position_says_so() -> None:
    watch = Unflattened()
    watch.tried(BTC, 1, T0, REFUSED)
    watch.tried(BTC, 2, T0, None)
    [note] = watch.check(2, {BTC: D("0.05")}, HALT)
    assert "the last was sent and did not close it all" in note.reason


BELOW = "the position 0.117 is below the exchange's minimum order 0.2: no order can close any of it"


def test_a_position_no_close_order_can_carry_is_an_incident_too() -> None:
    """Below the venue's minimum order no close can even be built: nothing is sent, and the
    position is still held under a halt the runbook says closes every position."""
    watch = Unflattened()
    watch.uncarried(BTC, 1, T0, BELOW)
    assert watch.busy
    assert watch.check(1, {BTC: D("0.117")}, HALT) == []  # the same grace as a refusal
    watch.uncarried(BTC, 2, T0 + 60_000, BELOW)
    [note] = watch.check(2, {BTC: D("0.117")}, HALT)
    assert note.kind is EventKind.FLATTEN_PENDING
    assert "0.117 is still held: no close order can be sent (the position 0.117 is below" in (
        note.reason
    )
    assert "minimum order 0.2" in note.reason
    assert "since 2025-06-02 00:00:00 UTC" in note.reason
    # off the step: the part on it was sent, the rest named with the last close
    watch = Unflattened()
    watch.tried(ETH, 1, T0, None)
    watch.uncarried(ETH, 1, T0, "0.003 of the position 0.123 is off the exchange's step")
    [note] = watch.check(2, {ETH: D("0.003")}, HALT)
    assert "1 close order(s)" in note.reason
    assert "did not close it all; 0.003 of the position 0.123 is off" in note.reason


def test_contracts_are_incidents_of_their_own() -> None:
    watch = Unflattened()
    watch.tried(BTC, 1, T0, REFUSED)
    watch.tried(ETH, 1, T0, REFUSED)
    notes = watch.check(2, {BTC: D("0.1"), ETH: D(0)}, HALT)
    assert [(n.symbol, n.kind) for n in notes] == [(BTC, EventKind.FLATTEN_PENDING)]


def test_a_state_that_no_longer_flattens_ends_the_incident() -> None:
    watch = Unflattened()
    watch.tried(BTC, 1, T0, REFUSED)
    watch.check(2, {BTC: D("0.1")}, HALT)
    [over] = watch.check(3, {BTC: D("0.1")}, None)  # `bot resume`, the position kept
    assert over.kind is EventKind.FLATTEN_ENDED
    assert "no longer closes positions (the position 0.1 is held)" in over.reason
    assert not watch.busy
    # closes tried before a resume do not count toward the next halt's incident
    assert watch.check(4, {BTC: D("0.1")}, HALT) == []


def test_open_incidents_are_read_back_from_the_events() -> None:
    def event(ms: int, kind: EventKind, symbol: str) -> RiskEvent:
        return RiskEvent(ts_ms=ms, kind=kind, symbol=symbol, state=TradingState.HALTED, reason="")

    events = [
        event(T0 + 3, EventKind.FLATTEN_ENDED, ETH),
        event(T0 + 1, EventKind.FLATTEN_PENDING, BTC),
        event(T0 + 2, EventKind.FLATTEN_PENDING, ETH),
    ]
    assert open_incidents(events) == {BTC}
    watch = Unflattened(open_incidents(events))
    watch.tried(BTC, 1, T0, REFUSED)
    assert watch.check(2, {BTC: D("0.1")}, HALT) == []  # recorded before the restart
    [over] = watch.check(3, {}, HALT)
    assert over.kind is EventKind.FLATTEN_ENDED
