"""What one video frame shows: the records the products hand to the overlays (no torch, no video here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameAnalytics:
    """What the network thought on one frame, reduced to what the overlay draws (a few KB, not 186 KB).

    ``levels`` holds one array per diagram layer with values in [0, 1] (conv channel means, a fixed sample of
    hidden units, the action probabilities, the value). ``feature_maps`` holds one ``(k, h, w)`` uint8 stack
    per conv layer, 255 being that layer's hottest activation.
    """

    probabilities: np.ndarray
    value: float
    levels: tuple[np.ndarray, ...]
    feature_maps: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class CheckpointUse:
    """Which checkpoint produced a frame's analytics, and how many policy versions it trails the one that
    played (``lag``; negative when a checkpoint given by hand is newer than that policy)."""

    name: str
    policy_version: int
    lag: int


@dataclass(frozen=True)
class FrameContext:
    """Everything an overlay may show about one recorded frame.

    ``step`` is the frame's index within its episode (0 is the reset frame); ``episode_reward`` is the reward
    accumulated up to and including this step; ``progress`` is the training progress of the policy that
    played, in [0, 1], when the run's metadata allows computing it.
    """

    frame: np.ndarray
    step: int
    episode: int
    episode_reward: float
    action: int | None
    policy_version: int
    phase: str = "Training"
    progress: float | None = None
    learning_rate: float | None = None
    observation: np.ndarray | None = None
    analytics: FrameAnalytics | None = None
    value_history: np.ndarray | None = None
    checkpoint: CheckpointUse | None = None
