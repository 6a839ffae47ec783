"""From kept episode steps to the frame contexts the overlays draw: batched analytics, reward, value history.

Kept steps (see :mod:`render.feed`) are gathered in batches so the network runs on many observations at once;
the contexts then come out in order with the running reward, the value history and the checkpoint that
explained each frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from render.feed import KeptStep
from render.frame import CheckpointUse, FrameAnalytics, FrameContext
from render.policies import PolicyLibrary
from render.schedule import TrainingSchedule
from replay import EpisodeRecord


@dataclass(frozen=True)
class SceneSettings:
    """How an episode becomes frames.

    Attributes:
        stride: Keep every ``stride``-th recorded frame (1: all). The last frame is always kept.
        value_history: Frames of value estimate the sparkline shows.
        batch_size: Kept frames analysed per forward pass.
    """

    stride: int = 1
    value_history: int = 90
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("stride", "value_history", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected a positive {name}, got {getattr(self, name)}")


def phase_of(episode: EpisodeRecord) -> str:
    return "Evaluation" if episode.tag == "eval" else "Training"


def episode_scene(
    episode: EpisodeRecord,
    steps: Iterable[KeptStep],
    schedule: TrainingSchedule,
    settings: SceneSettings,
    policies: PolicyLibrary | None = None,
    used: dict[str, int] | None = None,
) -> Iterator[FrameContext]:
    """The contexts of ``episode``'s kept ``steps``; with ``policies`` each carries the network's analytics.

    ``used``, when given, collects every checkpoint file name used with its largest version lag by size (provenance;
    negative: newer than the policy that played).
    """
    values: deque[float] = deque(maxlen=settings.value_history)
    pending: list[KeptStep] = []
    for step in steps:
        pending.append(step)
        if len(pending) == settings.batch_size:
            yield from _contexts(pending, episode, schedule, policies, values, used)
            pending = []
    if pending:
        yield from _contexts(pending, episode, schedule, policies, values, used)


def _contexts(
    pending: list[KeptStep],
    episode: EpisodeRecord,
    schedule: TrainingSchedule,
    policies: PolicyLibrary | None,
    values: deque[float],
    used: dict[str, int] | None,
) -> Iterator[FrameContext]:
    analytics: list[FrameAnalytics | None] = [None] * len(pending)
    checkpoints: list[CheckpointUse | None] = [None] * len(pending)
    if policies is not None:
        versions = np.array([step.policy_version for step in pending])
        for version in np.unique(versions):
            probe, use = policies.lookup(int(version))
            where = np.flatnonzero(versions == version)
            results = probe.analyze(np.stack([pending[i].observation for i in where]))
            for i, result in zip(where, results, strict=True):
                analytics[i], checkpoints[i] = result, use
            if used is not None:
                used[use.name] = max(use.lag, used.get(use.name, use.lag), key=abs)
    phase = phase_of(episode)
    for step, result, use in zip(pending, analytics, checkpoints, strict=True):
        if result is not None:
            values.append(result.value)
        yield FrameContext(
            frame=step.frame,
            step=step.step,
            episode=episode.index,
            episode_reward=step.episode_reward,
            action=step.action,
            policy_version=step.policy_version,
            phase=phase,
            progress=schedule.progress(step.policy_version),
            learning_rate=schedule.learning_rate_at(step.policy_version),
            observation=step.observation if result is not None else None,
            analytics=result,
            value_history=np.fromiter(values, np.float32, len(values)) if result is not None else None,
            checkpoint=use,
        )
