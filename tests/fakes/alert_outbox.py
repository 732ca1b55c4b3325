"""A hand-written alert destination: it takes every alert, and says what it received once the
notifier it serves has sent what was due (the bot's jobs only queue alerts; a delivery thread
sends them, ``bot.alerts.Notifier``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.alerts import Alert, Notifier


@dataclass
class Outbox:
    """Every (title, body) received. ``serve`` makes it a notifier's one destination; reading
    ``sent``, ``titles``, ``count`` or ``bodies`` first waits (at most 10 s) for that notifier
    to deliver what is due."""

    received: list[tuple[str, str]] = field(default_factory=list)
    notifier: Notifier | None = None

    def __call__(self, title: str, body: str) -> bool:
        self.received.append((title, body))
        return True

    def serve(self, notifier: Notifier) -> Outbox:
        """Be ``notifier``'s destination from now on; the one served before (a process that
        stopped: a restart) first sends what was due, as at the end of ``bot run``."""
        if self.notifier is not None and self.notifier is not notifier:
            self.notifier.close()
        notifier.use(self)
        self.notifier = notifier
        return self

    @property
    def sent(self) -> list[tuple[str, str]]:
        if self.notifier is not None:
            assert self.notifier.drain(), "the delivery thread did not finish within 10 s"
        return list(self.received)

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.sent]

    def count(self, key: str) -> int:
        return sum(1 for t in self.titles if t.endswith(f": {key}"))

    def bodies(self, key: str) -> list[str]:
        """The bodies of the critical alerts of ``key`` sent."""
        return [body for title, body in self.sent if title.endswith(f"] critical: {key}")]


def sent(notifier: Notifier, alerts: Sequence[Alert]) -> int:
    """Queue ``alerts`` (returns how many were queued), then wait for the delivery thread to
    send what is due: what a job does, and the deliveries it started."""
    queued = notifier.notify(alerts)
    assert notifier.drain(), "the delivery thread did not finish within 10 s"
    return queued
