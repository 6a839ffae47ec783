"""From kept episode steps to the frame contexts the overlays draw: batched analytics, reward, value history.

Kept steps (see :mod:`render.feed`) are gathered in batches so the network runs on many observations at once;
the contexts then come out in order with the running reward, the value history and the checkpoint that
explained each frame.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from render.analytics import NetworkProbe
from render.draw.panels import value_axis
from render.feed import KeptStep
from render.frame import CheckpointUse, FrameAnalytics, FrameContext, NetworkWiring
from render.policies import PolicyLibrary
from render.saliency import SaliencySettings, saliency_scale
from render.schedule import TrainingSchedule
from replay import EpisodeRecord


@dataclass(frozen=True)
class SceneSettings:
    """How an episode becomes frames.

    Attributes:
        stride: Keep every ``stride``-th recorded frame (1: all). The last frame is always kept.
        value_history: Frames the value chart shows.
        batch_size: Kept frames analysed per forward pass.
        saliency: Perturbation saliency of every kept frame, with these settings (``None``: none).
    """

    stride: int = 1
    value_history: int = 90
    batch_size: int = 64
    saliency: SaliencySettings | None = None

    def __post_init__(self) -> None:
        for name in ("stride", "value_history", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected a positive {name}, got {getattr(self, name)}")


def phase_of(episode: EpisodeRecord) -> str:
    return "Evaluation" if episode.tag == "eval" else "Training"


def returns_that_followed(rewards: np.ndarray, gamma: float, *, clip: bool) -> np.ndarray:
    """For each frame ``0..length`` of an episode, the discounted sum of the rewards that came after it to the
    episode's end: ``G[t] = r[t+1] + gamma r[t+2] + ...`` (``rewards[k]`` is step ``k + 1``'s reward), the target
    a critic's value of frame ``t`` estimates; ``clip`` takes each reward's sign first, as a trainer that learns
    from clipped rewards does. ``G[length]`` is 0.

    Example:
        >>> returns_that_followed(np.array([0.0, 1.0, 4.0]), 0.5, clip=True).tolist()
        [1.0, 1.5, 1.0, 0.0]
    """
    rewards = np.sign(rewards) if clip else np.asarray(rewards, np.float64)
    following = np.zeros(len(rewards) + 1, np.float64)
    for t in range(len(rewards) - 1, -1, -1):
        following[t] = rewards[t] + gamma * following[t + 1]
    return following


def episode_scene(
    episode: EpisodeRecord,
    steps: Iterable[KeptStep],
    schedule: TrainingSchedule,
    settings: SceneSettings,
    policies: PolicyLibrary | None = None,
    used: dict[str, int] | None = None,
    rewards: np.ndarray | Future[np.ndarray] | None = None,
) -> Iterator[FrameContext]:
    """The contexts of ``episode``'s kept ``steps``; with ``policies`` each carries the network's analytics.

    ``used``, when given, collects every checkpoint file name used with its largest version lag by size (provenance;
    negative: newer than the policy that played). ``rewards`` (every step's, see :func:`render.feed.episode_rewards`)
    gives each frame the return that followed it, discounted with the trainer's gamma (0.99 when the log does not
    say) and clipped as the trainer clipped.

    ``rewards`` may be a future, set once the whole episode is re-simulated while ``steps`` still arrive (the
    viewer's worker): until it is done the network analyzes each batch as its steps arrive, and the contexts,
    whose value axis spans the returns, come out once it is. The batches and their order are the same either way,
    so are the contexts.

    With ``policies`` the probes are recalibrated at the episode's start, so the levels' scales, the feature maps
    and the hidden units shown are chosen for this episode.
    """
    if policies is not None:
        policies.recalibrate()
    state = _SceneState(settings.value_history, settings.saliency)
    later = rewards if isinstance(rewards, Future) else None
    if later is None and rewards is not None:
        state.follow(rewards, schedule)
    waiting: list[tuple[list[KeptStep], _Analyzed]] = []  # analyzed while the rewards are not known yet

    def analyzed(pending: list[KeptStep], last: bool) -> Iterator[FrameContext]:
        """Analyze ``pending``; the contexts of every batch analyzed, once the rewards are known (the ``last``
        batch waits for them)."""
        nonlocal later
        if pending:
            waiting.append((pending, _analyze(pending, policies, state, used)))
        if later is not None:
            if not last and not later.done() and sum(len(kept) for kept, _ in waiting) < AHEAD_STEPS:
                return
            state.follow(later.result(), schedule)
            later = None
        for kept, outputs in waiting:
            yield from _contexts(kept, outputs, episode, schedule, state)
        waiting.clear()

    pending: list[KeptStep] = []
    for step in steps:
        pending.append(step)
        if len(pending) == settings.batch_size:
            yield from analyzed(pending, last=False)
            pending = []
    yield from analyzed(pending, last=True)


DEFAULT_GAMMA = 0.99  # the return that followed, for logs that do not record the trainer's gamma
# Steps analyzed ahead while the rewards are not known, at most: their observations wait with them (~28 KB a step
# for 4 stacked 84x84 frames), so a long episode waits for its rewards past this.
AHEAD_STEPS = 2048


class _SceneState:
    """What an episode's frames carry from one to the next: the charts' histories, the value axis's span and the
    saliency's scale (from the episode's first saliency maps)."""

    def __init__(self, history: int, saliency: SaliencySettings | None = None) -> None:
        self.saliency = saliency
        self.saliency_scale: tuple[float, float] | None = None
        self.values: deque[float] = deque(maxlen=history)
        self.followed: deque[float] = deque(maxlen=history)
        self.returns: np.ndarray | None = None
        self.rewards: np.ndarray | None = None
        self.low, self.high = 0.0, 0.0
        self._axis: tuple[tuple[float, float], tuple[float, float]] | None = None  # (low, high) -> value axis

    def follow(self, rewards: np.ndarray, schedule: TrainingSchedule) -> None:
        """Every step's reward known: the return that followed each frame, and the value axis spanning them."""
        gamma = schedule.gamma if schedule.gamma is not None else DEFAULT_GAMMA
        self.rewards = rewards
        self.returns = returns_that_followed(rewards, gamma, clip=schedule.clip_reward)
        self.low, self.high = float(self.returns.min()), float(self.returns.max())

    def axis(self) -> tuple[float, float]:
        """The value chart's axis for the span seen so far (recomputed only when the span widens)."""
        if self._axis is None or self._axis[0] != (self.low, self.high):
            self._axis = ((self.low, self.high), value_axis(self.low, self.high))
        return self._axis[1]


_Analyzed = tuple[list["FrameAnalytics | None"], list["CheckpointUse | None"], list["NetworkWiring | None"]]


def _analyze(
    pending: list[KeptStep], policies: PolicyLibrary | None, state: _SceneState, used: dict[str, int] | None
) -> _Analyzed:
    """The network's analytics of a batch of steps, the checkpoint and wiring of each (``None`` without one)."""
    analytics: list[FrameAnalytics | None] = [None] * len(pending)
    checkpoints: list[CheckpointUse | None] = [None] * len(pending)
    wiring: list[NetworkWiring | None] = [None] * len(pending)
    if policies is not None:
        versions = np.array([step.policy_version for step in pending])
        for version in np.unique(versions):
            probe, use = policies.lookup(int(version))
            where = np.flatnonzero(versions == version)
            observations = np.stack([pending[i].observation for i in where])
            results = probe.analyze(observations)
            network = probe.wiring(use.name)
            if state.saliency is not None:
                results = _with_saliency(probe, observations, results, state)
            for i, result in zip(where, results, strict=True):
                analytics[i], checkpoints[i], wiring[i] = result, use, network
            if used is not None:
                used[use.name] = max(use.lag, used.get(use.name, use.lag), key=abs)
    return analytics, checkpoints, wiring


def _contexts(
    pending: list[KeptStep],
    analyzed: _Analyzed,
    episode: EpisodeRecord,
    schedule: TrainingSchedule,
    state: _SceneState,
) -> Iterator[FrameContext]:
    analytics, checkpoints, wiring = analyzed
    phase = phase_of(episode)
    for step, result, use, network in zip(pending, analytics, checkpoints, wiring, strict=True):
        followed = None if state.returns is None else float(state.returns[step.step])
        if result is not None:
            state.values.append(result.value)
            state.low, state.high = min(state.low, result.value), max(state.high, result.value)
            if followed is not None:
                state.followed.append(followed)
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
            value_history=_array(state.values) if result is not None else None,
            checkpoint=use,
            return_followed=followed,
            return_history=_array(state.followed) if result is not None and followed is not None else None,
            value_range=state.axis(),
            network=network,
            episode_length=episode.length,
            rewards=state.rewards,
            screens=step.screens,
            saliency_scale=state.saliency_scale,
            frame_skip=schedule.frame_skip,
        )


def _with_saliency(
    probe: NetworkProbe, observations: np.ndarray, results: list[FrameAnalytics], state: _SceneState
) -> list[FrameAnalytics]:
    """``results`` with each frame's saliency maps; the episode's first maps fix its scale."""
    policy, value = probe.saliency(state.saliency).maps(observations)
    if state.saliency_scale is None:
        state.saliency_scale = (saliency_scale(policy), saliency_scale(value))
    return [dataclasses.replace(result, saliency=(policy[i], value[i])) for i, result in enumerate(results)]


def _array(values: deque[float]) -> np.ndarray:
    return np.fromiter(values, np.float32, len(values))
