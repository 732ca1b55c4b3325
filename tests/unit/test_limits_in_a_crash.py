"""The loss limits and the halt inside a crash: the account falls while the venue answers badly
(rate limits, unreadable answers, a balance that cannot be read for minutes), the process is
killed in the middle, a new UTC day starts. Engine against the simulated exchange; the losses
are taken off the wallet, the position and its stop stay (a gap past the stop, fees, funding:
the equity falls and the bot must act on what it reads)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import OrderPurpose, OrderStatus, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Balance
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.errors import AccountUnreadable, ExchangeError, OutcomeUnknown, RateLimited
from bot.ports.store import OrderRecord, RiskMemory
from bot.risk.state import DAY_MS, initial_memory, set_state, update
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from bot.store.sql import SqlStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket, build, protective
from tests.unit.test_engine_hedge import ETH, TwoContracts
from tests.unit.test_engine_on_sql_store import build_on

MINUTE = 60_000


class FlakyBalance:
    """Wraps the simulated exchange's balance read with a schedule of failures: ``fails(n)``
    says whether the n-th read (from 1, counted from the moment it is armed) raises ``error``."""

    def __init__(self, ex: SimulatedExchange) -> None:
        self.true_read = ex.fetch_balance
        self.reads = 0
        self.fails: Callable[[int], bool] = lambda _n: False
        self.error: Exception = RateLimited("binance 429 {-1003: too many requests}")
        ex.fetch_balance = self.read  # type: ignore[method-assign]

    def arm(self, fails: Callable[[int], bool], error: Exception) -> None:
        self.reads, self.fails, self.error = 0, fails, error

    def read(self) -> Balance:
        self.reads += 1
        if self.fails(self.reads):
            raise self.error
        return self.true_read()


@dataclass
class Held:
    """An engine whose first tick opened a protected long, its balance read wrapped."""

    engine: Engine
    ex: SimulatedExchange
    store: MemoryStore
    balance: FlakyBalance
    qty: D


@pytest.fixture
def held(instruments: dict[str, Instrument]) -> Held:
    engine, ex, store = build(instruments)
    balance = FlakyBalance(ex)
    engine.tick()
    qty = ex.fetch_positions([BTC])[BTC].qty
    assert qty > 0
    assert protective(ex)[OrderPurpose.STOP_LOSS]
    return Held(engine, ex, store, balance, qty)


def memory_of(store: MemoryStore | SqlStore) -> RiskMemory:
    memory = store.load_risk_memory()
    assert memory is not None
    return memory


def guard_as_the_runner(engine: Engine) -> None:
    """A guard job: a venue error the engine does not handle fails the job (the runner records
    it and the next job runs), it does not stop the test."""
    with suppress(ExchangeError):
        engine.guard()


def later(engine: Engine, ms: int) -> None:
    clock = engine.clock
    assert isinstance(clock, SimClock)
    clock.advance_to(clock.now_ms() + ms)


def lose(ex: SimulatedExchange, fraction: str) -> None:
    ex.book.wallet -= ex.book.wallet * D(fraction)


ERRORS = [
    pytest.param(RateLimited("binance 429 {-1003: too many requests}"), id="rate-limited"),
    pytest.param(AccountUnreadable("balance: the answer could not be read"), id="unreadable"),
]


@pytest.mark.parametrize("error", ERRORS)
def test_a_venue_failing_every_second_read_still_gets_the_drawdown_halt(
    held: Held, error: Exception
) -> None:
    """Defect: a reading past a limit is read a second time at once before it acts, and a
    venue that fails that second read (the rate limit a burst of reads meets, a garbled
    answer) cost the job the reading. A venue failing every other read never let the halt act:
    each job's first reading was lost to its second, and each first read reset the unreadable
    streak and the failed-job count, so not even `reducing` came. Now the next job's reading
    is the confirming one."""
    engine, ex, store = held.engine, held.ex, held.store
    lose(ex, "0.4")  # past the 25 % drawdown limit
    held.balance.arm(lambda n: n % 2 == 0, error)
    for _ in range(6):
        later(engine, MINUTE)
        guard_as_the_runner(engine)
    memory = memory_of(store)
    assert memory.state is TradingState.HALTED
    assert "drawdown" in memory.state_reason
    assert ex.fetch_positions([BTC]).get(BTC) is None  # flattened


def test_one_failed_second_reading_does_not_make_a_garbled_one_act(held: Held) -> None:
    """The reading a failed second read leaves to be confirmed is confirmed only by another
    reading past the limit: a true one next forgets it."""
    engine, ex, store, balance = held.engine, held.ex, held.store, held.balance
    true_read = balance.true_read

    def garbled_first() -> Balance:
        got = true_read()
        return replace(got, wallet=got.wallet * D("0.1"))

    reads = iter([garbled_first, None, true_read, true_read, true_read, true_read])

    def scripted() -> Balance:
        step = next(reads)
        if step is None:
            raise RateLimited("binance 429 {-1003: too many requests}")
        return step()

    balance.true_read = scripted
    for _ in range(3):
        later(engine, MINUTE)
        guard_as_the_runner(engine)
    assert memory_of(store).state is TradingState.ACTIVE
    assert ex.fetch_positions([BTC])[BTC].qty == held.qty


def test_the_first_reading_after_minutes_unreadable_halts_and_flattens_at_once(
    held: Held,
) -> None:
    """The balance cannot be read for five guard minutes while the account falls past the
    drawdown limit: the stop rests untouched meanwhile, the account goes to `reducing` after
    `max_unreadable_reads`, and the first guard that reads the account halts and closes the
    position in that same job."""
    engine, ex, store = held.engine, held.ex, held.store
    [stop] = protective(ex)[OrderPurpose.STOP_LOSS]
    held.balance.arm(lambda _n: True, AccountUnreadable("balance: 503 Service Unavailable"))
    for minute in range(5):
        lose(ex, "0.08")  # -34 % over the five minutes
        later(engine, MINUTE)
        engine.guard()
        assert protective(ex)[OrderPurpose.STOP_LOSS] == [stop]  # untouched, resting
        if minute + 1 >= LIMITS.max_unreadable_reads:
            assert memory_of(store).state is TradingState.REDUCING
    assert ex.fetch_positions([BTC])[BTC].qty == held.qty
    held.balance.arm(lambda _n: False, AccountUnreadable("-"))
    later(engine, MINUTE)
    engine.guard()
    memory = memory_of(store)
    assert memory.state is TradingState.HALTED
    assert "drawdown" in memory.state_reason
    assert ex.fetch_positions([BTC]).get(BTC) is None


def test_a_daily_loss_halts_and_flattens_also_from_reducing_after_failed_jobs(
    held: Held,
) -> None:
    """Defect: `max_failures` failed jobs in a row (503s, timeouts) move the account to
    `reducing`; a daily loss crossed after that, with `on_daily_loss = "halted"` (the
    default), left it at `reducing` with every position held: the limit moved the state only
    from `active`. Now it halts and flattens as it would from `active`."""
    engine, ex, store = held.engine, held.ex, held.store
    store.save_risk_memory(
        set_state(
            memory_of(store),
            TradingState.REDUCING,
            "3 failed guards in a row (last: TransientExchangeError)",
            sticky=False,
        )
    )
    lose(ex, "0.08")  # past the 5 % daily loss, within the 25 % drawdown
    later(engine, MINUTE)
    engine.guard()
    memory = memory_of(store)
    assert memory.state is TradingState.HALTED
    assert "daily loss" in memory.state_reason
    assert ex.fetch_positions([BTC]).get(BTC) is None


class Killed(BaseException):
    """kill -9: nothing after it runs (a BaseException: no handler of the bot catches it)."""


class KilledAtTheFirstClose(SimulatedExchange):
    def place_order(self, request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.CLOSE:
            raise Killed
        return super().place_order(request)


def test_a_kill_before_the_flatten_orders_restarts_halted_and_flattens(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The halt is in the state database before the first close goes out: a process killed
    there starts again halted (the peak and the day's start as they were), closes the
    position at its first job and opens nothing after."""
    engine, ex = build_on(store, instruments, SimulatedExchange)
    engine.tick()
    qty = ex.fetch_positions([BTC])[BTC].qty
    assert qty > 0
    before = memory_of(store)
    lose(ex, "0.3")
    ex.__class__ = KilledAtTheFirstClose
    with pytest.raises(Killed):
        engine.guard()
    memory = memory_of(store)
    assert memory.state is TradingState.HALTED
    assert memory.flatten
    assert memory.peak_equity == before.peak_equity
    assert (memory.day_start_ms, memory.day_start_equity) == (
        before.day_start_ms,
        before.day_start_equity,
    )
    assert ex.fetch_positions([BTC])[BTC].qty == qty  # nothing was sent
    assert protective(ex)[OrderPurpose.STOP_LOSS]  # the stop rests meanwhile
    ex.__class__ = SimulatedExchange
    restarted = Engine(
        clock=engine.clock,
        exchange=ex,
        market=engine.market,
        store=store,
        policy=engine.policy,
        contracts=engine.contracts,
        limits=engine.limits,
        account=engine.account,
    )
    later(engine, MINUTE)
    restarted.tick()
    assert ex.fetch_positions([BTC]).get(BTC) is None
    for _ in range(3):
        later(engine, MINUTE)
        restarted.guard()
        restarted.tick()
    assert ex.fetch_positions([BTC]).get(BTC) is None
    assert memory_of(store).state is TradingState.HALTED


class FreshMarket(FakeMarket):
    """The test market whose last price is always of the moment (its candles stop at T0)."""

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        return D(f"{self.close[-1]:.1f}"), now_ms


def test_a_new_utc_day_inside_the_crash_lifts_the_daily_halt_but_reopens_nothing(
    instruments: dict[str, Instrument],
) -> None:
    """The daily loss halts and flattens minutes before 00:00 UTC; the new day lifts the
    halt (by design: the daily limit is per UTC day) while the account falls on, but the
    re-entry cooldown the halt started keeps the contract from being opened again at once;
    a drawdown crossed in the new day still halts, for good."""
    engine, ex, store = build(instruments, FreshMarket())
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    now = engine.clock.now_ms()
    later(engine, now - now % DAY_MS + DAY_MS - 5 * MINUTE - now)  # 23:55 UTC
    lose(ex, "0.08")
    engine.guard()
    assert memory_of(store).state is TradingState.HALTED
    assert ex.fetch_positions([BTC]).get(BTC) is None
    later(engine, 5 * MINUTE + 10_000)  # 00:00:10 UTC
    lose(ex, "0.01")
    result = engine.tick()
    assert result.state is TradingState.ACTIVE
    assert memory_of(store).state_reason == "new UTC day"
    assert ex.fetch_positions([BTC]).get(BTC) is None  # no entry
    [decision] = result.decisions
    assert "cooldown" in decision.reason
    lose(ex, "0.2")  # from the peak: past the 25 % drawdown
    later(engine, MINUTE)
    engine.guard()
    memory = memory_of(store)
    assert memory.state is TradingState.HALTED
    assert memory.sticky


def test_the_daily_loss_takes_over_a_reducing_state_of_another_cause() -> None:
    """From a `reducing` of another cause: set to halt, the daily loss halts; set to reduce, the
    reducing becomes the daily loss's, until the next UTC day (before, it kept its cause, and
    what lifts that cause lifted it within the day, the limit reached)."""
    start = initial_memory(D(10000), 20_000 * DAY_MS)
    failed = set_state(start, TradingState.REDUCING, "3 failed ticks in a row", sticky=False)
    now = 20_000 * DAY_MS + MINUTE
    halted, moved = update(failed, D(9400), now, LIMITS)
    assert moved is not None
    assert halted.state is TradingState.HALTED
    assert halted.flatten
    assert not halted.sticky  # until the next UTC day, as from `active`
    reducing = replace(LIMITS, on_daily_loss="reducing")
    daily, moved = update(failed, D(9400), now, reducing)
    assert moved is not None
    assert moved.recaused
    assert daily.state is TradingState.REDUCING
    assert daily.state_reason.startswith("daily loss 6.00% >= limit")
    assert not daily.sticky  # until the next UTC day, as from `active`


class CloseAnswerLost(SimulatedExchange):
    """The venue executes every close, but the answer to the first one is lost (a timeout
    after the request left: the adapter's lookup by client id could not tell either)."""

    lost = False

    def place_order(self, request: OrderRequest) -> Order:
        order = super().place_order(request)
        if request.purpose is OrderPurpose.CLOSE and not CloseAnswerLost.lost:
            CloseAnswerLost.lost = True
            raise OutcomeUnknown(f"{request.client_id}: sent, no confirmation (read timed out)")
        return order


def closes(store: MemoryStore) -> list[OrderRecord]:
    return [r for r in store.orders.values() if r.request.purpose is OrderPurpose.CLOSE]


def test_a_close_whose_answer_was_lost_is_looked_up_not_sent_again(held: Held) -> None:
    """The halt's close executes but its answer is lost: the stop stays until the close is
    known, and the next job looks the close up by its client id (filled) instead of sending a
    second one; then the stop, an orphan, goes."""
    engine, ex, store = held.engine, held.ex, held.store
    CloseAnswerLost.lost = False
    ex.__class__ = CloseAnswerLost
    lose(ex, "0.4")
    later(engine, MINUTE)
    engine.guard()
    assert memory_of(store).state is TradingState.HALTED
    [close] = closes(store)
    assert close.status is OrderStatus.UNKNOWN
    assert close.request.reduce_only
    assert ex.fetch_positions([BTC]).get(BTC) is None  # it did execute
    assert protective(ex)[OrderPurpose.STOP_LOSS]  # kept while the close is not known
    later(engine, MINUTE)
    engine.guard()
    [close] = closes(store)
    assert close.status is OrderStatus.FILLED
    assert ex.fetch_open_orders(BTC) == []  # the orphaned stop and take-profit cancelled


class RateLimitedCloseOnce(SimulatedExchange):
    """The first close on ``symbol`` meets the venue's rate limit (-1003), the later ones pass."""

    symbol = BTC
    limited = False

    def place_order(self, request: OrderRequest) -> Order:
        if (
            request.purpose is OrderPurpose.CLOSE
            and request.symbol == RateLimitedCloseOnce.symbol
            and not RateLimitedCloseOnce.limited
        ):
            RateLimitedCloseOnce.limited = True
            raise RateLimited("binance 429 {-1003: too many requests}")
        return super().place_order(request)


def test_a_flatten_meeting_a_rate_limit_closes_the_others_and_keeps_the_stop_of_the_one_left(
    instruments: dict[str, Instrument],
) -> None:
    """Two positions; the close of the first meets the rate limit: the second is closed in the
    same job, the first keeps its stop and is closed at the next job; every close reduce-only,
    none larger than the position it closes."""
    ex, clock = make_exchange(instruments)
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
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125)), ContractSpec(ETH, "long", D(100))],
        limits=LIMITS,
        account="t",
    )
    engine.tick()
    held = ex.fetch_positions([BTC, ETH])
    assert held[BTC].qty > 0
    assert held[ETH].qty > 0
    RateLimitedCloseOnce.limited = False
    ex.__class__ = RateLimitedCloseOnce
    lose(ex, "0.4")
    later(engine, MINUTE)
    engine.guard()
    assert memory_of(store).state is TradingState.HALTED
    after = ex.fetch_positions([BTC, ETH])
    assert after.get(ETH) is None  # closed in the same job
    assert after[BTC].qty == held[BTC].qty  # its close was refused for the rate limit
    assert [o.amount for o in protective(ex)[OrderPurpose.STOP_LOSS]] == [held[BTC].qty]
    later(engine, MINUTE)
    engine.guard()
    assert ex.fetch_positions([BTC, ETH]) == {}
    for record in closes(store):
        assert record.request.reduce_only
        assert record.request.amount is not None
        assert record.request.amount <= held[record.request.symbol].qty
