"""Read-only queries of the SQL store for the dashboard and the metrics: filtered history,
the equity series, pending operator commands, counts. They never write, so a dashboard process
may run them beside the bot on the same database (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot.domain.orders import Fill
from bot.domain.position import Position
from bot.ports.store import DecisionRecord, OrderRecord, RiskEvent
from bot.store import tables as t
from bot.store.run_modes import REPLAY_RUN_MODE as REPLAY_RUN_MODE
from bot.store.sql import AlertRecord, SqlStore, alert_records

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class EquityPoint:
    id: int  # row id: increases with every snapshot recorded
    ts_ms: int
    equity: Decimal


@dataclass(frozen=True, slots=True)
class PendingCommand:
    id: int
    ts_ms: int
    kind: str
    args: str


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``symbol`` (None: all) and ``[since_ms, until_ms]`` (None: open-ended) of a journal view."""

    symbol: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def _session(store: SqlStore) -> AbstractContextManager[Session]:
    """A read session; a database that cannot answer (locked, gone, unreachable) raises
    :class:`bot.store.sql.StoreUnavailable` naming it, as every read of the store does."""
    return store._read()  # the store's own read path (same package)


def _newest_first(stmt: SelectOfScalar[R], ts: Any, row_id: Any) -> SelectOfScalar[R]:
    """Newest first by ``ts``; rows of one millisecond in reverse order of recording."""
    return stmt.order_by(col(ts).desc(), col(row_id).desc())


def _journal(
    stmt: SelectOfScalar[R],
    window: TimeWindow,
    ts: Any,
    row_id: Any,
    limit: int,
    of_symbol: Callable[[str], Any],
) -> SelectOfScalar[R]:
    """``stmt`` restricted to ``window`` (``of_symbol`` builds the symbol condition, ``ts`` is
    the time column), newest first, at most ``limit`` rows: the shape of every journal view."""
    if window.symbol is not None:
        stmt = stmt.where(of_symbol(window.symbol))
    if window.since_ms is not None:
        stmt = stmt.where(col(ts) >= window.since_ms)
    if window.until_ms is not None:
        stmt = stmt.where(col(ts) <= window.until_ms)
    return _newest_first(stmt, ts, row_id).limit(limit)


def equity_series(store: SqlStore, after_id: int = 0) -> list[EquityPoint]:
    """Equity snapshots recorded after row ``after_id`` (0: all), in recording order."""
    e = t.EquityRow
    stmt = (
        select(col(e.id), col(e.ts_ms), col(e.equity))
        .where(col(e.id) > after_id)
        .order_by(col(e.id))
    )
    with _session(store) as session:
        return [EquityPoint(int(i or 0), int(ts), Decimal(eq)) for i, ts, eq in session.exec(stmt)]


@dataclass(frozen=True, slots=True)
class RecordedPositions:
    """The positions the bot last recorded (a decision tick's, or a guard's reading since) and
    the mark each was valued at then (a position recorded before revision 0007 has none)."""

    ts_ms: int
    positions: dict[str, Position]
    marks: dict[str, Decimal]


def recorded_positions(store: SqlStore) -> RecordedPositions | None:
    """The newest positions recorded with their marks, in one read (a record the bot writes
    meanwhile cannot pair one snapshot's positions with another's marks); None before the
    first."""
    h, p = t.PositionSnapshotRow, t.PositionRow
    with _session(store) as session:
        header = session.exec(_newest_first(select(h), h.ts_ms, h.id).limit(1)).first()
        if header is None:
            return None
        rows = session.exec(
            select(p).where(col(p.snapshot_id) == header.id).order_by(col(p.id))
        ).all()
    return RecordedPositions(
        header.ts_ms,
        {r.symbol: t.position_domain(r) for r in rows},
        {r.symbol: r.mark_price for r in rows if r.mark_price is not None},
    )


def paper_state(store: SqlStore, name: str) -> tuple[str, int] | None:
    """The paper account ``name``'s JSON document and when it was saved; None: none saved."""
    with _session(store) as session:
        row = session.get(t.PaperStateRow, name)
    return (row.payload, row.updated_ms) if row is not None else None


def decisions(store: SqlStore, window: TimeWindow, limit: int) -> list[DecisionRecord]:
    """Decisions in ``window``, newest first."""
    d = t.DecisionRow
    stmt = _journal(select(d), window, d.ts_ms, d.id, limit, lambda s: col(d.symbol) == s)
    with _session(store) as session:
        return [t.decision_record(r) for r in session.exec(stmt)]


def latest_decisions(store: SqlStore, symbols: list[str]) -> dict[str, DecisionRecord]:
    """The last decision of each symbol (one indexed query per symbol)."""
    d = t.DecisionRow
    out: dict[str, DecisionRecord] = {}
    with _session(store) as session:
        for sym in symbols:
            stmt = _newest_first(select(d).where(col(d.symbol) == sym), d.ts_ms, d.id).limit(1)
            row = session.exec(stmt).first()
            if row is not None:
                out[sym] = t.decision_record(row)
    return out


def orders(store: SqlStore, window: TimeWindow, limit: int) -> list[OrderRecord]:
    """Orders changed in ``window``, newest change first."""
    o = t.OrderRow
    stmt = _journal(select(o), window, o.updated_ms, o.id, limit, lambda s: col(o.symbol) == s)
    with _session(store) as session:
        return [t.order_record(r) for r in session.exec(stmt)]


def open_orders(store: SqlStore) -> list[OrderRecord]:
    o = t.OrderRow
    stmt = select(o).where(col(o.status) == "open").order_by(col(o.id))
    with _session(store) as session:
        return [t.order_record(r) for r in session.exec(stmt)]


def events(store: SqlStore, window: TimeWindow, limit: int) -> list[RiskEvent]:
    """Risk events in ``window``, newest first (an event without a symbol matches every one)."""
    e = t.RiskEventRow
    stmt = _journal(
        select(e),
        window,
        e.ts_ms,
        e.id,
        limit,
        lambda s: (col(e.symbol) == s) | col(e.symbol).is_(None),
    )
    with _session(store) as session:
        return [t.event_record(r) for r in session.exec(stmt)]


def events_of_kinds(store: SqlStore, kinds: tuple[str, ...], limit: int) -> list[RiskEvent]:
    """The newest ``limit`` events of the given kinds, newest first."""
    e = t.RiskEventRow
    stmt = _newest_first(select(e).where(col(e.kind).in_(kinds)), e.ts_ms, e.id).limit(limit)
    with _session(store) as session:
        return [t.event_record(r) for r in session.exec(stmt)]


def last_state_change(store: SqlStore) -> RiskEvent | None:
    e = t.RiskEventRow
    stmt = _newest_first(select(e).where(col(e.kind) == "state"), e.ts_ms, e.id)
    with _session(store) as session:
        row = session.exec(stmt.limit(1)).first()
    return t.event_record(row) if row is not None else None


def fills(store: SqlStore, window: TimeWindow, limit: int) -> list[Fill]:
    f = t.FillRow
    stmt = _journal(select(f), window, f.ts_ms, f.id, limit, lambda s: col(f.symbol) == s)
    with _session(store) as session:
        return [t.fill_domain(r) for r in session.exec(stmt)]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run ``bot run`` recorded at its start."""

    id: int
    mode: str  # live, paper, paper-replay
    config_path: str
    venue: str | None  # the venue account of a live run; None for paper (and before 0006)


def latest_run(store: SqlStore) -> RunRecord | None:
    """The run started last on this database; None when no run was recorded. By recording
    order: a replay records its start in replayed time."""
    r = t.RunRow
    stmt = select(r).order_by(col(r.id).desc()).limit(1)
    with _session(store) as session:
        row = session.exec(stmt).first()
    if row is None:
        return None
    return RunRecord(int(row.id or 0), row.mode, row.config_path, row.venue)


def latest_run_mode(store: SqlStore) -> str | None:
    """The mode of the run started last on this database (live, paper, paper-replay); None
    when no run was recorded."""
    run = latest_run(store)
    return run.mode if run is not None else None


def pending_commands(store: SqlStore) -> list[PendingCommand]:
    """Operator commands posted and not yet applied by the bot, oldest first."""
    c = t.CommandRow
    stmt = select(c).where(col(c.consumed).is_(False)).order_by(col(c.id))
    with _session(store) as session:
        return [PendingCommand(int(r.id or 0), r.ts_ms, r.kind, r.args) for r in session.exec(stmt)]


def recent_alerts(store: SqlStore, limit: int) -> list[AlertRecord]:
    a = t.AlertRow
    stmt = _newest_first(select(a), a.ts_ms, a.id).limit(limit)
    with _session(store) as session:
        return alert_records(session, session.exec(stmt).all())


@dataclass(frozen=True, slots=True)
class OwedAlert:
    """A critical alert still owed to some of the configured destinations (``owed_to``, the
    ids of ``bot.alerts.destination_id``): the bot keeps trying them (``Notifier.restore``
    holds it again at a start) and ``bot status`` counts it."""

    id: int
    ts_ms: int
    key: str
    severity: str
    message: str
    owed_to: frozenset[str]
    # recorded before revision 0008 (no row of ``alert_deliveries``): judged by the rule of
    # then, owed to every destination
    legacy: bool = False


def owed_critical(
    store: SqlStore, destinations: Collection[str], *, dedup_ms: int, limit: int = 1000
) -> list[OwedAlert]:
    """The critical alerts still owed to one of ``destinations``, newest first, at most
    ``limit``: queued for it (a row of ``alert_deliveries``), not delivered there, and no
    alert of the same key at the same time or later delivered there since (a condition alerted
    again whose newer alert got through: the incident reached it). Whatever their age: a halt
    held while the destination failed is owed until it arrives, not for an hour.

    An alert recorded before revision 0008 has no row: it is owed to every destination as
    ``bot status`` judged it then: not delivered, newer than the newest alert delivered
    anywhere, and no alert of its key delivered within the dedup window before it (a
    repeat)."""
    wanted = frozenset(destinations)
    if not wanted:
        return []
    a, d = t.AlertRow, t.AlertDeliveryRow
    with _session(store) as session:
        pending = (
            select(a, d.destination)
            .join(d, col(d.alert_id) == col(a.id))
            .where(
                col(d.delivered_ms).is_(None),
                col(d.destination).in_(wanted),
                col(a.severity) == "critical",
            )
        )
        rows: dict[int, t.AlertRow] = {}
        owed: dict[int, set[str]] = {}
        for row, destination in session.exec(pending):
            rows[_row_id(row.id)] = row
            owed.setdefault(_row_id(row.id), set()).add(destination)
        # When each key last reached each destination: at or after an alert, that settles it.
        reached: dict[tuple[str, str], int] = {}
        keys = {r.key for r in rows.values()}
        if keys:
            delivered = (
                select(a.key, d.destination, func.max(a.ts_ms))
                .join(d, col(d.alert_id) == col(a.id))
                .where(
                    col(a.key).in_(keys),
                    col(d.destination).in_(wanted),
                    col(d.delivered_ms).is_not(None),
                )
                .group_by(a.key, d.destination)
            )
            for key, destination, ts_ms in session.exec(delivered):
                reached[key, destination] = ts_ms
        out = []
        for row_id, r in rows.items():
            left = frozenset(
                dest for dest in owed[row_id] if reached.get((r.key, dest), -1) < r.ts_ms
            )
            if left:
                out.append(OwedAlert(row_id, r.ts_ms, r.key, r.severity, r.message, left))
        out += _legacy_owed(session, wanted, dedup_ms, limit)
    out.sort(key=lambda o: (o.ts_ms, o.id), reverse=True)
    return out[:limit]


def _legacy_owed(
    session: Session, destinations: frozenset[str], dedup_ms: int, limit: int
) -> list[OwedAlert]:
    """The critical alerts recorded before revision 0008 (no ``alert_deliveries`` row) that
    reached no one since the alert path last delivered an alert, as the rule of then."""
    a, d = t.AlertRow, t.AlertDeliveryRow
    reached = select(d.alert_id).where(col(d.delivered_ms).is_not(None)).limit(1)
    if session.exec(reached).first() is not None:
        return []  # the path delivered since: what it missed before is history, as then
    first = session.exec(select(func.min(d.alert_id))).one()
    stmt = select(a).where(col(a.severity) == "critical", col(a.delivered).is_(False))
    if first is not None:
        stmt = stmt.where(col(a.id) < first)
    last = session.exec(
        _newest_first(select(a).where(col(a.delivered).is_(True)), a.ts_ms, a.id).limit(1)
    ).first()
    if last is not None:
        stmt = stmt.where(
            or_(
                col(a.ts_ms) > last.ts_ms,
                and_(col(a.ts_ms) == last.ts_ms, col(a.id) > _row_id(last.id)),
            )
        )
    out = []
    for r in session.exec(_newest_first(stmt, a.ts_ms, a.id).limit(limit)):
        earlier = select(a.id).where(
            col(a.key) == r.key,
            col(a.delivered).is_(True),
            col(a.ts_ms) >= r.ts_ms - dedup_ms,
            or_(col(a.ts_ms) < r.ts_ms, and_(col(a.ts_ms) == r.ts_ms, col(a.id) < _row_id(r.id))),
        )
        if session.exec(earlier.limit(1)).first() is None:
            out.append(
                OwedAlert(_row_id(r.id), r.ts_ms, r.key, r.severity, r.message, destinations, True)
            )
    return out


def _row_id(row_id: int | None) -> int:
    return int(row_id or 0)


def order_counts(store: SqlStore) -> dict[str, int]:
    """Number of orders by status (``open``, ``filled``, ``rejected``...)."""
    o = t.OrderRow
    stmt = select(o.status, func.count()).group_by(o.status)
    with _session(store) as session:
        return {str(status): int(n) for status, n in session.exec(stmt)}


def event_counts(store: SqlStore) -> dict[str, int]:
    """Number of risk events by kind (``state``, ``denied``, ``tick_failed``...)."""
    e = t.RiskEventRow
    stmt = select(e.kind, func.count()).group_by(e.kind)
    with _session(store) as session:
        return {str(kind): int(n) for kind, n in session.exec(stmt)}


def orders_with_errors(store: SqlStore) -> int:
    """Orders the exchange answered with an error (rejected, or an error recorded)."""
    o = t.OrderRow
    stmt = select(func.count()).where(col(o.error).is_not(None))
    with _session(store) as session:
        return int(session.exec(stmt).one())
