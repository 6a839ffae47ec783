"""Milestone evaluations: when they happen, their seeds, and playing them with the policy as saved.

Each evaluation plays the weights read back from the saved checkpoint, seeded from ``(seed, version,
episode)``; the seeds go into the log's metadata under ``eval_v<version>``, so each episode is reproducible from
the files alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replay.reader import EpisodeRecord, TrajectoryLog
from replay.run_folder import CHECKPOINTS
from replay.train.checkpoints import CheckpointRef, load_policy
from replay.train.config import TrainConfig
from replay.train.envs import make_env


def milestone_versions(num_updates: int, milestones: int) -> dict[int, float]:
    """Policy version of each milestone → the largest training fraction it stands for (0 → 0.0)."""
    schedule = {0: 0.0}
    for k in range(1, milestones + 1):
        schedule[math.ceil(k * num_updates / milestones)] = k / milestones
    return schedule


def eval_seeds(seed: int, policy_version: int, episode: int) -> tuple[int, int]:
    """Env reset seed and action-sampling seed of one evaluation episode."""
    env_seed, action_seed = np.random.SeedSequence([seed, policy_version, episode, 0xE7A1]).generate_state(2)
    return int(env_seed), int(action_seed)


def evaluate(
    config: TrainConfig, ref: CheckpointRef, writer: Any | None, *, first: int = 0
) -> list[tuple[float, int, bool, bool]]:
    """Play ``config.eval.episodes`` episodes (from the ``first``-th on: a resume finishing a cut evaluation)
    with the policy as loaded from ``ref.path``; record them if a writer is given. Returns ``(return, length,
    terminated, truncated)`` per episode played."""
    model, _ = load_policy(ref.path, env_id=config.env.id)
    env = make_env(config.env, max_episode_frames=config.eval.max_episode_frames)
    if writer is not None:
        from replay.recorder import RecordTrajectory

        env = RecordTrajectory(env, writer, tag="eval")
        env.policy_version = ref.policy_version
    seeds = [eval_seeds(config.seed, ref.policy_version, e) for e in range(config.eval.episodes)]
    results = []
    try:
        for env_seed, action_seed in seeds[first:]:
            generator = torch.Generator().manual_seed(action_seed)
            obs, _ = env.reset(seed=env_seed)
            total, length, terminated, truncated = 0.0, 0, False, False
            while not (terminated or truncated):
                with torch.no_grad():
                    action = model.act(torch.from_numpy(obs)[None], greedy=config.eval.greedy, generator=generator)
                obs, reward, terminated, truncated, _ = env.step(int(action))
                total += float(reward)
                length += 1
            results.append((total, length, bool(terminated), bool(truncated)))
    finally:
        env.close()
    if writer is not None:
        writer.set_metadata(
            f"eval_v{ref.policy_version:06d}",
            {
                "checkpoint": f"{CHECKPOINTS}/{ref.path.name}",
                "env_seeds": [s for s, _ in seeds],
                "action_seeds": [s for _, s in seeds],
                "greedy": config.eval.greedy,
                "max_episode_frames": config.eval.max_episode_frames,
            },
        )
    return results


def evaluation_missing(
    config: TrainConfig, log_path: Path, version: int, milestones: dict[int, float]
) -> list[EpisodeRecord] | None:
    """``None``, or if ``version`` is a milestone whose evaluation the log does not hold in full (the run was
    killed during it: its checkpoint and resume state are saved first), the evaluation episodes it finished."""
    wanted = config.eval.episodes > 0 and (version > 0 or config.eval.at_start)
    if version not in milestones or not wanted or not config.record.enabled or not log_path.is_file():
        return None
    with TrajectoryLog(log_path) as log:
        if f"eval_v{version:06d}" in log.metadata:
            return None
        played = [e for e in log.episodes if e.tag == "eval" and e.finished and e.policy_versions[0] == version]
    return played[: config.eval.episodes]  # in the order played: episode k used the k-th seeds
