"""A render sweep through Hydra's submitit launcher, as it goes to a cluster: each job in its own process.

``submitit_local`` runs the jobs as ``submitit_slurm`` would on Slurm (pickled, started in fresh processes, their
results collected from files), on this machine. Needs the ``[cluster]`` extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import decode_video

from replay import TrajectoryLog

pytest.importorskip(
    "hydra_plugins.hydra_submitit_launcher",
    reason="hydra-submitit-launcher is not installed (pip install -e '.[cluster]')",
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "breakout"
EPISODE = 2  # a short training episode (119 steps) that starts the log: nothing to fast-forward


@pytest.mark.slow  # a sweep of two processes: runs in CI's slow suite
def test_a_submitit_local_sweep_renders_each_job_in_its_own_process(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "render", "-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}"]
    command += [f"run={SAMPLE}", f"episode={EPISODE}", "overlay=raw,minimal", "video=preview", "video.progress=false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # the launch folder gets the sweep folder only: submitit's job files go into it too
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]
    jobs = {result.parent.name for result in sweep.glob(".submitit/*/*_result.pkl")}
    assert len(jobs) == 2, sorted(sweep.rglob("*"))  # one submitit job, so one process, per video
    videos = sorted(sweep.glob("*/episode.mp4"))
    assert [v.parent.name for v in videos] == [
        f"0_episode={EPISODE},overlay=raw,video=preview",
        f"1_episode={EPISODE},overlay=minimal,video=preview",
    ]
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        length = log.episode(EPISODE).length
    raw, minimal = (decode_video(v) for v in videos)
    assert len(raw) == len(minimal) == length + 1  # the reset frame first
    assert raw[0].shape == (420, 320, 3) and minimal[0].shape == (420, 748, 3)  # video=preview: the game x2
