"""Rich tables of the trader's tools: what ``bot calc``, ``bot vol`` and ``bot stress`` print for
people (scripts read ``--json``). Percentages are shown for fractions; money with two decimals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from rich.table import Table

from bot.clock import ms_to_datetime
from bot.tools.calc import CalcResult
from bot.tools.stress import Outcome
from bot.tools.voltrack import WINDOWS, ContractVol

__all__ = [
    "calc_moves",
    "calc_summary",
    "grid_table",
    "policy_table",
    "stress_table",
    "vol_table",
]


def _price(x: Decimal, tick: Decimal | None = None) -> str:
    """A price as a trader reads it: to the contract's tick (at least 2 decimals), or without a
    tick to 5 significant digits: a contract priced 0.012 must not read as 0.01."""
    if tick is not None and tick > 0:
        places = max(2, -int(tick.normalize().as_tuple().exponent))
    elif x == 0 or not x.is_finite():
        places = 2
    else:
        places = max(2, 5 - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{places}f}"


def calc_summary(r: CalcResult) -> Table:
    req = r.request
    quote = r.instrument.quote
    tick = r.instrument.tick_size
    side = "long" if req.side > 0 else "short"
    table = Table(
        title=f"{req.symbol} {side} at {req.entry} ({req.margin_mode.value}, {req.exchange})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("leverage", f"{r.leverage:.2f}x (bracket max {r.bracket_max_leverage}x)"),
        *([("[yellow]size below the balance[/yellow]", r.size_note)] if r.size_note else []),
        ("size", _size(r)),
        ("initial margin", f"{r.initial_margin:,.2f} {quote}"),
        (
            "maintenance margin",
            f"{r.maintenance_margin:,.2f} {quote} (rate {_pct(r.maint_margin_rate)})",
        ),
        (
            "liquidation price",
            "none" if r.liquidation_price is None else _price(_toward_entry(r), tick),
        ),
        ("distance to liquidation", _pct(r.liquidation_distance)),
        ("daily volatility", _pct(r.daily_volatility)),
        (
            "distance in daily vols",
            "-" if r.liquidation_distance_vol is None else f"{r.liquidation_distance_vol:.2f}",
        ),
        ("round-trip taker fee", f"{r.round_trip_fee:,.2f} {quote}"),
    ]
    if r.above_largest_order:
        rows.append(
            (
                "[bold red]above the largest market order[/bold red]",
                f"[bold red]{r.largest_order} {r.instrument.base}: one order cannot close it, "
                "one stop cannot protect it; the bot caps a position there[/bold red]",
            )
        )
    if r.stop_beyond_liquidation:
        rows.append(
            (
                "[bold red]stop beyond liquidation[/bold red]",
                f"[bold red]at {r.leverage.normalize():f}x the position is liquidated before "
                "the stop fires[/bold red]",
            )
        )
    if r.max_leverage_for_stop is not None:
        stop = (
            "at or below 0"
            if r.stop_price is None
            else _price(_shown_toward_entry(r, r.stop_price), tick)
        )
        answer = f"{r.max_leverage_for_stop}x" if r.max_leverage_for_stop > 0 else "none"
        if r.stop_note is not None:
            # a stop that never fires: the answer is only read right with its reason
            answer = f"{answer}: {r.stop_note}"
        elif r.max_leverage_for_stop == 0:
            answer = "none: even 1x liquidates before the stop"
        rows.append((f"max leverage, stop {req.stop_vol_units} vols away ({stop})", answer))
    for label, value in rows:
        table.add_row(label, value)
    return table


def _size(r: CalcResult) -> str:
    """The quantity an order would carry (floored to the step), and the exact one when that
    differs: the venue refuses a quantity off its step."""
    inst = r.instrument
    shown = f"{r.order_qty.normalize():f} {inst.base}"
    value = f"{r.notional:,.2f} {inst.quote}"
    if r.order_qty == r.asked_qty:
        return f"{shown} = {value}"
    asked = f"{r.asked_notional:,.2f} {inst.quote}"
    return (
        f"{shown} = {value} (floored to the {inst.step_size} step from {r.asked_qty:.8f}; "
        f"{asked} asked)"
    )


def _toward_entry(r: CalcResult) -> Decimal:
    """The liquidation price on the tick grid rounded toward the entry (up for a long, down
    for a short), as the venue reports it and the engine plans with it, at the precision it is
    shown with: on a coarse tick the nearest digit could show more room than the position has."""
    liq = r.liquidation_on_grid
    assert liq is not None  # noqa: S101 - the caller shows "none" otherwise
    return _shown_toward_entry(r, liq)


def _shown_toward_entry(r: CalcResult, price: Decimal) -> Decimal:
    """``price`` (a liquidation price or a stop, on the losing side of the entry) at the
    precision it is shown with, rounded toward the entry: up for a long, down for a short. A
    stop shown to the nearest digit could read beyond the stop the leverage was computed for,
    where the liquidation may come first; :meth:`Instrument.stop_price` rounds the same way."""
    tick = r.instrument.tick_size
    quantum = Decimal(1).scaleb(-max(2, -int(tick.normalize().as_tuple().exponent)))
    return price.quantize(quantum, rounding=ROUND_CEILING if r.request.side > 0 else ROUND_FLOOR)


def calc_moves(r: CalcResult) -> Table:
    table = Table(title="PnL and return on margin by price move (same balance; LIQ = liquidated)")
    table.add_column("move", justify="right")
    table.add_column("price", justify="right")
    for col in r.columns:
        mark = "*" if col.leverage == r.leverage else ""
        header = f"{col.leverage.normalize():f}x{mark}"
        if col.stop_beyond_liquidation:
            # the stop is kept at every leverage: here the liquidation comes first
            header += "\n[bold red]stop beyond liquidation[/bold red]"
        table.add_column(header, justify="right")
    for move, price, cells in r.moves:
        row = [f"{float(move) * 100:+.1f}%", _price(price, r.instrument.tick_size)]
        for cell in cells:
            if cell.pnl is None or cell.return_on_margin is None:
                row.append("[dim]n/a[/dim]")
            elif cell.liquidated:
                row.append(f"[bold red]LIQ {cell.pnl:,.0f}[/bold red]")
            else:
                colour = "green" if cell.pnl >= 0 else "red"
                row.append(
                    f"[{colour}]{cell.pnl:,.0f} ({_pct(cell.return_on_margin, 0)})[/{colour}]"
                )
        table.add_row(*row)
    return table


def vol_table(entry: ContractVol) -> Table:
    table = Table(
        title=f"{entry.symbol}: realised volatility, % a year (percentile in history), as of "
        f"{_when(entry.asof_ms)}"
    )
    table.add_column("estimator")
    for label, _ in WINDOWS:
        table.add_column(label, justify="right")
    by_name: dict[str, list[str]] = {}
    for r in entry.readings:
        text = "-" if r.value is None else f"{r.value * 100:.1f}% (p{r.percentile:.0f})"
        by_name.setdefault(r.estimator, []).append(text)
    for name, cells in by_name.items():
        table.add_row(name, *cells)
    return table


def policy_table(
    report: Sequence[ContractVol], policy_name: str, participation: Decimal | None = None
) -> Table:
    """The policy's decision now per contract, with the mean traded volume per decision candle;
    with ``participation`` (the policy's ``[orders] max_participation``) the most one tick may
    add too."""
    times = {e.policy.snapshot.asof_ms for e in report if e.policy.snapshot is not None}
    when = f", as of {_when(min(times))}" if times else ""
    table = Table(
        title=f"funding and the target leverage of policy {policy_name} now (flat book){when}"
    )
    columns = ["contract", "funding (last)", "annualised", "policy vol", "avg vol/candle"]
    if participation is not None:
        columns.append(f"max/tick ({participation} of avg)")
    columns += ["target lev", "reason"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("contract", "reason") else "right")
    for entry in report:
        now = entry.policy
        decision = now.decision
        row = [
            entry.symbol,
            _pct(entry.funding_rate, 4),
            _pct(entry.funding_annualized),
            _pct(now.snapshot.volatility if now.snapshot is not None else None, 1),
            _volume(now.snapshot.avg_volume if now.snapshot is not None else None),
        ]
        if participation is not None:
            row.append(_volume(now.participation_room))
        row += [
            "-" if decision is None else f"{decision.target_leverage}x",
            "no data" if decision is None else decision.reason,
        ]
        table.add_row(*row)
    return table


def _when(ms: int) -> str:
    """A time as a trader reads it: the data may be days old, the table must say so."""
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


def _volume(x: Decimal | None) -> str:
    """A quantity in base units, 4 significant digits at least ("-": unknown or off)."""
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 1000 else f"{x:.4g}"


def stress_table(outcomes: Sequence[Outcome], payload: dict[str, Any]) -> Table:
    p = payload["portfolio"]
    lim = payload["limits"]
    # Spot held beside the account: its P&L and the total beside the account's (the margin
    # ratio, stops and liquidations are the account's alone), the limits checked on both.
    spot = "spot" in p
    held = (
        " + spot "
        + ", ".join(f"{s['qty']} {s['asset']}" for s in p["spot"])
        + f" worth {float(p['spot_value']):,.2f}"
        if spot
        else ""
    )
    table = Table(
        title=f"stress test of {p['source']}: equity {float(p['equity']):,.2f} "
        f"({p['margin_mode']}){held}; limits: daily loss {_pct(Decimal(lim['daily_loss']), 0)}, "
        f"drawdown {_pct(Decimal(lim['max_drawdown']), 0)}"
        + (" (on the account's loss or the loss with the spot's)" if spot else "")
    )
    for column in (
        "scenario",
        "equity after",
        *(("account P&L", "spot P&L", "total P&L") if spot else ("P&L",)),
        "margin ratio",
        "stopped (fill)",
        "liquidated",
        "next to liquidate",
        "limits",
    ):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for o in outcomes:
        colour = (
            "red"
            if o.liquidated
            else "yellow"
            if o.drawdown_breached or o.daily_loss_breached
            else "green"
        )
        nxt = o.next_liquidation
        limits = ("DD " if o.drawdown_breached else "") + ("DAY" if o.daily_loss_breached else "")
        pnl = f"[{colour}]{_pct(-o.loss_fraction, 1)}[/{colour}]"
        table.add_row(
            o.scenario.name + (f"\n[dim]{o.scenario.note}[/dim]" if o.scenario.note else ""),
            f"{o.equity_after:,.2f}",
            *(
                (
                    _pct(-o.loss_fraction, 1),
                    f"{o.spot_pnl:,.2f}",
                    f"[{colour}]{o.total_pnl:,.2f} ({_pct(-o.total_loss_fraction, 1)})[/{colour}]",
                )
                if spot
                else (pnl,)
            ),
            _margin_ratio_text(o),
            ", ".join(f"{s.symbol.split('/')[0]} @{_price(s.fill_price)}" for s in o.stopped)
            or "-",
            "[bold red]"
            + ", ".join(x.split("/")[0] for x in o.liquidated)
            + "[/bold red]"
            + (
                f"\n[dim]{o.beyond_wallet:,.2f} taken by the insurance fund[/dim]"
                if o.beyond_wallet
                else ""
            )
            if o.liquidated
            else "-",
            "-" if nxt is None else f"{nxt[0].split('/')[0]} {_pct(nxt[2], 1)} away",
            limits.strip() or "ok",
        )
    return table


def _margin_ratio_text(o: Outcome) -> str:
    """The margin ratio after the scenario; "bankrupt" when the account is gone (its ratio, 0
    with nothing held, would read as the healthiest book)."""
    if o.bankrupt:
        return "[bold red]bankrupt[/bold red]"
    return "inf" if not o.margin_ratio.is_finite() else f"{o.margin_ratio:.3f}"


def grid_table(grid: dict[str, Any]) -> Table:
    table = Table(title="survival by leverage (every position at that leverage, same margin)")
    table.add_column("scenario")
    for level in grid["levels"]:
        table.add_column(f"{level}x", justify="right")
    table.add_column("survives up to", justify="right")
    styles = {
        "ok": "green",
        "stopped": "green",
        "limit": "yellow",
        "liquidated": "bold red",
        "n/a": "dim",
    }
    for row in grid["rows"]:
        cells = []
        for cell in row["cells"]:
            style = styles[cell["status"]]
            loss = cell["loss_fraction"]
            if loss is not None and "total_loss_fraction" in cell:
                # spot held: the larger of the account's loss and the loss with the spot's,
                # the one the status is judged on
                loss = max(Decimal(loss), Decimal(cell["total_loss_fraction"]))
            text = (
                "n/a"
                if loss is None
                else ("LIQ " if cell["status"] == "liquidated" else "") + _pct(-Decimal(loss), 0)
            )
            cells.append(f"[{style}]{text}[/{style}]")
        best = row["max_surviving_leverage"]
        table.add_row(row["scenario"], *cells, "none" if best is None else f"{best}x")
    return table


def _pct(x: Decimal | float | None, places: int = 2) -> str:
    return "-" if x is None else f"{float(x) * 100:.{places}f}%"
