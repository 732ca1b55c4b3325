"""A halt that flattens, and a position its closes did not close.

``halted`` with flatten (a drawdown halt, a daily-loss halt, ``bot halt --flatten``) closes every
position of the bot's with reduce-only market orders, and again at every job while one is held
(the guard's :meth:`Engine.flatten`, a decision tick's flat decisions). Those closes can fail job
after job: the venue refuses them (Binance -4131, "The counterparty's best price does not meet
the PERCENT_PRICE filter limit": a market order into a crash's book, empty within the venue's
price band), the risk gate denies them, their answers are lost. The position then stays open,
its resting stop kept, while the one alert the owner got says ``halted``, which the runbook says
closes every position. Or no close can be sent at all: a position below the venue's minimum
order (raised after the entry) or off its quantity step, which no order can carry (noted with
:meth:`Unflattened.uncarried`, the quantity and the venue's minimum named).

So the engine records it as an incident: ``flatten_pending`` (the position, how many closes since
when, the last failure: the venue's error, the gate's reason, the lost answer) once, at the end
of a job that still holds the position although a close for it was first tried by an earlier
job, and ``flatten_ended`` once when it is over (the contract reads flat, or the state no longer
flattens). One job's grace: a failure of the moment whose retry fills at the next job (a
minute later) is no incident. The open incidents are read back from those events by a restarted
engine, so a restart does not record one again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from bot.clock import utc_text
from bot.domain.enums import EventKind
from bot.ports.store import RiskEvent, open_at_end
from bot.risk.coverage import plain


@dataclass(slots=True)
class _Tried:
    """The closes sent for one contract's position since the halt began to flatten it."""

    first_job: int  # the engine's job count when the first was tried
    first_ms: int
    orders: int
    failure: str | None  # what became of the last one, when it failed (None: it was sent)
    # Why no order can close the position, or part of it (below the venue's minimum order, off
    # its quantity step), when the last close said so; None: orders can carry it all.
    uncarried: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """An event to record: an incident starts or ends on ``symbol``."""

    symbol: str
    kind: EventKind  # FLATTEN_PENDING or FLATTEN_ENDED
    reason: str


class Unflattened:
    """The closes of a flattening halt per contract, and the incidents open (see the module)."""

    def __init__(self, pending: Iterable[str] = ()) -> None:
        self._tried: dict[str, _Tried] = {}
        self.pending: set[str] = set(pending)  # contracts whose incident is open (recorded)

    @property
    def busy(self) -> bool:
        """Whether a close was tried or an incident is open (else :meth:`check` has nothing
        to do)."""
        return bool(self._tried or self.pending)

    def tried(self, symbol: str, job: int, now_ms: int, failure: str | None) -> None:
        """A close of ``symbol``'s position was tried under the flattening halt, in job number
        ``job``; ``failure``: why it did not go through (None: sent)."""
        known = self._tried.get(symbol)
        if known is None:
            self._tried[symbol] = _Tried(job, now_ms, 1, failure)
        else:
            known.orders += 1
            known.failure = failure

    def uncarried(self, symbol: str, job: int, now_ms: int, why: str) -> None:
        """A close of ``symbol``'s position was planned under the flattening halt, in job
        number ``job``, and no order can carry all or part of it (``why``: below the venue's
        minimum order, off its quantity step). Tried as much as a refused close: with no order
        sent at all, the position still held at the next job is an incident like any other."""
        known = self._tried.get(symbol)
        if known is None:
            self._tried[symbol] = _Tried(job, now_ms, 0, None, why)
        else:
            known.uncarried = why

    def check(self, job: int, held: Mapping[str, Decimal], halt: str | None) -> list[Note]:
        """At the end of job number ``job``: the incidents that start or end. ``held``: each
        contract's position as the job last read it; ``halt``: the reason of the halt that
        flattens, None when the state does not flatten."""
        if not self.busy:
            return []
        notes: list[Note] = []
        if halt is None:
            for symbol in sorted(self.pending):
                qty = held.get(symbol, Decimal(0))
                now = f"the position {plain(qty)} is held" if qty != 0 else "the position is closed"
                notes.append(
                    Note(
                        symbol,
                        EventKind.FLATTEN_ENDED,
                        f"incident over: the trading state no longer closes positions ({now})",
                    )
                )
            self._tried.clear()
            self.pending.clear()
            return notes
        for symbol in sorted({*self._tried, *self.pending}):
            qty = held.get(symbol, Decimal(0))
            if qty == 0:
                self._tried.pop(symbol, None)
                if symbol in self.pending:
                    self.pending.discard(symbol)
                    notes.append(
                        Note(
                            symbol, EventKind.FLATTEN_ENDED, "incident over: the position is closed"
                        )
                    )
                continue
            tried = self._tried.get(symbol)
            if symbol in self.pending or tried is None or tried.first_job >= job:
                continue
            self.pending.add(symbol)
            notes.append(Note(symbol, EventKind.FLATTEN_PENDING, _pending(halt, qty, tried)))
        return notes


def _pending(halt: str, qty: Decimal, tried: _Tried) -> str:
    head = f"halted ({halt}) with flatten, but the position {plain(qty)} is still held: "
    if tried.orders == 0:
        return (
            f"{head}no close order can be sent ({tried.uncarried}), since "
            f"{utc_text(tried.first_ms)}. The bot keeps the position's stop while it protects; "
            "close it on the exchange if the venue lets you"
        )
    last = (
        f"the last: {tried.failure}"
        if tried.failure is not None
        else "the last was sent and did not close it all"
    )
    rest = f"; {tried.uncarried}" if tried.uncarried is not None else ""
    return (
        f"{head}{tried.orders} close order(s) since {utc_text(tried.first_ms)} did not close "
        f"it; {last}{rest}. The bot sends the close again at every job and keeps the "
        "position's stop; close it on the exchange if the venue lets you"
    )


def open_incidents(events: Iterable[RiskEvent]) -> set[str]:
    """The contracts whose ``flatten_pending`` incident is still open at the end of ``events``
    (as :func:`~bot.ports.store.open_at_end` takes them): not followed by a
    ``flatten_ended``."""
    return open_at_end(events, EventKind.FLATTEN_PENDING, EventKind.FLATTEN_ENDED)
