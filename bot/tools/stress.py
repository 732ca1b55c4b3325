"""``bot stress``: what instant moves, crashes, volatility and funding spikes do to a book.

Every scenario is played by the simulated exchange itself: the portfolio is opened on a fresh
:class:`~bot.sim.exchange.SimulatedExchange` (:func:`bot.tools.portfolio.open_on_exchange`) and
each price move is one gap bar (open = high = low = close = the new price) run through
:func:`bot.sim.triggers.process_bar`. So resting stops fill at the gapped price with the
configured slippage (gap slippage: a move past the stop fills at the moved price, not at the
stop), liquidations happen at the exchange's own liquidation price with its ordering rules, and a
stress result agrees with a replay of the same move by construction. All contracts of a scenario
move at once: every mark is set before any bar is processed, so a cross-margin liquidation price
sees the other contracts at their new prices.

Spot holdings (the configuration's ``[spot]``, :class:`~bot.tools.portfolio.SpotLeg`) are not on
the exchange: each is valued at its perpetual's price moved by the scenario's move of that
perpetual. The account's figures (equity, margin ratio, stops, liquidations) stay the margin
account's; the outcome adds the spot's P&L and the total, and the loss limits are checked on the
larger of the account's loss and the total's.

Money in the quote currency; moves, losses and limits as fractions of the account's equity
before the move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import margin_ratio, position_maintenance
from bot.errors import ConfigError
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import process_bar, settle_funding
from bot.tools.calc import to_text
from bot.tools.portfolio import SCENARIO_TS_MS, Portfolio, SpotLeg, open_on_exchange
from bot.tools.scenarios import Scenario

__all__ = [
    "GRID_LEVELS",
    "GridRow",
    "Limits",
    "Outcome",
    "SpotMove",
    "StopOut",
    "apply_scenario",
    "cell_status",
    "grid_json",
    "leverage_grid",
    "outcome_json",
    "portfolio_json",
    "run_scenario",
    "stops_past_liquidation",
]

ZERO = Decimal(0)
GRID_LEVELS = (1, 2, 3, 5, 10, 20)


@dataclass(frozen=True, slots=True)
class Limits:
    """Loss limits, fractions of equity (the tighter of the config's risk and the policy's)."""

    daily_loss: Decimal
    max_drawdown: Decimal


@dataclass(frozen=True, slots=True)
class StopOut:
    symbol: str
    trigger: Decimal
    fill_price: Decimal  # the gapped price less slippage: worse than the trigger
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class SpotMove:
    """A spot holding through a scenario: its perpetual's move applied to its value."""

    leg: SpotLeg
    move: Decimal  # the scenario's move of ``leg.symbol`` (0: not moved)

    @property
    def price_after(self) -> Decimal:
        return self.leg.price * (1 + self.move)

    @property
    def pnl(self) -> Decimal:
        return self.leg.value * self.move


@dataclass(frozen=True, slots=True)
class Outcome:
    scenario: Scenario
    equity_before: Decimal
    equity_after: Decimal
    margin_ratio: Decimal  # cross: account; isolated: the worst position's (>= 1 liquidates)
    stopped: tuple[StopOut, ...]
    liquidated: tuple[str, ...]  # in the order the exchange liquidated them
    next_liquidation: tuple[str, Decimal, Decimal] | None  # (symbol, price, distance fraction)
    funding_paid: Decimal
    limits: Limits
    # The insurance fund's part: the loss beyond a cross wallet, or beyond an isolated margin
    # (a liquidation or a stop filled past the bankruptcy price).
    beyond_wallet: Decimal = ZERO
    # The spot holdings beside the account (the configuration's [spot]), each moved with its
    # perpetual. The account's figures (equity, margin ratio, liquidations) are the margin
    # account's alone, as the venue measures it; the totals add the spot.
    spot: tuple[SpotMove, ...] = ()

    @property
    def pnl(self) -> Decimal:
        """The margin account's P&L."""
        return self.equity_after - self.equity_before

    @property
    def loss_fraction(self) -> Decimal:
        """The account's loss as a fraction of its equity before (negative for a gain)."""
        return -self.pnl / self.equity_before if self.equity_before > 0 else ZERO

    @property
    def spot_pnl(self) -> Decimal:
        return sum((m.pnl for m in self.spot), ZERO)

    @property
    def total_pnl(self) -> Decimal:
        """The account's P&L and the spot holdings': what the book made or lost."""
        return self.pnl + self.spot_pnl

    @property
    def total_loss_fraction(self) -> Decimal:
        """The account's and the spot's loss as a fraction of the account's equity before
        (the base of every fraction here and of the loss limits)."""
        return -self.total_pnl / self.equity_before if self.equity_before > 0 else ZERO

    @property
    def worst_loss_fraction(self) -> Decimal:
        """What the loss limits are checked on: the account's loss (what the bot's limits
        measure and act on) or the loss with the spot's, whichever is larger. A carry book's
        short perpetual gains in a fall while its spot loses more; the account alone would
        show a gain and no limit."""
        return max(self.loss_fraction, self.total_loss_fraction)

    @property
    def daily_loss_breached(self) -> bool:
        return self.worst_loss_fraction >= self.limits.daily_loss

    @property
    def drawdown_breached(self) -> bool:
        # The book's peak is not known here: the equity before the scenario is taken as peak.
        return self.worst_loss_fraction >= self.limits.max_drawdown

    @property
    def survived(self) -> bool:
        return not self.liquidated

    @property
    def bankrupt(self) -> bool:
        """The scenario took the whole account: nothing is left of the equity (any loss beyond
        it is the insurance fund's). Its margin ratio, 0 when nothing is held any more, is then
        no sign of health."""
        return self.equity_before > 0 and self.equity_after <= 0


def apply_scenario(ex: SimulatedExchange, scenario: Scenario) -> None:
    """Play ``scenario`` on ``ex`` with the simulated exchange's own trigger rules."""
    ts = SCENARIO_TS_MS
    prices = {s: ex.marks[s] * (1 + m) for s, m in scenario.moves.items() if s in ex.marks}
    for sym, price in prices.items():
        if price <= 0:
            raise ConfigError(f"scenario {scenario.name!r}: {sym} would move to {price} <= 0")
        ex.marks[sym] = ex.lasts[sym] = price
    # Two passes: a fill on one contract changes the cross wallet another contract's
    # liquidation price depends on. Fired stops and liquidated positions do not fire again.
    for _ in range(2):
        for sym, price in prices.items():
            process_bar(ex, sym, ts, price, price, price, price)
    for _ in range(scenario.settlements):
        for sym, rate in scenario.funding_rates.items():
            mark = ex.marks[sym]
            settle_funding(ex, sym, ts, rate, mark)
            process_bar(ex, sym, ts, mark, mark, mark, mark)


def run_scenario(
    portfolio: Portfolio,
    instruments: Mapping[str, Instrument],
    scenario: Scenario,
    limits: Limits,
    slippage_bps: Decimal,
) -> Outcome:
    """Open ``portfolio`` on a fresh simulated exchange, play ``scenario``, read the result."""
    ex = open_on_exchange(portfolio, instruments, slippage_bps)
    before = ex.equity()
    apply_scenario(ex, scenario)
    triggers = {o.client_id: o.trigger_price for o in ex.orders.values()}
    stopped = tuple(
        StopOut(f.symbol, triggers[f.client_id] or ZERO, f.price, f.realized_pnl)
        for f in ex.fills
        if f.client_id.startswith("stress-sl-")
    )
    liquidated = tuple(e.symbol for e in ex.events if e.kind == "liquidation")
    return Outcome(
        scenario=scenario,
        equity_before=before,
        equity_after=ex.equity(),
        margin_ratio=_margin_ratio(ex),
        stopped=stopped,
        liquidated=liquidated,
        next_liquidation=_nearest(ex),
        funding_paid=ex.funding_paid,
        limits=limits,
        beyond_wallet=ex.insurance_shortfall,
        spot=tuple(SpotMove(leg, scenario.moves.get(leg.symbol, ZERO)) for leg in portfolio.spot),
    )


def _margin_ratio(ex: SimulatedExchange) -> Decimal:
    book = ex.book
    if book.margin_mode is MarginMode.CROSS:
        return margin_ratio(ex.maintenance_total(), ex.equity())
    worst = ZERO
    for sym, pos in ex.fetch_positions(list(book.positions)).items():
        mark = ex.marks[sym]
        mm = position_maintenance(book.instruments[sym], pos, mark)
        worst = max(worst, margin_ratio(mm, pos.isolated_margin + pos.unrealized_pnl(mark)))
    return worst


def _nearest(ex: SimulatedExchange) -> tuple[str, Decimal, Decimal] | None:
    """The open position closest (in % of its mark) to its liquidation price."""
    best: tuple[str, Decimal, Decimal] | None = None
    for sym, pos in sorted(ex.book.positions.items()):
        if pos.qty == 0:
            continue
        liq = ex.book.liquidation_price(sym, ex.marks)
        if liq is None:
            continue
        distance = abs(ex.marks[sym] - liq) / ex.marks[sym]
        if best is None or distance < best[2]:
            best = (sym, liq, distance)
    return best


def stops_past_liquidation(portfolio: Portfolio, ex: SimulatedExchange) -> list[str]:
    """One warning per holding whose resting stop is at or beyond its liquidation price on
    ``ex`` (the book as opened): the exchange liquidates the position before the stop can fire,
    so the position is not protected (the stop must lie strictly between mark and liquidation)."""
    out = []
    for h in portfolio.holdings:
        liq = ex.book.liquidation_price(h.symbol, ex.marks)
        if h.stop_loss is None or liq is None:
            continue
        if (h.stop_loss <= liq) if h.qty > 0 else (h.stop_loss >= liq):
            out.append(
                f"{h.symbol}: stop_loss {to_text(h.stop_loss)} is at or beyond its liquidation "
                f"price {to_text(liq)}: the exchange liquidates the position before the stop can "
                "fire"
            )
    return out


@dataclass(frozen=True, slots=True)
class GridRow:
    """One scenario across leverage levels: an Outcome per level, or the reason it is n/a."""

    scenario: Scenario
    cells: tuple[Outcome | str, ...]

    def max_surviving(self, levels: Sequence[int]) -> int | None:
        """Highest level at which this and every lower level survive (None: not even the first)."""
        best = None
        for level, cell in zip(levels, self.cells, strict=True):
            if isinstance(cell, str) or not cell.survived:
                break
            best = level
        return best


def leverage_grid(
    portfolio: Portfolio,
    instruments: Mapping[str, Instrument],
    scenarios: Sequence[Scenario],
    limits: Limits,
    slippage_bps: Decimal,
    levels: Sequence[int] = GRID_LEVELS,
    progress: Callable[[int, int], None] | None = None,
) -> list[GridRow]:
    """Every scenario with every position re-sized to each leverage on its own margin.
    ``progress(levels done, levels)`` is called after each leverage level."""
    columns: list[list[Outcome | str]] = []
    for done, level in enumerate(levels, start=1):
        if progress is not None and done > 1:
            progress(done - 1, len(levels))
        variant = portfolio.at_leverage(level, instruments)
        try:
            open_on_exchange(variant, instruments, slippage_bps)
        except ConfigError as exc:
            columns.append([f"n/a: {exc}"] * len(scenarios))
            continue
        columns.append(
            [run_scenario(variant, instruments, s, limits, slippage_bps) for s in scenarios]
        )
    if progress is not None:
        progress(len(levels), len(levels))
    return [GridRow(s, tuple(col[i] for col in columns)) for i, s in enumerate(scenarios)]


def _stop_json(s: StopOut) -> dict[str, Any]:
    return {
        "contract": s.symbol,
        "trigger": to_text(s.trigger),
        "fill_price": to_text(s.fill_price),
        "realized_pnl": to_text(s.realized_pnl),
    }


def outcome_json(o: Outcome) -> dict[str, Any]:
    """One scenario's result as JSON-ready data (Decimals as strings)."""
    s = o.scenario
    nxt = o.next_liquidation
    return {
        "name": s.name,
        "kind": s.kind,
        "note": s.note,
        "moves": {sym: to_text(m) for sym, m in s.moves.items()},
        "funding_rates": {sym: to_text(r) for sym, r in s.funding_rates.items()},
        "settlements": s.settlements,
        "equity_before": to_text(o.equity_before),
        "equity_after": to_text(o.equity_after),
        "pnl": to_text(o.pnl),
        "loss_fraction": to_text(o.loss_fraction),
        "margin_ratio": to_text(o.margin_ratio),
        "bankrupt": o.bankrupt,
        "stopped": [_stop_json(x) for x in o.stopped],
        "liquidated": list(o.liquidated),
        "first_liquidated": o.liquidated[0] if o.liquidated else None,
        "next_liquidation": None
        if nxt is None
        else {"contract": nxt[0], "price": to_text(nxt[1]), "distance": to_text(nxt[2])},
        "funding_paid": to_text(o.funding_paid),
        "loss_beyond_wallet": to_text(o.beyond_wallet),
        "daily_loss_breached": o.daily_loss_breached,
        "drawdown_breached": o.drawdown_breached,
        "survived": o.survived,
        **(_spot_json(o) if o.spot else {}),
    }


def _spot_json(o: Outcome) -> dict[str, Any]:
    """The spot holdings through the scenario and the totals with them (only with spot)."""
    return {
        "spot": [
            {
                "asset": m.leg.asset,
                "contract": m.leg.symbol,
                "qty": to_text(m.leg.qty),
                "price_before": to_text(m.leg.price),
                "price_after": to_text(m.price_after),
                "pnl": to_text(m.pnl),
            }
            for m in o.spot
        ],
        "spot_pnl": to_text(o.spot_pnl),
        "total_pnl": to_text(o.total_pnl),
        "total_loss_fraction": to_text(o.total_loss_fraction),
    }


def cell_status(cell: Outcome | str) -> str:
    """Outcome class of one grid cell: ok, stopped, limit, liquidated or n/a."""
    if isinstance(cell, str):
        return "n/a"
    if not cell.survived:
        return "liquidated"
    if cell.daily_loss_breached or cell.drawdown_breached:
        return "limit"
    return "stopped" if cell.stopped else "ok"


def grid_json(rows: Sequence[GridRow], levels: Sequence[int]) -> dict[str, Any]:
    return {
        "levels": list(levels),
        "rows": [
            {
                "scenario": row.scenario.name,
                "max_surviving_leverage": row.max_surviving(levels),
                "cells": [
                    {
                        "leverage": level,
                        "status": cell_status(cell),
                        "loss_fraction": None
                        if isinstance(cell, str)
                        else to_text(cell.loss_fraction),
                        **(
                            {"total_loss_fraction": to_text(cell.total_loss_fraction)}
                            if not isinstance(cell, str) and cell.spot
                            else {}
                        ),
                        "liquidated": [] if isinstance(cell, str) else list(cell.liquidated),
                        "reason": cell if isinstance(cell, str) else None,
                    }
                    for level, cell in zip(levels, row.cells, strict=True)
                ],
            }
            for row in rows
        ],
    }


def portfolio_json(portfolio: Portfolio, ex: SimulatedExchange) -> dict[str, Any]:
    """The book as opened on the exchange, with each position's liquidation price."""
    held = ex.fetch_positions(portfolio.symbols())
    return {
        "source": portfolio.source,
        "wallet": to_text(portfolio.wallet),
        "margin_mode": portfolio.margin_mode.value,
        "equity": to_text(ex.equity()),
        "positions": [
            {
                "contract": h.symbol,
                "qty": to_text(h.qty),
                "entry_price": to_text(h.entry_price),
                "mark": to_text(h.mark),
                "leverage": h.leverage,
                "stop_loss": to_text(h.stop_loss),
                "liquidation_price": to_text(held[h.symbol].liquidation_price),
            }
            for h in portfolio.holdings
        ],
        **(
            {
                "spot": [
                    {
                        "asset": s.asset,
                        "contract": s.symbol,
                        "qty": to_text(s.qty),
                        "price": to_text(s.price),
                        "value": to_text(s.value),
                        "priced_from": s.priced_from,
                    }
                    for s in portfolio.spot
                ],
                "spot_value": to_text(portfolio.spot_value),
            }
            if portfolio.spot
            else {}
        ),
    }
