"""What one video frame shows: the records the products hand to the overlays (no torch, no video here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameAnalytics:
    """What the network thought on one frame, reduced to what the overlay draws (a few KB, not 186 KB).

    ``levels`` holds one array per diagram layer with values in [0, 1] (conv channel means, a fixed sample of
    hidden units, the action probabilities, the value). ``feature_maps`` holds one ``(k, h, w)`` uint8 stack
    per conv layer, 255 being that layer's hottest activation, and ``channels`` the channel numbers they show.
    ``saliency``, when asked for, holds the policy's and the value's ``(84, 84)`` perturbation saliency maps.
    A Q network's frame (DQN) holds its ``q_values``; its ``value`` is the largest and its ``probabilities`` the
    greedy policy (one-hot on the largest).
    """

    probabilities: np.ndarray
    value: float
    levels: tuple[np.ndarray, ...]
    feature_maps: tuple[np.ndarray, ...]
    channels: tuple[tuple[int, ...], ...] = ()
    saliency: tuple[np.ndarray, np.ndarray] | None = None
    q_values: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class NetworkWiring:
    """The strongest real connections between the diagram's units: each of ``links`` is ``(source layer, target
    layer, table)``, the table's rows ``(source unit, target unit, weight)`` (unit indices within the layers shown,
    the weight signed and scaled so the strongest link between those two layers is 1). ``key`` names it
    (checkpoint and units shown): an equal key means an equal picture."""

    key: str
    links: tuple[tuple[int, int, np.ndarray], ...]


@dataclass(frozen=True)
class CheckpointUse:
    """Which checkpoint produced a frame's analytics, and how many policy versions it trails the one that
    played (``lag``; negative when a checkpoint given by hand is newer than that policy)."""

    name: str
    policy_version: int
    lag: int
    note: str | None = None  # why it is not the exact network asked for (checkpoint=exact fell back)


@dataclass(frozen=True)
class FrameContext:
    """Everything an overlay may show about one recorded frame.

    ``step`` is the frame's index within its episode (0 is the reset frame); ``episode_reward`` is the reward
    accumulated up to and including this step; ``action`` is the action taken from this frame and
    ``policy_version`` the version of the policy that chose it (``None`` and the version that led here on the
    last frame); ``progress`` is the training progress of that policy, in [0, 1], when the run's metadata allows
    computing it.

    ``return_followed`` is the discounted return that actually followed this frame (what the value estimates),
    ``return_history`` its values aligned with ``value_history``, and ``value_range`` the value chart's axis for
    the episode; ``network`` the wiring of the network that explains the frame (for the diagram's edges);
    ``rewards`` every step's reward of the episode (its whole future is recorded); ``screens`` the emulated frames
    from this one to the next agent frame (:class:`render.feed.KeptStep`), when asked for; ``saliency_scale`` the
    policy and value saliency that draw at full strength, fixed for the episode.
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
    return_followed: float | None = None
    return_history: np.ndarray | None = None
    value_range: tuple[float, float] | None = None
    network: NetworkWiring | None = None
    episode_length: int | None = None
    frame_skip: int | None = None
    rewards: np.ndarray | None = None
    screens: tuple[np.ndarray, ...] | None = None
    saliency_scale: tuple[float, float] | None = None
