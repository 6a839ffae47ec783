"""Every code block of the README runs, from a folder laid out as the repository's root.

The blocks run in a temporary folder holding a copy of ``data/sample`` (so what they write, a run or a video,
stays out of the checkout), with this checkout's packages. Python blocks run as written, in order, in one
process. Shell blocks run line by line as written, except the long ones, which :data:`TINY` replaces with the
same command at a tiny size; the set-up block is what ``.ci/run`` itself does, so it is not run twice.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

README = ROOT / "README.md"
SETUP = "python3 -m venv .venv"  # the set-up block starts so
SMALL_RUN = "ppo.num_envs=2 eval.episodes=1 eval.max_episode_frames=2000 checkpoint.milestones=2 progress=false"
# README line -> the same command at a tiny size (training a few updates, rendering a few frames).
TINY = {
    # the server runs until Ctrl-C (tests/render/test_viewer.py starts it); here it lists what it would serve
    "python -m render.viewer": "python -m render.viewer --list",
    "python -m replay.train env.id=ALE/Breakout-v5 total_steps=50000 seed=1 run_dir=data/runs/quick": (
        f"python -m replay.train env.id=ALE/Breakout-v5 total_steps=1024 seed=1 run_dir=data/runs/quick {SMALL_RUN}"
    ),
    "python -m replay.train env.id=ALE/Pong-v5 total_steps=20000 seed=1 run_dir=data/runs/pong-1": (
        f"python -m replay.train env.id=ALE/Pong-v5 total_steps=512 seed=1 run_dir=data/runs/pong-1 {SMALL_RUN}"
    ),
    (
        "python -m replay.train env.id=ALE/Breakout-v5 total_steps=1000000 seed=1 torch_threads=2 "
        "checkpoint.dtype=float16 checkpoint.resume_point_every=500 run_dir=data/runs/breakout-sample"
    ): (
        "python -m replay.train env.id=ALE/Breakout-v5 total_steps=1536 seed=1 torch_threads=2 "
        f"checkpoint.dtype=float16 checkpoint.resume_point_every=2 run_dir=data/runs/breakout-sample {SMALL_RUN}"
    ),
    "python -m replay.train resume=data/runs/pong-1 total_steps=30000": (
        "python -m replay.train resume=data/runs/pong-1 total_steps=1024"
    ),
    "python -m render run=data/sample/breakout episode=best overlay=full output=best.mp4": (
        "python -m render run=data/sample/breakout episode=best overlay=full output=best.mp4 product.frame_stride=64"
    ),
    "python -m render run=data/sample/breakout product=timelapse product.target_duration=30 overlay=minimal": (
        "python -m render run=data/sample/breakout product=timelapse product.target_duration=2 overlay=minimal"
    ),
    "python -m render run=data/sample/breakout product=progression product.layout=grid output=grid.mp4": (
        "python -m render run=data/sample/breakout product=progression product.layout=grid product.clip_seconds=1 "
        "product.card_seconds=0.1 product.closing_seconds=0.1 video=preview output=grid.mp4"
    ),
    "python -m render run=data/sample/breakout product=progression product.frame_stride=4 output=progression.mp4": (
        "python -m render run=data/sample/breakout product=progression product.frame_stride=64 "
        "product.card_seconds=0.1 output=progression.mp4"
    ),
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands() -> list[str]:
    lines = []
    for block in blocks("bash"):
        if block.startswith(SETUP):
            continue
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder laid out as the repository's root for what the README uses: ``data/sample`` and ``tests/fixtures``."""
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    return tmp_path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_readme_has_its_blocks_and_every_tiny_command_stands_for_one_of_its_lines() -> None:
    assert blocks("python") and blocks("bash")
    assert blocks("bash")[0].startswith(SETUP), "the README opens with its set-up commands"
    assert set(TINY) <= set(commands()), set(TINY) - set(commands())


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_the_python_blocks_run_as_written(root: Path) -> None:
    """Every Python block but the Stable-Baselines3 recipe (real training: the slow case below)."""
    script = "\n\n".join(block for block in blocks("python") if "stable_baselines3" not in block)
    done = run([sys.executable, "-c", script], root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1662 850 35.0 (658, 659)" in done.stdout  # the value the reading block's comment shows
    assert "all episodes replay exactly" in done.stdout


@pytest.mark.slow
def test_the_stable_baselines3_recipe_trains_into_a_run_that_replays(root: Path) -> None:
    (recipe,) = [block for block in blocks("python") if "stable_baselines3" in block]
    done = run([sys.executable, "-c", recipe], root)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = re.search(r'run_dir="([^"]+)"', recipe).group(1)
    done = run([sys.executable, "-m", "replay.verify", run_dir], root)
    assert done.returncode == 0 and "all episodes replay exactly" in done.stdout, done.stdout + done.stderr
    assert sorted(p.name for p in (root / run_dir / "checkpoints").glob("v*.zip"))[0] == "v000000.zip"


@pytest.mark.slow
def test_the_shell_blocks_run_from_the_root(root: Path) -> None:
    before = sorted(p.relative_to(ROOT) for p in ROOT.iterdir())
    for command in commands():
        words = shlex.split(TINY.get(command, command))
        assert words[:2] == ["python", "-m"], command
        done = run([sys.executable, *words[1:]], root)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        if words[2] == "render":
            assert "wrote " in done.stdout or "-m" in words, (command, done.stdout[-2000:])
    assert (root / "best.mp4").is_file() and (root / "progression.mp4").is_file() and (root / "grid.mp4").is_file()
    assert list((root / "data" / "sample" / "breakout" / "videos").glob("timelapse-*.mp4"))
    assert len(list(root.glob("multirun/render/*/*/*/episode.mp4"))) == 6  # 4 jobs, then 2
    assert sorted(p.relative_to(ROOT) for p in ROOT.iterdir()) == before  # nothing written into the checkout
