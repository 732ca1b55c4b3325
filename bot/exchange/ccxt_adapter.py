"""The live exchange adapter: :class:`bot.ports.exchange.ExchangePort` over a sync ccxt instance.

One ccxt instance per account, shared by the process. Reads, cancels and idempotent settings go
through :func:`~bot.exchange.retry.call_with_retry`; order placement through
:func:`~bot.exchange.retry.submit_idempotent` (never a blind resend). Every ccxt exception leaves
this module translated into :mod:`bot.errors`. Venue differences come from the
:class:`~bot.exchange.capabilities.VenueProfile`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt
from loguru import logger

from bot import errors
from bot.clock import Clock
from bot.domain.enums import MarginMode, OrderStatus, OrderType
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import ForcedClose, Order, OrderRequest
from bot.domain.position import Balance, Position
from bot.exchange import ccxt_orders, mapping
from bot.exchange.capabilities import (
    FundingCap,
    VenueProfile,
    check_capabilities,
    venue_profile,
)
from bot.exchange.ccxt_clients import (
    ClientPool,
    Hedge,
    SharedPacer,
    VenueAskedToWait,
    keep_decimal_context,
    keep_last_status,
)
from bot.exchange.ccxt_errors import (
    NO_END_NAMED,
    ip_ban_hold,
    is_benign,
    is_rate_limit,
    map_ccxt_error,
    retry_after_seconds,
)
from bot.exchange.mapping import Candle
from bot.exchange.paging import read_all_pages
from bot.exchange.retry import RetryPolicy, call_with_retry, submit_idempotent

T = TypeVar("T")
_INTERVAL_TTL_MS = 3_600_000  # funding intervals change rarely; re-observe hourly
# A funding rate beyond the cap read last asks the venue for the cap again at most this often
# per contract (monotonic seconds): a rate that stays garbled is refused on the cap just read
# instead of costing one more request every tick and guard job.
_CAP_REASK_S = 300.0


ABSENT = "the venue lists no such market"
# A venue delists a few contracts at a time. A market list that lost more than this part of its
# markets in one read is a truncated or garbled answer: believed, it would withdraw every contract
# the bot trades at once (no order, no read of any of them, positions shown as last read).
_MARKETS_LOST_AT_MOST = 0.5


def _believable_market_list(venue: str, before: int, now: int) -> None:
    """Refuse (UnexpectedResponse) a market list that shrank by more than half since the last
    read: the refresh fails, keeps the markets read before and is tried again."""
    if now < before * (1 - _MARKETS_LOST_AT_MOST):
        raise mapping.UnexpectedResponse(
            f"{venue}: the venue's market list shrank from {before} to {now} markets in one "
            "read: a truncated or garbled answer, not believed (the markets read before are "
            "kept; the next refresh reads them again)"
        )


@dataclass(frozen=True, slots=True)
class Listing:
    """The venue's markets for the bot's contracts, as :meth:`CcxtExchange.read_listing` read
    them: every contract's specification (as last read, for one the venue no longer trades),
    the contracts it does not trade with why (``ABSENT`` or its status), and the settlement
    times (epoch ms) it scheduled for perpetuals it delists."""

    instruments: dict[str, Instrument]
    withdrawn: dict[str, str]
    settles: dict[str, int]


class CcxtExchange:
    """Live exchange port. ``exchange`` is a configured sync ccxt instance (see ``factory``).

    ``symbols`` are loaded together on first use. ``recv_window_ms`` is the signed-request
    receive window (ms). ``retry_attempts``/``retry_max_seconds`` bound every retried call
    (seconds measured on ``clock``). ``account`` is the client-id prefix that marks our orders.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        clock: Clock,
        symbols: Sequence[str],
        recv_window_ms: int = 10000,
        retry_attempts: int = 5,
        retry_max_seconds: float = 30,
        account: str | None = None,
        spawn: Callable[[], Any] | None = None,
        hedge_after: float | None = None,
    ) -> None:
        self._profile: VenueProfile = venue_profile(str(exchange.id))
        check_capabilities(exchange)
        self._clock = clock
        self._symbols = tuple(symbols)
        self._account = account
        self.recv_window_ms = recv_window_ms
        self._policy = RetryPolicy(attempts=retry_attempts, max_seconds=retry_max_seconds)
        pacer = self._pacer = SharedPacer(clock)

        def prepare(client: Any) -> None:
            keep_decimal_context(client)
            require_json_replies(client, self._profile.reply_envelope_key)
            keep_last_status(client)
            client.options["recvWindow"] = recv_window_ms
            # ccxt's own retry resends ANY failed request, order POSTs included (fetch2).
            client.options["maxRetriesOnFailure"] = 0
            pacer.install(client)

        # ``spawn`` builds another client like ``exchange``: one per thread (ccxt_clients)
        self._clients = ClientPool(exchange, spawn=spawn, prepare=prepare)
        # a read unanswered after ``hedge_after`` s is sent again on another client (needs spawn)
        self._hedge = Hedge(hedge_after if spawn is not None else None)
        self._instruments: dict[str, Instrument] = {}
        self._intervals: dict[str, tuple[Decimal, int]] = {}
        self._funding_rows: dict[str, tuple[Mapping[str, Any] | None, int]] = {}
        self._cap_rows: dict[str, tuple[Mapping[str, Any], int]] = {}  # re-read market rows
        self._cap_asked: dict[str, float] = {}  # contract -> monotonic time of the last re-ask

    @property
    def exchange(self) -> Any:
        """The underlying ccxt instance (for the preflight and diagnostics)."""
        return self._clients.primary

    @property
    def _ex(self) -> Any:
        """The calling thread's ccxt client (see :mod:`bot.exchange.ccxt_clients`)."""
        return self._clients.current()

    # -- instruments ---------------------------------------------------------------------------

    def load_instruments(self, symbols: Sequence[str] = ()) -> dict[str, Instrument]:
        """Load markets and leverage tiers for the configured symbols plus ``symbols``.

        A contract the venue does not list raises :class:`~bot.errors.UnknownMarket` (at start:
        a typo must not start a bot; the hourly refresh reads through :meth:`read_listing`)."""
        self._load(list(dict.fromkeys((*self._symbols, *symbols))), keep_absent=False)
        return dict(self._instruments)

    def read_listing(self, symbols: Sequence[str] = ()) -> Listing:
        """Re-read the venue's markets for the configured symbols plus ``symbols``: their
        specifications, the ones the venue does not trade (withdrawn, with why) and the
        settlements it scheduled. A contract loaded before that the venue no longer lists, or
        lists but does not trade, is withdrawn with its last specification, not an error (one
        delisting must not stop the catalogue of the others); one never loaded still raises
        UnknownMarket."""
        wanted = list(dict.fromkeys((*self._symbols, *symbols)))
        markets = self._load(wanted, keep_absent=True)
        withdrawn: dict[str, str] = {}
        settles: dict[str, int] = {}
        for symbol in wanted:
            market = markets.get(symbol)
            if market is None:
                withdrawn[symbol] = ABSENT
                continue
            why = mapping.withdrawal(market, self._profile.status_keys)
            if why is not None:
                withdrawn[symbol] = why
            when = mapping.settlement_ms(market, self._profile.delivery_key)
            if when is not None:
                settles[symbol] = when
        instruments = {s: self._instruments[s] for s in wanted}
        return Listing(instruments, withdrawn, settles)

    def _load(self, wanted: Sequence[str], *, keep_absent: bool) -> dict[str, Any]:
        """Load the markets again and the instruments of the ``wanted`` ones the venue lists;
        the ccxt markets of ``wanted`` read (absent: not listed; ``keep_absent``: allowed for a
        contract loaded before)."""
        # Asked again every time (the hourly refresh): ccxt's load_markets() answers the markets
        # it loaded first, so a tick size or minimum the venue changed was never seen.
        client = self._ex
        before = (client.markets, client.currencies) if client.markets else None
        # not hedged: it fills this thread's client; the others take its markets once read
        self._call(lambda: client.load_markets(before is not None), "load_markets", hedge=False)
        try:
            if before is not None:
                _believable_market_list(client.id, len(before[0]), len(client.markets))
            self._add_untraded(client, [s for s in wanted if s not in client.markets])
            for symbol in wanted:  # before the tiers: ccxt's BadSymbol would not name the symbol
                if symbol not in client.markets and not (
                    keep_absent and symbol in self._instruments
                ):
                    raise errors.UnknownMarket(f"{client.id} has no market {symbol!r}", symbol)
            listed = [s for s in wanted if s in client.markets]
            read = {s: client.markets[s] for s in listed}
            # A contract the venue stopped trading keeps its last specification (no new
            # exposure is taken on it): the venue may no longer serve its leverage tiers, and
            # their absence failed the whole refresh, every other contract going stale.
            keep = {
                s
                for s in listed
                if keep_absent and s in self._instruments and self._halted(read[s])
            }
            fresh = self._instruments_from(client, [s for s in listed if s not in keep])
        except BaseException:
            if before is not None:
                # a refresh that cannot be read changes nothing: ccxt would round on a garbled
                # grid that the domain's instruments do not share (every order refused)
                client.set_markets(*before)
            raise
        self._instruments.update(fresh)
        self._clients.share_markets(client)
        return read

    def _add_untraded(self, client: Any, absent: Sequence[str]) -> None:
        """Add to ``client``'s markets those of the ``absent`` contracts the venue lists when
        asked for the statuses of contracts it no longer trades (Bybit: Delivering, Closed; see
        UntradedMarkets). Nothing is asked while every wanted contract is listed;
        a contract still absent is one the venue does not know (a typo, long gone)."""
        untraded = self._profile.untraded_markets
        if untraded is None or not absent:
            return
        found: dict[str, Any] = {}
        for status in untraded.statuses:
            params = {**untraded.params, untraded.status_param: status}
            method = getattr(client, untraded.method)
            what = f"{untraded.method}({status})"
            markets = self._call(partial(method, params), what, hedge=False)
            found.update((m["symbol"], m) for m in markets if m.get("symbol") in absent)
            if len(found) == len(absent):
                break
        if found:
            client.set_markets([*client.markets.values(), *found.values()], client.currencies)

    def _market_id(self, symbol: str) -> str:
        """The venue's id of ``symbol`` (``BTCUSDT``), from the markets loaded."""
        self.instrument(symbol)  # markets loaded, contract checked
        return str(self._ex.market(symbol)["id"])

    def _halted(self, market: Mapping[str, Any]) -> bool:
        """The venue lists ``market`` but does not trade it (see mapping.withdrawal)."""
        return mapping.withdrawal(market, self._profile.status_keys) is not None

    def _instruments_from(self, client: Any, wanted: Sequence[str]) -> dict[str, Instrument]:
        if not wanted:
            return {}
        tiers: Mapping[str, Any] = self._call(
            lambda: self._ex.fetch_leverage_tiers(wanted), "fetch_leverage_tiers"
        )
        digits = client.precisionMode == ccxt.DECIMAL_PLACES
        out: dict[str, Instrument] = {}
        for symbol in wanted:
            out[symbol] = mapping.instrument_from_market(
                client.markets[symbol],
                tiers.get(symbol) or [],
                liquidation_fee=self._profile.liquidation_fee,
                liquidation_fee_key=self._profile.liquidation_fee_key,
                precision_is_digits=digits,
                margin_model=self._profile.margin_model,
            )
        return out

    @property
    def close_position_stops(self) -> bool:
        """Binance takes ``closePosition=true`` stops; Bybit is not wired for a close-whole
        stop (see :mod:`bot.exchange.capabilities`)."""
        return self._profile.close_position_stops

    def instrument(self, symbol: str) -> Instrument:
        """Contract filters, fees (fractions) and leverage brackets; cached after the first load."""
        if symbol not in self._instruments:
            self.load_instruments((symbol,))
        return self._instruments[symbol]

    # -- account reads -------------------------------------------------------------------------

    def fetch_balance(self) -> Balance:
        """Wallet and available balance in the settlement asset of the configured contracts.

        Raises :class:`~bot.errors.AccountUnreadable` for an answer that cannot be read: a
        wallet that cannot be read is unknown, never zero.
        """
        asset = self.instrument(self._symbols[0]).quote if self._symbols else "USDT"

        def read() -> Balance:
            raw = self._call(lambda: self._ex.fetch_balance(), "fetch_balance")
            return mapping.balance_from_ccxt(raw, asset)

        return self._account_read(read, "balance")

    def fetch_spot_balances(self, assets: Sequence[str]) -> dict[str, Decimal]:
        """Spot wallet totals of ``assets`` (the spot inventory a hedge covers).

        Binance: ``GET /api/v3/account``, called directly because ccxt's USD-M class routes
        ``fetch_balance(type="spot")`` to the futures account (its default sub-type is linear).
        Other venues: ccxt's spot balance.
        A reply without a readable total for an asset raises: an unknown holding is never zero."""
        if self._ex.id.startswith("binance"):
            # https://developers.binance.com/docs/binance-spot-api-docs/rest-api/account-endpoints
            raw = self._call(lambda: self._ex.privateGetAccount(), "spot account")
            balance = self._call(
                lambda: self._ex.parse_balance_custom(raw, "spot"), "spot account (parse)"
            )
        else:
            balance = self._call(
                lambda: self._ex.fetch_balance({"type": "spot"}), "fetch_balance(spot)"
            )
        return mapping.spot_totals_from_ccxt(balance, assets)

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        """Open one-way positions among ``symbols`` (flat ones absent).

        Raises :class:`~bot.errors.AccountUnreadable` for an answer that does not parse or has
        nulls where numbers belong. An absent contract is NOT proof that it is flat: the engine
        asks :meth:`confirm_flat` before it acts on a disappearance.
        """
        return self._account_read(lambda: self._positions(symbols), "positions")

    def fetch_position_sizes(self) -> dict[str, Decimal]:
        """The signed size of every open position of the account, by contract, the contracts
        the bot is not configured for too, in one request per settle coin of the configured
        contracts (Binance: ``GET /fapi/v3/positionRisk`` without a symbol, the request
        :meth:`fetch_positions` makes anyway, weight 5; Bybit: ``GET /v5/position/list`` by
        ``settleCoin``; shared/notes/exchange-facts.md 3.5). For the start's check that no
        position the bot opened sits on a contract it no longer trades
        (``runtime/preflight.py``)."""

        def read() -> dict[str, Decimal]:
            if self._profile.positions_one_symbol_per_call:
                rows: list[Any] = []
                for settle in sorted({self._settle_of(s) for s in self._symbols}):
                    part = self._call(
                        partial(self._ex.fetch_positions, None, {"settleCoin": settle}),
                        "fetch_positions",
                    )
                    mapping.require_rows(part, "positions")
                    rows += part
            else:
                rows = self._call(lambda: self._ex.fetch_positions(None), "fetch_positions")
                mapping.require_rows(rows, "positions")
            return mapping.position_sizes(rows)

        return self._account_read(read, "positions of the account")

    def confirm_flat(self, symbol: str) -> bool:
        """Ask the venue for this one contract's position row and require an explicit size 0.

        ccxt's unified ``fetch_positions`` drops flat rows (Binance: rows whose entry price is
        0), so a flat contract and a garbled list look the same there. The raw per-symbol
        endpoint of the venue (:attr:`VenueProfile.flat_probe`) answers with the row itself.
        """
        probe = self._profile.flat_probe
        market_id = self._market_id(symbol)
        params = {**probe.params, "symbol": market_id}

        def read() -> bool:
            # the method of the client of the thread that runs the call (reads may be hedged)
            raw = self._call(
                lambda: getattr(self._ex, probe.method)(params), f"confirm_flat({symbol})"
            )
            sizes = mapping.probe_sizes(raw, probe.rows_path, probe.size_key, market_id)
            return bool(sizes) and all(size == 0 for size in sizes)

        return self._account_read(read, f"position of {symbol}")

    def fetch_forced_closes(self, symbol: str, since_ms: int) -> list[ForcedClose] | None:
        """The venue's liquidation and ADL closes of ``symbol`` since ``since_ms``, from its raw
        record (:attr:`VenueProfile.forced_probe`: Binance force orders, Bybit executions).

        The venue answers one window of time per request (a week on both: Bybit answers a start
        without an end with the 7 days after it, so one request from a reading 10 days old
        missed the last 3): the lookup walks the windows from ``since_ms`` to the venue's now
        (:meth:`ForcedProbe.windows`). ``None`` (the record cannot be read, never "none") when
        ``since_ms`` is older than the record the venue keeps or than the windows one lookup
        makes, or when a window's page is full (rows beyond it were cut)."""
        probe = self._profile.forced_probe
        market_id = self._market_id(symbol)
        windows = probe.windows(since_ms, self.venue_now_ms())
        if windows is None:
            return None

        def read() -> list[ForcedClose] | None:
            out: list[ForcedClose] = []
            for start, end in windows:
                params = {**probe.params, "symbol": market_id, "limit": probe.limit}
                params[probe.since_param] = start
                if end is not None:
                    params[probe.until_param] = end
                raw = self._raw_read(probe.method, params, f"forced closes of {symbol}")
                closes, full = mapping.forced_closes(raw, probe, symbol, market_id, since_ms)
                if full:
                    return None
                out += closes
            return out

        return self._account_read(read, f"forced closes of {symbol}")

    def _raw_read(self, method: str, params: Mapping[str, object], what: str) -> object:
        """One call of a ccxt implicit API method, resolved on the client of the thread that
        runs the call (reads may be hedged)."""
        return self._call(lambda: getattr(self._ex, method)(params), what)

    def _positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        rows = self._position_rows(symbols)
        mapping.require_rows(rows, "positions")
        held: dict[str, Mapping[str, Any]] = {}
        for symbol in symbols:
            row = mapping.select_position_row(symbol, rows)
            if row is not None:
                held[symbol] = row
        # What the rows lack is read once for every position they hold, not once per position
        # (Binance v3 positionRisk dropped the leverage, Bybit's rows carry no margin mode):
        # the engine reads the positions again after each contract's orders, so a tick that
        # opened N contracts read the settings N(N+1)/2 times (30: 465 reads, most of a tick
        # of 153 s paced on Binance's request weight, the guard held off that long and the
        # last entries sized on prices minutes old).
        leverages = self._leverages([s for s, row in held.items() if row.get("leverage") is None])
        modes = self._margin_modes([s for s, row in held.items() if row.get("marginMode") is None])
        return {
            symbol: mapping.position_from_ccxt(
                row, leverage=leverages.get(symbol), margin_mode=modes.get(symbol)
            )
            for symbol, row in held.items()
        }

    def _leverages(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The leverage settings of ``symbols``: in one request where ccxt reads every
        contract's at once (``fetch_leverages``; Binance ``GET /fapi/v1/symbolConfig`` without
        a symbol lists a row per symbol, weight 5 as with one:
        https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Symbol-Config),
        else one per contract. Each contract's row is checked as :meth:`fetch_leverage` checks
        its one: a contract without its row, or with a setting that cannot be read, fails the
        whole read (unknown, never a default)."""
        if not symbols:
            return {}
        if not self._ex.has.get("fetchLeverages"):
            return {symbol: self.fetch_leverage(symbol) for symbol in symbols}
        wanted = list(symbols)
        rows = self._call(lambda: self._ex.fetch_leverages(wanted), "fetch_leverages")
        if not isinstance(rows, Mapping):
            raise mapping.UnexpectedResponse(
                f"leverage settings: expected rows by contract, got {type(rows).__name__}"
            )
        out: dict[str, Decimal] = {}
        for symbol in wanted:
            row = rows.get(symbol)
            if isinstance(row, Mapping):
                # (ccxt files a row under the market its own symbol names: the raw row's
                # symbol must be this market's id, as for every row asked for a contract)
                mapping.require_market(
                    row, symbol, self._market_id(symbol), f"{symbol} leverage setting"
                )
            out[symbol] = _leverage_setting(symbol, row)
        return out

    def _margin_modes(self, symbols: Sequence[str]) -> dict[str, MarginMode]:
        """The margin modes of ``symbols``: one read for them all where the venue's mode is
        the account's (:attr:`VenueProfile.account_margin_mode`), else one per contract."""
        if not symbols:
            return {}
        if self._profile.account_margin_mode:
            return dict.fromkeys(symbols, self.fetch_margin_mode(symbols[0]))
        return {symbol: self.fetch_margin_mode(symbol) for symbol in symbols}

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        """Resting regular AND conditional orders (Binance keeps stops in the Algo book).

        Raises :class:`~bot.errors.AccountUnreadable` for an answer that cannot be read.
        """
        return self._account_read(lambda: self._open_orders(symbol), f"open orders of {symbol}")

    def _open_orders(self, symbol: str) -> list[Order]:
        regular = self._order_list(symbol, {}, f"open orders of {symbol}")
        algo = self._order_list(symbol, {"trigger": True}, f"open conditional orders of {symbol}")
        # Binance order ids and algo ids are separate sequences: dedupe on (id, client id) only
        # (Bybit may list a conditional order in both answers).
        seen: dict[tuple[str, str], Order] = {}
        books = [(raw, False) for raw in regular] + [(raw, True) for raw in algo]
        market_id = self._market_id(symbol)
        books_read: dict[bool, list[Order]] = {False: [], True: []}
        for raw, conditional in books:
            order = self._parse_order(raw)
            books_read[conditional].append(order)
            where = f"open {'conditional ' if conditional else ''}orders of {symbol}"
            # (ccxt's name of the row is the order's symbol)
            mapping.require_market(
                {"symbol": order.symbol, "info": raw.get("info")},
                symbol,
                market_id,
                f"{where}: order {order.exchange_id or '?'} ({order.client_id or 'no client id'})",
            )
            ccxt_orders.require_resting(
                order, raw, where, conditional=conditional, client_id=self._profile.client_ids
            )
            first = seen.setdefault((order.exchange_id, order.client_id), order)
            ccxt_orders.require_same_listing(first, order, f"open orders of {symbol}")
        # per list: a Binance algo order that triggered may be listed while the order it
        # placed works in the regular book
        for conditional in (False, True):
            where = f"open {'conditional ' if conditional else ''}orders of {symbol}"
            ccxt_orders.require_unique_client_ids(books_read[conditional], where)
        return list(seen.values())

    def _order_list(
        self, symbol: str, params: Mapping[str, object], what: str
    ) -> list[Mapping[str, Any]]:
        """One open-order list of ``symbol``, every page of it (see :mod:`bot.exchange.paging`)."""
        call = "fetch_open_orders(trigger)" if params else "fetch_open_orders"
        pages = self._profile.open_order_pages
        if pages is None:
            rows = self._call(
                lambda: self._ex.fetch_open_orders(symbol, None, None, dict(params)), call
            )
            mapping.require_rows(rows, what)
            return list(rows)

        def page(cursor: str | None) -> object:
            extra = {pages.cursor_param: cursor} if cursor is not None else {}
            return self._call(
                lambda: self._ex.fetch_open_orders(symbol, None, pages.size, {**params, **extra}),
                call,
            )

        return read_all_pages(page, pages, what)

    def fetch_order(self, symbol: str, client_id: str) -> Order | None:
        """Look an order up by client id, in the regular and/or the conditional book.

        Raises :class:`~bot.errors.AccountUnreadable` for an answer that cannot be read: the
        reconcile settles unknown outcomes and vanished orders with it, and an account whose
        orders cannot be settled is unknown (nothing may be sent on it), like an unreadable
        positions list.
        """

        def read() -> Order | None:
            for conditional in self._books_for(client_id):
                found = self._lookup(symbol, client_id, conditional)
                if found is not None:
                    return found
            return None

        return self._account_read(read, f"order {client_id} of {symbol}")

    def fetch_mark_price(self, symbol: str) -> Decimal:
        """Mark price (quote currency) from the funding endpoint (Binance premiumIndex)."""

        def read() -> Decimal:
            row = self._call(lambda: self._ex.fetch_funding_rate(symbol), "fetch_funding_rate")
            mapping.require_market(row, symbol, self._market_id(symbol), f"{symbol} mark price")
            mark = mapping.positive(row.get("markPrice"), f"{symbol} markPrice")
            mapping.check_mark_against_index(symbol, mark, row.get("indexPrice"))
            return mark

        return self._account_read(read, f"mark price of {symbol}")

    def fetch_last_price(self, symbol: str) -> tuple[Decimal, int]:
        """Last traded price (quote currency) and the venue's time of it (epoch ms).

        The time is the venue's, never the local clock's: the engine's stale-data check
        measures the price's age with it. A ticker without a time raises
        :class:`~bot.exchange.mapping.UnexpectedResponse` (the contract gets no decision).
        """
        row, ts = self._ticker(symbol)
        price = mapping.last_price(symbol, row.get("last"), row.get("low"), row.get("high"))
        when = mapping.venue_time(ts, f"{symbol} ticker time", now_ms=self._clock.now_ms())
        return price, when

    def _ticker(self, symbol: str) -> tuple[Mapping[str, Any], object]:
        """ccxt's ticker of ``symbol`` and the venue's time of it (unchecked)."""
        probe = self._profile.ticker_probe
        if probe is None:
            row = self._call(lambda: self._ex.fetch_ticker(symbol), "fetch_ticker")
            mapping.require_market(row, symbol, self._market_id(symbol), f"{symbol} ticker")
            return row, row.get("timestamp")  # Binance USD-M: the 24 h ticker's closeTime
        market_id = self._market_id(symbol)
        what = f"{symbol} ticker"

        def read() -> tuple[Mapping[str, Any], object]:
            client = self._ex  # the client of the thread that runs the call (hedged reads)
            raw = getattr(client, probe.method)({**probe.params, "symbol": market_id})
            item = mapping.row_of(raw, probe.rows_path, market_id, what)
            # ccxt's own parser for the unified fields, the envelope for the time
            return client.parse_ticker(item, client.market(symbol)), raw.get(probe.time_key)

        return self._call(read, "fetch_ticker")

    def fetch_funding(self, symbol: str) -> FundingInfo:
        """Current rate (fraction per interval), observed interval (hours), next settlement.

        A rate outside the venue's cap for the contract (or, where it publishes none, outside
        :data:`~bot.exchange.mapping.FUNDING_RATE_LIMIT`) raises
        :class:`~bot.exchange.mapping.UnexpectedResponse` naming contract, rate and bound.
        """
        row = self._call(lambda: self._ex.fetch_funding_rate(symbol), "fetch_funding_rate")
        mapping.require_market(row, symbol, self._market_id(symbol), f"{symbol} funding rate")
        rate = mapping.to_decimal(row.get("fundingRate"), f"{symbol} fundingRate")
        hours = mapping.funding_interval_hours(row) or self._observed_interval(symbol)
        bounds = self._funding_bounds(symbol, fresh=False)
        if not bounds.admits(rate) and self._may_reask_cap(symbol):
            # the venue may have widened the cap since it was read (Bybit changes caps without
            # notice): ask it again before refusing a rate it may really charge
            bounds = self._funding_bounds(symbol, fresh=True)
        mapping.check_funding_rate(symbol, rate, bounds)
        next_ms = row.get("fundingTimestamp")
        return FundingInfo(rate, hours, int(next_ms) if next_ms else None)

    @property
    def funding_history_rows(self) -> int:
        """Settled rates one :meth:`fetch_funding_history` returns at most on this venue."""
        return self._profile.funding_history_rows

    def fetch_funding_history(
        self, symbol: str, limit: int, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[tuple[int, Decimal]]:
        """Settled funding rates of ``symbol`` (settlement time ms, fraction per interval),
        oldest first: the latest ``limit`` without bounds, else those in ``since_ms..until_ms``
        (both inclusive; at most ``limit``). Binance GET /fapi/v1/fundingRate, Bybit GET
        /v5/market/funding/history (ccxt ``fetch_funding_rate_history``).

        A row without a time or a rate, or with a rate beyond the plausible bound
        (:data:`~bot.exchange.mapping.FUNDING_RATE_LIMIT`: a settled rate was within the cap of
        its day, which may have been wider than today's), raises
        :class:`~bot.exchange.mapping.UnexpectedResponse`: an unread history is unknown, never
        a rate of 0.
        """
        params = {"until": until_ms} if until_ms is not None else {}
        rows = self._call(
            lambda: self._ex.fetch_funding_rate_history(symbol, since_ms, limit, params),
            "fetch_funding_rate_history",
        )
        return mapping.settled_funding(rows, symbol, self._clock.now_ms())

    def _may_reask_cap(self, symbol: str) -> bool:
        """True (and noted) when ``symbol``'s cap was not asked again in the last
        :data:`_CAP_REASK_S` seconds."""
        now = self._clock.monotonic()
        last = self._cap_asked.get(symbol)
        if last is not None and now - last < _CAP_REASK_S:
            return False
        self._cap_asked[symbol] = now
        return True

    def _funding_bounds(self, symbol: str, *, fresh: bool) -> mapping.FundingBounds:
        """The venue's funding cap of ``symbol`` where it publishes one (VenueProfile), as last
        read (``fresh``: read from the venue now)."""
        cap = self._profile.funding_cap
        if cap is None:
            return mapping.funding_bounds(symbol, None, "cap", "floor")
        if cap.in_market:
            info = self._market_cap_row(symbol, cap, fresh=fresh)
        else:
            row = self._funding_table_row(symbol, fresh=fresh)
            info = row.get("info") if row is not None else None
        return mapping.funding_bounds(symbol, info, cap.cap_key, cap.floor_key)

    def _market_cap_row(self, symbol: str, cap: FundingCap, *, fresh: bool) -> object:
        """The raw market row carrying the cap: as ``load_markets`` read it, unless the venue's
        per-symbol endpoint was asked since (``fresh``: ask it now; kept an hour)."""
        now = self._clock.now_ms()
        cached = self._cap_rows.get(symbol)
        if not fresh:
            if cached is not None and now - cached[1] < _INTERVAL_TTL_MS:
                return cached[0]
            return self._ex.market(symbol).get("info")
        market_id = str(self._ex.market(symbol)["id"])

        def read() -> Mapping[str, Any]:
            raw = getattr(self._ex, cap.method)({**cap.params, "symbol": market_id})
            return mapping.row_of(raw, cap.rows_path, market_id, f"{symbol} funding cap")

        row = self._call(read, f"funding cap of {symbol}")
        self._cap_rows[symbol] = (row, now)
        return row

    def fetch_leverage(self, symbol: str) -> Decimal:
        """The symbol's leverage setting (x)."""
        row = self._call(lambda: self._ex.fetch_leverage(symbol), "fetch_leverage")
        return _leverage_setting(symbol, row)

    def fetch_margin_mode(self, symbol: str) -> MarginMode:
        row = self._call(lambda: self._ex.fetch_margin_mode(symbol), "fetch_margin_mode")
        if isinstance(row, Mapping):
            mapping.require_market(row, symbol, self._market_id(symbol), f"{symbol} margin mode")
        mode = row.get("marginMode") if isinstance(row, Mapping) else None
        if mode not in ("cross", "isolated"):
            raise mapping.UnexpectedResponse(
                f"{symbol}: margin mode {mode!r} is not cross/isolated"
            )
        return MarginMode(mode)

    def fetch_candles(
        self, symbol: str, timeframe: str, limit: int, *, mark: bool = False
    ) -> list[Candle]:
        """Up to ``limit`` closed candles (oldest first), last or mark price.

        Asks for ``limit + 1`` rows and drops the still-forming bar: a bar is closed when its open
        time plus the timeframe is at or before the venue's time (:meth:`venue_now_ms`).
        """
        tf_ms = int(self._ex.parse_timeframe(timeframe)) * 1000
        params = {"price": "mark"} if mark else {}
        rows = self._call(
            lambda: self._ex.fetch_ohlcv(symbol, timeframe, None, limit + 1, params), "fetch_ohlcv"
        )
        what = f"{symbol} {timeframe} {'mark-price' if mark else 'trade'} candles"
        return mapping.closed_candles(rows, tf_ms, self.venue_now_ms(), what)[-limit:]

    def lookups_are_final(self) -> bool:
        """No: a request whose answer was lost may still execute, and the venue's order query
        can trail its matching engine (Binance -1007; freqtrade#12681 for algo orders)."""
        return False

    def venue_now_ms(self) -> int:
        """The injected clock's time as the venue's clock reads it: minus the offset ccxt
        measured (``adjustForTimeDifference``: at the markets' load and every resync; 0 when
        unmeasured). On the host's clock alone, a host ahead of the venue (a VM resumed with a
        wrong clock, NTP not yet stepped) took a candle still forming there for closed."""
        offset = self._time_difference()
        return self._clock.now_ms() - (offset or 0)

    def _time_difference(self) -> int | None:
        """The offset ccxt signs with (``options["timeDifference"]``, ms, host ahead > 0); None
        when it holds none."""
        options = getattr(self._ex, "options", None)
        offset = options.get("timeDifference") if isinstance(options, dict) else None
        return int(offset) if isinstance(offset, int | float) else None

    # -- settings ------------------------------------------------------------------------------

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set the leverage setting (x); "not modified" is success once a read-back agrees."""
        what = f"set_leverage({symbol}, {leverage})"
        if self._apply(lambda: self._ex.set_leverage(leverage, symbol), "set_leverage", what):
            self._confirm(what, self.fetch_leverage(symbol), Decimal(leverage))

    def set_margin_mode(self, symbol: str, mode: MarginMode) -> None:
        """Set cross/isolated; "already set" is success once a read-back agrees."""
        what = f"set_margin_mode({symbol}, {mode.value})"
        if self._apply(
            lambda: self._ex.set_margin_mode(mode.value, symbol), "set_margin_mode", what
        ):
            self._confirm(what, self.fetch_margin_mode(symbol), mode)

    def fetch_position_mode(self) -> bool:
        """True when the account is in hedge (dual-side) mode."""
        if self._ex.has.get("fetchPositionMode"):
            row = self._call(lambda: self._ex.fetch_position_mode(), "fetch_position_mode")
            return mapping.flag(row.get("hedged"), "position mode (dualSidePosition)")
        # Read on each contract's own rows (Bybit lists a flat contract's row when asked by
        # symbol, not when asked by settle coin): Bybit sets the mode per symbol as well as per
        # coin, so one contract in one-way mode says nothing of the next, whose orders the venue
        # would refuse (stops included) in hedge mode.
        # https://bybit-exchange.github.io/docs/v5/position/position-mode
        hedged = False
        for symbol in self._symbols or [None]:
            rows = self._position_rows([symbol] if symbol is not None else [])
            modes = {r.get("hedged") for r in rows if r.get("hedged") is not None}
            if len(modes) != 1:
                raise errors.NotSupported(
                    f"{self._ex.id}: position mode is only reported on position rows; "
                    f"{symbol} got {modes}"
                )
            hedged = hedged or bool(modes.pop())
        return hedged

    def set_position_mode(self, hedged: bool) -> None:
        """Set hedge (True) or one-way (False) mode; "no change" is success once confirmed."""
        what = f"set_position_mode(hedged={hedged})"
        symbol = self._symbols[0] if self._symbols else None
        if symbol is not None:
            self.instrument(symbol)  # ccxt resolves the symbol against loaded markets
        if self._apply(
            lambda: self._ex.set_position_mode(hedged, symbol), "set_position_mode", what
        ):
            self._confirm(what, self.fetch_position_mode(), hedged)

    def fetch_multi_assets_mode(self) -> bool | None:
        """Binance multi-assets margin (``GET /fapi/v1/multiAssetsMargin``); None elsewhere."""
        if not self._profile.multi_assets_mode:
            return None
        row = self._call(
            lambda: self._ex.fapiPrivateGetMultiAssetsMargin(), "fetch_multi_assets_mode"
        )
        return mapping.flag(row.get("multiAssetsMargin"), "multiAssetsMargin")

    def fetch_key_permissions(self) -> dict[str, bool] | None:
        """API key permissions (Binance ``GET /sapi/v1/account/apiRestrictions``), else None.

        None too where the endpoint is absent (Binance demo trading has no ``/sapi`` host).
        """
        if not self._profile.key_permissions or "sapi" not in self._ex.urls.get("api", {}):
            return None
        row = self._call(lambda: self._ex.sapiGetAccountApiRestrictions(), "fetch_key_permissions")
        perms = {str(k): v for k, v in row.items() if isinstance(v, bool)}
        # "can it withdraw?" unanswered is not "no": the preflight warns on True only
        perms["enableWithdrawals"] = mapping.flag(
            row.get("enableWithdrawals"), "API key enableWithdrawals"
        )
        return perms

    def resync_clock(self) -> None:
        """Re-measure the offset between local and server time (call hourly and after -1021)."""
        self._ex.load_time_difference()
        self._clients.share_time_difference(self._ex)

    def measure_clock_offset(self) -> int:
        """Re-measure the host clock against the venue's (``GET /fapi/v1/time``, bybit
        ``/v5/market/time``) and sign with the new offset from now on; the offset in ms,
        positive when the host's clock is ahead. Retried and mapped as every read."""

        def measure() -> int:
            self.resync_clock()
            offset = self._time_difference()
            if offset is None:
                left = getattr(self._ex, "options", {}).get("timeDifference")
                raise mapping.UnexpectedResponse(
                    f"{self._ex.id}: load_time_difference left no offset ({left!r})"
                )
            return offset

        # not hedged: the offset is measured on this thread's client, then shared
        return self._call(measure, "load_time_difference", hedge=False)

    # -- orders --------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> Order:
        """Send ``request`` at most once (see :func:`~bot.exchange.retry.submit_idempotent`).

        Raises :class:`~bot.errors.InvalidQuantity` before sending when ccxt would round a
        number the domain already rounded, and :class:`~bot.errors.OutcomeUnknown` when the
        venue's answer is lost and a lookup by client id cannot settle it (or, for an order
        that can add exposure, does not find it: never resent, see :func:`_resend_when_absent`).
        """
        args = self._order_args(request)
        conditional = request.type.is_conditional

        def send() -> Order:
            # A garbled answer (a bare JSON string, a list) breaks ccxt's parser after the venue
            # may have accepted the order: outcome unknown, settled by a lookup by client id.
            raw = readable(lambda: self._ex.create_order(*args[:5], dict(args.params)), "order")
            if not isinstance(raw, Mapping):
                raise ccxt.BadResponse(f"order: the answer is a {type(raw).__name__}, not an order")
            return self._order_from_ack(raw, request)

        def lookup() -> Order | None:
            try:
                found = self._lookup(request.symbol, request.client_id, conditional)
            except (
                errors.TransientExchangeError,
                errors.ClockDrift,
                mapping.UnexpectedResponse,  # a garbled lookup answer says nothing either way
            ) as exc:
                raise errors.OutcomeUnknown(
                    f"{request.client_id}: sent; lookup by client id failed: {exc}"
                ) from exc
            if found is not None and not ccxt_orders.same_order(found, request):
                # The id is held by an order that is not this request: not our retry's echo.
                raise errors.DuplicateClientId(
                    f"{request.client_id}: the client id is held by a different order "
                    f"({found.side} {found.amount} trigger {found.trigger_price})",
                    code=-4116,
                )
            return found

        try:
            order = submit_idempotent(
                send,
                lookup,
                clock=self._clock,
                policy=self._policy,
                retry_after_of=self._retry_after,
                resync=self.resync_clock,
                what=f"{request.client_id} ({request.symbol} {request.type} {request.side})",
                resend_when_absent=_resend_when_absent(request),
            )
        except ccxt.BaseError as exc:
            raise map_ccxt_error(
                exc, placing_order=True, retry_after=self._retry_after(exc)
            ) from exc
        return self._settled(order, request)

    def cancel_order(self, symbol: str, client_id: str) -> Order | None:
        """Cancel by client id; an order already gone (cancelled, filled) is not an error: it
        is returned as the venue reports it (None: this cancel removed it, or no book knows
        the id)."""
        for conditional in self._books_for(client_id):
            found, ended = self._cancel_in_book(symbol, client_id, conditional)
            if found:
                return ended
        return None

    # -- internals -----------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], what: str, *, hedge: bool = True) -> T:
        """One ccxt call with retries; a read (``hedge``) is also hedged (ccxt_clients.Hedge)."""

        def attempt() -> T:
            try:
                return readable(fn, what)
            except ccxt.BaseError as exc:
                # A hedged read runs on a pool thread with a client of its own: only here can
                # the answer's Retry-After be read (the calling thread's client never saw it).
                self._retry_after(exc)
                raise

        try:
            return call_with_retry(
                (lambda: self._hedge.call(attempt)) if hedge else attempt,
                clock=self._clock,
                policy=self._policy,
                retry_after_of=self._retry_after,
                resync=self.resync_clock,
                what=what,
            )
        except ccxt.BaseError as exc:
            raise map_ccxt_error(exc, retry_after=self._retry_after(exc)) from exc

    def _account_read(self, fn: Callable[[], T], what: str) -> T:
        """Run a read the engine acts on; an answer that cannot be read is AccountUnreadable.

        Unreadable: a garbled 2xx answer still garbled after the read's retries, a shape or value
        the mapping refuses, or ccxt's own parser failing on it (any non-bot exception).
        Network trouble stays :class:`~bot.errors.TransientExchangeError`.
        """
        try:
            return fn()
        except errors.AccountUnreadable:
            raise
        except mapping.UnexpectedResponse as exc:
            raise errors.AccountUnreadable(f"{what}: {exc}") from exc
        except errors.TransientExchangeError as exc:
            if isinstance(exc.__cause__, ccxt.BadResponse):
                raise errors.AccountUnreadable(f"{what}: {exc}") from exc
            raise
        except errors.BotError:
            raise
        except Exception as exc:
            raise errors.AccountUnreadable(
                f"{what}: the answer could not be read ({type(exc).__name__}: {exc})"
            ) from exc

    def _apply(self, fn: Callable[[], object], key: str, what: str) -> bool:
        """Run an idempotent settings call; True when the venue said "nothing to change"."""
        codes = self._profile.benign_codes.get(key, frozenset())
        try:
            answer = call_with_retry(
                fn,
                clock=self._clock,
                policy=self._policy,
                retry_after_of=self._retry_after,
                resync=self.resync_clock,
                what=what,
            )
        except ccxt.BaseError as exc:
            if is_benign(exc, codes):
                return True
            raise map_ccxt_error(exc, retry_after=self._retry_after(exc)) from exc
        # ccxt may swallow -4046 and answer {"code": -4046, ...} (throwMarginModeAlreadySet=False)
        code = answer.get("code") if isinstance(answer, Mapping) else None
        return code is not None and str(code).lstrip("-").isdigit() and int(str(code)) in codes

    @staticmethod
    def _confirm(what: str, actual: object, expected: object) -> None:
        if actual != expected:
            raise errors.PermanentExchangeError(
                f"{what}: the venue answered 'nothing to change' but reads back {actual}"
            )

    def _position_rows(self, symbols: Sequence[str]) -> Any:
        """ccxt position rows of ``symbols`` (unchecked: the caller runs ``require_rows``)."""
        wanted = list(symbols)
        if len(wanted) > 1 and self._profile.positions_one_symbol_per_call:
            # Asked without a symbol, Bybit lists one settle coin's positions, and ccxt asks
            # for USDT unless told (``settleCoin``, its ``defaultSettle``): USDC contracts'
            # positions were missing from a readable answer, read as flat. One call per settle
            # coin of the contracts asked for.
            # https://bybit-exchange.github.io/docs/v5/position (settleCoin)
            out: list[Any] = []
            for settle in sorted({self._settle_of(s) for s in wanted}):
                params = {"settleCoin": settle}
                rows = self._call(
                    partial(self._ex.fetch_positions, None, params), "fetch_positions"
                )
                if not isinstance(rows, list):
                    return rows
                out += [r for r in rows if not isinstance(r, Mapping) or r.get("symbol") in wanted]
            return out
        return self._call(lambda: self._ex.fetch_positions(wanted), "fetch_positions")

    def _settle_of(self, symbol: str) -> str:
        """The coin ``symbol`` settles in (a linear perpetual's ``BASE/QUOTE:SETTLE``)."""
        settle = self._ex.market(symbol).get("settle")
        if not (isinstance(settle, str) and settle):
            raise mapping.UnexpectedResponse(f"{symbol}: the market names no settle coin")
        return settle

    def _retry_after(self, exc: BaseException) -> float | None:
        """The seconds a rate-limit error asks to wait (``Retry-After``), or None.

        Read once, on the thread whose client received the answer, and kept on the exception:
        the retry's wait and the error raised to the engine read the same figure, whichever
        thread asks. Every client then holds its requests that long (SharedPacer.hold): a ban
        (418) or a 429 are the venue's, not one request's. An answer that is the venue's IP
        ban without an end (capabilities.IpBan, Bybit's 403) is held the profile's time, and
        the exception says the end is the bot's own (ccxt_errors.NO_END_NAMED): the retries
        give up at once (no read is sent five times into a ban), the jobs meanwhile send
        nothing, and the first request after the hold finds out whether the ban is over."""
        if not is_rate_limit(exc):
            return None
        if isinstance(exc, VenueAskedToWait):
            return exc.retry_after
        attrs = vars(exc)
        if _RETRY_AFTER in attrs:
            seconds: float | None = attrs[_RETRY_AFTER]
            return seconds
        client = self._ex
        # (Bybit's reset time is on its clock: measured against the venue's time, not the host's)
        seconds = retry_after_seconds(client.last_response_headers, self.venue_now_ms())
        named = True
        if seconds is None:
            seconds = ip_ban_hold(
                self._profile.ip_ban,
                getattr(client, "last_http_status", None),
                client.last_response_headers,
            )
            named = seconds is None
            if not named:
                attrs[NO_END_NAMED] = True
        attrs[_RETRY_AFTER] = seconds
        if seconds:
            self._pacer.hold(seconds, named=named)
        return seconds

    def _books_for(self, client_id: str) -> tuple[bool, ...]:
        """Which books (False regular, True conditional) may hold an order with this id."""
        purpose = mapping.parse_purpose(client_id, self._account)
        if purpose is None:
            return (False, True)
        return (True,) if purpose.is_protective else (False,)

    def _lookup(self, symbol: str, client_id: str, conditional: bool) -> Order | None:
        if self._profile.lookup_by_order_list:
            return self._lookup_in_list(symbol, client_id, conditional)
        params = self._profile.trigger_lookup_params(client_id, conditional)

        def read() -> tuple[Order, Mapping[str, Any]]:
            # parsed inside the retried call: a garbled answer is asked again, not believed
            raw = self._ex.fetch_order(None, symbol, dict(params))
            order = self._parse_order(raw)
            return _asked(order, client_id), raw.get("info") or {}

        try:
            order, info = self._call(read, f"lookup {client_id}")
        except errors.OrderNotFound:
            if not conditional:
                return None
            # Binance can briefly forget a fresh algo order on a lookup (freqtrade#12681):
            # the open algo list decides.
            return self._find_open(symbol, client_id)
        return self._fired_outcome(symbol, order, info) if conditional else order

    def _fired_outcome(self, symbol: str, order: Order, info: Mapping[str, Any]) -> Order:
        """``order``, a conditional order looked up by client id, with what it traded when
        the venue reports it fired and its row does not say (:class:`FiredOrders`, Binance's
        algo orders): read from the order it placed, by that order's id. Unchanged otherwise.

        The placed order not found is unknown (UnexpectedResponse: the account is unreadable
        and read again at the next job; a venue's order query can trail its matching engine),
        until the venue no longer keeps an order that ended without a fill: then it traded
        nothing, and the stop is cancelled.
        """
        fired = self._profile.fired_orders
        if fired is None or order.status is not OrderStatus.FILLED:
            return order
        placed_id = ccxt_orders.fired_order_id(info, fired, order)

        def read() -> Order:
            # parsed inside the retried call: a garbled answer is asked again, not believed
            raw = self._ex.fetch_order(placed_id, symbol)
            return ccxt_orders.with_fired_outcome(order, raw, placed_id, fired)

        try:
            return self._call(read, f"order {placed_id} placed by {order.client_id}")
        except errors.OrderNotFound:
            now = self.venue_now_ms()
            what = f"order {order.client_id} ({symbol}) {fired.time_key}"
            fired_ms = mapping.venue_time(info.get(fired.time_key), what, now_ms=now)
            if now - fired_ms <= fired.unfilled_kept_ms:
                raise mapping.UnexpectedResponse(
                    f"order {order.client_id} ({symbol}) fired, but the venue does not find the "
                    f"order it placed ({placed_id}): what it traded is unknown"
                ) from None
            return replace(
                order, status=OrderStatus.CANCELED, filled=mapping.ZERO, average_price=None
            )

    def _lookup_in_list(self, symbol: str, client_id: str, conditional: bool) -> Order | None:
        """Bybit: ``GET /v5/order/realtime`` filtered by ``orderLinkId`` lists the order
        whatever its status (recent orders); an empty list means not found."""
        params: dict[str, object] = {self._profile.lookup_client_id_param: client_id}
        if conditional:
            params["trigger"] = True

        def read() -> Order | None:
            # parsed inside the retried call: a garbled answer is asked again, not believed
            raws = self._ex.fetch_open_orders(symbol, None, None, dict(params))
            mapping.require_rows(raws, f"lookup {client_id}")
            # asked by client id, the venue lists that order or nothing: a row that is not it
            # is garbled (read as "not found", a filled entry was resent and "rejected")
            if not raws:
                return None
            found = [_asked(self._parse_order(raw), client_id) for raw in raws]
            states = {(o.status, o.filled, o.amount, o.side) for o in found}
            if len(states) > 1:
                # one client id is one order: listed in two states, the first row decided (a
                # filled entry read "rejected" left its position unmanaged)
                shown = sorted(f"{o.status.value} filled {o.filled}" for o in found)
                raise mapping.UnexpectedResponse(
                    f"lookup {client_id}: the venue lists the order {len(found)} times in "
                    f"different states ({', '.join(shown)})"
                )
            return found[0]

        return self._call(read, f"lookup {client_id}")

    def _find_open(self, symbol: str, client_id: str) -> Order | None:
        raws = self._call(
            lambda: self._ex.fetch_open_orders(symbol, None, None, {"trigger": True}),
            "fetch_open_orders(trigger)",
        )
        for raw in raws:
            order = self._parse_order(raw)
            if order.client_id == client_id:
                return order
        return None

    def _cancel_in_book(
        self, symbol: str, client_id: str, conditional: bool
    ) -> tuple[bool, Order | None]:
        """Cancel in one book: whether that book knows the id, and the order as the venue
        reports it when it had ended before this cancel (None: this cancel removed it)."""
        params = self._profile.trigger_lookup_params(client_id, conditional)
        what = f"cancel_order({client_id})"
        for _ in range(2):
            try:
                self._call(
                    lambda: self._ex.cancel_order(None, symbol, dict(params)), what, hedge=False
                )
                return True, None
            except errors.OrderNotFound:
                # a retried cancel that went through, a fill, or the wrong book: re-read it
                order = self._lookup(symbol, client_id, conditional)
            if order is None:
                return False, None
            if order.status.is_final:
                # (a retried cancel that went through reads cancelled: the same as None)
                return True, None if order.status is OrderStatus.CANCELED else order
        raise errors.TransientExchangeError(f"{what}: the venue says not found, yet lists it open")

    def _order_args(self, request: OrderRequest) -> ccxt_orders.CreateOrderArgs:
        inst = self.instrument(request.symbol)  # markets loaded, contract checked
        most = inst.max_order_qty
        if (
            most is not None
            and request.amount is not None
            and request.amount > most
            and request.type is not OrderType.LIMIT
        ):
            # The venue would refuse it (Binance -4005); the planner splits larger amounts.
            raise errors.InvalidQuantity(
                f"{request.client_id}: amount {request.amount} of {request.symbol} is above the "
                f"exchange's largest market order {most}"
            )
        if request.close_position and not self._profile.close_position_stops:
            raise errors.NotSupported(f"{self._ex.id}: closePosition conditional orders")
        amount = self._exact(request, request.amount, self._ex.amount_to_precision, "amount")
        price = self._exact(request, request.price, self._ex.price_to_precision, "price")
        trigger = self._exact(
            request, request.trigger_price, self._ex.price_to_precision, "trigger price"
        )
        return ccxt_orders.create_order_args(
            request,
            amount=amount,
            price=price,
            trigger=trigger,
            mark_trigger_params=self._profile.mark_trigger_params,
            closing_trigger_params=self._profile.closing_trigger_params,
        )

    def _exact(
        self,
        request: OrderRequest,
        value: Decimal | None,
        to_precision: Callable[[str, object], str],
        what: str,
    ) -> str | None:
        """ccxt's string for ``value``, which must not change it (the domain rounded it safely)."""
        if value is None:
            return None
        try:
            text = str(to_precision(request.symbol, format(value, "f")))
        except ccxt.BaseError as exc:
            raise errors.InvalidQuantity(f"{request.client_id}: {what} {value}: {exc}") from exc
        if Decimal(text) != value:
            raise errors.InvalidQuantity(
                f"{request.client_id}: {what} {value} of {request.symbol} is not on the exchange "
                f"grid (ccxt would send {text}); refusing to let the adapter round it"
            )
        return text

    def _parse_order(self, raw: Mapping[str, Any], fallback: OrderRequest | None = None) -> Order:
        """``raw``, a ccxt order dict, as an :class:`Order` of this account on this venue (the
        profile's closing flags read back: ``Order.close_on_trigger``)."""
        return ccxt_orders.order_from_ccxt(
            raw,
            fallback=fallback,
            account=self._account,
            closing_params=self._profile.closing_trigger_params,
        )

    def _order_from_ack(self, raw: Mapping[str, Any], request: OrderRequest) -> Order:
        try:
            order = self._parse_order(raw, request)
            if order.client_id != request.client_id:
                # the answer names another order: it says nothing about this one
                raise mapping.UnexpectedResponse(
                    f"the answer is about client id {order.client_id!r}"
                )
            return order
        except mapping.UnexpectedResponse as exc:
            # accepted, but the answer is unreadable: report it unknown, reconcile by id
            logger.warning("{}: unreadable order acknowledgement: {}", request.client_id, exc)
            return ccxt_orders.order_from_request(request, OrderStatus.UNKNOWN)

    def _settled(self, order: Order, request: OrderRequest) -> Order:
        """Re-read an acknowledgement that does not say how the order ended up (Bybit)."""
        needs_read = order.status is OrderStatus.UNKNOWN or (
            request.type is OrderType.MARKET and not order.status.is_final
        )
        if not needs_read:
            return order
        try:
            found = self._lookup(request.symbol, request.client_id, request.type.is_conditional)
        except errors.ExchangeError as exc:
            logger.warning("{}: placed; confirmation read failed: {}", request.client_id, exc)
            return order
        return found if found is not None else order

    def _observed_interval(self, symbol: str) -> Decimal:
        """Funding interval (hours): venue's interval table, else the last two settlements.

        Binance's ``/fapi/v1/fundingInfo`` lists only symbols whose interval was adjusted;
        intervals differ per symbol and change over time (freqtrade/freqtrade#12583).
        """
        cached = self._intervals.get(symbol)
        now = self._clock.now_ms()
        if cached is not None and now - cached[1] < _INTERVAL_TTL_MS:
            return cached[0]
        row = self._funding_table_row(symbol)
        hours = mapping.funding_interval_hours(row) if row else None
        if hours is None:
            rows = self._call(
                lambda: self._ex.fetch_funding_rate_history(symbol, None, 3),
                "fetch_funding_rate_history",
            )
            hours = mapping.interval_from_history(rows)
        if hours is None:
            # a brand-new contract has no two settlements yet; 8 h is the venues' default
            logger.warning("{}: funding interval not observable yet; assuming 8 h", symbol)
            hours = Decimal(8)
        self._intervals[symbol] = (hours, now)
        return hours

    def _funding_table_row(self, symbol: str, *, fresh: bool = False) -> Mapping[str, Any] | None:
        """``symbol``'s row of the venue's funding-interval table (ccxt
        ``fetch_funding_intervals``; Binance ``/fapi/v1/fundingInfo``, which lists only the
        contracts whose interval or cap was adjusted), re-read hourly (``fresh``: now); None
        where there is none."""
        if not self._ex.has.get("fetchFundingIntervals"):
            return None
        now = self._clock.now_ms()
        cached = self._funding_rows.get(symbol)
        if not fresh and cached is not None and now - cached[1] < _INTERVAL_TTL_MS:
            return cached[0]
        table = self._call(
            lambda: self._ex.fetch_funding_intervals([symbol]), "fetch_funding_intervals"
        )
        if not isinstance(table, Mapping):
            raise mapping.UnexpectedResponse(
                f"{symbol} funding intervals: expected a table by symbol, got {table!r:.80}"
            )
        row = table.get(symbol)
        found = row if isinstance(row, Mapping) else None
        self._funding_rows[symbol] = (found, now)
        return found


def _resend_when_absent(request: OrderRequest) -> bool:
    """Whether ``request`` may be sent again under its client id after a send whose outcome
    is uncertain (a timeout, a 5xx, a lost answer) and a lookup by that id that finds nothing.

    The lookup's "not found" proves nothing about a send whose execution status the venue
    itself calls unknown (Binance -1007): the venue may act on it after the lookup, or its
    order query may trail its matching engine. And Binance keeps ``newClientOrderId`` unique
    among *open* orders only (exchange-facts 3.3, 6): an order that filled at once no longer
    holds its id, so the resend is accepted and fills a second time.

    - An order that can add exposure (an entry, whatever its type) is never resent: its
      outcome stays unknown, settled by client id at the next job, and the engine re-plans
      from the position it then reads under a new client id. A limit order is included: one
      priced through the book fills at once and is then no longer open either (the bot sends
      no limit entry today). The cost is an entry one decision later.
    - A reduce-only or close-position order is resent: a duplicate cannot open or increase a
      position (the venue refuses or trims a reduce-only order that would: Binance -2022,
      Bybit 110017), at worst it reduces more than planned, toward flat; while a close left
      unknown waits a guard interval in a crash with the position still on. A stop or a
      take-profit (always reduce-only or close-position here) rests, and the venue refuses
      a second order under an id an open one holds (Binance -4116, Bybit 110072), which the
      duplicate branch of the retry settles by a lookup.

    The same rule holds on every venue: Bybit documents ``orderLinkId`` as unique whatever
    the order's status (the loopback implements it), which would make a resend safe there,
    but that is not verified against the venue (exchange-facts 3.3), and not resending costs
    one decision's delay.
    """
    return not request.can_add_exposure


def _asked(order: Order, client_id: str) -> Order:
    """The order a lookup by ``client_id`` answered, which must be that order."""
    if order.client_id != client_id:
        raise mapping.UnexpectedResponse(
            f"lookup {client_id}: the venue answered order {order.exchange_id or '?'} with "
            f"client id {order.client_id or None!r}"
        )
    return order


def _leverage_setting(symbol: str, row: object) -> Decimal:
    """The leverage setting (x) in ccxt's leverage row of ``symbol``."""
    if not isinstance(row, Mapping):
        # ccxt answers None when the venue's answer has no row of this contract (Binance
        # symbolConfig: an empty list, another contract's row)
        raise mapping.UnexpectedResponse(
            f"{symbol} leverage setting: the answer has no row of this contract ({row!r:.80})"
        )
    value = row.get("longLeverage")
    if value is None:
        value = row.get("shortLeverage")
    # a setting of 0 or below is no venue's: the engine sizes a flat contract's orders on it
    return mapping.positive(value, f"{symbol} leverage setting")


# Where _retry_after keeps the seconds it read on a rate-limit exception.
_RETRY_AFTER = "_bot_retry_after"

# What ccxt's parsers raise on an answer of the wrong shape (a string where a dict belongs...).
_PARSE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError, ArithmeticError)


def readable(fn: Callable[[], T], what: str) -> T:
    """Call ``fn`` (one ccxt call); ccxt's parser failing on the answer is ``ccxt.BadResponse``.

    ``BadResponse`` is transient in ccxt's tree: a read is retried (and reported unreadable if
    it stays garbled), an order POST is settled by a lookup by client id, never resent blind.
    """
    try:
        return fn()
    except ccxt.BaseError:
        raise
    except (*_PARSE_ERRORS, mapping.UnexpectedResponse) as exc:
        raise ccxt.BadResponse(
            f"{what}: the answer could not be read ({type(exc).__name__}: {exc})"
        ) from exc


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def require_json_replies(exchange: Any, envelope_key: str | None = None) -> None:
    """Make a 2xx answer that is not JSON a :class:`ccxt.BadResponse` on ``exchange``.

    With ``envelope_key`` (Bybit: ``retCode``) a 2xx JSON answer must also be an object carrying
    that key: ccxt's bybit raises a plain ``ExchangeError`` (a rejection) for ``{}`` or ``[]``,
    which would turn an order the venue took into "rejected".

    Both venues answer every REST call with JSON. A proxy's HTML page or a truncated body with
    status 200 otherwise reaches ccxt's parsers as a string, which they read as an empty list
    (no positions) or fail on with an ``AttributeError``. ``BadResponse`` is transient in ccxt's
    tree: a read is retried and then reported unreadable; an order POST is looked up by its
    client id, never resent blind. The message names the path only: the query string carries
    the signature.
    """
    original = exchange.on_rest_response

    def checked(
        code: Any,
        reason: Any,
        url: str,
        method: str,
        response_headers: Any,
        response_body: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        body = original(
            code, reason, url, method, response_headers, response_body, request_headers,
            request_body,
        )  # fmt: skip
        if 200 <= int(code) < 300:
            try:
                # strict JSON: ccxt parses with orjson where it is installed, which refuses the
                # NaN/Infinity literals Python's json takes; ccxt then hands the body on as
                # text, and a list read from text is empty (no orders, no positions)
                decoded = json.loads(body, parse_constant=_no_constant)
            except (TypeError, ValueError):
                snippet = str(body)[:60].replace("\n", " ")
                raise ccxt.BadResponse(
                    f"{exchange.id} {method} {urlsplit(url).path}: HTTP {code} answer is not "
                    f"JSON ({snippet!r})"
                ) from None
            if envelope_key is not None and not (
                isinstance(decoded, dict) and envelope_key in decoded
            ):
                raise ccxt.BadResponse(
                    f"{exchange.id} {method} {urlsplit(url).path}: HTTP {code} answer has no "
                    f"{envelope_key} ({str(body)[:60]!r})"
                )
            status = decoded.get(envelope_key) if envelope_key is not None else 0
            if isinstance(status, bool) or not isinstance(status, int):
                # ccxt reads any retCode other than 0 as the venue's refusal: an order the
                # venue took would be "rejected" (its fill never recorded, its position
                # foreign). Bybit's retCode is always a JSON integer.
                raise ccxt.BadResponse(
                    f"{exchange.id} {method} {urlsplit(url).path}: HTTP {code} answer's "
                    f"{envelope_key} is not a number ({status!r})"
                )
        return body

    exchange.on_rest_response = checked
