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

Money in the quote currency; moves, losses and limits as fractions of equity before the move.
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
from bot.tools.portfolio import SCENARIO_TS_MS, Portfolio, open_on_exchange
from bot.tools.scenarios import Scenario

__all__ = [
    "GRID_LEVELS",
    "GridRow",
    "Limits",
    "Outcome",
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

    @property
    def pnl(self) -> Decimal:
        return self.equity_after - self.equity_before

    @property
    def loss_fraction(self) -> Decimal:
        """Loss as a fraction of the equity before (negative for a gain)."""
        return -self.pnl / self.equity_before if self.equity_before > 0 else ZERO

    @property
    def daily_loss_breached(self) -> bool:
        return self.loss_fraction >= self.limits.daily_loss

    @property
    def drawdown_breached(self) -> bool:
        # The book's peak is not known here: the equity before the scenario is taken as peak.
        return self.loss_fraction >= self.limits.max_drawdown

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
    }
