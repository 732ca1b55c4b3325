"""The replay loop's collector setting is scoped: thresholds come back, collection stays on."""

from __future__ import annotations

import gc

import pytest

from bot.backtest.collector import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def _restore_thresholds() -> object:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_threshold_raised_inside_and_restored_after() -> None:
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.isenabled()
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_loop_raises() -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError, match="boom"), fewer_collections():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_set_by_the_caller_is_kept() -> None:
    gc.set_threshold(YOUNG_THRESHOLD * 2, 10, 10)
    with fewer_collections():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD * 2
    assert gc.get_threshold() == (YOUNG_THRESHOLD * 2, 10, 10)


def test_cycles_are_still_collected_inside() -> None:
    class Node:
        other: object = None

    with fewer_collections():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2  # an explicit pass still finds and frees the cycle
