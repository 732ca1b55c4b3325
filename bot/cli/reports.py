"""What ``bot status`` and ``bot history`` show, read from the state database only (the bot may
be running; these never touch the exchange)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.table import Table

from bot import numbers
from bot.cli.terminal import unclipped
from bot.config.models import BotConfig
from bot.domain.instrument import Instrument
from bot.logs import redact
from bot.risk.coverage import coverage, plain, recorded_stops
from bot.store.incidents import unprotected_since

if TYPE_CHECKING:  # `bot simulate` imports this module's command group: no SQL stack at import
    from bot.ports.store import Heartbeat
    from bot.store.sql import SqlStore

DAYS = Decimal(365)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _s(x: Decimal | None) -> str | None:
    return None if x is None else format(x, "f")


def status_data(config: BotConfig, store: SqlStore, now_ms: int | None = None) -> dict[str, Any]:
    """Everything the status view shows, as plain JSON-ready values (decimals as strings).

    What the store does not know is ``null``, never a zero: no positions recorded yet (the bot
    has not ticked, or its account could not be read) leaves every position and leverage unknown;
    a position whose mark or equity is unknown has an unknown leverage. Resting orders, open
    incidents and each contract's last decision are read by kind, however many other orders,
    events or decisions were recorded since. ``now_ms``: the time to judge the last job's age
    by (``bot status`` passes the wall clock's); without it the age is not judged.

    Nor is it when the last run on the database is a replay (``bot run --replay``): its jobs
    are stamped with replayed time, months behind the wall clock and running at ``--speed``,
    so their age said "bot down" of a replay running well (and the replay's own clock is not
    kept anywhere that would say whether it still runs). The last job is shown in replayed
    time, said so, with neither an age nor a verdict.
    """
    from bot.dashboard.account import owed_alerts, unreadable_run
    from bot.domain.enums import EventKind
    from bot.engine.reconcile import open_foreign
    from bot.engine.undecided import open_undecided
    from bot.store import views

    # The account as last read: a decision tick's record, or a guard's reading since (the
    # resting orders shown beside it are as fresh); "last tick" is the last decision's.
    equity = store.latest_equity()
    tick = store.latest_equity(decision=True)
    memory = store.load_risk_memory()
    snap = views.recorded_positions(store)
    positions = snap.positions if snap else None
    hedge = config.policies[0].hedge
    legs = [(c.symbol, str(c.direction)) for c in config.contracts]
    legs += [(h, "hedge") for h in (hedge.instruments if hedge is not None else ())]
    last_decision = views.latest_decisions(store, [sym for sym, _ in legs])
    resting: dict[str, dict[str, str]] = {}
    open_orders = store.open_orders()
    for o in open_orders:
        if o.request.purpose.is_protective:
            resting.setdefault(o.request.symbol, {})[o.request.purpose.name.lower()] = (
                _s(o.request.trigger_price) or ""
            )
    funding = _paper_funding(config, store)
    incidents = (EventKind.UNPROTECTED, EventKind.PROTECTED)
    unprotected = unprotected_since(store.recent_events(100_000, kinds=incidents))
    # Contracts without a decision for lack of a full window of candles (a gap): their last
    # decision below is older than it looks, and this says why no newer one came.
    undecided = open_undecided(
        store.recent_events(10_000, kinds=(EventKind.NO_DECISION, EventKind.DECIDING))
    )
    # Positions the engine's reconcile last found not the bot's, and not flat since.
    foreign = open_foreign(
        store.recent_events(10_000, kinds=(EventKind.FOREIGN, EventKind.FOREIGN_GONE))
    )
    n = Decimal(len(config.contracts))
    sleeve = equity.equity / n if equity is not None and equity.equity > 0 else None
    contracts = []
    for sym, direction in legs:  # the hedge legs are shown like any contract
        pos = positions.get(sym) if positions is not None else None
        held = pos is not None and pos.is_open
        rec = last_decision.get(sym)
        # the mark the position was read at (as fresh as the positions), else the decision's
        mark, mark_ms = (
            (snap.marks[sym], snap.ts_ms)
            if snap is not None and sym in snap.marks
            else (rec.mark_price, rec.ts_ms)
            if rec
            else (None, None)
        )
        vol = rec.volatility if rec else None
        row: dict[str, Any] = {"symbol": sym, "direction": direction}
        # No positions recorded at all: unknown, not flat.
        row["position"] = None if positions is None else _s(pos.qty) if pos else "0"
        row["entry_price"] = _s(pos.entry_price) if pos and held else None
        # A hedge leg is sized on the whole equity, a traded contract on its sleeve.
        base = equity.equity if direction == "hedge" and equity is not None else sleeve
        if positions is None:
            row["current_leverage"] = None
        elif not held:
            row["current_leverage"] = "0"
        elif pos is not None and mark and base:
            row["current_leverage"] = _s((pos.notional(mark) / base).quantize(Decimal("0.01")))
        else:
            row["current_leverage"] = None  # held, but its mark or the equity is unknown
        row["target_leverage"] = _s(rec.decision.target_leverage) if rec else None
        liq = pos.liquidation_price if pos and held else None
        row["liquidation_price"] = _s(liq)
        if liq is not None and mark and vol and vol > 0:
            units = abs(mark - liq) / (mark * vol / DAYS.sqrt())
            row["liquidation_distance_vol_units"] = _s(units.quantize(Decimal("0.01")))
        else:
            row["liquidation_distance_vol_units"] = None
        row["stop_loss"] = resting.get(sym, {}).get("stop_loss")
        row["take_profit"] = resting.get(sym, {}).get("take_profit")
        row["mark"] = _s(mark)
        row["mark_as_of"] = _iso(mark_ms)
        row["next_funding"] = funding.get(sym)
        row["unprotected_since"] = _iso(unprotected.get(sym))
        # A position the bot did not open (as the engine's reconcile decided and recorded):
        # left alone; its stop, if any, is not the bot's order and not known here.
        row["foreign"] = bool(held and direction != "follow" and sym in foreign)
        # How much of the position the bot's resting stops do not cover (bot.risk.coverage, as
        # the alerts count it); unknown for a position not held or not the bot's.
        row["unprotected_qty"] = (
            plain(coverage(pos.qty, recorded_stops(open_orders, sym)).uncovered)
            if pos is not None and held and not row["foreign"]
            else None
        )
        row["last_decision"] = _iso(rec.ts_ms) if rec else None
        row["reason"] = rec.decision.reason if rec else None
        stretch = undecided.get(sym)
        row["no_decision_since"] = _iso(stretch.since_ms) if stretch else None
        row["no_decision"] = stretch.reason if stretch else None
        contracts.append(row)
    unreadable_since, unreadable_reads = unreadable_run(store)
    heartbeat = store.last_heartbeat()
    replay = views.latest_run_mode(store) == views.REPLAY_RUN_MODE
    if replay:
        now_ms = None  # replayed time: not comparable with the wall clock (docstring)
    missed, failing = owed_alerts(config, store)
    return {
        "account": config.account.name,
        # When the equity below was read: a tick's record or a guard's reading since.
        "as_of": _iso(equity.ts_ms) if equity else None,
        "last_tick": _iso(tick.ts_ms) if tick else None,
        # The last job (tick, guard, funding, rollover) the bot completed: a running bot
        # completes one every guard interval, whatever its policy's timeframe. None: none
        # recorded (a bot older than the heartbeat, or none completed yet).
        "last_job": heartbeat.job if heartbeat else None,
        "last_job_at": _iso(heartbeat.ts_ms) if heartbeat else None,
        # The last run is a replay: times are replayed ones, the age is not judged.
        "replay": replay,
        "last_job_age_s": (
            max(0, now_ms - heartbeat.ts_ms) // 1000
            if heartbeat is not None and now_ms is not None
            else None
        ),
        # Older than a running bot ever lets it get (the /healthz rule): said, in words, as
        # "bot_down", or as "jobs_failing" when its failed jobs say it runs; and the venue's
        # hold in force ("venue_hold_until", "venue_hold"), under which no job completes.
        **_trouble(config, store, heartbeat, now_ms),
        # Critical alerts that reached no one since the alert path last delivered one: the
        # trader is not being paged (the dashboard's ALERTS NOT DELIVERED banner).
        "alerts_not_delivered": len(missed),
        "alerts_not_delivered_since": _iso(missed[-1].ts_ms) if missed else None,
        # Each alert destination critical alerts are still owed to (its URL, the credentials
        # redacted): with several, the one that fails while the others page the trader.
        "alert_destinations_failing": [
            {"destination": f.label, "alerts": f.alerts, "since": _iso(f.since_ms)} for f in failing
        ],
        # The newest reads of the account failed: every figure here is as of the last reading.
        "unreadable_since": _iso(unreadable_since),
        "unreadable_reads": unreadable_reads,
        "positions_as_of": _iso(snap.ts_ms) if snap else None,
        "equity": _s(equity.equity) if equity else None,
        "wallet": _s(equity.wallet) if equity else None,
        "unrealized_pnl": _s(equity.unrealized_pnl) if equity else None,
        # No risk state recorded: the bot has not run on this database; unknown, not "active".
        "state": memory.state.value if memory else None,
        "state_reason": memory.state_reason if memory else None,
        "peak_equity": _s(memory.peak_equity) if memory else None,
        # `bot halt` / `bot resume` posted and not yet applied: the state above is the bot's
        # until its next job applies them.
        "pending_commands": [
            {"id": c.id, "time": _iso(c.ts_ms), "kind": c.kind, "args": c.args}
            for c in views.pending_commands(store)
        ],
        "contracts": contracts,
    }


def _paper_funding(config: BotConfig, store: SqlStore) -> dict[str, dict[str, str | None]]:
    payload = store.load_paper_state(config.account.name)
    if payload is None:
        return {}
    funding = json.loads(payload).get("funding", {})
    return {
        sym: {"rate": f.get("rate"), "time": _iso(f.get("next_settlement_ms"))}
        for sym, f in funding.items()
    }


def contract_specs(config: BotConfig) -> dict[str, Instrument]:
    """The specs of the configured contracts and hedge legs (display precision) as the bot
    resolves them: the user's catalogue first, then the bundled snapshot; unknown ones left out."""
    from bot.dashboard.account import known_instruments

    hedge = config.policies[0].hedge
    symbols = [c.symbol for c in config.contracts] + list(hedge.instruments if hedge else ())
    return {s: i for s, i in known_instruments(config, symbols).items() if i is not None}


def _d(text: Any) -> Decimal | None:
    return None if text is None or text == "" else Decimal(str(text))


def _trouble(
    config: BotConfig, store: SqlStore, heartbeat: Heartbeat | None, now_ms: int | None
) -> dict[str, Any]:
    """The bot down, or running with its jobs failing (bot.dashboard.liveness), and the
    venue's recorded hold while in force (bot.runtime.venue_hold); none judged without a time."""
    from bot.dashboard.liveness import failure_since, jobs_failing
    from bot.runtime.venue_hold import hold_in_force, hold_note

    last_job_ms = heartbeat.ts_ms if heartbeat else None
    failure = failure_since(store, last_job_ms)
    guard_ms = config.runtime.guard_seconds * 1000
    failing = (
        jobs_failing(failure, last_job_ms, heartbeat.job if heartbeat else None, guard_ms, now_ms)
        if now_ms is not None
        else None
    )
    hold = hold_in_force(store, now_ms) if now_ms is not None else None
    return {
        "bot_down": None if failing else _job_silence(config, last_job_ms, now_ms),
        "jobs_failing": failing,
        "last_job_failed_at": _iso(failure.ts_ms) if failure else None,
        "venue_hold_until": _iso(hold[0]) if hold else None,
        "venue_hold": hold_note(hold[0], hold[1], named=hold[2]) if hold else None,
    }


def _job_silence(config: BotConfig, last_job_ms: int | None, now_ms: int | None) -> str | None:
    """Why the bot seems down (no job completed for longer than /healthz allows), or None."""
    if now_ms is None:
        return None
    from bot.dashboard.liveness import job_silence_limit_ms, job_silence_ms

    guard_ms = config.runtime.guard_seconds * 1000
    silent = job_silence_ms(last_job_ms, guard_ms, now_ms)
    if silent is None:
        return None
    limit = job_silence_limit_ms(guard_ms)
    return (
        f"no job completed for {silent // 1000} s (more than {limit // 1000} s): the bot process "
        "may be down; open positions have only the stops resting on the exchange"
    )


def _alert_rows(head: Table, data: dict[str, Any]) -> None:
    """The critical alerts that reached no one, and each destination that fails."""
    if data.get("alerts_not_delivered"):
        head.add_row(
            "ALERTS NOT DELIVERED",
            f"{data['alerts_not_delivered']} critical alert(s) since "
            f"{data['alerts_not_delivered_since']} reached no one (the destination fails or "
            "the hourly limit holds them): check runtime.alert_urls and the bot's log",
        )
    for failing in data.get("alert_destinations_failing") or ():
        head.add_row(
            "ALERT DESTINATION FAILING",
            f"{failing['destination']}: {failing['alerts']} critical alert(s) since "
            f"{failing['since']} not delivered to it (the bot retries it; it holds nothing "
            "back from the other destinations)",
        )


def status_tables(
    data: dict[str, Any], specs: Mapping[str, Instrument] | None = None
) -> list[Table]:
    """The status view. Money to cents, prices to the contract's tick, sizes to its step (the
    JSON keeps the exact values)."""
    specs = specs or {}
    head = Table(title=f"account {data['account']}", show_header=False)
    head.add_column("field", no_wrap=True)
    # (folded, not cut: a hold's end or a failing job's reason is read whole)
    head.add_column("value", justify="right", overflow="fold")
    head.add_row("as of", str(data["as_of"] or "no tick yet"))
    head.add_row("positions as of", str(data.get("positions_as_of") or "-"))
    head.add_row("last tick", str(data.get("last_tick") or "-"))
    age = data.get("last_job_age_s")
    if data.get("replay"):
        when = " (replayed time: a replay's age and liveness are not judged on the wall clock)"
    else:
        when = f" ({age} s ago)" if age is not None else ""
    head.add_row(
        "last job",
        f"{data['last_job']} at {data['last_job_at']}{when}"
        if data.get("last_job")
        else "none recorded (a bot older than the heartbeat, or none completed yet)",
    )
    if data.get("bot_down"):
        head.add_row("BOT NOT RUNNING?", str(data["bot_down"]))
    if data.get("jobs_failing"):
        head.add_row("JOBS FAILING", str(data["jobs_failing"]))
    if data.get("venue_hold"):
        head.add_row("VENUE HOLD", str(data["venue_hold"]))
    _alert_rows(head, data)
    if data.get("unreadable_since"):
        head.add_row(
            "ACCOUNT UNREADABLE",
            f"since {data['unreadable_since']} ({data['unreadable_reads']} reads in a row): "
            f"figures and stops as last read, at {data['as_of'] or '-'}",
        )
    for key in ("equity", "wallet", "unrealized_pnl", "peak_equity"):
        head.add_row(key.replace("_", " "), numbers.money(_d(data[key]), grouping=True))
    head.add_row("state", str(data["state"] or "unknown (no risk state recorded)"))
    head.add_row("state reason", str(data["state_reason"] or "-"))
    for c in data.get("pending_commands", []):
        head.add_row(
            "waiting for the bot", f"{c['kind']} {c['args']} (command {c['id']}, {c['time']})"
        )
    table = unclipped(contracts_table(data, specs))
    reasons = Table(title="last decisions", show_header=False)
    reasons.add_column("contract", no_wrap=True)
    reasons.add_column("time", no_wrap=True)
    reasons.add_column("reason", overflow="fold")
    for row in data["contracts"]:
        reason = row["reason"] or "-"
        if row.get("foreign"):
            reason = "position not opened by this bot: left alone (its stop is not known here)"
        elif row.get("no_decision"):
            reason = (
                f"NO DECISION since {row['no_decision_since']}: {row['no_decision']}; "
                f"the last one: {reason}"
            )
        reasons.add_row(row["symbol"], row["last_decision"] or "-", reason)
    return [head, table, reasons]


STATUS_COLUMNS = (
    "contract",
    "position",
    "entry",
    "mark",
    "leverage",
    "target",
    "liquidation",
    "liq dist (vol)",
    "stop-loss",
    "take-profit",
    "unprotected since",
    "funding rate",
    "next funding",
)


def contracts_table(
    data: dict[str, Any], specs: Mapping[str, Instrument], *, plain: bool = False
) -> Table:
    """One row per contract; ``plain`` (CSV): no thousands separators, funding as a fraction."""
    group = not plain
    table = Table(title="contracts")
    for col in STATUS_COLUMNS:
        text = col in ("contract", "next funding", "unprotected since")
        # (a mark with its time may fold: the time goes below the price)
        table.add_column(
            col, justify="left" if text else "right", no_wrap=not text and col != "mark"
        )
    for row in data["contracts"]:
        spec = specs.get(row["symbol"])
        tick = spec.tick_size if spec else None
        step = spec.step_size if spec else None
        f = row.get("next_funding") or {}
        rate = _d(f.get("rate"))
        table.add_row(
            row["symbol"],
            numbers.held_qty(_d(row["position"]), step),
            numbers.price(_d(row["entry_price"]), tick, grouping=group),
            _mark_cell(row, data.get("positions_as_of"), tick, group),
            numbers.fixed(_d(row["current_leverage"]), 2),
            numbers.fixed(_d(row["target_leverage"]), 2),
            numbers.price(_toward_mark(row, spec), tick, grouping=group),
            numbers.fixed(_d(row["liquidation_distance_vol_units"]), 2),
            numbers.price(_d(row["stop_loss"]), tick, grouping=group),
            numbers.price(_d(row["take_profit"]), tick, grouping=group),
            _unprotected_cell(row),
            (str(rate) if rate is not None else "") if plain else numbers.percent(rate, 4),
            str(f.get("time") or "-"),
        )
    return table


def _mark_cell(
    row: dict[str, Any], positions_as_of: str | None, tick: Decimal | None, group: bool
) -> str:
    """The mark the leverage and the liquidation distance are measured at, with its time
    when it is not the positions' (the last decision's, on a contract not held)."""
    shown = numbers.price(_d(row.get("mark")), tick, grouping=group)
    when = row.get("mark_as_of")
    return f"{shown} (as of {when})" if when and when != positions_as_of else shown


def _unprotected_cell(row: dict[str, Any]) -> str:
    """Since when the position has been unprotected, and how much of it no stop covers."""
    since = row.get("unprotected_since")
    naked = row.get("unprotected_qty")
    part = f"{naked} not covered by a stop" if naked not in (None, "0") else None
    if since and part:
        return f"{since}; {part}"
    return str(since or part or "-")


def _toward_mark(row: dict[str, Any], spec: Instrument | None) -> Decimal | None:
    """The row's liquidation price on the tick grid, rounded toward the mark (up for a long,
    down for a short): a coarse tick never shows more room than the position has."""
    liq = _d(row["liquidation_price"])
    qty = _d(row["position"])
    if liq is None or spec is None or not qty:
        return liq
    return spec.liquidation_on_grid(liq, 1 if qty > 0 else -1)


def history_tables(store: SqlStore, limit: int) -> list[Table]:
    decisions = Table(title=f"last {limit} decisions")
    for col in ("time", "symbol", "target lev", "target qty", "reason"):
        decisions.add_column(col)
    for r in store.recent_decisions(limit):
        d = r.decision
        decisions.add_row(
            _iso(r.ts_ms) or "",
            d.symbol,
            _s(d.target_leverage) or "",
            _s(d.target_qty) or "",
            d.reason,
        )
    orders = Table(title=f"last {limit} orders")
    for col in ("updated", "client id", "purpose", "side", "amount", "trigger", "status", "error"):
        orders.add_column(col)
    for o in store.recent_orders(limit):
        q = o.request
        orders.add_row(
            _iso(o.updated_ms) or "",
            o.client_id,
            q.purpose.name.lower(),
            q.side.value,
            _s(q.amount) or "",
            _s(q.trigger_price) or "",
            o.status.value,
            redact(o.error or ""),  # rows recorded before errors were redacted on write
        )
    events = Table(title=f"last {limit} risk events")
    for col in ("time", "kind", "symbol", "state", "reason"):
        events.add_column(col)
    for e in store.recent_events(limit):
        events.add_row(_iso(e.ts_ms) or "", e.kind, e.symbol or "", e.state.value, e.reason)
    keep_whole = {"time", "updated", "target lev", "target qty", "amount", "trigger", "client id"}
    return [unclipped(t, keep_whole) for t in (decisions, orders, events)]
