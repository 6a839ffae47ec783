"""Every ALE v5 game records and replays bit-exactly, seeks included (a few hundred steps each)."""

from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
import pytest

from replay import RecordTrajectory, TrajectoryLog

gym.register_envs(ale_py)
ALL_GAMES = sorted(
    env_id for env_id, spec in gym.registry.items() if env_id.startswith("ALE/") and env_id.endswith("-v5")
)
STEPS = 300


def test_the_sweep_covers_every_registered_game():
    assert len(ALL_GAMES) >= 100


@pytest.mark.slow
@pytest.mark.parametrize("sticky", [0.25, 0.0], ids=["sticky", "no-sticky"])
@pytest.mark.parametrize("env_id", ALL_GAMES)
def test_game_replays_exactly(tmp_path, env_id, sticky):
    """Sticky snapshots carry the ALE RNG, non-sticky ones do not: both kinds must restore exactly."""
    path = tmp_path / "log.h5"
    env = RecordTrajectory(
        gym.make(env_id, render_mode="rgb_array", repeat_action_probability=sticky),
        path,
        snapshot_interval=40,
        sync_interval=8,
        flush_seconds=60,
    )
    rng = np.random.default_rng(7)
    recorded: list[list[np.ndarray]] = []
    env.reset(seed=11)
    recorded.append([env.unwrapped.render()])
    for _ in range(STEPS):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        recorded[-1].append(env.unwrapped.render())
        if terminated or truncated:
            env.reset()
            recorded.append([env.unwrapped.render()])
    env.close()
    with TrajectoryLog(path) as log:
        assert len(log.episodes) == len(recorded)
        for episode, frames in zip(log.episodes, recorded, strict=True):
            replayed = list(log.frames(episode.index))
            assert len(replayed) == len(frames)
            bad = [t for t, (a, b) in enumerate(zip(replayed, frames, strict=True)) if not np.array_equal(a, b)]
            assert not bad, f"{env_id}: episode {episode.index} differs from step {bad[0]}"
    longest = max(range(len(recorded)), key=lambda i: len(recorded[i]))
    for start in (len(recorded[longest]) // 2, len(recorded[longest]) - 3):
        with TrajectoryLog(path) as log:  # a fresh reader: the seek anchors on a snapshot, not a live env
            replayed = list(log.frames(longest, start, start + 3))
        for t, frame in enumerate(replayed):
            assert np.array_equal(frame, recorded[longest][start + t]), f"{env_id}: seek to {start + t} differs"
