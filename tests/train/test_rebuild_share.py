"""A run's segments shared out to jobs: every segment once, balanced by updates, the same in every job."""

from __future__ import annotations

import pytest

from replay.train.rebuild import Segment, share


def _segments(starts: list[int], last: int) -> list[Segment]:
    bounds = [*starts, last + 1]
    return [Segment(a, tuple(range(a, b))) for a, b in zip(bounds, bounds[1:], strict=False)]


def test_every_segment_goes_to_exactly_one_part() -> None:
    segments = _segments([0, 250, 500, 750], 977)
    parts = [share(segments, part, 3) for part in range(3)]
    assert sorted(s.start for part in parts for s in part) == [0, 250, 500, 750]
    loads = [sum(max(s.targets) - s.start for s in part) for part in parts]
    assert loads == [476, 249, 249]  # the three longest first, one each, then the lightest part gets the fourth


def test_more_parts_than_segments_leaves_some_jobs_idle() -> None:
    segments = _segments([0, 500], 977)
    assert [[s.start for s in share(segments, p, 4)] for p in range(4)] == [[0], [500], [], []]


def test_a_part_outside_the_parts_is_refused() -> None:
    with pytest.raises(ValueError, match=r"part=2 is not one of 0..1 \(parts=2\)"):
        share(_segments([0], 9), 2, 2)
