"""The README's main command on the bundled sample run (``data/sample/breakout``), end to end from the repository
root, as a fresh checkout runs it: the real 1M-step log, its milestone checkpoints, decoded back."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import decode_video

import render
from render.draw.compose import upscale_nearest
from render.draw.overlays import FullLayout
from replay import TrajectoryLog
from replay.run_folder import RunFolder
from replay.train import ledger
from replay.train.checkpoints import checkpoint_path
from replay.train.digests import weights_digest
from replay.train.ledger import current_setup

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "breakout"

pytestmark = pytest.mark.slow


def _render(*overrides: str, cwd: Path = ROOT) -> tuple[Path, tuple[int, ...]]:
    """``python -m render <overrides>`` from ``cwd``; the video it says it wrote and its episodes."""
    done = subprocess.run(
        [sys.executable, "-m", "render", *overrides], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = re.search(r"wrote (\S+) \((\d+) frames, episodes \[([\d, ]*)\]\)", done.stdout)
    assert said, done.stdout[-2000:]
    return Path(said[1]), tuple(int(i) for i in said[3].split(",") if i.strip())


def test_the_readme_main_command_renders_the_best_sample_episode_with_the_full_overlay(tmp_path: Path) -> None:
    # the README's `python -m render`, from a copy of the repository's data: its video goes into the run's videos/
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    video, episodes = _render("video.progress=false", cwd=tmp_path)
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        finished = [e for e in log.episodes if e.finished]
        best = max(finished, key=lambda e: (e.total_reward, -e.index))  # the first of equal returns
        recorded = list(log.frames(best.index))
    videos = tmp_path / "data" / "sample" / "breakout" / "videos"
    assert video.parent == videos and re.fullmatch(r"episode-\d{8}-\d{6}\.mp4", video.name)
    assert episodes == (best.index,)
    assert sorted(p.name for p in videos.iterdir()) == [video.name, video.name + ".json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing else where it was launched
    frames = decode_video(video)
    assert len(frames) == best.length + 1 == len(recorded)  # one video frame per recorded frame, reset first
    assert frames[0].shape == (720, 1280, 3)
    game = FullLayout.fit(1280, 720, n_actions=4, stats_rows=6).game
    for i in (0, len(frames) // 2, len(frames) - 1):  # the reset frame, one mid-game, the terminal frame
        shown = frames[i][game.slices].astype(int)
        error = np.abs(shown - upscale_nearest(recorded[i], game.w // 160).astype(int))
        assert error.mean() < 1.2 and np.percentile(error, 99) < 20, (i, error.mean())
    sidecar = json.loads(video.with_name(video.name + ".json").read_text())
    assert sidecar["overlay"] == "full" and sidecar["frames"] == len(frames)
    assert [e["index"] for e in sidecar["episodes"]] == [best.index]
    assert sidecar["checkpoints"], "the full overlay names the checkpoints it ran"


def test_progression_of_the_sample_run_shows_each_milestone_in_order(tmp_path: Path) -> None:
    output = tmp_path / "progression.mp4"
    _, episodes = _render(
        "product=progression",
        "product.milestones=0",
        "product.per_milestone=first",
        "product.frame_stride=16",
        "product.card_seconds=0.5",
        f"output={output}",
        "video=preview",
        "video.progress=false",
    )
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        evaluations = [e for e in log.episodes if e.tag == "eval" and e.finished]
    milestones = sorted({e.policy_versions[0] for e in evaluations})
    first = [min(e.index for e in evaluations if e.policy_versions[0] == v) for v in milestones]
    assert len(milestones) == 11  # 0%, 10%, ..., 100%
    assert episodes == tuple(first)
    sidecar = json.loads(output.with_name("progression.mp4.json").read_text())
    assert sidecar["frames"] == len(decode_video(output))
    assert all(lag == 0 for lag in sidecar["checkpoints"].values()), "milestone episodes use their own checkpoint"


def _trained_elsewhere() -> list[str]:
    """What decides the bits of the sample's updates and differs on this machine (its CPU capability, torch)."""
    return ledger.read(RunFolder(SAMPLE).ledger).sessions[-1].differences()


def _an_episode_past_the_resume_point(tmp_path: Path) -> tuple[Path, int, int]:
    """A copy of the sample (rebuilds go to its ``rebuilt/``: the checkout stays clean) and a short training
    episode played just after its last resume point, with that episode's length."""
    run = tmp_path / "breakout"
    shutil.copytree(SAMPLE, run, ignore=shutil.ignore_patterns("videos", "rebuilt", "tensorboard", "hydra"))
    points = ledger.read(RunFolder(run).ledger).resume_points
    assert points, "the sample run keeps a resume point"
    start = max(points)
    with TrajectoryLog(RunFolder(run).log) as log:
        episode = next(e for e in log.episodes if e.tag == "train" and e.policy_versions[0] > start and e.length < 600)
    return run, episode.index, episode.length


@pytest.mark.skipif(
    bool(_trained_elsewhere()), reason=f"the sample was trained on another machine kind: {_trained_elsewhere()}"
)
def test_a_training_episode_of_the_sample_is_explained_exactly_out_of_the_box(tmp_path: Path, capfd) -> None:
    """``checkpoint="exact"`` on the shipped sample, on a machine of the kind that trained it: a training episode
    played just after its resume point is explained by the very versions that played it, each rebuilt from the
    resume point and verified against the digest the trainer wrote (another process) in the run's ledger."""
    run, index, length = _an_episode_past_the_resume_point(tmp_path)
    frames = list(render.explain(run, index, checkpoint="exact"))
    assert len(frames) == length + 1
    assert all(f.checkpoint_version == f.policy_version for f in frames), "lag 0 on every frame"
    assert "falling back" not in capfd.readouterr().err, "no fallback to a saved checkpoint"
    recorded = ledger.read(RunFolder(run).ledger)
    for version in sorted({f.policy_version for f in frames}):
        weights = torch.load(checkpoint_path(RunFolder(run).rebuilt, version), weights_only=True)["state_dict"]
        assert weights_digest(weights) == recorded.digest(version), version
    nearest = list(render.explain(run, index, stop=1))[0]
    assert nearest.checkpoint_version < nearest.policy_version, "without exact, an older saved version explains it"


@pytest.mark.skipif(not _trained_elsewhere(), reason="this machine is of the kind that trained the sample")
def test_on_another_machine_kind_the_sample_falls_back_to_its_checkpoints_and_says_why(tmp_path: Path, capfd) -> None:
    """On a CPU whose capability differs from the one that trained the sample (AVX2 against AVX512, say), an
    update's bits differ: ``checkpoint=exact`` finds that out from the digests and explains the frames with the
    nearest saved checkpoints, the very numbers it gives without ``exact``, saying why once; nothing unverified
    stays in ``rebuilt/``, and the overlay's line names the difference in a few words."""
    run, index, length = _an_episode_past_the_resume_point(tmp_path)
    differences = _trained_elsewhere()
    frames = list(render.explain(run, index, checkpoint="exact"))
    said = capfd.readouterr().err
    assert said.count("checkpoint=exact: falling back to the nearest saved checkpoints") == 1
    assert ("digest" in said or "draws action" in said) and all(d in said for d in differences), said
    nearest = list(render.explain(run, index))
    assert len(frames) == len(nearest) == length + 1
    for a, b in zip(frames, nearest, strict=True):
        assert a.checkpoint_version == b.checkpoint_version < a.policy_version
        assert a.probabilities.tobytes() == b.probabilities.tobytes() and a.value == b.value
    recorded = ledger.read(RunFolder(run).ledger)
    for kept in RunFolder(run).rebuilt.glob("v*.pt"):  # the starting points, each checked before it was kept
        weights = torch.load(kept, weights_only=True)["state_dict"]
        assert weights_digest(weights) == recorded.digest(int(kept.stem[1:])), kept.name
    output = tmp_path / "episode.mp4"
    _render(
        f"run={run}",
        f"episode={index}",
        "checkpoint=exact",
        "video=preview",
        "video.progress=false",
        f"output={output}",
    )
    sidecar = json.loads(output.with_name("episode.mp4.json").read_text())
    assert all(d in sidecar["exact"]["fallback"] for d in differences)
    here, trained = current_setup()["cpu"], recorded.sessions[-1].cpu
    if here != trained:
        assert sidecar["exact"]["brief"] == f"CPU {here} here, {trained} in training"
