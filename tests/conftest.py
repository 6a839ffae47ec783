"""Fixtures shared by the test packages; the helpers they use live in ``tests/helpers.py``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import Digest, record_single


@pytest.fixture
def recorder_factory() -> Callable[..., dict[tuple[int, int], Digest]]:
    return record_single
