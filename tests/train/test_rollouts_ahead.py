"""Rollouts read ahead in a thread arrive in order, and a re-simulation error reaches the caller."""

from __future__ import annotations

import threading

import pytest

from replay.errors import NotRebuildableError
from replay.train.rollouts import RolloutsAhead


class _Counting:
    """Stands in for ``LoggedRollouts``: the n-th call returns n, or raises at ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.fail_at, self.threads = 0, fail_at, set()

    def next(self) -> int:
        self.threads.add(threading.current_thread().name)
        if self.calls == self.fail_at:
            raise NotRebuildableError(f"stream ends before the rollout of update {self.calls}")
        self.calls += 1
        return self.calls - 1


def test_rollouts_come_in_order_from_the_thread_and_no_more_than_asked() -> None:
    source = _Counting()
    with RolloutsAhead(source, 5) as ahead:
        assert [ahead.next() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert source.calls == 5 and source.threads == {"rollouts-ahead"}


def test_an_error_in_the_thread_is_raised_for_the_rollout_it_struck() -> None:
    with RolloutsAhead(_Counting(fail_at=2), 5) as ahead:
        assert [ahead.next(), ahead.next()] == [0, 1]
        with pytest.raises(NotRebuildableError, match="update 2"):
            ahead.next()


def test_closing_early_stops_the_thread() -> None:
    source = _Counting()
    ahead = RolloutsAhead(source, 1000)
    assert ahead.next() == 0
    ahead.close()
    assert not ahead._thread.is_alive() and source.calls <= 3
