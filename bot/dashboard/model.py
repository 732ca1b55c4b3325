"""What the dashboard shows, whatever it reads from (the state database of a paper or live
account, or the output directory of ``bot simulate``). Values stay exact (Decimal); templates
format them to the contract's precision."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from bot.store.views import PendingCommand, TimeWindow


def slug(symbol: str) -> str:
    """URL-safe name of a contract: ``BTC/USDT:USDT`` -> ``BTC-USDT-USDT``."""
    return symbol.replace("/", "-").replace(":", "-")


@dataclass(frozen=True, slots=True)
class ContractView:
    symbol: str
    direction: str
    tick: Decimal | None  # price increment (formatting)
    step: Decimal | None  # quantity increment (formatting)
    qty: Decimal | None  # signed, 0 when flat; None: unknown (no positions recorded yet)
    entry: Decimal | None
    mark: Decimal | None
    notional: Decimal | None
    leverage: Decimal | None  # notional / the contract's share of equity
    target_leverage: Decimal | None
    liquidation: Decimal | None
    liq_distance: Decimal | None  # |mark - liq| / mark
    liq_distance_vol: Decimal | None  # in daily-volatility units
    volatility: Decimal | None  # annualised
    stop_loss: Decimal | None  # trigger price of the resting stop-loss
    take_profit: Decimal | None
    funding_rate: Decimal | None
    next_funding_ms: int | None
    increase_allowed: bool | None  # False: the last decision blocked increases (funding, state)
    decided_ms: int | None
    reason: str | None
    unprotected_since_ms: int | None = None  # an open incident: no valid stop since then
    cooldown: str | None = None  # "cooldown until ... after stop-loss" while one runs
    # A position the bot did not open (direction not "follow"): left alone, its orders are not
    # the bot's, so whether a stop rests for it is not known here.
    foreign: bool = False
    # How much of the position the bot's resting stops do not cover (bot.risk.coverage, as the
    # alerts count it): 0 when covered; None when not held (or not known).
    unprotected_qty: Decimal | None = None
    # The account has been unreadable since then (its newest reads failed): the position and its
    # stop are as last read, not verified since. None: the newest read succeeded.
    unverified_since_ms: int | None = None
    # No decision since then for lack of a full window of candles (a gap in them; see
    # bot.engine.undecided), and why: the last decision shown is older than it looks.
    no_decision_since_ms: int | None = None
    no_decision: str | None = None
    # When ``mark`` was read (the positions' reading, the paper exchange's last save, or the
    # last decision's for a flat contract of a live account); None: no mark known.
    mark_ms: int | None = None

    @property
    def slug(self) -> str:
        return slug(self.symbol)

    @property
    def side(self) -> str:
        if self.qty is None:
            return "unknown"
        side = "long" if self.qty > 0 else "short" if self.qty < 0 else "flat"
        return f"{side} (not the bot's)" if self.foreign else side

    @property
    def liquidation_shown(self) -> Decimal | None:
        """The liquidation price on the tick grid, rounded toward the mark (up for a long, down
        for a short), as the engine plans with it: where a tick is a large fraction of the price
        (1000PEPE near 1e-6: 10 %), rounding to the nearest tick could show up to half a tick
        more room than the position has."""
        liq, tick = self.liquidation, self.tick
        if liq is None or tick is None or tick <= 0 or not self.qty:
            return liq
        rounding = ROUND_CEILING if self.qty > 0 else ROUND_FLOOR
        return (liq / tick).to_integral_value(rounding=rounding) * tick

    @property
    def unprotected(self) -> bool:
        """An open position without a valid resting stop-loss (the protection invariant is
        broken): none rests, or the bot recorded an open ``unprotected`` incident. An open
        incident counts even while the position itself is unknown."""
        if self.unprotected_since_ms is not None and self.qty != 0:
            return True
        if self.foreign:
            return False  # its stop, if any, is not the bot's order: not known here
        if self.qty is None or self.qty == 0:
            return False
        return self.stop_loss is None or (self.unprotected_qty or 0) > 0

    @property
    def funding_payer(self) -> str:
        """Who pays at the next settlement, and what it means for the position held: a rate
        > 0 is paid by longs to shorts, < 0 by shorts to longs."""
        rate = self.funding_rate
        if rate is None:
            return "-"
        if rate == 0:
            return "nobody pays"
        payer = "longs pay" if rate > 0 else "shorts pay"
        if not self.qty:
            return payer
        pays = (self.qty > 0) == (rate > 0)
        return f"{payer}: this position {'pays' if pays else 'receives'}"

    @property
    def partly_covered(self) -> bool:
        """A stop rests but covers only part of the position (``unprotected_qty`` says how
        much is not)."""
        return (
            not self.foreign
            and self.stop_loss is not None
            and self.unprotected_qty is not None
            and self.unprotected_qty > 0
        )


@dataclass(frozen=True, slots=True)
class AlertLine:
    ts_ms: int
    severity: str
    message: str
    # whether it reached the trader: "sent"; "sent to 1 of 2" (some destinations did not get
    # it: the bot retries them); "repeat" (one of the same key was sent within the dedup
    # window); "no destination" (runtime.alert_urls is empty); "NOT SENT" (the destinations
    # failed, or the hourly limit held it: the bot retries critical ones)
    delivery: str = "sent"

    @property
    def missed(self) -> bool:
        """A critical alert that should have paged the trader and did not."""
        return self.severity == "critical" and self.delivery == NOT_SENT


NOT_SENT = "NOT SENT"


@dataclass(frozen=True, slots=True)
class Overview:
    title: str
    kind: str  # "account" or "simulation"
    quote: str
    as_of_ms: int | None  # when the equity shown was read (a tick's record or a guard's)
    equity: Decimal | None
    wallet: Decimal | None
    unrealized_pnl: Decimal | None
    peak_equity: Decimal | None
    drawdown: Decimal | None  # fraction of the peak
    max_drawdown_limit: Decimal
    state: str
    state_reason: str | None
    state_since_ms: int | None
    daily_loss: Decimal | None  # fraction of the day's starting equity (0 when up)
    daily_loss_limit: Decimal
    margin_ratio: Decimal | None  # maintenance margin / equity
    last_tick_ms: int | None  # the last decision tick (a guard's reading is not one)
    interval_ms: int  # the policy's decision interval
    contracts: list[ContractView]
    alerts: list[AlertLine] = field(default_factory=list)  # the newest
    # critical alerts that reached none of the destinations and are still owed, newest first
    missed_alerts: list[AlertLine] = field(default_factory=list)
    pending: list[PendingCommand] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)  # simulation report figures
    # The newest reads of the account failed (``unreadable`` events, no ``readable`` since):
    # since when, and how many in a row. Every figure is then as of the last reading, not now.
    unreadable_since_ms: int | None = None
    unreadable_reads: int = 0
    # The bot's heartbeat: the last job (tick, guard, funding, rollover) it completed and when;
    # None when none is recorded (a bot older than the heartbeat, or one that never completed a
    # job). ``guard_ms``: the running bot's guard interval, so at least how often it completes
    # one (the decision interval in a replay too fast for guard jobs).
    last_job_ms: int | None = None
    last_job: str | None = None
    guard_ms: int = 60_000
    # The last run on the state database is a replay (``bot run --replay``) and this dashboard
    # runs on the wall clock (``bot dashboard``, not the one inside the replay): every time it
    # recorded is replayed time, months behind, so no age or liveness is judged on it.
    replayed: bool = False
    # The newest job that failed (its ``tick_failed`` event, its recorded reason) when no job
    # completed since: a bot whose jobs all fail is running, not down (bot.dashboard.liveness).
    failed_ms: int | None = None
    failed: str | None = None
    # A hold of the venue's on every request (a 429/418 Retry-After, an IP ban) recorded and in
    # force: its end, and the words for it (bot.runtime.venue_hold.hold_note). None: none.
    venue_hold_until_ms: int | None = None
    venue_hold: str | None = None
    # When the positions shown were read (a tick's record or a guard's); None: none recorded.
    positions_ms: int | None = None

    def contract(self, contract_slug: str) -> ContractView | None:
        return next((c for c in self.contracts if c.slug == contract_slug), None)


@dataclass(frozen=True, slots=True)
class Curve:
    """Equity (quote currency) and drawdown (fraction) over time, oldest first."""

    ts_ms: list[int]
    equity: list[float]
    drawdown: list[float]


@dataclass(frozen=True, slots=True)
class JournalTable:
    title: str
    columns: list[str]
    rows: list[list[str]]


class Source(Protocol):
    """One account or one simulation run, as the dashboard and the metrics read it."""

    name: str
    kind: str  # "account" or "simulation"

    def symbols(self) -> list[str]: ...

    def overview(self, now_ms: int) -> Overview: ...

    def curve(self) -> Curve: ...

    def journal(self, window: TimeWindow, limit: int) -> list[JournalTable]: ...
