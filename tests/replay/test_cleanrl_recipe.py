"""The README's CleanRL recipe, end to end: CleanRL's ``ppo_atari.py`` loop on gymnasium 1.x vector envs, with
the three added lines, recorded into a run folder, the policy versions in step with the loop, replaying exactly.

CleanRL's ``make_env`` builds its stack from Stable-Baselines3's Atari wrappers, which do not record their
arguments, so a log could not rebuild them: the recipe's thunk uses the gymnasium wrappers that do the same
(docs/vector-envs.md), and a lost life ends bootstrapping in the loop rather than the episode in a wrapper.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
from torch import nn

from replay import RecordVectorTrajectory, TrajectoryLog, verify
from replay.errors import RecordingError
from replay.run_folder import RunFolder
from replay.wrappers import FireOnLifeLoss

ENV_ID = "BreakoutNoFrameskip-v4"  # CleanRL's default env id


def make_env(env_id: str):
    """CleanRL's thunk with the wrappers a log rebuilds: NoopReset + MaxAndSkip + resize + grayscale are
    ``AtariPreprocessing``, FireReset is ``FireOnLifeLoss``, ClipReward is ``ClipReward(-1, 1)`` (Atari's rewards
    are integers, so it is the sign)."""

    def thunk() -> gym.Env:
        env = gym.make(env_id)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
        env = FireOnLifeLoss(env)
        env = gym.wrappers.ClipReward(env, -1.0, 1.0)
        return gym.wrappers.FrameStackObservation(env, 4)

    return thunk


class Agent(nn.Module):
    """CleanRL's ``ppo_atari.py`` agent: the Nature CNN, an actor and a critic head."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
        )  # fmt: skip
        self.actor = nn.Linear(512, n_actions)
        self.critic = nn.Linear(512, 1)

    def get_action(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.actor(self.network(x / 255.0))
        return torch.distributions.Categorical(logits=logits).sample()


def train(run_dir: Path, vector: type, *, num_envs: int, num_steps: int, num_iterations: int, seed: int = 1) -> None:
    """CleanRL's rollout loop, the update left out (recording needs none): the lines marked + are the recipe."""
    torch.manual_seed(seed)
    envs = vector([make_env(ENV_ID) for _ in range(num_envs)])
    envs = RecordVectorTrajectory(envs, RunFolder(run_dir).log)  # +
    agent = Agent(envs.single_action_space.n)
    next_obs, _ = envs.reset(seed=seed)
    for iteration in range(1, num_iterations + 1):
        envs.policy_version = iteration - 1  # + the updates done so far: the version that chooses these actions
        for _ in range(num_steps):
            with torch.no_grad():
                action = agent.get_action(torch.Tensor(next_obs))
            next_obs, reward, terminations, truncations, infos = envs.step(action.numpy())
        # ... the PPO update of ppo_atari.py goes here ...
    envs.close()


def _versions_by_position(log: TrajectoryLog) -> dict[tuple[int, int], int]:
    """(lane, position) -> the policy version re-simulation reports for that step."""
    found = {}
    for episode in log.episodes:
        for step in log.replay(episode.index, frames=False):
            found[(episode.env_index, episode.start_step + step.step)] = step.policy_version
    return found


def _verified(run_dir: Path, *, num_envs: int, num_steps: int, num_iterations: int) -> TrajectoryLog:
    report = verify(RunFolder(run_dir).log, progress=False)
    assert report.ok, str(report)
    assert report.steps == num_envs * (num_steps * num_iterations + 1)  # every position of every lane
    return TrajectoryLog(RunFolder(run_dir).log)


def test_the_cleanrl_recipe_records_a_sync_run_that_replays_with_its_versions(tmp_path: Path) -> None:
    train(tmp_path, gym.vector.SyncVectorEnv, num_envs=1, num_steps=4, num_iterations=3)
    with _verified(tmp_path, num_envs=1, num_steps=4, num_iterations=3) as log:
        assert log.env_id == ENV_ID and [e.policy_versions for e in log.episodes] == [(0, 1, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("vector", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv], ids=["sync", "async"])
def test_the_cleanrl_recipe_over_whole_episodes(tmp_path: Path, vector: type) -> None:
    """Long enough for games to end and autoreset (NEXT_STEP): every episode replays, each step with the version
    of the iteration that chose its action (the reset before the first: 0)."""
    num_envs, num_steps, num_iterations = 4, 64, 4
    train(tmp_path, vector, num_envs=num_envs, num_steps=num_steps, num_iterations=num_iterations)
    with _verified(tmp_path, num_envs=num_envs, num_steps=num_steps, num_iterations=num_iterations) as log:
        assert sum(e.finished for e in log.episodes) >= 2
        found = {
            (e.env_index, e.start_step + step.step): step.policy_version
            for e in log.episodes
            for step in log.replay(e.index, frames=False, observations=False)
        }
    positions = num_steps * num_iterations + 1
    assert found == {(lane, p): max(0, (p - 1) // num_steps) for lane in range(num_envs) for p in range(positions)}


def test_cleanrls_own_stable_baselines3_stack_is_refused_naming_the_equivalents(tmp_path: Path) -> None:
    from stable_baselines3.common.atari_wrappers import MaxAndSkipEnv, NoopResetEnv

    def thunk() -> gym.Env:
        return MaxAndSkipEnv(NoopResetEnv(gym.make(ENV_ID), noop_max=30), skip=4)

    envs = gym.vector.SyncVectorEnv([thunk, thunk])
    try:
        with pytest.raises(RecordingError, match=r"wrapper NoopResetEnv is not in the env spec.*docs/vector-envs.md"):
            RecordVectorTrajectory(envs, tmp_path / "log.h5")
    finally:
        envs.close()
    assert not (tmp_path / "log.h5").exists()
