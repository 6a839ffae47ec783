"""The viewer serves a Stable-Baselines3 run recorded with ``replay.sb3`` as one run: real SB3 training, the
viewer over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from served import Server
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecFrameStack

import render
from replay import TrajectoryLog
from replay.run_folder import RunFolder
from replay.sb3 import RecordCallback, make_atari_env

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_viewer_serves_an_sb3_run_as_one_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run_dir = tmp_path / "runs" / "ppo"
    venv = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", 2, run_dir=run_dir, seed=0), 4)
    PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0).learn(
        256, callback=RecordCallback(run_dir, checkpoint_every=1)
    )
    venv.close()
    with TrajectoryLog(RunFolder(run_dir).log) as log:
        recorded = [(e.index, e.stream, e.length) for e in log.episodes]
    assert {stream for _, stream, _ in recorded} == {0, 1}  # both envs' episodes

    viewer = Server([tmp_path / "runs"])
    try:
        [run] = viewer.json("/api/runs")
        assert (run["game"], run["error"], run["episodes"]) == ("Breakout", None, len(recorded))
        episodes = viewer.json(f"/api/runs/{run['id']}/episodes")
        assert [(e["index"], e["length"]) for e in episodes] == [(i, length) for i, _, length in recorded]
        index, _, length = next(e for e in recorded if e[2] >= 40)
        for overlay in ("raw", "full"):
            status, kind, body = viewer.get(f"/api/runs/{run['id']}/episodes/{index}/frames/40.png?overlay={overlay}")
            assert (status, kind, body[:8]) == (200, "image/png", PNG), body[:500]
        status, _, body = viewer.get(f"/api/runs/{run['id']}/episodes/{index}/readings")
        assert status == 200, body[:500]
        readings = json.loads(body)
        explained = list(render.explain(run_dir, index))  # one per agent decision: every 4th recorded step
        assert readings["explained"] and readings["actions"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
        assert [(f["step"], f["action"]) for f in readings["frames"]] == [(e.step, e.action) for e in explained]
        assert all(len(f["probabilities"]) == 4 and f["value"] is not None for f in readings["frames"])
    finally:
        viewer.stop()
