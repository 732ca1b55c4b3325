"""A second database outage within the hour is a new incident, alerted critically.

A short outage hits only the hourly decision tick (the database is back within the minute, no
guard fails). The guards then succeed and write (the outage's unrecorded stop is recorded). The
tick's run of failures counts on until the next tick succeeds, up to an hour, on purpose (a
guard's success says nothing of what fails a tick). The state database's incident is another
matter: it ended at the first job that wrote again. Defect: ``store_unavailable`` and
``unrecorded_stop:SYM`` were resolved only once no kind had failures, so a second outage five
minutes later was taken for the first one (deduplicated): the owner heard only
``warning: tick_failed:guard``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.test_alerts import Receiver, receiver
from tests.runtime.test_store_down_stop import (
    BTC,
    Fault,
    guards,
    open_in_the_outage,
    paper_bot,
    stops,
)

__all__ = ["receiver"]  # the webhook receiver fixture

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


def sent(receiver: Receiver, key: str) -> list[str]:
    return [body["message"] for _, body in receiver.posts if body["title"].endswith(key)]


@pytest.mark.parametrize("fault", ["read_only", "server_down"])
def test_a_second_outage_after_a_write_is_alerted_again(
    tmp_path: Path, receiver: Receiver, fault: Fault
) -> None:
    bot = paper_bot(tmp_path, receiver, fault)
    try:
        open_in_the_outage(bot)  # outage 1: the tick fails on the database
        assert len(sent(receiver, "critical: store_unavailable")) == 1
        assert len(sent(receiver, f"critical: unrecorded_stop:{BTC}")) == 1
        bot.store.down(False)  # back within the minute: no guard failed
        guards(bot, 5)  # the guards succeed and write (the unrecorded stop is recorded)
        assert bot.runner.failures_of("guard") == 0
        assert bot.runner.failures_of("tick") == 1  # the tick's run goes on until a tick
        assert len(stops(bot.paper)) == 1
        bot.store.down(True)  # outage 2, five minutes later
        guards(bot, 3)
        assert len(sent(receiver, "critical: store_unavailable")) == 2, receiver.titles()
        # (the tick's run and the guard's are each one incident, alerted once)
        assert len(sent(receiver, "warning: tick_failed:tick")) == 1
    finally:
        bot.store.down(False)
        bot.store.close()


def test_an_outage_that_goes_on_is_alerted_once(tmp_path: Path, receiver: Receiver) -> None:
    """The guards of one outage fail one after the other: no job writes between them, so the
    incident goes on (one alert per dedup window), however many jobs fail."""
    bot = paper_bot(tmp_path, receiver, "server_down")
    try:
        open_in_the_outage(bot)
        guards(bot, 10)
        assert bot.runner.failures_of("guard") == 10
        assert len(sent(receiver, "critical: store_unavailable")) == 1, receiver.titles()
    finally:
        bot.store.down(False)
        bot.store.close()
