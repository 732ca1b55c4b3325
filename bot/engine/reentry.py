"""Re-entry cooldown: after a stop-loss, a liquidation or a risk-state change, a contract waits
before it may add exposure again.

The engine notes what it left behind at the end of each tick or guard run (position size and the
ids of its resting stop-loss and take-profit orders). At the next reconcile, a position that
shrank without the engine trading is named from what the exchange says, never guessed
(:func:`exit_kind`): the bot's own stop-loss filled (the order, looked up by client id, is
filled); its take-profit filled (no cooldown); a liquidation or an auto-deleveraging the venue
records (Binance force orders, Bybit executions); a reversal the bot did not make; otherwise
"reduced outside the bot" (or "closed outside the bot"): an order not placed by the bot, or a
forced close the venue's record does not show. Every exit but a take-profit cools the contract
down from the moment the engine saw it (the safe side when the cause is unknown). A move of the
trading state away from ``active`` cools every contract down.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from bot.domain.enums import EventKind, ForcedKind, OrderPurpose, OrderStatus
from bot.domain.orders import ForcedClose
from bot.engine.account import AccountView
from bot.ports.store import RiskEvent, StorePort

COOLDOWN_EVENT = EventKind.COOLDOWN
ZERO = Decimal(0)
# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_STOP_LOSS, _TAKE_PROFIT = OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT


def ms_tag(name: str, ms: int) -> str:
    """A time carried in an event's text, ``[name=ms]``, read back at a restart by
    :func:`read_ms_tag` (cooldown events carry their end, hedge changes their time)."""
    return f"[{name}={ms}]"


def read_ms_tag(text: str, name: str) -> int | None:
    """The time :func:`ms_tag` wrote into ``text`` under ``name``, or ``None``."""
    match = re.search(r"\[" + re.escape(name) + r"=(\d+)\]", text)
    return int(match.group(1)) if match is not None else None


@dataclass(frozen=True, slots=True)
class Held:
    qty: Decimal
    stops: frozenset[str]
    takes: frozenset[str]


def held_of(acct: AccountView, symbols: Iterable[str]) -> dict[str, Held]:
    out: dict[str, Held] = {}
    positions = acct.positions
    for sym in symbols:
        pos = positions.get(sym)
        if pos is None or pos.qty == 0:
            continue  # only a held position can be stopped out
        stops: list[str] = []
        takes: list[str] = []
        for o in acct.resting.get(sym, ()):
            if o.purpose is _STOP_LOSS:
                stops.append(o.client_id)
            elif o.purpose is _TAKE_PROFIT:
                takes.append(o.client_id)
        out[sym] = Held(pos.qty, frozenset(stops), frozenset(takes))
    return out


def held_at_start(store: StorePort, symbols: Iterable[str]) -> dict[str, Held]:
    """What the last run left held: its last recorded positions, moved by the fills of the
    bot's own entries, reductions and closes sent after them, with the bot's protective orders
    the store believes rest. A stop-out or liquidation while the bot was down is then judged at
    the first reconcile exactly like one between two ticks, and a job that died between its
    orders and its record (kill -9 in the middle of a tick) leaves its own reduction the bot's,
    not a reduction "outside the bot" with its cooldown: the record of its positions is what it
    never wrote, the store holds its orders filled with their fills. Its protective orders'
    fills are left out (a stop-loss that filled is an exit, with its cooldown), and so are
    orders of unknown outcome (the reconcile looks them up by client id first and counts them,
    :attr:`bot.engine.reconcile.Reconciler.own_fills`)."""
    latest = store.latest_positions()
    if latest is None:
        return {}
    since, positions = latest
    wanted = set(symbols)
    qty: dict[str, Decimal] = {p.symbol: p.qty for p in positions if p.is_open}
    for r in store.filled_since(since):
        req = r.request
        if req.symbol in wanted and not req.purpose.is_protective:
            qty[req.symbol] = qty.get(req.symbol, ZERO) + req.side.sign * r.filled
    resting = store.open_orders()
    out: dict[str, Held] = {}
    for sym, held in qty.items():
        if sym not in wanted or held == 0:
            continue
        mine = [r for r in resting if r.request.symbol == sym]
        out[sym] = Held(
            held,
            frozenset(r.client_id for r in mine if r.request.purpose is OrderPurpose.STOP_LOSS),
            frozenset(r.client_id for r in mine if r.request.purpose is OrderPurpose.TAKE_PROFIT),
        )
    return out


def exits_at_start(store: StorePort, held: Iterable[str]) -> tuple[set[str], set[str]]:
    """The contracts of ``held`` (:func:`held_at_start`) whose stop-loss, and those whose
    take-profit, a reading of the last run found filled after the positions it recorded last,
    with no exit or cooldown recorded for them since: the process died between that reading
    (the runner's for its alerts, or a job's own reconcile) and the naming of the exit
    (``Engine.note_exits``). The knowledge lived in memory only
    (:attr:`bot.engine.reconcile.Reconciler.stopped_out`), the order record is settled and
    never says so again: the restarted bot named its own stop-loss "closed outside the bot"."""
    latest = store.latest_positions()
    wanted = set(held)
    if latest is None or not wanted:
        return set(), set()
    fills = [
        r
        # Strictly after that record: a fill settled in its millisecond was settled by the
        # job that wrote it, which named the exit before recording. A take-profit (and a
        # stop-loss under no cooldown) records nothing when named, so nothing below would
        # exclude it: taken in, a position re-entered after the take-profit and liquidated
        # while the bot was down was named the take-profit's at the restart, no exit and no
        # alert. (A reading in that same millisecond that found the fill and died before the
        # next job names it "outside the bot", the lesser wrong: a live clock has moved on.)
        for r in store.filled_since(latest[0], settled=True)
        if r.request.symbol in wanted
        and r.status is OrderStatus.FILLED
        and r.request.purpose in (OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT)
    ]
    if not fills:
        return set(), set()
    named = store.recent_events(
        10_000,
        kinds=(EventKind.EXIT, COOLDOWN_EVENT),
        since_ms=min(r.updated_ms for r in fills),
    )
    stopped: set[str] = set()
    took: set[str] = set()
    for r in fills:
        sym = r.request.symbol
        if any(e.symbol == sym and e.ts_ms >= r.updated_ms for e in named):
            continue  # named before the process died
        (stopped if r.request.purpose is OrderPurpose.STOP_LOSS else took).add(sym)
    return stopped, took


OUTSIDE = "outside the bot"  # the tail of the names of exits nothing on the venue explains
STOPPED = "stop-loss"  # the bot's own stop-loss filled
ForcedLookup = Callable[[], "Sequence[ForcedClose] | None"]


def exit_kind(
    before: Held,
    acct: AccountView,
    symbol: str,
    *,
    stop_filled: bool,
    take_filled: bool,
    forced: ForcedLookup,
) -> str | None:
    """What made the position shrink, as far as the exchange tells; ``None`` when it did not
    shrink on the exchange's side or the bot's take-profit closed it.

    ``stop_filled``/``take_filled``: the reconcile found the bot's own stop-loss/take-profit
    filled (looked up by client id: gone from the list is not filled, it may have been
    cancelled). ``forced`` reads the venue's liquidations and ADL closes (asked only when the
    bot's own orders do not explain the shrink; ``None``: the venue's record cannot be read).
    """
    now_qty = acct.qty(symbol)
    if before.qty == 0:
        return None
    reversed_ = now_qty != 0 and (now_qty > 0) != (before.qty > 0)
    if not (now_qty == 0 or reversed_ or abs(now_qty) < abs(before.qty)):
        return None
    if stop_filled:
        return STOPPED
    if take_filled:
        return None
    if reversed_:
        return "a reversal the bot did not make"  # a forced close never reverses a position
    closes = forced()
    if closes:
        kinds = {c.kind for c in closes}
        if kinds == {ForcedKind.ADL}:
            return "auto-deleveraging"
        return "liquidation" if ForcedKind.ADL not in kinds else "liquidation and auto-deleveraging"
    what = "closed" if now_qty == 0 else "reduced"
    why = (
        "not by its stop-loss or take-profit; the venue records no liquidation or ADL"
        if closes is not None
        else "not by its stop-loss or take-profit; the venue's record of liquidations could "
        "not be read"
    )
    return f"{what} {OUTSIDE} ({why})"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


class Cooldowns:
    """Per contract: until when it may not add exposure, and why."""

    def __init__(self, cooldown_ms: int) -> None:
        if cooldown_ms < 0:
            raise ValueError(f"cooldown must be >= 0 ms, got {cooldown_ms}")
        self.cooldown_ms = cooldown_ms
        self.until: dict[str, tuple[int, str]] = {}

    def start(self, symbol: str, now_ms: int, why: str) -> int | None:
        """Start (or extend) a cooldown; the new end (epoch ms) when it moved, else ``None``."""
        if self.cooldown_ms == 0:
            return None
        end = now_ms + self.cooldown_ms
        current = self.until.get(symbol)
        if current is None or current[0] < end:
            self.until[symbol] = (end, why)
            return end
        return None

    @staticmethod
    def describe(symbol: str, end_ms: int, why: str) -> str:
        """The text of the ``cooldown`` event that makes a cooldown survive a restart."""
        return f"cooldown until {iso(end_ms)} after {why} {ms_tag('until_ms', end_ms)}"

    def restore(self, events: Iterable[RiskEvent], now_ms: int) -> None:
        """Cooldowns still running at ``now_ms``, from the recorded ``cooldown`` events (a
        restarted paper or live bot keeps the cooldowns its previous run started)."""
        for e in events:
            if e.kind != COOLDOWN_EVENT or e.symbol is None:
                continue
            end = read_ms_tag(e.reason, "until_ms")
            if end is None:
                continue
            why = e.reason.split(" after ", 1)[-1].split(" [until_ms=", 1)[0]
            current = self.until.get(e.symbol)
            if end > now_ms and (current is None or current[0] < end):
                self.until[e.symbol] = (end, why)

    def active(self, symbol: str, now_ms: int) -> tuple[int, str] | None:
        entry = self.until.get(symbol)
        if entry is None or now_ms >= entry[0]:
            return None
        return entry

    def reason(self, symbol: str, now_ms: int) -> str | None:
        entry = self.active(symbol, now_ms)
        if entry is None:
            return None
        return f"cooldown until {iso(entry[0])} after {entry[1]}"
