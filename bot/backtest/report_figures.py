"""The report's figures about what happened (issue: "the report hides what happened").

* ``requested_start`` / ``start_note``: a start moved for warm-up or a shared window, and why;
* ``end_note``: an end earlier than asked, or than some contract's data, and why (the contract
  whose data ends first ends the run);
* ``total_return``: final equity / starting balance - 1 (not from the first recorded tick);
* ``time_in_market``: share of decision ticks with any position open;
* ``halted_at`` / ``time_halted``: the first move to ``halted`` and the share of ticks spent
  halted; ``resumed``: how the run went on after it (a drawdown halt stays final);
* ``slippage_paid``: what fills paid beyond their reference prices (market orders, triggered
  stops, liquidations); ``loss_beyond_wallet``: losses the insurance fund took (beyond a cross
  wallet, or beyond an isolated margin when a stop or a liquidation filled past the bankruptcy
  price);
* ``denials_by_reason``: the risk gate's denials grouped by reason, most common first;
* ``stale_hours``: hours each contract spent with stale data (no new exposure there);
* ``not_simulated``: what the venue does that the simulation does not (auto-deleveraging).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bot.backtest.replay import SimulationResult
from bot.domain.enums import TradingState

# Binance and Bybit close profitable positions against bankrupt ones when the insurance fund
# cannot absorb a liquidation (auto-deleveraging; https://www.binance.com/en/support/faq/
# introduction-to-futures-insurance-funds-360033525371): in a cascade a winning position may
# be closed at the bankruptcy price, off the book. The simulated insurance fund is unlimited
# and never does: said in every report, not built.
NOT_SIMULATED = (
    "auto-deleveraging (ADL): the simulated insurance fund is unlimited, so no profitable "
    "position is ever closed against a bankrupt one, as the venue may do in a liquidation cascade"
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def denial_reason(text: str) -> str:
    """The reason of a denial event without its client id (``"<cid>: <reason>"``)."""
    _, sep, reason = text.partition(": ")
    return reason if sep else text


def honest_figures(result: SimulationResult) -> dict[str, Any]:
    ex = result.exchange
    store = result.store
    balance = float(result.starting_balance)
    final = float(ex.equity())
    lev = np.vstack(list(result.leverage.values())) if result.leverage else np.zeros((1, 0))
    # each decision tick's share of the run is the interval after it; the point at the end has
    # none (see SimulationResult)
    lev = lev[:, : result.decision_ticks]
    in_market = float((lev > 0).any(axis=0).mean()) if lev.size else 0.0
    halts = [e for e in store.events if e.kind == "state" and "-> halted" in e.reason]
    # each decision tick's state (the guard's readings between ticks are not ticks)
    states = [snap.state for snap in store.equity if snap.decision]
    halted = sum(1 for s in states if s is TradingState.HALTED)
    denials = Counter(denial_reason(e.reason) for e in store.events if e.kind == "denied")
    top = denials.most_common(1)
    return {
        "requested_start": _iso(result.requested_start_ms)
        if result.requested_start_ms is not None
        else None,
        "start_note": result.start_note,
        "end_note": result.end_note,
        "total_return": round(final / balance - 1, 6) if balance > 0 else 0.0,
        "time_in_market": round(in_market, 6),
        "halted_at": _iso(halts[0].ts_ms) if halts else "-",
        "halt_reason": halts[0].reason if halts else "",
        "time_halted": round(halted / len(states), 6) if states else 0.0,
        "slippage_paid": round(float(ex.slippage_paid), 2),
        "loss_beyond_wallet": round(float(ex.insurance_shortfall), 2),
        "denials_by_reason": dict(denials.most_common()),
        "top_denial": f"{top[0][0]} ({top[0][1]})" if top else "-",
        "stale_hours": {s: round(h, 2) for s, h in sorted(result.stale_hours.items())},
        "not_simulated": NOT_SIMULATED,
    }
