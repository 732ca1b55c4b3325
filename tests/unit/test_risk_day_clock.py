"""The UTC day the loss limits count in is the venue's, not the host's: a host clock stepped
forward across 00:00 (a virtual machine resumed with a wrong clock, a bad RTC; NTP steps it
back later) must not start a new day that lifts the day's daily-loss halt and measures the
day from the equity after its loss. Live, the runner measures the venue's clock again before
a job once the wall clock stepped; here the simulated venue keeps the true time."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

from bot.clock import SimClock, ms_to_datetime
from bot.config.loader import load_policy
from bot.domain.enums import TradingState
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.risk.state import DAY_MS
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket

HOUR_MS = 3_600_000


class HostClock:
    """The host's wall clock: the venue's time plus a step the test sets (a hand-written
    fake); its monotonic clock does not step."""

    def __init__(self, venue: SimClock) -> None:
        self.venue = venue
        self.step_ms = 0

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    def now_ms(self) -> int:
        return self.venue.now_ms() + self.step_ms

    def monotonic(self) -> float:
        return self.venue.monotonic()

    def sleep(self, seconds: float) -> None:
        self.venue.sleep(seconds)


def test_a_host_clock_stepped_forward_over_midnight_keeps_the_days_halt(
    instruments: dict[str, Instrument],
) -> None:
    ex, venue = make_exchange(instruments)
    assert isinstance(venue, SimClock)
    market = FakeMarket()
    px, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, px)
    store = MemoryStore()
    host = HostClock(venue)
    engine = Engine(
        clock=host,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )
    engine.tick()  # 15:00 UTC: a protected long
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    ex.book.wallet -= D(800)  # -8 % today: the 5 % daily limit halts until the next UTC day
    venue.advance_to(venue.now_ms() + 60_000)
    engine.guard()
    halted = store.load_risk_memory()
    assert halted is not None
    assert halted.state is TradingState.HALTED
    assert not ex.fetch_positions([BTC])
    host.step_ms = 12 * HOUR_MS  # the host reads 03:01 tomorrow; the venue 15:02 today
    venue.advance_to(venue.now_ms() + 60_000)
    assert host.now_ms() // DAY_MS == T0 // DAY_MS + 1
    engine.guard()
    host.step_ms = 0  # NTP steps it back
    venue.advance_to(venue.now_ms() + 60_000)
    engine.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED, memory.state_reason
    assert (memory.day_start_ms, memory.day_start_equity) == (
        halted.day_start_ms,
        halted.day_start_equity,
    )
    venue.advance_to(T0 - T0 % DAY_MS + DAY_MS + 60_000)  # the venue's next UTC day
    engine.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE
    assert memory.day_start_ms == T0 - T0 % DAY_MS + DAY_MS
