"""What the overlay says of a Stable-Baselines3 run: the game's name and the game frame of a recorded step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from render.schedule import TrainingSchedule
from replay import TrajectoryLog
from replay.reader import game_name
from replay.run_folder import RunFolder
from replay.sb3 import make_atari_env


@pytest.mark.parametrize(
    "env_id",
    ["BreakoutNoFrameskip-v4", "BreakoutDeterministic-v4", "Breakout-v4", "ALE/Breakout-v5", "Breakout-ram-v4"],
)
def test_every_variant_of_an_env_id_names_the_game(env_id: str) -> None:
    assert game_name(env_id) == "Breakout"


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "frame_skip"),
    [("BreakoutNoFrameskip-v4", None, 1), ("ALE/Breakout-v5", {"frameskip": 1}, 1)],
)
def test_an_sb3_run_is_titled_by_its_game_and_counts_a_frame_per_recorded_step(
    tmp_path: Path, env_id: str, env_kwargs: dict | None, frame_skip: int
) -> None:
    venv = make_atari_env(env_id, 1, run_dir=tmp_path, seed=0, env_kwargs=env_kwargs)
    venv.reset()
    for _ in range(3):
        venv.step(np.array([1]))
    venv.close()
    with TrajectoryLog(RunFolder(tmp_path).log) as log:
        assert log.game == "Breakout"
        assert TrainingSchedule.of_log(log).frame_skip == frame_skip
