"""The engine's hedge desk: builds the hedge policy's inputs each tick and remembers what the
gate and the report need (betas, the net exposure, the last hedge change).

The hedge legs are contracts of the engine like any other (``ContractSpec.direction ==
"hedge"``): reconciled, protected by a resting stop, margined, funded and gated. This module
only decides their target; the engine plans and sends the orders.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np

from bot.config.hedge import HedgeParams, spot_symbol
from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.instrument import Instrument
from bot.domain.market import MarketSnapshot
from bot.domain.orders import Order
from bot.engine.account import AccountView
from bot.engine.market import to_decimal
from bot.engine.reentry import COOLDOWN_EVENT, iso, ms_tag, read_ms_tag
from bot.errors import BotError
from bot.policy.hedge import (
    BookLeg,
    HedgeInputs,
    HedgeLeg,
    HedgeOutcome,
    HeldLeg,
    cut_without_statistics,
    decide_hedge,
    short_name,
)
from bot.ports.exchange import SpotWalletPort
from bot.ports.market import CandleWindow
from bot.ports.store import RiskEvent
from bot.stats.beta import BetaEstimate, min_returns, rolling_beta

ZERO = Decimal(0)
ONE = Decimal(1)
# The tag of the ``cooldown`` event a hedge change records: the time of the change, from which
# ``[hedge] cooldown_minutes`` runs (the re-entry cooldowns' ``until_ms`` is another tag).
_CHANGE = "hedge_change_ms"


def hedge_symbols(policy: Policy) -> tuple[str, ...]:
    return policy.hedge.instruments if policy.hedge is not None else ()


def with_hedge_symbols(traded: Sequence[str], policy: Policy) -> tuple[str, ...]:
    """The engine's contracts: the traded ones, then the policy's hedge instruments."""
    return tuple(traded) + tuple(s for s in hedge_symbols(policy) if s not in traded)


@dataclass(frozen=True, slots=True)
class ExposureRecord:
    """The book at one decision tick (quote currency; the report's net exposure figures)."""

    ts_ms: int
    equity: Decimal
    book_beta_delta: Decimal
    book_gross: Decimal  # sum of |notional| of the book's legs (perps and spot)
    net_before: Decimal
    net_after: Decimal  # as decided: the gate, the caps or a refusal may leave the book elsewhere
    spot_value: Decimal
    # The beta-weighted net of everything held at the tick, before its orders: what the last
    # decisions really left the account with once the caps, the gate and the fills had their say
    # (the report's net exposure figures).
    net_held: Decimal = ZERO


class HedgeDesk:
    def __init__(
        self,
        params: HedgeParams,
        policy: Policy,
        instruments: Mapping[str, Instrument],
        quote: str,
        spot: SpotWalletPort | None,
        spot_assets: Sequence[str] = (),
    ) -> None:
        self.params = params
        self.policy = policy
        self.instruments = instruments
        self.quote = quote
        self.spot = spot
        self.spot_assets = tuple(spot_assets)
        self.betas: dict[str, Decimal] = {}  # last estimate per symbol (primary: 1)
        # Why a beta is the fallback 1 (shrunk and clipped) rather than a regression's slope.
        self.beta_notes: dict[str, str] = {}
        self.spot_qty: dict[str, Decimal] = {}
        self.last_change_ms: int | None = None
        self.log: list[ExposureRecord] = []

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.params.instruments

    def note_change(self, now_ms: int) -> str | None:
        """A hedge order was sent: ``[hedge] cooldown_minutes`` runs from now. The text of the
        ``cooldown`` event that makes it survive a restart (``None``: no cooldown set)."""
        self.last_change_ms = now_ms
        minutes = self.params.cooldown_minutes
        if minutes == 0:
            return None
        end = now_ms + minutes * 60_000
        return (
            f"hedge changes paused until {iso(end)} ({minutes} min cooldown after a hedge "
            f"change) {ms_tag(_CHANGE, now_ms)}"
        )

    def restore(self, events: Iterable[RiskEvent], now_ms: int) -> None:
        """The last hedge change from the recorded ``cooldown`` events: a restarted bot keeps
        the hedge cooldown its previous run started (a restart right after a hedge stop-out
        does not re-open the hedge before the cooldown ends)."""
        for e in events:
            changed = read_ms_tag(e.reason, _CHANGE) if e.kind == COOLDOWN_EVENT else None
            if changed is None or e.symbol not in self.symbols:
                continue
            if changed <= now_ms and (self.last_change_ms is None or changed > self.last_change_ms):
                self.last_change_ms = changed

    def estimate_betas(self, windows: Mapping[str, CandleWindow]) -> None:
        """Betas of every contract with data to the primary instrument (kept if no data now)."""
        primary = windows.get(self.params.primary)
        if primary is None:
            return
        p = self.params
        for sym, w in windows.items():
            if sym == p.primary:
                self.betas[sym] = ONE
                continue
            est = rolling_beta(
                w.ts,
                w.close,
                primary.ts,
                primary.close,
                window=p.beta_window,
                shrinkage=float(p.beta_shrinkage),
                lo=float(p.beta_min),
                hi=float(p.beta_max),
            )
            self.betas[sym] = to_decimal(est.beta, 4)
            note = _fallback_note(sym, est, p)
            if note is None:
                self.beta_notes.pop(sym, None)
            else:
                self.beta_notes[sym] = note

    def beta(self, symbol: str) -> Decimal:
        # No estimate yet (no history): 1, the market's own beta, as the shrinkage target.
        return self.betas.get(symbol, ONE)

    def read_spot(self) -> str | None:
        """Refresh the spot holdings; the reason they could not be read, or None."""
        if self.spot is None or not self.spot_assets:
            return None
        try:
            self.spot_qty = dict(self.spot.fetch_spot_balances(self.spot_assets))
        except BotError as exc:
            return f"spot holdings unknown ({exc}): hedge held as it is"
        return None

    def spot_legs(self, marks: Mapping[str, Decimal]) -> list[BookLeg]:
        legs = []
        for asset, qty in self.spot_qty.items():
            sym = spot_symbol(asset, self.quote)
            mark = marks.get(sym)
            if mark is None:
                raise BotError(f"spot {asset}: no price for {sym} (the spot leg's price series)")
            legs.append(BookLeg(f"spot {asset}", qty * mark, self.beta(sym)))
        return legs

    def decide(
        self,
        now: int,
        acct: AccountView,
        snapshots: Mapping[str, MarketSnapshot],
        book: Sequence[Decision],
        allow_increase: bool,
        max_leverage: Decimal,
        resting: Mapping[str, Sequence[Order]],
        book_may_grow: bool = True,
        max_notional: Decimal | None = None,
        may_open: Collection[str] | None = None,
        foreign: Collection[str] = (),
        stop_without_statistics: Callable[[str], Decimal] | None = None,
    ) -> HedgeOutcome | None:
        """The hedge legs' decisions, or None when the hedge is held for want of data.

        ``book_may_grow``: whether the book's increases can pass the risk gate (the trading
        state is ``active``); when not, the book counts as what its decisions can make of the
        positions held: their reductions, never their increases. ``may_open``: the hedge legs
        that may take new exposure this tick (``None``: all of them). ``snapshots`` leave out
        the ``foreign`` legs (positions the bot did not open), which are never decided.

        Without the statistics of the primary or of a hedge leg held, only cuts are decided
        (:func:`cut_without_statistics`), each leg at its mark; ``stop_without_statistics``
        gives the stop of a leg cut in part that has none resting (the engine's stop for a
        position without a decision)."""
        held = [s for s in self.symbols if acct.qty(s) != 0 and s not in foreign]
        if self.params.primary not in snapshots or any(s not in snapshots for s in held):
            return self._cut_only(
                now, acct, snapshots, book, book_may_grow, resting, held, stop_without_statistics
            )
        legs = []
        for sym in self.symbols:
            snap = snapshots.get(sym)
            if snap is None:
                continue
            stop = _resting_stop(resting.get(sym, []))
            legs.append(
                HedgeLeg(
                    sym,
                    self.instruments[sym],
                    snap,
                    self.beta(sym),
                    acct.positions.get(sym),
                    stop,
                    may_open=may_open is None or sym in may_open,
                )
            )
        book_legs = self._book_legs(acct, book, book_may_grow)
        spot = self.spot_legs(acct.marks)
        inputs = HedgeInputs(
            equity=acct.equity(),
            book=tuple(book_legs + spot),
            legs=tuple(legs),
            now_ms=now,
            last_change_ms=self.last_change_ms,
            allow_increase=allow_increase,
            max_leverage=max_leverage,
            max_notional=max_notional,
        )
        outcome = _noted(
            decide_hedge(inputs, self.policy),
            [self.beta_notes[b.name] for b in book_legs if b.name in self.beta_notes]
            + [self.beta_notes[leg.symbol] for leg in legs if leg.symbol in self.beta_notes],
        )
        self._log(now, acct, inputs.equity, inputs.book, spot, outcome)
        return outcome

    def _cut_only(
        self,
        now: int,
        acct: AccountView,
        snapshots: Mapping[str, MarketSnapshot],
        book: Sequence[Decision],
        book_may_grow: bool,
        resting: Mapping[str, Sequence[Order]],
        held: Sequence[str],
        stop_without_statistics: Callable[[str], Decimal] | None,
    ) -> HedgeOutcome | None:
        """The cuts of the held hedge legs decided without statistics (see :meth:`decide`);
        ``None``: none is due, or a leg's mark is unknown (unknown is not zero: held)."""
        if not held or any(s not in acct.marks for s in held):
            return None
        legs = []
        for sym in held:
            stop = _resting_stop(resting.get(sym, []))
            if stop is None:
                if stop_without_statistics is None:
                    return None
                stop = stop_without_statistics(sym)
            legs.append(
                HeldLeg(
                    sym,
                    self.instruments[sym],
                    acct.qty(sym),
                    acct.marks[sym],
                    self.beta(sym),
                    acct.positions[sym].leverage,
                    stop,
                )
            )
        unknown = [
            short_name(s)
            for s in self.symbols
            if s not in snapshots and (s in held or s == self.params.primary)
        ]
        missing = f"no market statistics for {', '.join(unknown)} this tick"
        book_legs = self._book_legs(acct, book, book_may_grow)
        spot = self.spot_legs(acct.marks)
        equity = acct.equity()
        cut = cut_without_statistics(
            equity,
            book_legs + spot,
            legs,
            now,
            self.last_change_ms,
            self.policy,
            missing,
        )
        if cut is None:
            return None
        outcome = _noted(
            cut, [self.beta_notes[b.name] for b in book_legs if b.name in self.beta_notes]
        )
        self._log(now, acct, equity, book_legs + spot, spot, outcome)
        return outcome

    def _book_legs(
        self, acct: AccountView, book: Sequence[Decision], book_may_grow: bool
    ) -> list[BookLeg]:
        """The book's perpetuals as its decisions leave them, and the positions held without
        a decision this tick as held."""
        decided = {d.symbol for d in book}
        book_legs = [
            BookLeg(
                d.symbol,
                _held_after(d, acct.qty(d.symbol), book_may_grow) * acct.marks[d.symbol],
                self.beta(d.symbol),
            )
            for d in book
        ]
        for sym, pos in acct.positions.items():  # held without a decision this tick: as held
            if sym not in decided and sym not in self.symbols and pos.qty != 0:
                book_legs.append(BookLeg(sym, pos.qty * acct.marks[sym], self.beta(sym)))
        return book_legs

    def _log(
        self,
        now: int,
        acct: AccountView,
        equity: Decimal,
        book: Sequence[BookLeg],
        spot: Sequence[BookLeg],
        outcome: HedgeOutcome,
    ) -> None:
        self.log.append(
            ExposureRecord(
                now,
                equity,
                outcome.book_beta_delta,
                sum((abs(b.notional) for b in book), ZERO),
                outcome.net_before,
                outcome.net_after,
                sum((b.notional for b in spot), ZERO),
                self.net_excluding(None, acct),
            )
        )

    def net_excluding(self, symbol: str | None, acct: AccountView) -> Decimal:
        """Beta-weighted net exposure of everything but ``symbol`` as held now (the gate's
        view before a hedge order; ``None``: of everything)."""
        total = ZERO
        for sym, pos in acct.positions.items():
            if sym != symbol and pos.qty != 0:
                total += pos.qty * acct.marks[sym] * self.beta(sym)
        for b in self.spot_legs(acct.marks):
            total += b.notional * b.beta
        return total


def _resting_stop(orders: Sequence[Order]) -> Decimal | None:
    return next(
        (
            o.trigger_price
            for o in orders
            if o.purpose is not None and o.purpose.name == "STOP_LOSS"
        ),
        None,
    )


def _fallback_note(symbol: str, est: BetaEstimate, params: HedgeParams) -> str | None:
    """What the decision's reason says when a beta is not a regression's slope (``None``: it
    is one): too few common returns (gaps in the data, a young contract) or no variance (a flat
    or missing price series of either contract)."""
    if np.isfinite(est.raw):
        return None
    name, primary = short_name(symbol), short_name(params.primary)
    needed = min_returns(params.beta_window)
    if est.n < needed:
        why = f"{est.n} common returns with {primary}, fewer than {needed}"
    else:
        why = f"no variance or missing prices in its {est.n} returns against {primary}"
    return f"{name} beta {est.beta:.2f} (no regression: {why}; 1 shrunk and clipped)"


def _noted(outcome: HedgeOutcome, notes: Sequence[str]) -> HedgeOutcome:
    """The outcome with the beta notes appended to every reason."""
    if not notes:
        return outcome
    tail = "; " + "; ".join(dict.fromkeys(notes))
    decisions = tuple(replace(d, reason=d.reason + tail) for d in outcome.decisions)
    return replace(outcome, decisions=decisions, reason=outcome.reason + tail)


def _held_after(d: Decision, held: Decimal, may_grow: bool) -> Decimal:
    """The position a book decision leaves: its target, or, when it may not grow (the trading
    state or the policy refuses increases), the part of the target that is a reduction of what
    is held. In ``reducing`` the book's entries are denied by the gate: a hedge sized on them
    would hedge a book that is not there (after a crash stopped the book out, a short hedge
    held against a phantom long)."""
    if may_grow and d.allow_increase:
        return d.target_qty
    if held * d.target_qty <= 0:
        return ZERO
    return held if abs(held) < abs(d.target_qty) else d.target_qty


def order_hedge_decisions(decisions: Sequence[Decision], acct: AccountView) -> list[Decision]:
    """Legs that shrink first: switching instruments closes the old leg before the new one
    opens, so the book is never hedged twice over."""
    return sorted(decisions, key=lambda d: abs(d.target_qty) >= abs(acct.qty(d.symbol)))
