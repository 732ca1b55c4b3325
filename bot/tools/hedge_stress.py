"""``bot stress`` for a hedged book: every scenario with and without the hedge leg.

The unhedged book is the same portfolio without the policy's hedge instruments (same wallet,
same margin mode, the same spot holdings), played through the same scenarios (moves of the hedge
instruments dropped, except where they price a spot holding: the spot moves with them). With
spot, each side's P&L is the account's and the spot's together: the hedge offsets both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from rich.table import Table

from bot.domain.instrument import Instrument
from bot.tools.calc import to_text
from bot.tools.portfolio import Portfolio
from bot.tools.scenarios import Scenario
from bot.tools.stress import Limits, Outcome, run_scenario


def without_hedge(portfolio: Portfolio, hedge_symbols: Sequence[str]) -> Portfolio | None:
    """The book without its hedge legs; None when it holds no hedge leg, or only hedge legs
    and no spot (a carry's unhedged book is its spot alone)."""
    hedges = set(hedge_symbols)
    book = tuple(h for h in portfolio.holdings if h.symbol not in hedges)
    if len(book) == len(portfolio.holdings) or not (book or portfolio.spot):
        return None
    return replace(portfolio, holdings=book, source=f"{portfolio.source} without the hedge")


def unhedged_outcomes(
    book: Portfolio,
    instruments: Mapping[str, Instrument],
    scenarios: Sequence[Scenario],
    limits: Limits,
    slippage_bps: Decimal,
) -> list[Outcome]:
    held = set(book.symbols())
    moved = set(book.moved_symbols())  # the positions' and the spot's perpetuals
    out = []
    for s in scenarios:
        only = replace(
            s,
            moves={k: v for k, v in s.moves.items() if k in moved},
            funding_rates={k: v for k, v in s.funding_rates.items() if k in held},
        )
        out.append(run_scenario(book, instruments, only, limits, slippage_bps))
    return out


def comparison_json(hedged: Sequence[Outcome], unhedged: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Per scenario the account's P&L hedged and unhedged; with spot also the spot's P&L (the
    same on both sides) and the totals the hedge is judged on."""
    rows = []
    for h, u in zip(hedged, unhedged, strict=True):
        row: dict[str, Any] = {
            "name": h.scenario.name,
            "pnl_hedged": to_text(h.pnl),
            "pnl_unhedged": to_text(u.pnl),
            "loss_fraction_hedged": to_text(h.loss_fraction),
            "loss_fraction_unhedged": to_text(u.loss_fraction),
            "liquidated_hedged": list(h.liquidated),
            "liquidated_unhedged": list(u.liquidated),
            "survived_hedged": h.survived,
            "survived_unhedged": u.survived,
        }
        if h.spot:
            row |= {
                "spot_pnl": to_text(h.spot_pnl),
                "total_pnl_hedged": to_text(h.total_pnl),
                "total_pnl_unhedged": to_text(u.total_pnl),
                "total_loss_fraction_hedged": to_text(h.total_loss_fraction),
                "total_loss_fraction_unhedged": to_text(u.total_loss_fraction),
            }
        rows.append(row)
    return rows


def comparison_table(hedged: Sequence[Outcome], unhedged: Sequence[Outcome]) -> Table:
    spot = any(h.spot for h in hedged)
    what = " (account + spot)" if spot else ""
    table = Table(title=f"each scenario with and without the hedge leg{what}")
    columns = ("scenario", "P&L hedged", "P&L unhedged", "hedge effect", "liquidated")
    for col in columns[:3] + (("spot P&L",) if spot else ()) + columns[3:]:
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for h, u in zip(hedged, unhedged, strict=True):
        effect = h.total_pnl - u.total_pnl
        colour = "green" if effect >= 0 else "red"
        liq = ", ".join(x.split("/")[0] for x in h.liquidated) or "-"
        liq_u = ", ".join(x.split("/")[0] for x in u.liquidated) or "-"
        table.add_row(
            h.scenario.name,
            f"{h.total_pnl:,.2f} ({-h.total_loss_fraction:.1%})",
            f"{u.total_pnl:,.2f} ({-u.total_loss_fraction:.1%})",
            *((f"{h.spot_pnl:,.2f}",) if spot else ()),
            f"[{colour}]{effect:+,.2f}[/{colour}]",
            f"{liq} / {liq_u}",
        )
    return table
