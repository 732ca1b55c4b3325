"""The simulated exchange's state as JSON, so a paper account survives restarts.

Everything an exchange would remember is kept: wallet, positions, leverage settings, margin
mode, resting orders, every order by client id (to answer look-ups after a crash), fills,
funding and trigger events, the fee, funding, slippage (per contract too) and insurance-fund
totals. Decimals are written as strings. A state written before the slippage and insurance
totals were kept loads with them at zero.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Any

from bot import strict_json
from bot.domain.enums import (
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)
from bot.domain.market import FundingInfo
from bot.domain.orders import Fill, Order
from bot.errors import DataError
from bot.sim.book import SimPosition
from bot.sim.events import SimEvent, SimEventKind
from bot.sim.exchange import SimulatedExchange

VERSION = 1


# How much closed history the paper exchange keeps, like an exchange's order-history window: the
# state is saved after every change, so it must not grow without bound. Resting orders are
# always kept; the bot's own history (orders, fills) is complete in the store.
KEEP_HISTORY = 2000


def _kept_orders(ex: SimulatedExchange) -> list[Order]:
    resting = {cid for book in ex.resting.values() for cid in book}
    orders = list(ex.orders.values())
    recent = {o.client_id for o in orders[-KEEP_HISTORY:]}
    return [o for o in orders if o.client_id in resting or o.client_id in recent]


def _enc(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(
        value, OrderSide | OrderType | OrderPurpose | OrderStatus | MarginMode | TriggerBy
    ):
        return value.value
    return value


def _row(obj: Any) -> dict[str, Any]:
    return {k: _enc(v) for k, v in asdict(obj).items()}


_SEP = (",", ":")


class RowCache:
    """The JSON text of frozen records (orders, fills, events), by identity.

    The state is saved after every change and holds up to :data:`KEEP_HISTORY` records of each
    kind; encoding them all again on every order took most of a paper tick (about 0.1 s at
    2,000 records). A record is frozen and a change replaces it, so the text of an object seen
    before is still right. The cache keeps the objects it holds text for (their ids cannot be
    reused meanwhile) and only those of the last dump.
    """

    def __init__(self) -> None:
        self._texts: dict[int, tuple[object, str]] = {}

    def array(self, records: list[Any]) -> str:
        """``records`` as a JSON array, as ``json.dumps`` writes it (sorted keys, no spaces)."""
        old, new = self._texts, {}
        parts = []
        for obj in records:
            key = id(obj)
            hit = old.get(key)
            if hit is None or hit[0] is not obj:
                hit = (obj, strict_json.dumps(_row(obj), sort_keys=True, separators=_SEP))
            new[key] = hit
            parts.append(hit[1])
        self._texts = new
        return "[" + ",".join(parts) + "]"


class StateEncoder:
    """Encodes one exchange's state again and again, reusing the text of unchanged records.

    The document is written key by key in sorted order, as ``json.dumps(..., sort_keys=True)``
    would, with the three record lists from the caches: the same text as a fresh encoder's.
    """

    def __init__(self) -> None:
        self._caches = {"orders": RowCache(), "fills": RowCache(), "events": RowCache()}

    def dump(self, ex: SimulatedExchange) -> str:
        state, records = _state(ex)
        texts = {k: strict_json.dumps(v, sort_keys=True, separators=_SEP) for k, v in state.items()}
        texts.update({k: self._caches[k].array(v) for k, v in records.items()})
        return "{" + ",".join(f"{strict_json.dumps(k)}:{texts[k]}" for k in sorted(texts)) + "}"


def _state(ex: SimulatedExchange) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The document's plain fields, and its three record lists (not yet encoded)."""
    book = ex.book
    state: dict[str, Any] = {
        "version": VERSION,
        "quote": ex.quote,
        "wallet": str(book.wallet),
        "margin_mode": book.margin_mode.value,
        "positions": {s: _row(p) for s, p in book.positions.items()},
        "leverage": {s: str(v) for s, v in book.leverage.items()},
        "marks": {s: str(v) for s, v in ex.marks.items()},
        "lasts": {s: str(v) for s, v in ex.lasts.items()},
        "funding": {s: _row(f) for s, f in ex.funding.items()},
        "resting": {s: list(book_orders) for s, book_orders in ex.resting.items()},
        "fees_paid": str(ex.fees_paid),
        "funding_paid": str(ex.funding_paid),
        "insurance_shortfall": str(ex.insurance_shortfall),
        "slippage_paid": str(ex.slippage_paid),
        "slippage_by_symbol": {s: str(v) for s, v in ex.slippage_by_symbol.items()},
        "next_id": ex._next_id,
        "processed_ms": ex.processed_ms,
    }
    records: dict[str, list[Any]] = {
        "orders": _kept_orders(ex),
        "fills": ex.fills[-KEEP_HISTORY:],
        "events": ex.events[-KEEP_HISTORY:],
    }
    return state, records


def dump(ex: SimulatedExchange) -> str:
    """Serialise ``ex`` (deterministic: sorted keys); a saver that writes again and again keeps
    a :class:`StateEncoder` instead."""
    return StateEncoder().dump(ex)


def _dec(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def _order(d: dict[str, Any]) -> Order:
    return Order(
        client_id=d["client_id"],
        exchange_id=d["exchange_id"],
        symbol=d["symbol"],
        side=OrderSide(d["side"]),
        type=OrderType(d["type"]),
        purpose=OrderPurpose(d["purpose"]) if d["purpose"] is not None else None,
        amount=_dec(d["amount"]),
        filled=Decimal(d["filled"]),
        status=OrderStatus(d["status"]),
        reduce_only=d["reduce_only"],
        trigger_price=_dec(d["trigger_price"]),
        price=_dec(d["price"]),
        average_price=_dec(d["average_price"]),
        close_position=d["close_position"],
        timestamp_ms=d["timestamp_ms"],
        fee=_dec(d.get("fee")),
        trigger_by=_trigger_by(d),
        # (the simulated venue has no such flag: None, also in a state saved before orders
        # carried it)
        close_on_trigger=d.get("close_on_trigger"),
    )


def _trigger_by(d: dict[str, Any]) -> TriggerBy | None:
    """A state saved before orders carried it: the simulated venue fires every conditional
    order on the mark."""
    if d.get("trigger_by") is not None:
        return TriggerBy(d["trigger_by"])
    return TriggerBy.MARK if OrderType(d["type"]).is_conditional else None


def _fill(d: dict[str, Any]) -> Fill:
    return Fill(
        client_id=d["client_id"],
        symbol=d["symbol"],
        side=OrderSide(d["side"]),
        qty=Decimal(d["qty"]),
        price=Decimal(d["price"]),
        fee=Decimal(d["fee"]),
        timestamp_ms=d["timestamp_ms"],
        purpose=OrderPurpose(d["purpose"]) if d["purpose"] is not None else None,
        realized_pnl=Decimal(d["realized_pnl"]),
        liquidation=d["liquidation"],
    )


def _load(payload: str) -> dict[str, Any]:
    """The JSON document, checked to be one of this version (a clear DataError otherwise)."""
    try:
        state = json.loads(payload)
    except ValueError as exc:  # truncated or garbled: never a traceback
        raise DataError(f"paper account state is unreadable: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise DataError(f"paper account state is unreadable: a JSON {type(state).__name__}")
    version = state.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise DataError(
            f"paper account state is in format {version}, written by a newer version of the "
            f"bot (this one reads format {VERSION}): upgrade the bot"
        )
    if version != VERSION:
        raise DataError(f"paper state version {version!r} is not {VERSION}")
    return state


def processed_ms(payload: str) -> int:
    """Up to when the saved paper account has processed prices (a restarted replay goes on
    from there); a DataError if the state cannot be read."""
    state = _load(payload)
    try:
        return int(state.get("processed_ms") or 0)
    except (TypeError, ValueError) as exc:
        raise DataError(f"paper account state is unreadable: processed_ms: {exc}") from exc


def restore(ex: SimulatedExchange, payload: str) -> None:
    """Load a state written by :func:`dump` into a new exchange with the same contracts."""
    state = _load(payload)
    try:
        _restore(ex, state)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise DataError(f"paper account state is unreadable: {type(exc).__name__}: {exc}") from exc


def _drop_flat_unconfigured(state: dict[str, Any], configured: set[str]) -> None:
    """Take out of ``state`` the rows of contracts the configuration no longer lists, when
    they are flat with no order resting (the paper account keeps a row for every contract it
    ever traded: a flat one may leave the configuration). A DataError, naming them, when one
    still holds a position or a resting order: the bot would neither manage nor protect it,
    and the loss limits would measure the account without it (as a live start refuses,
    ``runtime/preflight.py``)."""
    dropped = (set(state["positions"]) | set(state["resting"])) - configured
    held: list[str] = []
    for sym in sorted(dropped):
        qty = Decimal(state["positions"].get(sym, {}).get("qty", "0"))
        orders = len(state["resting"].get(sym) or ())
        if qty != 0:
            held.append(f"{sym} (position {qty}, {orders} resting order(s))")
        elif orders:
            held.append(f"{sym} ({orders} resting order(s))")
    if held:
        raise DataError(
            "the paper account holds contracts that are not configured: "
            f"{', '.join(held)}. List them in the configuration again and close the position "
            "(and let the bot cancel its orders) before removing them"
        )
    for key in ("positions", "leverage", "marks", "lasts", "funding", "resting"):
        for sym in dropped:
            state[key].pop(sym, None)


def _restore(ex: SimulatedExchange, state: dict[str, Any]) -> None:
    book = ex.book
    _drop_flat_unconfigured(state, set(book.instruments))
    book.wallet = Decimal(state["wallet"])
    book.margin_mode = MarginMode(state["margin_mode"])
    for sym, p in state["positions"].items():
        book.positions[sym] = SimPosition(
            **{f.name: Decimal(p[f.name]) for f in fields(SimPosition)}
        )
    for sym, lev in state["leverage"].items():
        book.leverage[sym] = Decimal(lev)
    ex.marks = {s: Decimal(v) for s, v in state["marks"].items()}
    ex.lasts = {s: Decimal(v) for s, v in state["lasts"].items()}
    ex.funding = {
        s: FundingInfo(Decimal(f["rate"]), Decimal(f["interval_hours"]), f["next_settlement_ms"])
        for s, f in state["funding"].items()
    }
    ex.orders = {o["client_id"]: _order(o) for o in state["orders"]}
    ex.resting = {s: {} for s in book.instruments}
    for sym, ids in state["resting"].items():
        for cid in ids:
            ex.resting.setdefault(sym, {})[cid] = ex.orders[cid]
    ex.fills = [_fill(f) for f in state["fills"]]
    ex.events = [
        SimEvent(
            ts_ms=e["ts_ms"],
            kind=SimEventKind(e["kind"]),
            symbol=e["symbol"],
            detail=e["detail"],
            amount=Decimal(e["amount"]),
        )
        for e in state["events"]
    ]
    ex.fees_paid = Decimal(state["fees_paid"])
    ex.funding_paid = Decimal(state["funding_paid"])
    # A state written before these totals were saved lacks them: they count on from zero
    # (what the older bot counted before its last restart was lost with it).
    ex.insurance_shortfall = Decimal(state.get("insurance_shortfall", "0"))
    ex.slippage_paid = Decimal(state.get("slippage_paid", "0"))
    ex.slippage_by_symbol = {s: Decimal(v) for s, v in state.get("slippage_by_symbol", {}).items()}
    ex._next_id = int(state["next_id"])
    ex.processed_ms = int(state["processed_ms"])
