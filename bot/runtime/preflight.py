"""Live account preflight, before the first order: the account must be set up the way the bot
trades it, or the bot stops and says how to fix it.

The preflight only reads. What it would change on the account (a contract's margin mode) is a
planned change, shown in the start's summary and made by :func:`apply_changes` once the start
is confirmed: a start declined at the prompt (or without a terminal to ask on) leaves the
account as it found it (docs/architecture.md: a declined start records and sends nothing)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from bot.config.models import BotConfig
from bot.domain.enums import EventKind, MarginMode, OrderPurpose
from bot.engine.hedging import with_hedge_symbols
from bot.engine.reconcile import held_by_last_run, open_foreign
from bot.errors import ExchangeError
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.ports.exchange import ExchangePort
from bot.ports.store import StorePort


@dataclass(frozen=True, slots=True)
class MarginChange:
    """A contract's margin mode to set before the first tick (no position holds it)."""

    symbol: str
    mode: MarginMode
    current: MarginMode

    def __str__(self) -> str:
        return (
            f"will set margin mode to {self.mode.value} on {self.symbol} (now {self.current.value})"
        )


@dataclass(slots=True)
class Preflight:
    facts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # what the start changes on the account once confirmed (apply_changes), in order
    changes: list[MarginChange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight(
    exchange: CcxtExchange,
    config: BotConfig,
    store: StorePort | None = None,
    withdrawn: Collection[str] = (),
) -> Preflight:
    """The live start's checks; they read the account and change nothing (the changes they
    find needed are ``changes``, for :func:`apply_changes`). ``withdrawn``: contracts the venue
    lists but does not trade (the catalogue keeper's reading): their settings are left as they
    are (the venue refuses changes on a market it does not trade; the bot sends no order that
    adds exposure there)."""
    report = Preflight()
    venue = config.exchange.name
    if exchange.fetch_position_mode():
        report.problems.append(
            "position mode is hedge (dual-side); the bot trades one-way positions. Switch it to "
            "one-way with no open positions or orders (Binance: Futures > Preferences > Position "
            "Mode > One-way; Bybit: Position mode > One-way)"
        )
    else:
        report.facts.append("position mode: one-way")
    wanted = MarginMode(config.exchange.margin_mode or config.account.margin_mode)
    multi = exchange.fetch_multi_assets_mode()
    if multi:
        if wanted is MarginMode.ISOLATED:
            report.problems.append(
                "multi-assets margin mode is on, which allows cross margin only; turn it off "
                "(Binance: Futures > Preferences > Asset Mode > Single-Asset) or set "
                'account.margin_mode = "cross"'
            )
        else:
            report.warnings.append("multi-assets margin mode is on: other assets back the margin")
    elif multi is not None:
        report.facts.append("asset mode: single-asset")
    # The hedge legs are contracts like the others: same margin mode, same checks.
    symbols = list(with_hedge_symbols([c.symbol for c in config.contracts], config.policies[0]))
    positions = exchange.fetch_positions(symbols)
    for sym in symbols:
        inst = exchange.instrument(sym)
        mode = exchange.fetch_margin_mode(sym)
        if sym in withdrawn:
            report.warnings.append(
                f"{sym}: withdrawn by the venue (not trading): no new exposure; margin mode "
                f"{mode.value} left as it is"
            )
            continue
        if mode is not wanted:
            if sym in positions:
                report.problems.append(
                    f"{sym}: margin mode is {mode.value} with an open position; the bot is "
                    f"configured for {wanted.value}. Close the position or change "
                    "account.margin_mode"
                )
                continue
            report.changes.append(MarginChange(sym, wanted, mode))
        else:
            report.facts.append(f"{sym}: margin mode {mode.value}")
        report.facts.append(
            f"{sym}: {len(inst.brackets)} leverage brackets, max "
            f"{inst.max_leverage}x, min notional {inst.min_notional}"
        )
        if sym in positions:
            # (the engine's reconcile judges whose it is: bot.engine.reconcile, judge)
            report.warnings.append(
                f"{sym}: open position {positions[sym].qty} found; it will be reconciled: "
                "managed by the policy if it is the bot's (one of its own stops or "
                "take-profits rests on it, or the bot's recorded fills explain it) or the "
                "contract's direction is 'follow', otherwise left alone and reported "
                "(foreign)"
            )
    positions_left_behind(exchange, store, symbols, report)
    _check_balance_and_key(exchange, venue, report)
    if store is not None:
        report.warnings += unknown_own_orders(exchange, store, symbols, config.account.name)
    return report


def apply_changes(exchange: CcxtExchange, report: Preflight) -> None:
    """Make the changes the preflight planned, once the start is confirmed and before the first
    tick. A change the venue refuses (a position opened by hand since the preflight read the
    account, say) raises as the preflight's reads do: the start stops there, nothing traded."""
    for change in report.changes:
        exchange.set_margin_mode(change.symbol, change.mode)


def positions_left_behind(
    exchange: CcxtExchange, store: StorePort | None, symbols: Sequence[str], report: Preflight
) -> None:
    """A problem for each position the bot opened on a contract no longer configured: its
    fills are in the state database (an entry, or an order of the bot's the database still
    believes resting there), or an order with the bot's client id rests there. Started so, the
    bot would neither manage nor protect it (its stop no longer replaced, no close at a halt),
    and the equity its loss limits measure, the loss budget and the gross cap would leave it
    out: its gain, counted in the day's start, dropped from the equity now, reads as a loss
    that did not happen (a halt, and a flatten of the rest of the book). A position on such a
    contract that the bot never traded is the trader's, outside the bot's book (README, "What
    the loss limits measure").

    The account's positions are read in one request (:meth:`CcxtExchange.fetch_position_sizes`);
    a contract's open orders only where a position sits that the database does not already
    name the bot's."""
    configured = set(symbols)
    left: list[str] = []
    recorded = store.latest_positions() if store is not None else None
    foreign = (
        open_foreign(store.recent_events(10_000, kinds=(EventKind.FOREIGN, EventKind.FOREIGN_GONE)))
        if store is not None
        else set()
    )
    for sym, qty in sorted(exchange.fetch_position_sizes().items()):
        if sym in configured:
            continue
        # The reconcile's rule at a start (held_by_last_run): a position the trader opened by
        # hand from flat, or on the other side, on a contract the bot once traded is not the
        # bot's, and no reason to refuse a start.
        owned: bool | None = store is not None and (
            (sym not in foreign and held_by_last_run(store, recorded, sym, qty))
            or any(r.request.symbol == sym for r in store.open_orders())
        )
        if not owned:
            owned = _own_order_rests(exchange, sym)
        if owned is None:
            # (unknown is never "not the bot's": said, though it cannot refuse a start on a
            # contract the adapter cannot read)
            report.warnings.append(
                f"{sym}: position {qty} on a contract not in the configuration, its orders "
                "unreadable: if the bot opened it, list the contract again or close it on the "
                "exchange"
            )
        elif owned:
            left.append(f"{sym} (position {qty})")
        else:
            report.warnings.append(
                f"{sym}: position {qty} on a contract not in the configuration, not opened by "
                "this bot: left alone, outside the bot's equity and loss limits"
            )
    if left:
        report.problems.append(
            f"the bot's position on {', '.join(left)} is on a contract no longer in the "
            "configuration: the bot would neither protect nor close it, and its loss limits "
            "would measure the account without it. List the contract in the configuration "
            "again (the bot then manages it as configured), or close the position and cancel "
            "the bot's orders there on the exchange first"
        )


def _own_order_rests(exchange: CcxtExchange, symbol: str) -> bool | None:
    """Whether an order with this bot's client id rests on ``symbol``, a contract outside the
    configuration (its specification loaded first: the adapter reads only contracts it
    knows); None when they cannot be read."""
    try:
        exchange.load_instruments([symbol])
        return any(o.purpose is not None for o in exchange.fetch_open_orders(symbol))
    except ExchangeError:
        return None


def unknown_own_orders(
    exchange: ExchangePort, store: StorePort, symbols: Sequence[str], account: str
) -> list[str]:
    """Warnings for resting orders that carry this bot's client ids (``<account>-...``) but
    that its state database never recorded. Every intent is recorded before it is sent, but
    for one: a stop-loss sent while the database could not be written, the process stopped
    before the database came back (``Engine.protect_without_store``; the bot keeps it as its
    stop). Else such an order was sent by another bot with the same ``account.name`` on this
    exchange account (the two would fight over each other's orders: each cancels the other's
    stops as duplicates), or the database was restored from an older copy (then adopting them
    is right).
    """
    try:
        unknown = [
            o
            for sym in symbols
            for o in exchange.fetch_open_orders(sym)
            if o.purpose is not None and store.get_order(o.client_id) is None
        ]
    except ExchangeError as exc:  # the first tick reads them again, and treats a failure
        return [f"open orders not checked for another bot's: {type(exc).__name__}: {exc}"]
    if not unknown:
        return []
    ids = [o.client_id for o in unknown]
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    outage = (
        "; a stop-loss may also be one the bot placed while its state database could not be "
        "written, stopped before it could record it (the bot keeps it as its stop)"
        if any(o.purpose is OrderPurpose.STOP_LOSS for o in unknown)
        else ""
    )
    return [
        f"{len(unknown)} open order(s) carry this bot's client ids ({shown}) but its state "
        f"database never recorded them: another bot with account.name '{account}' is trading "
        "this exchange account (stop it, or give each bot its own account.name and exchange "
        "account), or the database was restored from an older copy (then the bot adopts them, "
        "and the positions its stops and take-profits among them rest on)" + outage
    ]


def _check_balance_and_key(exchange: CcxtExchange, venue: str, report: Preflight) -> None:
    balance = exchange.fetch_balance()
    if balance.wallet <= 0:
        report.problems.append(
            f"wallet balance is {balance.wallet} {balance.asset}: fund the "
            f"futures wallet on {venue} first"
        )
    report.facts.append(
        f"balance: {balance.wallet} {balance.asset} (available {balance.available})"
    )
    perms = exchange.fetch_key_permissions()
    if perms is None:
        report.warnings.append(
            f"{venue} does not report the API key's permissions: make sure it cannot withdraw"
        )
    else:
        if perms.get("enableWithdrawals"):
            report.warnings.append(
                "!!! THIS API KEY CAN WITHDRAW FUNDS. A trading bot never "
                "needs that: create a key without withdrawal permission and "
                "restrict it to your IP address !!!"
            )
        if perms.get("enableFutures") is False:
            report.problems.append(
                "the API key is not allowed to trade futures: enable 'Enable Futures' on the key"
            )
        if perms.get("ipRestrict") is False:
            report.warnings.append("the API key is not restricted to an IP address")
