"""The state database's identity (migration 0004, ``SqlStore.check_identity``): a random id
written with the schema, read at open, compared before each job of a running bot."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.domain.enums import TradingState
from bot.ports.store import RiskMemory
from bot.store.migrate import current_revision, head_revision, upgrade
from bot.store.sql import SqlStore, StoreReplaced, StoreUnavailable
from tests.runtime.test_database_recreated import database_id, drop_every_table
from tests.store.conftest import fresh_database

MEMORY = RiskMemory(
    state=TradingState.HALTED,
    state_reason="bot halt",
    peak_equity=Decimal("12000"),
    day_start_ms=0,
    day_start_equity=Decimal("11000"),
    sticky=True,
)


def test_every_database_gets_its_own_id_and_keeps_it(backend: str, tmp_path: Path) -> None:
    with (
        fresh_database(backend, tmp_path / "a") as first,
        fresh_database(backend, tmp_path / "b") as second,
    ):
        upgrade(first)
        upgrade(second)
        one, other = database_id(first), database_id(second)
        assert one
        assert other
        assert one != other
        upgrade(first)  # upgrading again changes nothing
        assert database_id(first) == one


def test_a_database_of_an_older_bot_gets_an_id_at_upgrade(store_url: str) -> None:
    upgrade(store_url, "0003")
    store = SqlStore.open(store_url, check_schema=False)
    try:
        assert store.database_id() is None  # (no table yet: none, not a failure)
    finally:
        store.close()
    upgrade(store_url)
    assert current_revision(store_url) == head_revision()
    store = SqlStore.open(store_url)
    try:
        assert store.database_id() == database_id(store_url) is not None
        store.check_identity()
    finally:
        store.close()


def test_a_recreated_database_is_refused_until_the_store_is_opened_again(
    store: SqlStore, store_url: str
) -> None:
    store.save_risk_memory(MEMORY)
    old = store.database_id()
    store.check_identity()  # the same database
    drop_every_table(store_url)
    upgrade(store_url)
    new = database_id(store_url)
    with pytest.raises(StoreReplaced, match=f"its id was {old}, now {new}; nothing more"):
        store.check_identity()
    # From then on nothing is read from or written into the new database, whatever the call.
    with pytest.raises(StoreReplaced, match="recreated under the running bot"):
        store.save_risk_memory(MEMORY)
    with pytest.raises(StoreReplaced, match="recreated under the running bot"):
        store.load_risk_memory()
    with pytest.raises(StoreReplaced):
        store.check_identity()
    assert issubclass(StoreReplaced, StoreUnavailable)  # (alerted as store_unavailable)
    again = SqlStore.open(store_url)  # a restart: the new database, as it is
    try:
        again.check_identity()
        assert again.load_risk_memory() is None
    finally:
        again.close()


def test_an_identity_gone_is_missing(store: SqlStore, store_url: str) -> None:
    old = store.database_id()
    drop_every_table(store_url)
    upgrade(store_url, "0003")  # recreated by a bot that knew no identity
    with pytest.raises(StoreReplaced, match=f"its id was {old}, now missing"):
        store.check_identity()
