"""Fixtures shared by the test packages; the helpers they use live in ``tests/helpers.py``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import pytest
from helpers import Digest, record_single
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps no example database, and its other files go to a temporary folder: tests leave no
# .hypothesis/ folder in the checkout.
settings.register_profile("ale-replay", database=None)
settings.load_profile("ale-replay")
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="ale-replay-hypothesis-"))


@pytest.fixture
def recorder_factory() -> Callable[..., dict[tuple[int, int], Digest]]:
    return record_single
