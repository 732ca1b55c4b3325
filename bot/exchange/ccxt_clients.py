"""One ccxt client per thread, one rate limit for all of them.

A sync ccxt instance is not meant to be shared by threads: each request writes instance state
(``last_response_headers``, the rate limiter's last request time, cached options such as Binance's
leverage brackets) and all requests go through one ``requests.Session``. When the engine reads the
account and protects several contracts at once (:mod:`bot.engine.fanout`), each worker thread
therefore gets its own client, cloned from the one the adapter was built with: same class,
configuration and keys, same loaded markets and options (the server-time offset included).

ccxt's rate limiter is per instance (``throttle`` sleeps until ``rateLimit x cost`` ms after the
instance's previous request). :class:`SharedPacer` replaces it on every client by one schedule:
request *starts* keep one client's average rate (with a small burst allowance), while requests
already sent may wait for their answers in parallel (that waiting, not the sending, is what a
timeout costs). Sleeps go through the injected clock. While the venue's ``Retry-After`` of a 429
or 418 runs (:meth:`SharedPacer.hold`), or the bot's own hold of an IP ban whose answer named no
end (Bybit's 403, capabilities.IpBan), no client sends anything: each request fails at once with
:class:`VenueAskedToWait`, whatever thread or job asks.
"""

from __future__ import annotations

import contextvars
import copy
import decimal
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import ccxt

from bot.clock import Clock
from bot.exchange.ccxt_errors import NO_END_NAMED

T = TypeVar("T")


class VenueAskedToWait(ccxt.RateLimitExceeded):  # type: ignore[misc]  # ccxt is untyped
    """Not sent: the venue's ``Retry-After`` (an earlier 429 or 418) still runs.

    Binance: a client that keeps sending after a 429 is banned by IP (418), for 2 minutes up
    to 3 days (https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
    "LIMITS"; shared notes exchange-facts section 7). A rate-limit error like the venue's own,
    carrying the seconds left (``retry_after``): the retries wait them out or give up, and the
    jobs that come meanwhile fail fast instead of sending. ``named`` False: the hold is the
    bot's own, of an IP ban whose answer named no end (ccxt_errors.NO_END_NAMED)."""

    def __init__(self, seconds: float, *, named: bool = True) -> None:
        super().__init__(
            f"not sent: the venue asked for no request for {seconds:.1f} s more "
            "(Retry-After of an earlier 429/418)"
            if named
            else f"not sent: no request to the venue for {seconds:.1f} s more (an IP ban "
            "whose answer named no end: held the least the venue documents, then probed)"
        )
        self.retry_after = seconds
        if not named:
            setattr(self, NO_END_NAMED, True)


class SharedPacer:
    """ccxt's rate limit (``rateLimit x cost`` ms per request) for all clients together.

    A generic cell rate algorithm: on average requests start no faster than one client would
    start them, with a burst allowance of ``burst`` seconds of that budget (20 weight units on
    Binance, whose own limit is 2400 a minute) so that the few reads of a tick are not spaced
    out one by one.
    """

    def __init__(self, clock: Clock, burst: float = 1.0) -> None:
        self._clock = clock
        self._burst = burst
        self._lock = threading.Lock()
        self._tat = 0.0  # theoretical arrival time (clock.monotonic() seconds)
        self._quiet_until = 0.0  # clock.monotonic() seconds: no request before (Retry-After)
        self._quiet_named = True  # the venue named that end (False: an IP ban's, the bot's own)

    def install(self, client: Any) -> None:
        """Make ``client``'s rate limiter this schedule (ccxt calls ``throttle(cost)``), and
        its requests wait out :meth:`hold`."""

        def throttle(cost: float | None = None) -> None:
            self.wait(float(client.rateLimit) * (1.0 if cost is None else float(cost)) / 1000)

        client.throttle = throttle
        # Every HTTP request of a ccxt client goes through ``fetch`` (``throttle`` only with
        # ``enableRateLimit``): the hold is checked there.
        send = client.fetch

        def fetch(*args: Any, **kwargs: Any) -> Any:
            self.check_hold()
            return send(*args, **kwargs)

        client.fetch = fetch

    def hold(self, seconds: float, *, named: bool = True) -> None:
        """The venue asked for no request for ``seconds`` (``Retry-After``; ``named`` False:
        an IP ban that named no end, held as long as the bot chose): until then every client's
        request raises :class:`VenueAskedToWait` instead of going out."""
        with self._lock:
            until = self._clock.monotonic() + seconds
            if until > self._quiet_until:
                self._quiet_until, self._quiet_named = until, named

    def check_hold(self) -> None:
        """Raise :class:`VenueAskedToWait` (the request is not sent) while a hold runs."""
        with self._lock:
            left = self._quiet_until - self._clock.monotonic()
            named = self._quiet_named
        if left > 0:
            raise VenueAskedToWait(left, named=named)

    def wait(self, seconds: float) -> None:
        """Take ``seconds`` of budget; sleep until the schedule allows the request to start."""
        with self._lock:
            now = self._clock.monotonic()
            tat = max(self._tat, now)
            start = max(now, tat - self._burst)
            self._tat = tat + seconds
        if start > now:
            self._clock.sleep(start - now)


def keep_decimal_context(client: Any) -> None:
    """Run ``client``'s number rounding in a decimal context of its own.

    ccxt's ``decimal_to_precision`` (every ``amount_to_precision`` / ``price_to_precision`` of
    an order) sets the calling thread's decimal context for good: rounding ``ROUND_HALF_UP``
    and ``Underflow`` trapped (ccxt/base/decimal_to_precision.py, ``context.rounding = ...``).
    After the first order a live or paper bot's own Decimal arithmetic in that thread then
    rounded its 28th digit differently from a simulation of the same ticks, and a result
    too small to represent would raise. ccxt's exchanges call it through the attribute each
    instance sets in ``__init__`` (``self.decimal_to_precision``), which this replaces."""
    inner = client.decimal_to_precision

    def isolated(*args: Any, **kwargs: Any) -> Any:
        with decimal.localcontext():
            return inner(*args, **kwargs)

    client.decimal_to_precision = isolated


def keep_last_status(client: Any) -> None:
    """Keep the HTTP status of ``client``'s last answer as ``client.last_http_status``.

    ccxt keeps the last answer's headers (``last_response_headers``) but not its status, and
    a venue's IP ban is told by its status (capabilities.IpBan: Bybit's 403 names no end and
    carries none of its API's headers)."""
    inner = client.on_rest_response

    def kept(code: Any, *rest: Any) -> Any:
        client.last_http_status = int(code)
        return inner(code, *rest)

    client.last_http_status = None
    client.on_rest_response = kept


class ClientPool:
    """The ccxt client of the calling thread.

    The thread that built the adapter uses ``primary``. Another thread gets a client of its own
    from ``spawn`` (without it, ``primary`` is shared), with the primary's markets and a copy of
    its options; ``prepare`` then configures it as the primary was. Workers of the engine's pool
    live as long as the process, so at most one client per worker is ever made.
    """

    def __init__(
        self,
        primary: Any,
        *,
        spawn: Callable[[], Any] | None,
        prepare: Callable[[Any], None],
    ) -> None:
        self.primary = primary
        self._spawn = spawn
        self._prepare = prepare
        self._local = threading.local()
        self._local.client = primary
        self._lock = threading.Lock()
        self._clients: list[Any] = [primary]
        prepare(primary)

    def current(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._clone() if self._spawn is not None else self.primary
            self._local.client = client
        return client

    def clients(self) -> list[Any]:
        with self._lock:
            return list(self._clients)

    def share_time_difference(self, source: Any) -> None:
        """After a clock resync on ``source``: every client signs with the new offset."""
        offset = source.options.get("timeDifference")
        for client in self.clients():
            client.options["timeDifference"] = offset

    def share_markets(self, source: Any) -> None:
        """After ``source`` (re)loaded the markets: every client rounds on the same grid."""
        for client in self.clients():
            if client is not source:
                client.set_markets(source.markets, source.currencies)

    def _clone(self) -> Any:
        assert self._spawn is not None  # noqa: S101 - checked by the caller
        client = self._spawn()
        primary = self.primary
        with self._lock:
            client.options = copy.deepcopy(primary.options)
            if primary.markets:
                client.set_markets(primary.markets, primary.currencies)
            self._clients.append(client)
        self._prepare(client)
        return client


class Hedge:
    """Hedged reads: a read still unanswered after ``after`` seconds is sent once more, on
    another client, and the first answer wins.

    A venue that drops one request in ten makes every tick wait out ccxt's whole timeout on
    some read; a second copy of a read changes nothing on the venue and usually answers in
    milliseconds. Only for reads: an order or a cancel is never sent twice this way (orders
    have :func:`~bot.exchange.retry.submit_idempotent`). The copy that lost runs on until its
    own timeout on a pool thread and is ignored. ``after=None`` disables hedging.
    """

    def __init__(self, after: float | None, workers: int = 10) -> None:
        if after is not None and after <= 0:
            raise ValueError(f"Hedge: after must be > 0 seconds, got {after}")
        self.after = after
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], T]) -> T:
        if self.after is None:
            return fn()
        pool = self._executor()
        first = pool.submit(contextvars.copy_context().run, fn)
        wait([first], timeout=self.after)
        if first.done():
            return first.result()  # a quick failure is raised as it is
        second = pool.submit(contextvars.copy_context().run, fn)
        pending = {first, second}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in (first, second):
                if future in done and future.exception() is None:
                    return future.result()
        return first.result()  # both failed: the first one's error

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="read")
            return self._pool
