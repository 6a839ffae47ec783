"""The numbers behind the full overlay, frame by frame: what the network made of each re-simulated observation.

:func:`explain` re-simulates an episode exactly and runs each frame's observation through the checkpoint that
matches the policy that acted from it (the lookup the renderer uses), or through one checkpoint file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.analytics import ProbeSettings
from render.errors import RenderConfigError
from render.policies import EXACT, PolicyLibrary, exact_source
from render.selection import pick_episode
from replay import TrajectoryLog
from replay.reader import ReplayStep
from replay.run_folder import RunFolder

BATCH = 64  # observations per forward pass


@dataclass(frozen=True)
class FrameExplanation:
    """One frame of an episode and the network's reading of it.

    Attributes:
        step: The frame after that many steps (0: the reset frame).
        action: The action taken from this frame, as recorded; ``None`` for the episode's last frame.
        policy_version: The policy version that acted from this frame (for the last frame: the one that led to it).
        checkpoint_version: The version of the checkpoint that explains the frame; ``None`` when none applies.
        probabilities: The policy's distribution over the action set (float32), or ``None``.
        q_values: Action values of a value-based network; ``None`` for actor-critic networks.
        value: The critic's estimate of the frame, or ``None``.
    """

    step: int
    action: int | None
    policy_version: int
    checkpoint_version: int | None
    probabilities: np.ndarray | None
    q_values: np.ndarray | None
    value: float | None


def explain(
    run_or_log: str | Path,
    episode: int | str,
    *,
    checkpoint: str | Path | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[FrameExplanation]:
    """One :class:`FrameExplanation` per frame ``start..stop-1`` of ``episode`` (``length + 1`` frames in all, the
    reset frame first, as ``TrajectoryLog.frames`` gives them).

    Args:
        run_or_log: A run folder (its log and ``checkpoints/``) or a trajectory log file.
        episode: An episode index, or ``best``, ``worst``, ``last`` (among finished episodes).
        checkpoint: ``None``: each frame is explained by the run's checkpoint that the renderer would pick for
            the policy that acted; ``"exact"``: by the very version that acted, rebuilt from the run's learning
            (``replay.train.rebuild``; where it cannot be verified, the nearest checkpoint, with a line on stderr
            saying why); a file: that checkpoint explains every frame. A log without a run folder and
            without ``checkpoint`` gives frames without network outputs.
        start, stop: The steps to explain, as ``TrajectoryLog.replay`` takes them.

    Example:
        >>> frames = list(explain("data/sample/breakout", 983, start=0, stop=3))  # doctest: +SKIP
        >>> frames[0].step, frames[0].action, round(float(frames[0].probabilities.sum()), 3)  # doctest: +SKIP
        (0, 1, 1.0)
    """
    path = Path(run_or_log)
    folder = RunFolder(path) if path.is_dir() else None
    log_path = folder.log if folder is not None else path
    with TrajectoryLog(log_path) as log:
        chosen = pick_episode(log.episodes, episode, "any")
        last = chosen.length
        stop = last + 1 if stop is None else stop
        if not 0 <= start <= stop <= last + 1:
            raise RenderConfigError(
                f"{log_path}: episode {chosen.index} has frames 0..{last}; start={start} and stop={stop} must "
                f"satisfy 0 <= start <= stop <= {last + 1}"
            )
        policies = _policies(log, folder, checkpoint)
        if policies is not None:
            policies.prepare(chosen.policy_versions)
        # Frame k's action and acting version are those of step k + 1: read one step past the frames explained.
        steps = log.replay(chosen.index, start, min(stop + 1, last + 1), frames=False, observations=True)
        pending: list[tuple[ReplayStep, ReplayStep | None]] = []
        previous: ReplayStep | None = None
        for step in steps:
            if previous is not None and previous.step < stop:
                pending.append((previous, step))
            previous = step
            if len(pending) == BATCH:
                yield from _explained(pending, policies)
                pending = []
        if previous is not None and previous.step < stop and previous.step == last:
            pending.append((previous, None))
        yield from _explained(pending, policies)


def _policies(log: TrajectoryLog, folder: RunFolder | None, checkpoint: str | Path | None) -> PolicyLibrary | None:
    common = {"env_id": log.env_id, "n_actions": len(log.action_meanings), "settings": ProbeSettings(BATCH)}
    if checkpoint == EXACT:
        if folder is None or not folder.checkpoints.is_dir():
            raise RenderConfigError(
                f"checkpoint=exact rebuilds the networks of a run: pass its folder, not {log.path} "
                "(a run folder with checkpoints/)"
            )
        return PolicyLibrary(checkpoints=folder.checkpoints, exact=exact_source(folder.path), **common)
    if checkpoint is not None:
        return PolicyLibrary(checkpoint=Path(checkpoint), **common)
    if folder is not None and folder.checkpoints.is_dir():
        return PolicyLibrary(checkpoints=folder.checkpoints, **common)
    return None


def _explained(
    pending: list[tuple[ReplayStep, ReplayStep | None]], policies: PolicyLibrary | None
) -> Iterator[FrameExplanation]:
    versions = [(after or frame).policy_version for frame, after in pending]
    outputs: list[tuple[int | None, np.ndarray | None, float | None]] = [(None, None, None)] * len(pending)
    if policies is not None:
        for version in sorted(set(versions)):
            probe, use = policies.lookup(version)
            where = [i for i, v in enumerate(versions) if v == version]
            results = probe.analyze(np.stack([pending[i][0].observation for i in where]))
            for i, result in zip(where, results, strict=True):
                probabilities = np.asarray(result.probabilities, dtype=np.float32)
                outputs[i] = (version - use.lag, probabilities, float(result.value))
    for (frame, after), version, (checkpoint_version, probabilities, value) in zip(
        pending, versions, outputs, strict=True
    ):
        yield FrameExplanation(
            step=frame.step,
            action=None if after is None else after.action,
            policy_version=version,
            checkpoint_version=checkpoint_version,
            probabilities=probabilities,
            q_values=None,
            value=value,
        )
