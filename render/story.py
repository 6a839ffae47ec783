"""The story of a run, without drawing: which milestones a progression shows, how its clips are timed and laid
out on screens, and the learning curve the videos draw.

A *clip* is one episode played within a budget of video frames. An episode that fits plays every recorded frame
(normal speed); a longer one keeps every ``stride``-th frame, the smallest stride that fits, so the whole episode
is seen sped up (its caption then says ``x<stride>``) rather than cut. A *screen* holds the clips played at once:
one in the sequential layout, a row of 2 or 3 side by side, 4 in a grid. A screen lasts as long as its longest
clip; a clip that ends earlier holds its last frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from render.errors import RenderConfigError
from render.feed import kept_count
from render.schedule import TrainingSchedule
from render.selection import chronological
from replay import EpisodeRecord

SCREEN_CELLS = {"sequential": 1, "side_by_side": 3, "grid": 4}  # the most clips a screen of each layout plays
DEFAULT_MILESTONES = {"sequential": 3, "side_by_side": 3, "grid": 4}  # one screen's worth; 3 clips in sequence


@dataclass(frozen=True)
class Clip:
    """One episode as a progression plays it: every ``stride``-th recorded frame, its last frame always kept."""

    episode: EpisodeRecord
    stride: int

    @property
    def frames(self) -> int:
        """Video frames the clip plays."""
        return kept_count(self.episode, self.stride)


def clip_stride(episode: EpisodeRecord, budget: int, least: int = 1) -> int:
    """The smallest frame stride of at least ``least`` that plays ``episode`` within ``budget`` video frames
    (the reset frame and the last frame always play, so a budget under 2 is met by the longest stride)."""
    if budget < 1 or least < 1:
        raise ValueError(f"expected a positive budget and least stride, got {budget} and {least}")
    if budget < 2:
        return max(least, episode.length, 1)
    stride = max(least, math.ceil(episode.length / (budget - 1)))
    while kept_count(episode, stride) > budget:  # at most a step or two past the estimate
        stride += 1
    return stride


def milestone_groups(episodes: Sequence[EpisodeRecord]) -> list[list[EpisodeRecord]]:
    """Finished evaluation episodes grouped by the milestone (policy version) that played them, in version order.

    Unfinished ones are left out: a kill during an evaluation leaves a cut episode, played again in full on
    resume.
    """
    evaluations = chronological(episodes, "eval", finished_only=True)
    return [list(group) for _, group in groupby(evaluations, key=lambda e: e.policy_versions[0])]


def spread(total: int, count: int) -> list[int]:
    """``count`` of the indices ``0..total-1`` evenly spread, first and last included (all when ``count`` is
    at least ``total``; the last alone when ``count`` is 1: where training got to)."""
    if count >= total:
        return list(range(total))
    if count == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def milestone_episodes(
    episodes: Sequence[EpisodeRecord], per_milestone: str = "all", count: int = 0
) -> list[EpisodeRecord]:
    """The evaluation episodes of ``count`` milestones evenly spread over the run's (0: all of them), in version
    order: of each milestone its ``best``, ``first`` or ``all`` episodes."""
    if per_milestone not in ("all", "first", "best"):
        raise RenderConfigError(f"expected per_milestone all, first or best, got {per_milestone!r}")
    if count < 0:
        raise RenderConfigError(f"expected 0 (all) or more milestones, got {count}")
    groups = milestone_groups(episodes)
    chosen = []
    for k in spread(len(groups), count or len(groups)):
        members = groups[k]
        if per_milestone == "first":
            members = members[:1]
        elif per_milestone == "best":
            members = [max(members, key=lambda e: (e.total_reward, -e.index))]
        chosen.extend(members)
    return chosen


def screens(clips: Sequence[Clip], layout: str) -> list[list[Clip]]:
    """The clips in screens of ``layout``: one each for ``sequential``, balanced rows of at most 3 for
    ``side_by_side`` (4 clips play as 2 and 2, not 3 and 1), fours for ``grid`` (the last may leave cells
    empty)."""
    if layout not in SCREEN_CELLS:
        raise RenderConfigError(f"unknown layout {layout!r}; choose one of {', '.join(SCREEN_CELLS)}")
    most = SCREEN_CELLS[layout]
    if layout == "grid" or not clips:
        return [list(clips[i : i + most]) for i in range(0, len(clips), most)]
    count = math.ceil(len(clips) / most)
    size, larger = divmod(len(clips), count)  # the first screens take one more
    ends = np.cumsum([size + (k < larger) for k in range(count)])
    return [list(clips[end - size - (k < larger) : end]) for k, end in enumerate(ends)]


@dataclass(frozen=True)
class LearningCurve:
    """The training episodes' returns against where in training they were played, and their rolling mean.

    Attributes:
        positions: Each finished training episode's place in the run, in [0, 1] (see :meth:`position`).
        returns: Each episode's return, in the order of ``positions``.
        mean: The rolling mean of the last ``window`` returns at each episode.
        window: Episodes averaged by ``mean``: a twenty-fifth of them, 1 to 100.
        schedule: Places policy versions in the run.
        last_version: The log's last policy version (position 1 when the log has no training config).
    """

    positions: np.ndarray
    returns: np.ndarray
    mean: np.ndarray
    window: int
    schedule: TrainingSchedule
    last_version: int

    @classmethod
    def of(cls, episodes: Sequence[EpisodeRecord], schedule: TrainingSchedule) -> LearningCurve:
        """The curve of the finished training episodes among ``episodes``."""
        training = chronological(episodes, "train", finished_only=True)
        returns = np.array([e.total_reward for e in training], dtype=np.float64)
        window = int(np.clip(len(training) // 25, 1, 100))
        sums = np.concatenate([[0.0], np.cumsum(returns)])
        ends = np.arange(1, len(returns) + 1)
        starts = np.maximum(ends - window, 0)
        mean = (sums[ends] - sums[starts]) / np.maximum(ends - starts, 1)
        last = max((e.policy_versions[-1] for e in episodes), default=0)
        curve = cls(np.zeros(len(training)), returns, mean, window, schedule, last)
        positions = np.array([curve.position(e.policy_versions[0]) for e in training], dtype=np.float64)
        return dataclasses.replace(curve, positions=positions)

    @property
    def axis(self) -> str:
        """What the positions measure: ``training progress``, or ``policy version`` for a log without a training
        config."""
        return "training progress" if self.schedule.num_updates else "policy version"

    def position(self, policy_version: int) -> float:
        """Where ``policy_version`` sits on the x axis, in [0, 1]: its training progress, or for a log without a
        training config its share of the last policy version."""
        progress = self.schedule.progress(policy_version)
        if progress is not None:
            return progress
        return min(1.0, policy_version / self.last_version) if self.last_version else 0.0
