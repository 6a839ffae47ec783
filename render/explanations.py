"""The numbers behind the full overlay, frame by frame: what the network made of each re-simulated observation.

:func:`explain` re-simulates an episode exactly and runs each frame's observation through the checkpoint that
matches the policy that acted from it (the lookup the renderer uses), or through one checkpoint file.

Where the agent's own wrappers sat above the recorder (a Stable-Baselines3 run recorded through ``replay.sb3``),
an agent step spans several recorded steps: :func:`explain` then yields one item per decision of the agent, with
the observation the network received in training re-derived by :mod:`render.agent_view`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.agent_view import Decision, decisions, view_for
from render.analytics import ProbeSettings
from render.errors import RenderConfigError
from render.policies import EXACT, REBUILT, PolicyLibrary, exact_source, rebuilt_source
from render.selection import pick_episode
from replay import TrajectoryLog
from replay.reader import ReplayStep
from replay.run_folder import RunFolder

BATCH = 64  # observations per forward pass


@dataclass(frozen=True)
class FrameExplanation:
    """One frame of an episode (or one decision of the agent) and the network's reading of it.

    Attributes:
        step: The frame after that many steps (0: the reset frame); for an agent whose steps span several
            recorded steps, the recorded step at which it acted.
        action: The action taken from this frame, as recorded; ``None`` for the episode's last frame.
        policy_version: The policy version that acted from this frame (for the last frame: the one that led to it).
        checkpoint_version: The version of the checkpoint that explains the frame; ``None`` when none applies.
        probabilities: The policy's distribution over the action set (float32), or ``None`` (no network, or a Q
            network).
        q_values: Action values of a value-based network (DQN, float32); ``None`` for actor-critic networks.
        value: The critic's estimate of the frame, or a Q network's largest Q-value; ``None`` without a network.
    """

    step: int
    action: int | None
    policy_version: int
    checkpoint_version: int | None
    probabilities: np.ndarray | None
    q_values: np.ndarray | None
    value: float | None

    @property
    def greedy_action(self) -> int | None:
        """The action of the largest Q-value (a Q network), or of the largest probability; ``None`` without one."""
        outputs = self.q_values if self.q_values is not None else self.probabilities
        return None if outputs is None else int(np.argmax(outputs))


def explain(
    run_or_log: str | Path,
    episode: int | str,
    *,
    checkpoint: str | Path | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[FrameExplanation]:
    """One :class:`FrameExplanation` per frame ``start..stop-1`` of ``episode`` (``length + 1`` frames in all, the
    reset frame first, as ``TrajectoryLog.frames`` gives them); for a Stable-Baselines3 run recorded through
    ``replay.sb3``, one per decision of the agent at a step in ``start..stop-1``.

    Args:
        run_or_log: A run folder (its log and ``checkpoints/``) or a trajectory log file.
        episode: An episode index, or ``best``, ``worst``, ``last`` (among finished episodes).
        checkpoint: ``None``: each frame is explained by the run's checkpoint that the renderer would pick for
            the policy that acted; ``"exact"``: by the very version that acted, rebuilt from the run's learning
            (``replay.train.rebuild``; where it cannot be verified, the nearest checkpoint, with a line on stderr
            saying why); ``"rebuilt"``: by the versions already rebuilt (lag 0), the nearest checkpoint for the
            rest, never rebuilding (what the viewer shows); a file (this project's ``.pt``, an SB3 ``.zip``, a
            CleanRL model file): that checkpoint explains every frame. A log without a run folder and without
            ``checkpoint`` gives frames without network outputs.
        start, stop: The steps to explain, as ``TrajectoryLog.replay`` takes them.

    Example:
        >>> frames = list(explain("data/sample/breakout", 1662, start=0, stop=3))  # doctest: +SKIP
        >>> frames[0].step, frames[0].action, round(float(frames[0].probabilities.sum()), 3)  # doctest: +SKIP
        (0, 2, 1.0)
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
        view = view_for(log.metadata, chosen.stream)
        if view is not None:
            replayed = log.replay(chosen.index, frames=False, observations=True)
            made = decisions(replayed, view, log.action_meanings, str(log_path))
            frames: Iterator[Decision] = (d for d in made if start <= d.step < stop)
        else:
            frames = _recorded_frames(log, chosen.index, start, stop, last)
        pending: list[Decision] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) == BATCH:
                yield from _explained(pending, policies)
                pending = []
        yield from _explained(pending, policies)


def _recorded_frames(log: TrajectoryLog, index: int, start: int, stop: int, last: int) -> Iterator[Decision]:
    """Each frame ``start..stop-1`` with the recorded observation, the action taken from it and the version that
    took it (those of the next step: one step past the frames is read); the last frame of the episode has none."""
    previous: ReplayStep | None = None
    for step in log.replay(index, start, min(stop + 1, last + 1), frames=False, observations=True):
        if previous is not None and previous.step < stop:
            yield Decision(previous.step, previous.observation, step.action, step.policy_version)
        previous = step
    if previous is not None and previous.step < stop and previous.step == last:
        yield Decision(previous.step, previous.observation, None, previous.policy_version)


def _policies(log: TrajectoryLog, folder: RunFolder | None, checkpoint: str | Path | None) -> PolicyLibrary | None:
    common = {"env_id": log.env_id, "n_actions": len(log.action_meanings), "settings": ProbeSettings(BATCH)}
    if checkpoint in (EXACT, REBUILT):
        if folder is None or not folder.checkpoints.is_dir():
            raise RenderConfigError(
                f"checkpoint={checkpoint} uses the rebuilt networks of a run: pass its folder, not {log.path} "
                "(a run folder with checkpoints/)"
            )
        if checkpoint == REBUILT:
            rebuilt = rebuilt_source(folder.path)
            return PolicyLibrary(checkpoints=folder.checkpoints, exact=rebuilt, rebuild=False, **common)
        return PolicyLibrary(checkpoints=folder.checkpoints, exact=exact_source(folder.path), **common)
    if checkpoint is not None:
        return PolicyLibrary(checkpoint=Path(checkpoint), **common)
    if folder is not None and folder.checkpoints.is_dir():
        return PolicyLibrary(checkpoints=folder.checkpoints, **common)
    return None


def _explained(pending: list[Decision], policies: PolicyLibrary | None) -> Iterator[FrameExplanation]:
    versions = [frame.policy_version for frame in pending]
    outputs: list[tuple[int | None, np.ndarray | None, np.ndarray | None, float | None]] = [
        (None, None, None, None)
    ] * len(pending)
    if policies is not None:
        for version in sorted(set(versions)):
            probe, use = policies.lookup(version)
            where = [i for i, v in enumerate(versions) if v == version]
            results = probe.analyze(np.stack([pending[i].observation for i in where]))
            for i, result in zip(where, results, strict=True):
                if result.q_values is not None:
                    outputs[i] = (version - use.lag, None, np.asarray(result.q_values, np.float32), result.value)
                else:
                    probabilities = np.asarray(result.probabilities, dtype=np.float32)
                    outputs[i] = (version - use.lag, probabilities, None, float(result.value))
    for frame, (checkpoint_version, probabilities, q_values, value) in zip(pending, outputs, strict=True):
        yield FrameExplanation(
            step=frame.step,
            action=frame.action,
            policy_version=frame.policy_version,
            checkpoint_version=checkpoint_version,
            probabilities=probabilities,
            q_values=q_values,
            value=value,
        )
