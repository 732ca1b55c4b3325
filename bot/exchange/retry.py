"""Retry policies for the live adapter: tenacity for reads and cancels, a bespoke loop for orders.

Reads and cancels are safe to repeat: :func:`call_with_retry` retries transient ccxt errors with
full-jitter exponential backoff, honours ``Retry-After`` on 429/418, resynchronises the clock once
after ``InvalidNonce`` and sleeps through the injected :class:`~bot.clock.Clock`.

Order placement is never retried blindly (a resend after a lost answer can double an order):
:func:`submit_idempotent` resends the *same client id* only when the venue certainly did not act
on the request (rate limited, clock drift) or, for an order whose duplicate cannot add exposure,
when a lookup by client id found nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import ccxt
from loguru import logger
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_random_exponential
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from bot import errors
from bot.clock import Clock
from bot.exchange.ccxt_errors import (
    DUPLICATE_ID_CODES,
    is_clock_drift,
    is_rate_limit,
    is_transient,
    venue_code,
)
from bot.logs import redact

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds of one retried call: attempts in total, seconds on the injected clock, backoff."""

    attempts: int = 5
    max_seconds: float = 30.0
    backoff_multiplier: float = 0.2  # seconds; attempt n waits uniform(0, mult * 2**n)
    backoff_max: float = 5.0  # seconds, cap of one backoff wait


class _StopBeforeClockDelay(stop_base):
    """Stop when the next attempt would start ``max_seconds`` or more after the first.

    Measured on the injected clock (tenacity's own stops read the OS clock).
    """

    def __init__(self, clock: Clock, max_seconds: float) -> None:
        self._clock = clock
        self._deadline = clock.monotonic() + max_seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._clock.monotonic() + retry_state.upcoming_sleep >= self._deadline


class _WaitRetryAfter(wait_base):
    """Wait what the venue asked for (``Retry-After``); otherwise full-jitter backoff."""

    def __init__(
        self, fallback: wait_base, retry_after_of: Callable[[BaseException], float | None]
    ) -> None:
        self._fallback = fallback
        self._retry_after_of = retry_after_of

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = _exception(retry_state)
        if exc is not None and is_clock_drift(exc):
            return 0.0  # the resync in before_sleep is the remedy, not waiting
        if exc is not None and is_rate_limit(exc):
            retry_after = self._retry_after_of(exc)
            if retry_after is not None:
                return retry_after
        return self._fallback(retry_state)


class _RetryTransient(retry_base):
    """Retry transient errors; a clock-drift error only once (after one resync).

    A garbled answer (``ccxt.BadResponse``: not JSON, or empty where a body belongs) is not
    retried here: the read reports the account unreadable at once and the next job reads again,
    so a venue answering garbage does not hold the tick (and the protection) for the backoff.
    """

    def __init__(self) -> None:
        self.resynced = False

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = _exception(retry_state)
        if exc is None:
            return False
        if is_clock_drift(exc):
            return not self.resynced
        if isinstance(exc, ccxt.BadResponse):
            return False
        return is_transient(exc)


def call_with_retry(
    fn: Callable[[], T],
    *,
    clock: Clock,
    policy: RetryPolicy,
    retry_after_of: Callable[[BaseException], float | None],
    resync: Callable[[], None],
    what: str,
) -> T:
    """Call ``fn`` (a read or a cancel), retrying transient ccxt errors.

    The last ccxt exception is re-raised unchanged when the attempts or the time run out;
    permanent errors (``InvalidOrder``, ``InsufficientFunds``, ``AuthenticationError``,
    ``BadRequest``, ``NotSupported``) are raised at once.
    """
    predicate = _RetryTransient()

    def before_sleep(retry_state: RetryCallState) -> None:
        exc = _exception(retry_state)
        sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "retry {} of {}: {} -> sleeping {:.2f}s",
            retry_state.attempt_number,
            what,
            _short(exc),
            sleep,
        )
        if exc is not None and is_clock_drift(exc):
            _resync_quietly(resync)
            predicate.resynced = True

    retrying = Retrying(
        sleep=clock.sleep,
        stop=stop_after_attempt(policy.attempts) | _StopBeforeClockDelay(clock, policy.max_seconds),
        wait=_WaitRetryAfter(
            wait_random_exponential(multiplier=policy.backoff_multiplier, max=policy.backoff_max),
            retry_after_of,
        ),
        retry=predicate,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)


def submit_idempotent(
    send: Callable[[], T],
    lookup: Callable[[], T | None],
    *,
    clock: Clock,
    policy: RetryPolicy,
    retry_after_of: Callable[[BaseException], float | None],
    resync: Callable[[], None],
    what: str,
    resend_when_absent: bool,
    rng: random.Random | None = None,
) -> T:
    """Send an order so that it reaches the venue at most once.

    ``send`` posts the order with a fixed client id. ``lookup`` finds it by that id: it returns
    the order, ``None`` when the venue does not show it (now), or raises
    :class:`~bot.errors.OutcomeUnknown` when it cannot tell.

    - rate limited (429/418): rejected before processing, so wait ``Retry-After`` and resend;
    - ``InvalidNonce``: rejected before processing, resync the clock and resend (once);
    - any other transient error (timeout, lost answer, 5xx): the order may exist, so back off,
      look it up and return it when found. When the lookup does not find it, the same id is
      resent only with ``resend_when_absent``; otherwise the outcome is
      :class:`~bot.errors.OutcomeUnknown` at once. "Not found" right after an uncertain send
      is not proof of absence: the venue may still execute the first request (Binance -1007
      "execution status unknown"), and a client id is unique only among *open* orders
      (exchange-facts 3.3), so a filled order's id does not stop the resend from filling a
      second time. The caller passes ``resend_when_absent`` only for an order whose duplicate
      cannot add exposure;
    - duplicate client id: an order has the id already: return it (unknown when the lookup
      cannot see it);
    - anything else: the ccxt exception propagates (never retried).

    Raises :class:`~bot.errors.OutcomeUnknown` when attempts or time run out after a send whose
    outcome was unknown, and :class:`~bot.errors.RateLimited` when every send was refused.
    """
    state = _SubmitState(rng if rng is not None else random.Random())
    deadline = clock.monotonic() + policy.max_seconds
    for attempt in range(1, policy.attempts + 1):
        try:
            return send()
        except ccxt.BaseError as exc:
            state.last = exc
            found = _after_failed_send(
                exc,
                attempt,
                state,
                lookup,
                clock,
                policy,
                retry_after_of,
                resync,
                resend_when_absent=resend_when_absent,
            )
            if found is not None:
                return found
            logger.warning("order {} attempt {}: {}", what, attempt, _short(exc))
        if attempt == policy.attempts or clock.monotonic() + state.delay >= deadline:
            break
        clock.sleep(state.delay)
    if state.uncertain:
        raise errors.OutcomeUnknown(
            f"{what}: sent, no confirmation after {policy.attempts} attempts; last error "
            f"{_short(state.last)}. Leave it unknown and resolve by client id next tick."
        ) from state.last
    if state.last is None:  # unreachable: attempts >= 1 and every path above returns or sets it
        raise errors.ExchangeError(f"{what}: no attempt was made (attempts={policy.attempts})")
    raise state.last


@dataclass(slots=True)
class _SubmitState:
    rng: random.Random
    delay: float = 0.0
    resynced: bool = False
    uncertain: bool = False  # some send may have reached the venue unconfirmed
    last: BaseException | None = None


def _after_failed_send(
    exc: ccxt.BaseError,
    attempt: int,
    state: _SubmitState,
    lookup: Callable[[], T | None],
    clock: Clock,
    policy: RetryPolicy,
    retry_after_of: Callable[[BaseException], float | None],
    resync: Callable[[], None],
    *,
    resend_when_absent: bool,
) -> T | None:
    """Decide what a failed send means; return the order if a lookup found it.

    Re-raises ``exc`` when resending cannot help, raises :class:`~bot.errors.OutcomeUnknown`
    when it may double the order; otherwise sets ``state.delay`` before the next send of the
    same client id.
    """
    duplicate = isinstance(exc, ccxt.DuplicateOrderId) or venue_code(exc) in DUPLICATE_ID_CODES
    backoff = _backoff(policy, attempt, state.rng)
    if is_rate_limit(exc):  # refused before processing
        state.delay = retry_after_of(exc) or backoff
        return None
    if is_clock_drift(exc):  # refused before processing
        if state.resynced:
            raise exc
        _resync_quietly(resync)
        state.resynced, state.delay = True, 0.0
        return None
    if not (duplicate or is_transient(exc)):
        raise exc
    if not duplicate:
        state.uncertain = True
        clock.sleep(backoff)  # give the venue time to register a late order before looking
    found = lookup()
    if found is None and duplicate:
        # The venue says an order holds the id, yet the lookup cannot see it (Binance briefly
        # forgets fresh algo orders, freqtrade#12681; a resent Bybit order whose first answer
        # was lost): it exists, so it is unknown, settled by client id next tick. Read as
        # "rejected", a filled entry left its position "not opened by this bot".
        raise errors.OutcomeUnknown(
            f"the venue refuses the client id as taken ({_short(exc)}), yet a lookup by it "
            "finds nothing: outcome unknown, resolved by client id next tick"
        ) from exc
    if found is None and not duplicate and not resend_when_absent:
        # The send may still execute after this lookup (a timeout or a 5xx: Binance -1007
        # "Timeout waiting for response from backend server. Send status unknown; execution
        # status unknown."), and the venue keeps the id unique among open orders only
        # (exchange-facts 3.3, 6): a resend of an order that fills at once was a second
        # entry. Unknown, settled by client id next job; the engine re-plans from the
        # position it then reads, under a new client id.
        raise errors.OutcomeUnknown(
            f"sent ({_short(exc)}); a lookup by client id does not find it yet: not resent "
            "(it may still execute), outcome unknown, resolved by client id next job"
        ) from exc
    state.delay = 0.0
    return found


def _backoff(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(cap, multiplier * 2**attempt)) seconds."""
    return rng.uniform(0.0, min(policy.backoff_max, policy.backoff_multiplier * 2**attempt))


def _resync_quietly(resync: Callable[[], None]) -> None:
    try:
        resync()
    except ccxt.BaseError as exc:
        # the retried request fails again with InvalidNonce and is then reported
        logger.warning("clock resync failed: {}", _short(exc))


def _exception(retry_state: RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "-"
    # ccxt's text holds the request URL (signed for GET/DELETE): it may reach the database
    return f"{type(exc).__name__}: {redact(str(exc))[:160]}"
