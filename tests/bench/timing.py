"""Clocks the benchmarks share: CPU time of this process and its children, and calls timed from the inside."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any


def cpu_seconds() -> float:
    """CPU time of this process's threads plus its finished child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(method: Callable, totals: dict[str, float], key: str) -> Callable:
    """``method``, adding the wall time of every call to ``totals[key]`` (~0.4 us a call here)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    return call
