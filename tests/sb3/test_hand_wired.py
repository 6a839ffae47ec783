"""SB3 stacks wired by hand around ``RecordTrajectory`` (without ``replay.sb3``): what replays is recorded, what
could not replay is refused at recording, naming the fix."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
from stable_baselines3.common.atari_wrappers import AtariWrapper

from replay import RecordTrajectory, TrajectoryLog, verify
from replay.errors import RecordingError


def test_a_random_frame_skip_under_atari_wrappers_no_op_starts_is_refused(tmp_path: Path) -> None:
    env = AtariWrapper(RecordTrajectory(gym.make("Breakout-v4"), tmp_path / "v4.h5"), noop_max=30)
    with pytest.raises(RecordingError) as refused:
        env.reset(seed=1)  # its no-op starts draw from the generator the frame skips come from
        for _ in range(5):
            env.step(env.action_space.sample())
    env.close()
    message = str(refused.value)
    assert "Breakout-v4" in message and "BreakoutNoFrameskip-v4" in message and "replay.sb3.make_atari_env" in message


@pytest.mark.slow
def test_a_fixed_frame_skip_under_atari_wrapper_records_and_replays(tmp_path: Path) -> None:
    env = AtariWrapper(RecordTrajectory(gym.make("BreakoutNoFrameskip-v4"), tmp_path / "nfs.h5"), noop_max=30)
    env.reset(seed=1)
    for _ in range(40):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()
    with TrajectoryLog(tmp_path / "nfs.h5") as log:
        assert log.episodes
    assert verify(tmp_path / "nfs.h5").ok


@pytest.mark.slow
def test_a_random_frame_skip_alone_still_records(tmp_path: Path) -> None:
    env = RecordTrajectory(gym.make("Breakout-v4"), tmp_path / "v4-alone.h5")
    env.reset(seed=2)
    for _ in range(30):
        env.step(env.action_space.sample())
    env.close()
    assert verify(tmp_path / "v4-alone.h5").ok


def test_set_attr_of_a_policy_version_that_never_reaches_the_recorder_is_refused(tmp_path: Path) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make() -> gym.Env:
        return AtariWrapper(RecordTrajectory(gym.make("BreakoutNoFrameskip-v4"), tmp_path / "hand.h5"))

    venv = DummyVecEnv([make])
    venv.seed(0)
    venv.reset()
    venv.step([1])
    venv.set_attr("policy_version", 3)  # lands on AtariWrapper's own __dict__ under gymnasium 1.x
    with pytest.raises(RecordingError, match=r"policy_version was set on AtariWrapper.*replay\.sb3\.make_atari_env"):
        venv.step([1])
    venv.close()
    with TrajectoryLog(tmp_path / "hand.h5") as log:  # what was recorded before stays readable
        assert log.episodes
