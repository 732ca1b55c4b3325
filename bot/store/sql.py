"""The SQL store (SQLModel): SQLite by default, PostgreSQL by URL. Used by paper and live trading.

Every write is one short transaction committed before the method returns, so an order intent is
durable before it is sent; no transaction is held between calls (SQLite has a single writer).
Each call uses a fresh ``Session``: one writer thread plus reader threads (``bot status``, the
alerting thread) may share one :class:`SqlStore`.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, and_, create_engine, delete, event, make_url, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DatabaseError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, SQLModel, col, select

from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.domain.market import VenueRestriction
from bot.domain.orders import Fill, Order, OrderRequest
from bot.domain.position import Position
from bot.errors import BotError, ConfigError
from bot.logs import redact
from bot.ports.store import (
    DecisionRecord,
    EquitySnapshot,
    Heartbeat,
    ListingReport,
    OrderRecord,
    RiskEvent,
    RiskMemory,
    StorePort,
)
from bot.store import tables as t
from bot.store.migrate import engine_url, ensure_current, require_driver, safe_url, sqlite_file
from bot.store.types import check_exact

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
_UNRESOLVED = (OrderStatus.PENDING_SUBMIT.value, OrderStatus.UNKNOWN.value)


class DuplicateIntent(BotError, ValueError):
    """``save_intent`` for a client order id that is already recorded (``MemoryStore`` raises
    ``ValueError`` for the same mistake, hence the second base)."""


class StoreUnavailable(BotError):
    """The state database cannot be written or read (disk full, read-only file, database
    locked, connection lost, no free connection in the pool). Nothing that needs a record is
    done without it: an order whose intent cannot be persisted is never sent, but for a
    reduce-only stop for a position without one (``Engine.protect_without_store``)."""


class StoreReplaced(StoreUnavailable):
    """The state database's identity (``database_identity``, written with its schema) changed
    or went away under the running bot: its tables were dropped and created again, or an empty
    dump restored. The store then refuses every read and write until the bot is restarted:
    whatever the bot recorded there would be written into a database that holds none of its
    state (a halt, the drawdown peak, which positions are its own, its order intents)."""


# Failures of the database itself, not of what was written: a constraint (IntegrityError), a
# value (DataError) or a statement (ProgrammingError) keep their own exception.
_UNAVAILABLE = (OperationalError, InterfaceError, InternalError, NotSupportedError)


def _unavailable(exc: DBAPIError, what: str, url: str) -> StoreUnavailable:
    first = str(exc.orig or exc).strip().splitlines()
    reason = first[0] if first else type(exc.orig or exc).__name__
    return StoreUnavailable(f"state database {safe_url(url)}: cannot {what}: {reason}")


# PostgreSQL's undefined_table (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_UNDEFINED_TABLE = "42P01"


def _tables_gone(exc: DBAPIError) -> bool:
    """A PostgreSQL statement on a table that does not exist: the bot only opens a database at
    its full schema, so its tables went away under it (SQLite's "no such table" is an
    OperationalError, unavailable already)."""
    return isinstance(exc, ProgrammingError) and (
        getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE
    )


def _emptied(exc: DBAPIError, what: str, url: str) -> StoreUnavailable:
    first = str(exc.orig or exc).strip().splitlines()
    return StoreUnavailable(
        f"state database {safe_url(url)}: cannot {what}: {first[0] if first else 'no table'}: "
        "the database was dropped and created again, or emptied, under the running bot: "
        "nothing it records would be kept with its history. Restore it (or its backup) and "
        "restart the bot"
    )


def _pool_exhausted(exc: PoolTimeout, what: str, url: str) -> StoreUnavailable:
    """Every pooled connection stayed in use for the pool's whole timeout: the database may be
    up, but this process cannot reach it (a query stuck on a lock, connections never given back,
    more threads than the pool holds). SQLAlchemy's own line names the pool's size and timeout
    (https://docs.sqlalchemy.org/en/20/errors.html#error-3o7r)."""
    detail = str(exc).split(" (Background on this error", 1)[0].strip()
    return StoreUnavailable(
        f"state database {safe_url(url)}: cannot {what}: no free connection in the "
        f"connection pool ({detail})"
    )


def _store_failure(exc: DBAPIError | PoolTimeout, what: str, url: str) -> StoreUnavailable | None:
    """The :class:`StoreUnavailable` a failure of the database itself is (``what``: the work it
    stopped, "read" or "write ..."), for a read and a write alike; None for a failure of what was
    written (a constraint, a bad statement), which stays as it is."""
    if isinstance(exc, PoolTimeout):
        return _pool_exhausted(exc, what, url)
    if isinstance(exc, _UNAVAILABLE) or type(exc) is DatabaseError:  # "file is not a database"
        return _unavailable(exc, what, url)
    if _tables_gone(exc):
        return _emptied(exc, what, url)
    return None


_WRITTEN_TABLE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE)\s+"?(\w+)', re.IGNORECASE)


def _first_inexact(values: Mapping[str, Any]) -> tuple[str, Exception] | None:
    """The first decimal of ``values`` (by column name) a decimal column cannot hold exactly,
    and why; None when every one fits."""
    for name, value in values.items():
        if isinstance(value, Decimal | float):
            try:
                check_exact(value)
            except (ValueError, TypeError) as exc:
                return name, exc
    return None


def _refused_at(exc: StatementError) -> str:
    """``table.column: `` of the value a decimal column refused (a statement's parameters are
    keyed by column name), or "" when it cannot be told: the bind processor only sees the value.
    """
    found = _WRITTEN_TABLE.match(exc.statement or "")
    table = f"{found.group(1)}." if found else ""
    rows = exc.params if isinstance(exc.params, list | tuple) else [exc.params]
    for row in rows:
        refused = _first_inexact(row) if isinstance(row, Mapping) else None
        if refused is not None:
            return f"{table}{refused[0]}: "
    return ""


def _exact(table: Table, values: dict[str, Any], what: str) -> dict[str, Any]:
    """``values`` for a Core ``UPDATE``/upsert of ``table``, each decimal checked first: the
    error of such a statement carries no parameters to name the refused column by."""
    refused = _first_inexact(values)
    if refused is not None:
        name, exc = refused
        raise ValueError(f"cannot store {what}: {table.name}.{name}: {exc}") from None
    return values


def _table_missing(exc: DBAPIError) -> bool:
    """A statement on a table that does not exist, on PostgreSQL or SQLite."""
    if _tables_gone(exc):
        return True
    return isinstance(exc, OperationalError) and "no such table" in str(exc.orig or exc)


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``; None when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class UnknownOrder(BotError, KeyError):
    """``update_order`` for a client order id that was never recorded."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    ts_ms: int
    key: str
    severity: str
    message: str
    delivered: bool  # it reached every destination it was owed to
    # The destinations (``bot.alerts.destination_id``) it was queued for, and those it reached
    # (table ``alert_deliveries``); both empty for a repeat within the dedup window, without a
    # destination, or for an alert recorded before revision 0008.
    owed: frozenset[str] = frozenset()
    delivered_to: frozenset[str] = frozenset()


def alert_records(session: Session, rows: Sequence[t.AlertRow]) -> list[AlertRecord]:
    """``rows`` as records, with the destinations each was owed to and reached (one query)."""
    ids = [_id(r.id) for r in rows]
    owed: dict[int, set[str]] = {}
    reached: dict[int, set[str]] = {}
    if ids:
        d = t.AlertDeliveryRow
        for row in session.exec(select(d).where(col(d.alert_id).in_(ids))):
            owed.setdefault(row.alert_id, set()).add(row.destination)
            if row.delivered_ms is not None:
                reached.setdefault(row.alert_id, set()).add(row.destination)
    return [
        AlertRecord(
            _id(r.id),
            r.ts_ms,
            r.key,
            r.severity,
            r.message,
            r.delivered,
            frozenset(owed.get(_id(r.id), ())),
            frozenset(reached.get(_id(r.id), ())),
        )
        for r in rows
    ]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in (
        "journal_mode=WAL",  # readers do not block the writer; persists in the file
        "synchronous=NORMAL",  # durable at checkpoints, safe from corruption in WAL mode
        "busy_timeout=5000",  # wait up to 5 s for the writer lock instead of "database is locked"
        "foreign_keys=ON",  # SQLite ignores foreign keys unless enabled on each connection
    ):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path.db`` or ``postgresql+psycopg://...`` (pragmas set per
    connection on SQLite: https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html)."""
    backend = make_url(url).get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(
            f"database url {safe_url(url)}: backend {backend!r} is not supported "
            f"(use one of {', '.join(SUPPORTED_BACKENDS)})"
        )
    require_driver(url)
    is_sqlite = backend == "sqlite"
    engine = create_engine(
        engine_url(url),
        connect_args={"timeout": 30} if is_sqlite else {},
        pool_pre_ping=not is_sqlite,
    )
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def _id(row_id: int | None) -> int:
    """The id the database assigned to a flushed row."""
    if row_id is None:  # cannot happen after a flush; kept out of ``assert`` (stripped by -O)
        raise RuntimeError("the database assigned no id to a flushed row")
    return row_id


class SqlStore:
    """Implements :class:`bot.ports.store.StorePort`, plus run, alert, paper-account and operator
    command tables and the queries of the status and history views. Times are epoch ms."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self._url = engine.url.render_as_string(hide_password=True)
        self._file = sqlite_file(engine.url.render_as_string(hide_password=False))
        self._file_id = _file_identity(self._file) if self._file is not None else None
        # The database's id as read at open (None: it had none); unknown until read.
        self._database_id: str | None = None
        self._database_id_read = False
        # Set once the id is seen changed: every later read and write is refused with it.
        self._replaced: str | None = None

    def database_id(self) -> str | None:
        """The random id the database's schema was created with (migration 0004); None when
        the row, or its table, is not there."""
        row = t.DatabaseIdentityRow
        stmt = select(row.database_id).where(col(row.id) == 1)
        with self._read() as session:
            try:
                return session.exec(stmt).first()
            except DBAPIError as exc:
                if _table_missing(exc):
                    return None
                raise

    def read_identity(self) -> None:
        """Remember the database's id: the one :meth:`check_identity` compares with (read by
        :meth:`open`)."""
        self._database_id = self.database_id()
        self._database_id_read = True

    def check_identity(self) -> None:
        """Raise :class:`StoreReplaced` if the database's id is not the one read when this
        store was opened (before every job of a running bot: one small query a job, never one
        per statement). Once seen changed, every read and write of this store is refused
        until the bot restarts: nothing is written into the new database.

        A database dropped and created again under the bot (or its tables), then migrated
        (``bot db upgrade``) or restored from an empty dump, was written into afresh, the bot
        carrying on as if it held its state. A database only unreachable is the plain
        :class:`StoreUnavailable` of the read, not this."""
        if self._replaced is not None:
            raise StoreReplaced(self._replaced)
        if not self._database_id_read:  # (a store not made by open(): the first check reads)
            self.read_identity()
            return
        now = self.database_id()
        if now == self._database_id:
            return
        self._replaced = (
            f"state database {safe_url(self._url)}: the state database was recreated under "
            f"the running bot: its id was {self._database_id or 'missing'}, now "
            f"{now or 'missing'}; nothing more is written there. Restart the bot to re-check "
            "its state (the halt, drawdown peak, positions and intents it kept were in the "
            "old database: restore it if they matter)"
        )
        raise StoreReplaced(self._replaced)

    def check_file(self) -> None:
        """Raise :class:`StoreUnavailable` if the SQLite file this store opened was deleted,
        moved or replaced since (before every job of a running bot).

        SQLite keeps writing through the connections it has open to the file it opened: every
        record of a bot whose database was deleted would go to a file no one can open again,
        and one replaced (a backup copied over it) would mix two databases. Every write would
        still succeed, silently. A no-op on PostgreSQL and in-memory SQLite."""
        if self._file is None:
            return
        now = _file_identity(self._file)
        if self._file_id is None:  # (not there yet when this store was made: created since)
            self._file_id = now
            return
        if now == self._file_id:
            return
        what = "was deleted or moved" if now is None else "was replaced by another file"
        raise StoreUnavailable(
            f"state database {safe_url(self._url)}: the file {self._file} {what} while the bot "
            "ran: nothing it records would be kept. Put the database back (or restore it from "
            "a backup) and restart the bot"
        )

    @classmethod
    def open(cls, url: str, *, check_schema: bool = True, older: Collection[str] = ()) -> SqlStore:
        """Open the store at ``url``; raises ``SchemaOutOfDate`` unless it is fully migrated, or
        at one of the ``older`` revisions (``migrate.COMMAND_REVISIONS``, for posting a command:
        nothing else may be read or written through a store opened so)."""
        if check_schema:
            ensure_current(url, older=older)
        store = cls(make_engine(url))
        if check_schema:
            store.read_identity()
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """A session whose work is committed on exit; bad values name ``what`` was written; a
        database that cannot take the write is :class:`StoreUnavailable`."""
        if self._replaced is not None:
            raise StoreReplaced(self._replaced)
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except (DBAPIError, PoolTimeout) as exc:
                failure = _store_failure(exc, f"write {what}", self._url)
                if failure is None:
                    raise
                raise failure from exc
            except StatementError as exc:  # a bind processor refused a value (inexact decimal...)
                if isinstance(exc.orig, ValueError | TypeError):
                    raise ValueError(f"cannot store {what}: {_refused_at(exc)}{exc.orig}") from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A session for queries; a database that cannot answer is :class:`StoreUnavailable`."""
        if self._replaced is not None:
            raise StoreReplaced(self._replaced)
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
            except (DBAPIError, PoolTimeout) as exc:
                failure = _store_failure(exc, "read", self._url)
                if failure is None:
                    raise
                raise failure from exc

    def _insert(self, model: type[SQLModel]) -> tuple[Table, Any]:
        """The table and a dialect ``INSERT`` (the one with ``ON CONFLICT``) into it."""
        table = _table(model)
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        return table, insert(table)

    def _upsert(self, model: type[SQLModel], key: str, values: dict[str, Any]) -> Any:
        """``INSERT ... ON CONFLICT (key) DO UPDATE``: one atomic statement on both backends."""
        table, insert = self._insert(model)
        stmt = insert.values(**_exact(table, values, table.name))
        changed = {name: stmt.excluded[name] for name in values if name != key}
        return stmt.on_conflict_do_update(index_elements=[table.c[key]], set_=changed)

    # --- StorePort ------------------------------------------------------------------------------

    def next_sequence(self, name: str) -> int:
        table, insert = self._insert(t.SequenceRow)
        stmt = (
            insert.values(name=name, value=1)
            .on_conflict_do_update(index_elements=[table.c.name], set_={"value": table.c.value + 1})
            .returning(table.c.value)
        )
        with self._write(f"sequence {name!r}") as session:
            return int(session.exec(stmt).scalar_one())

    def save_intent(self, request: OrderRequest, ts_ms: int) -> OrderRecord:
        row = t.order_row(request, ts_ms)
        try:
            with self._write(f"order intent {request.client_id!r}") as session:
                session.add(row)
        except IntegrityError as exc:
            if self.get_order(request.client_id) is None:
                raise
            raise DuplicateIntent(
                f"order intent {request.client_id!r} is already recorded; "
                "client order ids must be unique (is the sequence counter shared?)"
            ) from exc
        return t.order_record(row)

    def update_order(
        self,
        client_id: str,
        status: OrderStatus,
        ts_ms: int,
        *,
        order: Order | None = None,
        error: str | None = None,
        fill: Fill | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_ms": ts_ms}
        if order is not None:
            values.update(
                exchange_id=order.exchange_id,
                filled=order.filled,
                average_price=order.average_price,
                raw=t.order_json(order),
            )
        if error is not None:
            values["error"] = redact(error)  # an exchange error may quote a signed request
        values = _exact(_table(t.OrderRow), values, f"order {client_id!r}")
        stmt = update(t.OrderRow).where(col(t.OrderRow.client_id) == client_id).values(**values)
        with self._write(f"order {client_id!r}") as session:
            if session.exec(stmt).rowcount == 0:
                raise UnknownOrder(f"order {client_id!r} was never recorded (update to {status})")
            if fill is not None:  # the status and its fill commit together: a crash loses neither
                session.add(t.fill_row(fill))

    def unresolved_orders(self) -> list[OrderRecord]:
        stmt = select(t.OrderRow).where(col(t.OrderRow.status).in_(_UNRESOLVED))
        with self._read() as session:
            return [t.order_record(r) for r in session.exec(stmt.order_by(col(t.OrderRow.id)))]

    def open_orders(self) -> list[OrderRecord]:
        stmt = select(t.OrderRow).where(col(t.OrderRow.status) == OrderStatus.OPEN.value)
        with self._read() as session:
            return [t.order_record(r) for r in session.exec(stmt.order_by(col(t.OrderRow.id)))]

    def has_filled_entry(self, symbol: str, since_ms: int | None = None) -> bool:
        o = t.OrderRow
        stmt = select(o.id).where(
            col(o.symbol) == symbol,
            col(o.purpose) == OrderPurpose.ENTRY.value,
            col(o.status) == OrderStatus.FILLED.value,
        )
        if since_ms is not None:
            stmt = stmt.where(col(o.updated_ms) > since_ms)
        with self._read() as session:
            return session.exec(stmt.limit(1)).first() is not None

    def filled_since(self, since_ms: int, *, settled: bool = False) -> list[OrderRecord]:
        o = t.OrderRow
        # (updated_ms is indexed, and an order sent after since_ms was updated after it too)
        stmt = select(o).where(col(o.updated_ms) > since_ms, col(o.status).not_in(_UNRESOLVED))
        if not settled:
            stmt = stmt.where(col(o.created_ms) > since_ms)
        with self._read() as session:
            rows = [t.order_record(r) for r in session.exec(stmt.order_by(col(o.id)))]
        return [r for r in rows if r.filled > 0]  # (filled is exact text: compared here)

    def get_order(self, client_id: str) -> OrderRecord | None:
        stmt = select(t.OrderRow).where(col(t.OrderRow.client_id) == client_id)
        with self._read() as session:
            row = session.exec(stmt).first()
        return t.order_record(row) if row is not None else None

    def record_fill(self, fill: Fill) -> None:
        with self._write(f"fill of {fill.client_id!r}") as session:
            session.add(t.fill_row(fill))

    def record_decisions(self, records: Sequence[DecisionRecord]) -> None:
        if records:
            with self._write(f"decisions of tick {records[0].tick_id!r}") as session:
                session.add_all([t.decision_row(r) for r in records])

    def record_event(self, event: RiskEvent) -> None:
        with self._write(f"risk event {event.kind!r}") as session:
            session.add(_event_row(event))

    def record_equity(self, snapshot: EquitySnapshot) -> None:
        with self._write(f"equity snapshot at {snapshot.ts_ms}") as session:
            session.add(t.equity_row(snapshot))

    def record_positions(self, ts_ms: int, positions: Sequence[Position]) -> None:
        with self._write(f"positions at {ts_ms}") as session:
            header = t.PositionSnapshotRow(ts_ms=ts_ms)
            session.add(header)
            session.flush()  # assigns header.id
            session.add_all([t.position_row(_id(header.id), p) for p in positions])

    def record_tick(
        self,
        decisions: Sequence[DecisionRecord],
        positions: Sequence[Position],
        equity: EquitySnapshot,
        marks: Mapping[str, Decimal] | None = None,
    ) -> None:
        marks = marks or {}
        what = f"{'tick' if equity.decision else 'account reading'} at {equity.ts_ms}"
        with self._write(what) as session:
            session.add_all([t.decision_row(r) for r in decisions])
            header = t.PositionSnapshotRow(ts_ms=equity.ts_ms)
            session.add(header)
            session.flush()  # assigns header.id
            session.add_all(
                [t.position_row(_id(header.id), p, marks.get(p.symbol)) for p in positions]
            )
            session.add(t.equity_row(equity))

    def load_risk_memory(self) -> RiskMemory | None:
        with self._read() as session:
            row = session.get(t.RiskMemoryRow, 1)
        return t.risk_memory_record(row) if row is not None else None

    def save_risk_memory(self, memory: RiskMemory, event: RiskEvent | None = None) -> None:
        stmt = self._upsert(t.RiskMemoryRow, "id", {"id": 1, **t.risk_memory_values(memory)})
        with self._write("risk memory") as session:
            session.exec(stmt)
            if event is not None:
                session.add(_event_row(event))

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        values = {"id": 1, "ts_ms": heartbeat.ts_ms, "job": heartbeat.job}
        with self._write(f"heartbeat of {heartbeat.job!r}") as session:
            session.exec(self._upsert(t.HeartbeatRow, "id", values))

    def last_heartbeat(self) -> Heartbeat | None:
        with self._read() as session:
            row = session.get(t.HeartbeatRow, 1)
        return t.heartbeat_record(row) if row is not None else None

    def listing_reports(self) -> dict[str, ListingReport]:
        with self._read() as session:
            rows = session.exec(select(t.ListingReportRow)).all()
        return {r.symbol: t.listing_report(r) for r in rows}

    def record_listing_report(self, report: ListingReport, ts_ms: int) -> None:
        what = f"listing report of {report.symbol!r}"
        if report.withdrawn is None and report.settles_ms is None:
            row = t.ListingReportRow
            with self._write(what) as session:
                session.exec(delete(row).where(col(row.symbol) == report.symbol))
            return
        values = {
            "symbol": report.symbol,
            "withdrawn": report.withdrawn,
            "settles_ms": report.settles_ms,
            "ts_ms": ts_ms,
        }
        with self._write(what) as session:
            session.exec(self._upsert(t.ListingReportRow, "symbol", values))

    def venue_refusals(self) -> dict[str, VenueRestriction]:
        with self._read() as session:
            rows = session.exec(select(t.VenueRefusalRow)).all()
        return {r.symbol: t.venue_restriction(r) for r in rows}

    def record_venue_refusal(self, symbol: str, restriction: VenueRestriction, ts_ms: int) -> None:
        values = {
            "symbol": symbol,
            "reason": restriction.reason,  # compared as it is: not redacted (no secret in it)
            "withdrawn": restriction.withdrawn,
            "listed": restriction.listed,
            "ts_ms": ts_ms,
        }
        with self._write(f"venue refusal on {symbol!r}") as session:
            session.exec(self._upsert(t.VenueRefusalRow, "symbol", values))

    def forget_venue_refusal(self, symbol: str) -> None:
        row = t.VenueRefusalRow
        with self._write(f"venue refusal on {symbol!r}") as session:
            session.exec(delete(row).where(col(row.symbol) == symbol))

    # --- runs, paper account, operator commands -------------------------------------------------

    def open_run(
        self, mode: str, config_path: str, policy_name: str, ts_ms: int, venue: str | None = None
    ) -> int:
        """Record the start of a run (``mode``: live, paper...) and return its id; ``venue``:
        the venue account a live run trades (``bootstrap.venue_of``)."""
        try:
            version = importlib.metadata.version("perp-risk-bot")
        except importlib.metadata.PackageNotFoundError:  # running from a source tree
            version = "unknown"
        row = t.RunRow(
            started_ms=ts_ms,
            mode=mode,
            config_path=config_path,
            policy_name=policy_name,
            version=version,
            venue=venue,
        )
        with self._write("run") as session:
            session.add(row)
            session.flush()
            return _id(row.id)

    def save_paper_state(self, name: str, payload: str, ts_ms: int) -> None:
        """Replace the paper account ``name``'s JSON document."""
        values = {"name": name, "payload": payload, "updated_ms": ts_ms}
        with self._write(f"paper account {name!r}") as session:
            session.exec(self._upsert(t.PaperStateRow, "name", values))

    def load_paper_state(self, name: str) -> str | None:
        with self._read() as session:
            row = session.get(t.PaperStateRow, name)
        return row.payload if row is not None else None

    def post_command(self, kind: str, args: str, ts_ms: int) -> int:
        """Queue an operator command (``halt``, ``resume``...) for the running bot; its id."""
        row = t.CommandRow(ts_ms=ts_ms, kind=kind, args=args)
        with self._write(f"command {kind!r}") as session:
            session.add(row)
            session.flush()
            return _id(row.id)

    def take_commands(self) -> list[tuple[int, str, str]]:
        """Pending commands as ``(id, kind, args)`` in posting order, each returned once.

        One ``UPDATE ... RETURNING`` marks and reads them, so two concurrent callers never
        both receive a command.
        """
        cmd = _table(t.CommandRow)
        stmt = (
            update(cmd)
            .where(cmd.c.consumed.is_(False))
            .values(consumed=True)
            .returning(cmd.c.id, cmd.c.kind, cmd.c.args)
        )
        with self._write("commands") as session:
            rows = session.exec(stmt).all()
        return sorted((int(r[0]), str(r[1]), str(r[2])) for r in rows)

    def posted_commands(self) -> list[tuple[int, str, str]]:
        """Commands not yet applied as ``(id, kind, args)``, oldest first, left in place until
        :meth:`command_done`: a command whose application fails (the database full, the process
        killed) is applied at the next job, not lost (halt and resume may be applied twice)."""
        cmd = t.CommandRow
        stmt = select(cmd).where(col(cmd.consumed).is_(False)).order_by(col(cmd.id))
        with self._read() as session:
            return [(_id(r.id), r.kind, r.args) for r in session.exec(stmt)]

    def command_done(self, cmd_id: int) -> None:
        stmt = update(t.CommandRow).where(col(t.CommandRow.id) == cmd_id).values(consumed=True)
        with self._write(f"command {cmd_id}") as session:
            session.exec(stmt)

    # --- alerts ---------------------------------------------------------------------------------

    def record_alert(
        self,
        ts_ms: int,
        key: str,
        severity: str,
        message: str,
        *,
        delivered: bool = False,
        destinations: Collection[str] = (),
    ) -> int:
        """Record an alert; ``key`` groups repeats of the same condition. ``destinations``: the
        ones it is queued for (each owed it until :meth:`mark_alert_delivered` says it arrived),
        written with it in one transaction. Returns its id."""
        row = t.AlertRow(
            ts_ms=ts_ms, key=key, severity=severity, message=message, delivered=delivered
        )
        with self._write(f"alert {key!r}") as session:
            session.add(row)
            session.flush()
            alert_id = _id(row.id)
            session.add_all(
                [t.AlertDeliveryRow(alert_id=alert_id, destination=d) for d in set(destinations)]
            )
            return alert_id

    def mark_alert_delivered(
        self, alert_id: int, destination: str | None = None, *, ts_ms: int | None = None
    ) -> None:
        """The alert reached ``destination`` at ``ts_ms`` (it is no longer owed there), and
        ``delivered`` once it reached every destination it was owed to. Without a destination:
        it reached every one."""
        a, d = t.AlertRow, t.AlertDeliveryRow
        when = 0 if ts_ms is None else ts_ms
        with self._write(f"alert {alert_id}") as session:
            owed = col(d.alert_id) == alert_id
            if destination is not None:
                owed = and_(owed, col(d.destination) == destination)
            session.exec(
                update(d).where(owed, col(d.delivered_ms).is_(None)).values(delivered_ms=when)
            )
            left = select(d).where(col(d.alert_id) == alert_id, col(d.delivered_ms).is_(None))
            if session.exec(left.limit(1)).first() is None:
                session.exec(update(a).where(col(a.id) == alert_id).values(delivered=True))

    def recent_alerts(self, key: str, since_ms: int) -> list[AlertRecord]:
        """Alerts with ``key`` at or after ``since_ms``, newest first."""
        a = t.AlertRow
        stmt = select(a).where(col(a.key) == key, col(a.ts_ms) >= since_ms)
        with self._read() as session:
            rows = session.exec(stmt.order_by(col(a.ts_ms).desc(), col(a.id).desc())).all()
            return alert_records(session, rows)

    # --- history views (newest first) -----------------------------------------------------------

    def recent_decisions(self, limit: int) -> list[DecisionRecord]:
        d = t.DecisionRow
        stmt = select(d).order_by(col(d.ts_ms).desc(), col(d.id).desc()).limit(limit)
        with self._read() as session:
            return [t.decision_record(r) for r in session.exec(stmt)]

    def recent_orders(self, limit: int) -> list[OrderRecord]:
        """Orders by last change (``updated_ms``), newest first."""
        o = t.OrderRow
        stmt = select(o).order_by(col(o.updated_ms).desc(), col(o.id).desc()).limit(limit)
        with self._read() as session:
            return [t.order_record(r) for r in session.exec(stmt)]

    def recent_events(
        self,
        limit: int,
        *,
        kinds: Collection[EventKind] | None = None,
        since_ms: int | None = None,
    ) -> list[RiskEvent]:
        e = t.RiskEventRow
        stmt = select(e)
        if kinds is not None:
            stmt = stmt.where(col(e.kind).in_([str(k) for k in kinds]))
        if since_ms is not None:
            stmt = stmt.where(col(e.ts_ms) >= since_ms)
        stmt = stmt.order_by(col(e.ts_ms).desc(), col(e.id).desc()).limit(limit)
        with self._read() as session:
            return [t.event_record(r) for r in session.exec(stmt)]

    def recent_fills(self, limit: int) -> list[Fill]:
        f = t.FillRow
        stmt = select(f).order_by(col(f.ts_ms).desc(), col(f.id).desc()).limit(limit)
        with self._read() as session:
            return [t.fill_domain(r) for r in session.exec(stmt)]

    def latest_equity(self, *, decision: bool = False) -> EquitySnapshot | None:
        """The newest equity snapshot (a tick's or a guard's reading); with ``decision``, the
        newest a decision tick recorded (the last tick)."""
        e = t.EquityRow
        stmt = select(e)
        if decision:
            stmt = stmt.where(col(e.decision).is_(True))
        stmt = stmt.order_by(col(e.ts_ms).desc(), col(e.id).desc()).limit(1)
        with self._read() as session:
            row = session.exec(stmt).first()
        return t.equity_record(row) if row is not None else None

    def latest_positions(self) -> tuple[int, list[Position]] | None:
        """The last ``record_positions`` or ``record_tick`` call as ``(ts_ms, positions)``; None
        if there was none."""
        h, p = t.PositionSnapshotRow, t.PositionRow
        stmt = select(h).order_by(col(h.ts_ms).desc(), col(h.id).desc()).limit(1)
        with self._read() as session:
            header = session.exec(stmt).first()
            if header is None:
                return None
            rows = session.exec(
                select(p).where(col(p.snapshot_id) == header.id).order_by(col(p.id))
            ).all()
        return header.ts_ms, [t.position_domain(r) for r in rows]


def _event_row(event: RiskEvent) -> t.RiskEventRow:
    """The row of ``event``: its reason may quote an exchange error, and no secret is stored."""
    return t.event_row(replace(event, reason=redact(event.reason)))


def _satisfies_port(store: SqlStore) -> StorePort:
    """Never called: mypy checks here that ``SqlStore`` implements the whole store port."""
    return store
