"""Episodes the caller ends with reset(), as a TimeLimit around the recorder does, are kept as truncated."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
from helpers import PREPROCESSED, make_env

from render.selection import pick_episode
from replay import RecordTrajectory, TrajectoryLog, verify
from replay.show import main as show


def _play(env: gym.Env, episodes: int) -> list[tuple[bool, bool, float]]:
    """Random play until ``episodes`` episodes ended; returns (terminated, truncated, return) of each."""
    rng = np.random.default_rng(0)
    ended, total = [], 0.0
    env.reset(seed=3)
    while len(ended) < episodes:
        _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        total += float(reward)
        if terminated or truncated:
            ended.append((bool(terminated), bool(truncated), total))
            total = 0.0
            env.reset()
    env.close()
    return ended


def test_a_time_limit_around_the_recorder_stores_its_truncations(tmp_path: Path, capsys) -> None:
    """The TimeLimit the refusal of one above AtariPreprocessing advises: its truncated flag never passes down to
    the recorder, which sees the reset that follows it. Such episodes are finished, by truncation, replay exactly
    and are among those best and worst pick from."""
    path = tmp_path / "limited.h5"
    played = _play(gym.wrappers.TimeLimit(RecordTrajectory(make_env("Breakout", PREPROCESSED), path), 25), 3)
    assert played == [(False, True, r) for _, _, r in played]
    with TrajectoryLog(path) as log:
        episodes = log.episodes
    assert [(e.length, e.finished, e.terminated, e.truncated, e.ended_by) for e in episodes[:3]] == [
        (25, True, False, True, "truncation")
    ] * 3
    assert [e.total_reward for e in episodes[:3]] == [r for *_, r in played]
    assert episodes[3].ended_by == "unfinished" and episodes[3].length == 0  # the reset after the last, then close()
    assert pick_episode(episodes, "best") in episodes[:3] and pick_episode(episodes, "worst") in episodes[:3]
    report = verify(path, progress=False)
    assert report.ok, str(report)
    assert show([str(path), "--episodes", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["ended_by"] for e in listed["episodes"]] == ["truncation"] * 3 + ["unfinished"]
    assert listed["summary"]["episodes"]["train"] == {"finished": 3, "unfinished": 1}
    assert show([str(path), "--episodes"]) == 0
    assert capsys.readouterr().out.count(" truncation") == 3


def test_an_episode_cut_by_close_stays_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    env = RecordTrajectory(make_env("Breakout", PREPROCESSED), path)
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    env.close()
    with TrajectoryLog(path) as log:
        assert [(e.length, e.ended_by) for e in log.episodes] == [(5, "unfinished")]
