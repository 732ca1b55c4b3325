"""ccxt exceptions -> bot.errors, the retry policies, venue capabilities and the factory.

No network: ccxt exception instances are built by hand with the text ccxt produces
(``"<exchange id> <raw body>"``), and the retried callables are small hand-written fakes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import ccxt
import pytest

from bot import errors
from bot.clock import SimClock
from bot.exchange import ccxt_errors
from bot.exchange.capabilities import (
    VENUES,
    check_capabilities,
    missing_capabilities,
    venue_profile,
)
from bot.exchange.ccxt_errors import map_ccxt_error, retry_after_seconds
from bot.exchange.factory import make_ccxt_exchange, rewrite_api_urls
from bot.exchange.retry import RetryPolicy, call_with_retry, submit_idempotent

T0 = 1_700_000_000_000


def binance(cls: type[ccxt.BaseError], code: int, msg: str) -> ccxt.BaseError:
    return cls(f'binanceusdm {{"code":{code},"msg":"{msg}"}}')


def bybit(cls: type[ccxt.BaseError], code: int, msg: str) -> ccxt.BaseError:
    return cls(f'bybit {{"retCode":{code},"retMsg":"{msg}","result":{{}}}}')


# -- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected", "code"),
    [
        (
            binance(ccxt.InsufficientFunds, -2019, "Margin is insufficient."),
            errors.InsufficientMargin,
            -2019,
        ),
        (
            binance(ccxt.InvalidOrder, -2022, "ReduceOnly Order is rejected."),
            errors.ReduceOnlyRejected,
            -2022,
        ),
        (
            binance(ccxt.OperationRejected, -4118, "ReduceOnly Order Failed."),
            errors.ReduceOnlyRejected,
            -4118,
        ),
        (
            binance(ccxt.InvalidOrder, -4116, "ClientOrderId is duplicated."),
            errors.DuplicateClientId,
            -4116,
        ),
        (
            binance(ccxt.InvalidOrder, -4164, "Order's notional must be no smaller than 100"),
            errors.InvalidQuantity,
            -4164,
        ),
        (
            binance(ccxt.BadRequest, -1111, "Precision is over the maximum"),
            errors.InvalidQuantity,
            -1111,
        ),
        (
            binance(ccxt.BadRequest, -4004, "Quantity less than minimum quantity."),
            errors.InvalidQuantity,
            -4004,
        ),
        (
            binance(ccxt.BadRequest, -4023, "Quantity not increased by step size."),
            errors.InvalidQuantity,
            -4023,
        ),
        (binance(ccxt.OrderNotFound, -2013, "Order does not exist."), errors.OrderNotFound, -2013),
        (binance(ccxt.OrderNotFound, -2011, "Unknown order sent."), errors.OrderNotFound, -2011),
        (
            binance(ccxt.InvalidOrder, -4120, "Order type not supported"),
            errors.OrderRejected,
            -4120,
        ),
        (
            bybit(ccxt.InvalidOrder, 110017, "reduce-only rule not satisfied"),
            errors.ReduceOnlyRejected,
            110017,
        ),
        (bybit(ccxt.InsufficientFunds, 110007, "ab not enough"), errors.InsufficientMargin, 110007),
        (
            bybit(ccxt.InvalidOrder, 110072, "OrderLinkedID is duplicate"),
            errors.DuplicateClientId,
            110072,
        ),
    ],
)
def test_order_rejections_by_venue_code(
    exc: ccxt.BaseError, expected: type[errors.OrderRejected], code: int
) -> None:
    mapped = map_ccxt_error(exc, placing_order=True)
    assert type(mapped) is expected
    assert isinstance(mapped, errors.OrderRejected)
    assert mapped.code == code
    assert str(code) in str(mapped)  # the venue's text survives


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            ccxt.RequestTimeout("binanceusdm POST http://x/fapi/v1/order"),
            errors.TransientExchangeError,
        ),
        (
            ccxt.ExchangeNotAvailable("binanceusdm 503 Service Unavailable"),
            errors.TransientExchangeError,
        ),
        (
            ccxt.NetworkError("binanceusdm POST http://x/fapi/v1/order"),
            errors.TransientExchangeError,
        ),
        (ccxt.OnMaintenance("binanceusdm maintenance"), errors.TransientExchangeError),
        (binance(ccxt.OperationFailed, -1001, "Internal error"), errors.TransientExchangeError),
        (ccxt.NullResponse("binanceusdm empty"), errors.TransientExchangeError),
        (
            binance(ccxt.InvalidNonce, -1021, "Timestamp outside of the recvWindow."),
            errors.ClockDrift,
        ),
        (bybit(ccxt.InvalidNonce, 10002, "invalid request time"), errors.ClockDrift),
        (binance(ccxt.AuthenticationError, -2015, "Invalid API-key"), errors.AuthenticationFailed),
        (ccxt.PermissionDenied("binanceusdm no futures permission"), errors.AuthenticationFailed),
        (ccxt.NotSupported("binanceusdm fetchX() not supported"), errors.NotSupported),
        (
            binance(ccxt.ExchangeError, -4161, "Leverage reduction is not supported"),
            errors.PermanentExchangeError,
        ),
        (binance(ccxt.BadSymbol, -1121, "Invalid symbol."), errors.NoSuchSymbol),
        (
            binance(ccxt.MarginModeAlreadySet, -4046, "No need to change margin type."),
            errors.PermanentExchangeError,
        ),
    ],
)
def test_classes_outside_an_order(
    exc: ccxt.BaseError, expected: type[errors.ExchangeError]
) -> None:
    mapped = map_ccxt_error(exc)
    assert type(mapped) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (binance(ccxt.BadSymbol, -1121, "Invalid symbol."), errors.NoSuchSymbol),
        (bybit(ccxt.BadRequest, 10001, "params error: symbol invalid"), errors.NoSuchSymbol),
        (bybit(ccxt.BadRequest, 10001, "params error: Symbol Invalid"), errors.NoSuchSymbol),
        (bybit(ccxt.BadSymbol, 10001, "Not supported symbols"), errors.NoSuchSymbol),
        (ccxt.BadSymbol("bybit does not have market symbol POL/USDT:USDT"), errors.NoSuchSymbol),
        # Bybit's 10001 is any parameter error: only the symbol's says "no such symbol"
        (
            bybit(ccxt.BadRequest, 10001, "position idx not match position mode"),
            errors.PermanentExchangeError,
        ),
        (bybit(ccxt.BadRequest, 10001, "params error: qty invalid"), errors.PermanentExchangeError),
    ],
)
def test_no_such_symbol_is_its_own_class_outside_an_order(
    exc: ccxt.BaseError, expected: type[errors.ExchangeError]
) -> None:
    """A read naming a contract the venue does not know is NoSuchSymbol (the engine asks the
    venue's market list whether it is delisted); an order refused so stays an OrderRejected."""
    assert type(map_ccxt_error(exc)) is expected
    assert not ccxt_errors.is_transient(exc)
    placed = map_ccxt_error(exc, placing_order=True)
    assert isinstance(placed, errors.OrderRejected)


def test_rate_limit_carries_retry_after() -> None:
    mapped = map_ccxt_error(
        ccxt.DDoSProtection("binanceusdm 429 Too Many Requests"), retry_after=7.0
    )
    assert isinstance(mapped, errors.RateLimited)
    assert mapped.retry_after == 7.0
    mapped = map_ccxt_error(binance(ccxt.RateLimitExceeded, -1003, "Too many requests"))
    assert isinstance(mapped, errors.RateLimited)
    assert mapped.retry_after is None


def test_permanent_error_while_placing_becomes_order_rejected() -> None:
    exc = binance(ccxt.ExchangeError, -4130, "An open stop or take profit order with closePosition")
    mapped = map_ccxt_error(exc, placing_order=True)
    assert type(mapped) is errors.OrderRejected
    assert mapped.code == -4130
    # ... but an authentication failure stays one
    auth = map_ccxt_error(binance(ccxt.AuthenticationError, -2015, "Invalid"), placing_order=True)
    assert type(auth) is errors.AuthenticationFailed


def test_ccxt_precision_refusal_is_invalid_quantity() -> None:
    exc = ccxt.InvalidOrder(
        "binanceusdm amount of BTC/USDT:USDT must be greater than minimum amount precision of 0.001"
    )
    assert type(map_ccxt_error(exc, placing_order=True)) is errors.InvalidQuantity


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-1"}, None),
        ({"Content-Type": "application/json"}, None),
        (None, None),
    ],
)
def test_retry_after_header(headers: dict[str, str] | None, seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_bybit_limit_reset_timestamp_gives_the_wait() -> None:
    headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": "1700000002500"}
    assert retry_after_seconds(headers, now_ms=1_700_000_000_000) == 2.5
    assert retry_after_seconds(headers, now_ms=1_700_000_003_000) is None  # already reset
    far = {"X-Bapi-Limit-Reset-Timestamp": "1700003600000"}  # an hour on: no per-second window
    assert retry_after_seconds(far, now_ms=1_700_000_000_000) == 60.0
    assert retry_after_seconds(headers) is None  # without the time it cannot be read


@pytest.mark.parametrize(
    ("venue", "status", "headers", "seconds"),
    [
        # Bybit's front door: "403, access too frequent", no end named (v5 rate-limit docs)
        ("bybit", 403, {"Content-Type": "text/plain"}, 600.0),
        ("bybit", 403, None, 600.0),
        # the API's own answer carries its per-UID limit headers: not the IP ban
        ("bybit", 403, {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0"}, None),
        ("bybit", 200, {}, None),  # 10006 travels with HTTP 200
        ("bybit", None, {}, None),  # no answer read
        ("binanceusdm", 403, {}, None),  # Binance's ban (418) names its end (Retry-After)
        ("binanceusdm", 418, {}, None),
    ],
)
def test_an_ip_ban_that_names_no_end_is_held_the_least_the_venue_documents(
    venue: str, status: int | None, headers: dict[str, str] | None, seconds: float | None
) -> None:
    assert ccxt_errors.ip_ban_hold(VENUES[venue].ip_ban, status, headers) == seconds


def test_a_rate_limit_says_whether_the_venue_named_its_end() -> None:
    banned = ccxt.RateLimitExceeded("bybit GET https://api.bybit.com/v5/position/list 403 ")
    plain = map_ccxt_error(banned, retry_after=None)
    assert isinstance(plain, errors.RateLimited)
    assert plain.end_named
    setattr(banned, ccxt_errors.NO_END_NAMED, True)
    mapped = map_ccxt_error(banned, retry_after=600.0)
    assert isinstance(mapped, errors.RateLimited)
    assert (mapped.retry_after, mapped.end_named) == (600.0, False)


def test_benign_no_change_answers() -> None:
    binance_codes = VENUES["binanceusdm"].benign_codes
    assert ccxt_errors.is_benign(
        binance(ccxt.OperationRejected, -4059, "No need to change position side."),
        binance_codes["set_position_mode"],
    )
    assert ccxt_errors.is_benign(
        binance(ccxt.MarginModeAlreadySet, -4046, "No need to change margin type."), frozenset()
    )
    assert ccxt_errors.is_benign(
        bybit(ccxt.BadRequest, 110043, "leverage not modified"),
        VENUES["bybit"].benign_codes["set_leverage"],
    )
    assert not ccxt_errors.is_benign(
        binance(ccxt.ExchangeError, -4161, "Leverage reduction is not supported"),
        binance_codes["set_position_mode"],
    )


# -- read retries ----------------------------------------------------------------------------


class Flaky:
    """Raises the given exceptions in turn, then returns ``result``."""

    def __init__(self, failures: list[BaseException], result: object = "ok") -> None:
        self.failures = list(failures)
        self.result = result
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


class Resync:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def run_read(
    fn: Callable[[], object],
    clock: SimClock,
    *,
    resync: Callable[[], None] = lambda: None,
    retry_after: float | None = None,
    policy: RetryPolicy | None = None,
) -> object:
    return call_with_retry(
        fn,
        clock=clock,
        policy=policy or RetryPolicy(attempts=5, max_seconds=30),
        retry_after_of=lambda exc: retry_after if ccxt_errors.is_rate_limit(exc) else None,
        resync=resync,
        what="test read",
    )


def test_transient_read_errors_are_retried_with_clock_sleeps() -> None:
    clock = SimClock(T0)
    fn = Flaky([ccxt.ExchangeNotAvailable("503"), ccxt.RequestTimeout("timeout")])
    assert run_read(fn, clock) == "ok"
    assert fn.calls == 3
    assert clock.now_ms() - T0 <= 2 * 5000  # backoff capped at 5 s per wait


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.InvalidOrder("x"),
        ccxt.InsufficientFunds("x"),
        ccxt.AuthenticationError("x"),
        ccxt.BadRequest("x"),
        ccxt.NotSupported("x"),
        ccxt.OrderNotFound("x"),
    ],
)
def test_permanent_errors_are_never_retried(exc: ccxt.BaseError) -> None:
    clock = SimClock(T0)
    fn = Flaky([exc])
    with pytest.raises(type(exc)):
        run_read(fn, clock)
    assert fn.calls == 1
    assert clock.now_ms() == T0


def test_retry_after_is_honoured_on_a_read() -> None:
    clock = SimClock(T0)
    fn = Flaky([ccxt.DDoSProtection("429")])
    assert run_read(fn, clock, retry_after=4.0) == "ok"
    assert clock.now_ms() - T0 == 4000


def test_attempts_run_out_and_the_ccxt_error_is_reraised() -> None:
    clock = SimClock(T0)
    fn = Flaky([ccxt.NetworkError(str(i)) for i in range(10)])
    with pytest.raises(ccxt.NetworkError, match=r"^2$"):
        run_read(fn, clock, policy=RetryPolicy(attempts=3, max_seconds=60))
    assert fn.calls == 3


def test_time_budget_on_the_injected_clock_stops_retries() -> None:
    clock = SimClock(T0)
    fn = Flaky([ccxt.DDoSProtection("429") for _ in range(10)])
    with pytest.raises(ccxt.DDoSProtection):
        run_read(fn, clock, retry_after=20.0, policy=RetryPolicy(attempts=10, max_seconds=30))
    assert fn.calls == 2  # at 0 s and 20 s; a third would start at 40 s, past the 30 s budget


def test_invalid_nonce_resyncs_once_then_gives_up() -> None:
    clock = SimClock(T0)
    resync = Resync()
    fn = Flaky([ccxt.InvalidNonce("-1021")])
    assert run_read(fn, clock, resync=resync) == "ok"
    assert (fn.calls, resync.calls) == (2, 1)

    resync = Resync()
    fn = Flaky([ccxt.InvalidNonce("-1021"), ccxt.InvalidNonce("-1021"), ccxt.InvalidNonce("-1021")])
    with pytest.raises(ccxt.InvalidNonce):
        run_read(fn, clock, resync=resync)
    assert (fn.calls, resync.calls) == (2, 1)


# -- idempotent order submission -------------------------------------------------------------


class Venue:
    """A fake venue: ``send`` fails as scripted; an accepted send records the order."""

    def __init__(self, script: list[tuple[str, BaseException | None]]) -> None:
        # ("accept" | "reject", exception raised to the caller or None)
        self.script = list(script)
        self.orders: list[str] = []
        self.sends = 0
        self.lookups = 0

    def send(self) -> str:
        self.sends += 1
        action, exc = self.script.pop(0) if self.script else ("accept", None)
        if action == "accept":
            self.orders.append("cid-1")
        if exc is not None:
            raise exc
        return "placed"

    def lookup(self) -> str | None:
        self.lookups += 1
        return "found" if self.orders else None


def submit(venue: Venue, clock: SimClock, **kw: Any) -> str:
    """Submit through ``venue``; by default an order whose duplicate cannot add exposure (a
    reduce-only order: resent when a lookup does not find it)."""
    policy = kw.pop("policy", RetryPolicy(attempts=4, max_seconds=30))
    return submit_idempotent(
        venue.send,
        venue.lookup,
        clock=clock,
        policy=policy,
        retry_after_of=kw.pop("retry_after_of", lambda exc: None),
        resync=kw.pop("resync", lambda: None),
        what="cid-1",
        resend_when_absent=kw.pop("resend_when_absent", True),
        rng=random.Random(1),
    )


def test_lost_answer_is_found_by_lookup_and_not_resent() -> None:
    venue = Venue([("accept", ccxt.RequestTimeout("timeout"))])
    assert submit(venue, SimClock(T0)) == "found"
    assert (venue.sends, venue.lookups, venue.orders) == (1, 1, ["cid-1"])


def test_not_found_after_a_failure_resends_an_order_that_cannot_add_exposure() -> None:
    venue = Venue([("reject", ccxt.ExchangeNotAvailable("503"))])
    assert submit(venue, SimClock(T0)) == "placed"
    assert (venue.sends, venue.lookups, venue.orders) == (2, 1, ["cid-1"])


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.RequestTimeout("timeout"),
        ccxt.ExchangeNotAvailable('binanceusdm 503 {"code":-1007,"msg":"Timeout waiting"}'),
        ccxt.NetworkError("connection reset"),
    ],
)
def test_not_found_after_an_uncertain_send_is_unknown_for_an_order_that_can_add_exposure(
    exc: ccxt.BaseError,
) -> None:
    """Defect: an entry whose send timed out was resent under its client id after one lookup
    said "not found"; the venue executed the first late (Binance -1007: execution status
    unknown) and, the id unique among open orders only, filled the resend too."""
    venue = Venue([("reject", exc)])
    with pytest.raises(errors.OutcomeUnknown, match="not resent"):
        submit(venue, SimClock(T0), resend_when_absent=False)
    assert (venue.sends, venue.lookups) == (1, 1)  # never resent: it may still execute


def test_an_order_that_can_add_exposure_is_still_resent_when_refused_before_processing() -> None:
    # a rate limit and a clock drift are refusals, not uncertain sends: resent, not looked up
    clock = SimClock(T0)
    venue = Venue([("reject", ccxt.DDoSProtection("429")), ("reject", ccxt.InvalidNonce("x"))])
    assert submit(venue, clock, resend_when_absent=False, retry_after_of=lambda e: 1.0) == (
        "placed"
    )
    assert (venue.sends, venue.lookups) == (3, 0)
    # an uncertain send after a refusal: looked up, not found, unknown
    venue = Venue([("reject", ccxt.DDoSProtection("429")), ("reject", ccxt.RequestTimeout("t"))])
    with pytest.raises(errors.OutcomeUnknown):
        submit(venue, SimClock(T0), resend_when_absent=False, retry_after_of=lambda e: 1.0)
    assert (venue.sends, venue.lookups) == (2, 1)


def test_an_order_that_can_add_exposure_found_by_its_lookup_is_returned() -> None:
    venue = Venue([("accept", ccxt.RequestTimeout("timeout"))])
    assert submit(venue, SimClock(T0), resend_when_absent=False) == "found"
    assert (venue.sends, venue.lookups) == (1, 1)


def test_rate_limit_waits_retry_after_without_lookup() -> None:
    clock = SimClock(T0)
    venue = Venue([("reject", ccxt.DDoSProtection("429"))])
    assert submit(venue, clock, retry_after_of=lambda exc: 3.0) == "placed"
    assert (venue.sends, venue.lookups) == (2, 0)
    assert clock.now_ms() - T0 == 3000


def test_still_unknown_after_all_attempts_raises_outcome_unknown() -> None:
    venue = Venue([("reject", ccxt.RequestTimeout("t")) for _ in range(4)])
    with pytest.raises(errors.OutcomeUnknown, match="cid-1: sent, no confirmation"):
        submit(venue, SimClock(T0))
    assert venue.sends == 4


def test_lookup_that_cannot_tell_propagates_outcome_unknown() -> None:
    def lookup() -> str | None:
        raise errors.OutcomeUnknown("lookup failed")

    venue = Venue([("accept", ccxt.RequestTimeout("t"))])
    with pytest.raises(errors.OutcomeUnknown, match="lookup failed"):
        submit_idempotent(
            venue.send,
            lookup,
            clock=SimClock(T0),
            policy=RetryPolicy(),
            retry_after_of=lambda exc: None,
            resync=lambda: None,
            what="cid-1",
            resend_when_absent=True,
        )
    assert venue.sends == 1


def test_only_rate_limits_reraise_the_rate_limit() -> None:
    venue = Venue([("reject", ccxt.RateLimitExceeded("-1003")) for _ in range(4)])
    with pytest.raises(ccxt.RateLimitExceeded):
        submit(venue, SimClock(T0))
    assert venue.orders == []


@pytest.mark.parametrize(
    "exc",
    [
        binance(ccxt.InsufficientFunds, -2019, "Margin is insufficient."),
        binance(ccxt.InvalidOrder, -2022, "ReduceOnly Order is rejected."),
        ccxt.AuthenticationError("x"),
        ccxt.BadRequest("x"),
    ],
)
def test_permanent_order_errors_are_sent_once(exc: ccxt.BaseError) -> None:
    venue = Venue([("reject", exc)])
    with pytest.raises(type(exc)):
        submit(venue, SimClock(T0))
    assert (venue.sends, venue.lookups) == (1, 0)


def test_clock_drift_resyncs_and_resends_once() -> None:
    resync = Resync()
    venue = Venue([("reject", ccxt.InvalidNonce("-1021"))])
    assert submit(venue, SimClock(T0), resync=resync) == "placed"
    assert (venue.sends, resync.calls) == (2, 1)

    resync = Resync()
    venue = Venue([("reject", ccxt.InvalidNonce("-1021")), ("reject", ccxt.InvalidNonce("-1021"))])
    with pytest.raises(ccxt.InvalidNonce):
        submit(venue, SimClock(T0), resync=resync)
    assert (venue.sends, resync.calls) == (2, 1)


def test_duplicate_client_id_returns_the_open_order() -> None:
    venue = Venue([("accept", binance(ccxt.InvalidOrder, -4116, "ClientOrderId is duplicated."))])
    assert submit(venue, SimClock(T0)) == "found"
    assert venue.sends == 1


@pytest.mark.parametrize(
    "exc",
    [
        binance(ccxt.InvalidOrder, -4116, "ClientOrderId is duplicated."),
        bybit(ccxt.InvalidOrder, 110072, "OrderLinkedID is duplicate"),
    ],
)
def test_a_taken_client_id_the_lookup_cannot_see_is_unknown_not_rejected(
    exc: ccxt.BaseError,
) -> None:
    # the venue says an order holds the id: it exists, whatever the lookup sees right now
    venue = Venue([("reject", exc)])
    with pytest.raises(errors.OutcomeUnknown, match="refuses the client id as taken"):
        submit(venue, SimClock(T0))
    assert (venue.sends, venue.lookups) == (1, 1)


# -- capabilities and factory ----------------------------------------------------------------


def test_supported_venues_have_every_capability() -> None:
    for name in VENUES:
        check_capabilities(getattr(ccxt, name)())


def test_missing_capability_is_named() -> None:
    okx = ccxt.okx()
    assert "fetchLeverageTiers (ccxt has['fetchLeverageTiers'])" in missing_capabilities(okx)
    with pytest.raises(errors.NotSupported, match=r"'okx' lacks .*fetchLeverageTiers"):
        check_capabilities(okx)


def test_missing_order_feature_is_named() -> None:
    ex = ccxt.binanceusdm()
    ex.features = {"swap": {"linear": {"createOrder": {"stopLossPrice": True}}}}
    with pytest.raises(errors.NotSupported, match=r"take-profit orders.*mark-price triggers"):
        check_capabilities(ex)


def test_unknown_venue_lists_the_supported_ones() -> None:
    with pytest.raises(errors.NotSupported, match="supported: binanceusdm, bybit"):
        venue_profile("kraken")


def make(name: str = "binanceusdm", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "demo": False,
        "api_url": None,
        "options": {},
        "api_key": "key",
        "api_secret": "secret",
        "password": None,
        "clock": SimClock(T0),
    }
    args.update(kw)
    return make_ccxt_exchange(name, **args)


def test_factory_rejects_unknown_exchange_names() -> None:
    with pytest.raises(
        errors.ConfigError, match="'okx' is not supported; supported: binanceusdm, bybit"
    ):
        make("okx")


def test_factory_defaults_and_passthrough() -> None:
    ex = make(
        options={"enableRateLimit": False, "timeout": 1500, "options": {"recvWindow": 5000}}
    ).exchange
    assert (ex.enableRateLimit, ex.timeout) == (False, 1500)
    assert ex.options["fetchCurrencies"] is False
    assert ex.options["adjustForTimeDifference"] is True
    assert ex.options["maxRetriesOnFailure"] == 0
    assert ex.options["recvWindow"] == 5000
    assert (ex.apiKey, ex.secret) == ("key", "secret")
    assert make().exchange.enableRateLimit is True


def test_factory_refuses_ccxt_retries() -> None:
    with pytest.raises(errors.ConfigError, match="maxRetriesOnFailure must stay 0"):
        make(options={"options": {"maxRetriesOnFailure": 2}})


def test_api_url_rewrites_every_endpoint_and_keeps_the_error_table() -> None:
    ex = make(api_url="http://127.0.0.1:8765").exchange
    assert ex.urls["api"]["fapiPrivate"] == "http://127.0.0.1:8765/fapi/v1"
    assert ex.urls["api"]["fapiPrivateV3"] == "http://127.0.0.1:8765/fapi/v3"
    assert ex.urls["api"]["sapi"] == "http://127.0.0.1:8765/sapi/v1"
    assert all(str(u).startswith("http://127.0.0.1:8765/") for u in ex.urls["api"].values())
    table = ex.get_exceptions_by_url("http://127.0.0.1:8765/fapi/v1/order", "exact")
    assert table["-2022"] is ccxt.InvalidOrder  # USD-M table, not the common one
    assert ex.id == "binanceusdm"


def test_api_url_credentials_are_kept_and_redacted_from_every_error_text() -> None:
    """A gateway's user and password in api_url stay in the URL ccxt requests (requests sends
    them as basic authentication), and ccxt quotes that URL in its error texts: the factory
    teaches the redactor both, as written and decoded, before any request."""
    ex = make(api_url="http://gw-user:pw%2Bfactory-83e1@127.0.0.1:8765").exchange
    url = ex.urls["api"]["fapiPrivateV3"] + "/positionRisk?timestamp=1&signature=00"
    assert url.startswith("http://gw-user:pw%2Bfactory-83e1@127.0.0.1:8765/")
    for text in (f"binanceusdm GET {url} 503 Service Unavailable", "decoded pw+factory-83e1"):
        mapped = str(map_ccxt_error(ccxt.ExchangeNotAvailable(text)))
        assert "factory-83e1" not in mapped
        assert "gw-user" not in mapped


def test_ccxt_verbose_is_always_off() -> None:
    """ccxt's verbose mode print()s the API key header and signed URLs to stdout, past the
    redactor: off whatever the options say (the configuration refuses it already)."""
    assert make(options={"verbose": True}).exchange.verbose is False


def test_api_url_must_be_a_plain_base() -> None:
    ex = ccxt.bybit()
    with pytest.raises(errors.ConfigError, match="expected http"):
        rewrite_api_urls(ex, "127.0.0.1:80")
    rewrite_api_urls(ex, "http://localhost:9000/")
    assert ex.urls["api"]["public"] == "http://localhost:9000"


def test_demo_uses_demo_trading_not_sandbox() -> None:
    ex = make(demo=True).exchange
    assert ex.urls["api"]["fapiPrivate"].startswith("https://demo-fapi.binance.com/")
    assert ex.options["enableDemoTrading"] is True
    bybit_ex = make("bybit", demo=True).exchange
    assert "api-demo" in bybit_ex.urls["api"]["private"]


def test_demo_and_api_url_together_are_refused() -> None:
    with pytest.raises(errors.ConfigError, match="either demo"):
        make(demo=True, api_url="http://127.0.0.1:1")


def test_preflight_reads_the_venue_cannot_answer_are_none_without_a_request() -> None:
    demo = make(demo=True)  # Binance demo trading has no /sapi host
    assert demo.fetch_key_permissions() is None
    bybit_ex = make("bybit")
    assert bybit_ex.fetch_key_permissions() is None
    assert bybit_ex.fetch_multi_assets_mode() is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"retCode":10000,"retMsg":"Server Timeout"}', errors.TransientExchangeError),
        ('{"retCode":10016,"retMsg":"Server error."}', errors.TransientExchangeError),
        ('{"retCode":10429,"retMsg":"System level frequency protection"}', errors.RateLimited),
    ],
)
def test_bybit_server_failures_are_transient_not_refusals(
    body: str, expected: type[errors.ExchangeError]
) -> None:
    """ccxt raises a plain ExchangeError for these Bybit codes; read as a refusal, an order the
    venue carried out was recorded "rejected" (https://bybit-exchange.github.io/docs/v5/error)."""
    exc = ccxt.ExchangeError(f"bybit {body}")
    mapped = map_ccxt_error(exc, placing_order=True)
    assert type(mapped) is expected
