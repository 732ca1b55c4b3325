"""Translate ccxt exceptions into the project's tree (:mod:`bot.errors`).

ccxt's classes are sometimes too coarse (Binance ``-2022`` reduce-only rejection and ``-4164``
min-notional are both ``InvalidOrder``; ``-4161`` is a plain ``ExchangeError``), so the venue code
in the message body is read first and the class is the fallback. The exception text is
``"<exchange id> <raw body>"`` (ccxt ``handle_errors``), e.g.
``binanceusdm {"code":-2022,"msg":"ReduceOnly Order is rejected."}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import ccxt

from bot import errors
from bot.exchange.capabilities import IpBan
from bot.logs import redact

_CODE = re.compile(r'"(?:code|retCode)"\s*:\s*"?(-?\d+)')

# Venue codes (Binance USD-M negative, Bybit positive) that ccxt's class does not pin down.
# https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
# https://bybit-exchange.github.io/docs/v5/error
REDUCE_ONLY_CODES = frozenset({-2022, -4118, 110017})
# (-4003 zero quantity, -4004 below minQty, -4005 above maxQty, -4023 off the step size)
INVALID_QUANTITY_CODES = frozenset({-4164, -1111, -1013, -4003, -4004, -4005, -4023, 110094})
INSUFFICIENT_MARGIN_CODES = frozenset({-2019, -2028, 110007, 110012, 110045})
DUPLICATE_ID_CODES = frozenset({-4116, 110072})
ORDER_NOT_FOUND_CODES = frozenset({-2013, -2011, 110001})
CLOCK_DRIFT_CODES = frozenset({-1021, 10002})
# The venue's own server failed: the request may have been carried out. ccxt raises a plain
# ExchangeError for Bybit's (a refusal, for the bot: an entry the venue filled was recorded
# "rejected"); Binance's -1000/-1001/-1006/-1007 are already ccxt transient classes.
SERVER_FAILED_CODES = frozenset({10000, 10016})  # Bybit "Server Timeout", "Server error"
# Refused before processing for load: resending the same request is safe (Bybit "System level
# frequency protection", which ccxt does not know).
RATE_LIMIT_CODES = frozenset({10429})

# A request naming a contract the venue does not know: delisted (the venue answers so to every
# request naming it once its market list drops it), or a symbol the bot got wrong. Binance USD-M
# -1121 "Invalid symbol." (ccxt BadSymbol); Bybit answers its general parameter error 10001
# with "params error: symbol invalid" (ccxt BadRequest, as every 10001) or "Not supported
# symbols" (ccxt BadSymbol): 10001 counts only with one of those messages.
# https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
# https://bybit-exchange.github.io/docs/v5/error
NO_SUCH_SYMBOL_CODES = frozenset({-1121})
PARAMETER_ERROR_CODES = frozenset({10001})
_NO_SUCH_SYMBOL_TEXT = re.compile(r"symbol invalid|not supported symbols", re.IGNORECASE)

# Rejected before the venue acted on it: resending the same request is safe.
RATE_LIMIT_TYPES: tuple[type[BaseException], ...] = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)
# Never retried: retrying cannot change the answer.
PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    ccxt.AuthenticationError,
    ccxt.InsufficientFunds,
    ccxt.InvalidOrder,
    ccxt.BadRequest,
    ccxt.NotSupported,
)


def venue_code(exc: BaseException) -> int | None:
    """The venue's numeric error code embedded in a ccxt exception message, if any."""
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def retry_after_seconds(
    headers: Mapping[str, object] | None, now_ms: int | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds form), or ``None``.

    Binance sends delta-seconds on 429/418. The HTTP-date form is ignored (``None``): the
    caller then falls back to its own backoff. Bybit sends no ``Retry-After`` but the epoch ms
    at which its limit resets, ``X-Bapi-Limit-Reset-Timestamp``
    (https://bybit-exchange.github.io/docs/v5/rate-limit): with ``now_ms`` that is used too.
    """
    if not headers:
        return None
    lowered = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    if "retry-after" in lowered:
        try:
            seconds = float(lowered["retry-after"])
        except ValueError:
            return None
        return seconds if seconds >= 0 else None
    reset = lowered.get("x-bapi-limit-reset-timestamp")
    if reset is not None and now_ms is not None and reset.isdigit():
        # ``now_ms`` must be the venue's time (the header is Bybit's clock). A reset already
        # passed says nothing of how long to wait (the caller's backoff applies); one further
        # than a minute is no per-second window's: taken as a minute, never as a ban of hours.
        wait = (int(reset) - now_ms) / 1000
        return min(wait, BYBIT_RESET_MAX_S) if wait > 0 else None
    return None


BYBIT_RESET_MAX_S = 60.0

# Set (True) on a ccxt rate-limit exception whose hold the venue named no end for (an IP ban
# without ``Retry-After``, see capabilities.IpBan): the hold is the bot's own.
NO_END_NAMED = "_bot_no_end_named"


def ip_ban_hold(
    ban: IpBan | None, status: int | None, headers: Mapping[str, object] | None
) -> float | None:
    """The seconds to hold every request after an answer that is the venue's IP ban as
    ``ban`` describes it (its status, none of its API's headers); None for any other."""
    if ban is None or status != ban.status:
        return None
    if any(str(k).lower().startswith(ban.api_headers) for k in (headers or {})):
        return None  # the API's own answer: its headers say when to try again
    return ban.hold_s


def end_named(exc: BaseException) -> bool:
    """Whether the venue said when the wait ``exc`` asks for ends (False: see NO_END_NAMED)."""
    return not getattr(exc, NO_END_NAMED, False)


def is_transient(exc: BaseException) -> bool:
    """True for ccxt errors that may succeed when the same request is repeated."""
    if isinstance(exc, PERMANENT_TYPES):
        return False
    if isinstance(exc, ccxt.OperationFailed):
        return True
    return isinstance(exc, ccxt.ExchangeError) and venue_code(exc) in (
        SERVER_FAILED_CODES | RATE_LIMIT_CODES
    )


def is_rate_limit(exc: BaseException) -> bool:
    if isinstance(exc, RATE_LIMIT_TYPES):
        return True
    return isinstance(exc, ccxt.ExchangeError) and venue_code(exc) in RATE_LIMIT_CODES


def is_clock_drift(exc: BaseException) -> bool:
    return isinstance(exc, ccxt.InvalidNonce) or venue_code(exc) in CLOCK_DRIFT_CODES


def is_order_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ccxt.OrderNotFound) or venue_code(exc) in ORDER_NOT_FOUND_CODES


def is_no_such_symbol(exc: BaseException) -> bool:
    """True when ``exc`` says the venue knows no such symbol (see NO_SUCH_SYMBOL_CODES)."""
    if isinstance(exc, ccxt.BadSymbol):
        return True
    code = venue_code(exc)
    if code in NO_SUCH_SYMBOL_CODES:
        return True
    return code in PARAMETER_ERROR_CODES and _NO_SUCH_SYMBOL_TEXT.search(str(exc)) is not None


def is_benign(exc: BaseException, codes: frozenset[int]) -> bool:
    """True when ``exc`` means "nothing to change" (``codes`` from the venue profile)."""
    return isinstance(exc, ccxt.MarginModeAlreadySet) or venue_code(exc) in codes


def map_ccxt_error(
    exc: BaseException,
    *,
    placing_order: bool = False,
    retry_after: float | None = None,
) -> errors.ExchangeError:
    """Return the :mod:`bot.errors` exception for a ccxt exception (the caller raises it).

    ``placing_order`` turns permanent refusals into :class:`~bot.errors.OrderRejected` (the port
    promises that for order rejections). Transient errors on an order POST are NOT turned into
    :class:`~bot.errors.OutcomeUnknown` here: that decision needs a lookup by client id.
    """
    # ccxt's text holds the request URL; for GET/DELETE that is the signed query string.
    text = redact(f"{type(exc).__name__}: {exc}")
    code = venue_code(exc)
    transient = _map_transient(exc, text, code, retry_after)
    if transient is not None:
        return transient
    by_code = _map_order_code(text, code)
    if by_code is not None:
        return by_code
    return _map_permanent(exc, text, code, placing_order)


def _map_transient(
    exc: BaseException, text: str, code: int | None, retry_after: float | None
) -> errors.ExchangeError | None:
    if is_clock_drift(exc):
        return errors.ClockDrift(text)
    if is_rate_limit(exc):
        return errors.RateLimited(text, retry_after=retry_after, end_named=end_named(exc))
    if is_transient(exc):
        return errors.TransientExchangeError(text)
    return None


def _map_order_code(text: str, code: int | None) -> errors.OrderRejected | None:
    if code is None:
        return None
    if code in REDUCE_ONLY_CODES:
        return errors.ReduceOnlyRejected(text, code)
    if code in INVALID_QUANTITY_CODES:
        return errors.InvalidQuantity(text, code)
    if code in INSUFFICIENT_MARGIN_CODES:
        return errors.InsufficientMargin(text, code)
    if code in DUPLICATE_ID_CODES:
        return errors.DuplicateClientId(text, code)
    if code in ORDER_NOT_FOUND_CODES:
        return errors.OrderNotFound(text, code)
    return None


def _map_permanent(
    exc: BaseException, text: str, code: int | None, placing_order: bool
) -> errors.ExchangeError:
    if isinstance(exc, ccxt.AuthenticationError):
        return errors.AuthenticationFailed(text)
    if isinstance(exc, ccxt.NotSupported):
        return errors.NotSupported(text)
    if isinstance(exc, ccxt.InsufficientFunds):
        return errors.InsufficientMargin(text, code)
    if isinstance(exc, ccxt.OrderNotFound):
        return errors.OrderNotFound(text, code)
    if isinstance(exc, ccxt.DuplicateOrderId):
        return errors.DuplicateClientId(text, code)
    if isinstance(exc, ccxt.InvalidOrder) and "minimum amount precision" in str(exc):
        # raised by ccxt's amount_to_precision before anything is sent
        return errors.InvalidQuantity(text, code)
    if isinstance(exc, ccxt.InvalidOrder) or placing_order:
        return errors.OrderRejected(text, code)
    if is_no_such_symbol(exc):
        # (a read, a cancel, a setting: the engine asks the venue's market list whether the
        # contract is withdrawn, Reconciler._withdrawn)
        return errors.NoSuchSymbol(text)
    return errors.PermanentExchangeError(text)
