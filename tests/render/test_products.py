"""End to end: real Breakout logs and checkpoints built in fixtures, rendered, decoded back with PyAV."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import STICKY, assert_video_close, decode_video, record_single
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from render import RenderSource, render_episode, render_progression, render_timelapse
from render.cli import run_product
from render.config import (
    EpisodeProductConfig,
    OverlayConfig,
    ProgressionProductConfig,
    TimelapseProductConfig,
    VideoConfig,
)
from render.draw.compose import Rect, upscale_nearest
from render.draw.overlays import RawOverlay
from render.draw.story import CaptionedOverlay, strip_height
from render.draw.style import Palette
from render.encoder import VideoEncoder
from render.errors import EncoderError, MissingCheckpointError, RenderConfigError, SelectionError
from render.feed import ReplayFeed
from render.schedule import TrainingSchedule
from render.story import LearningCurve
from replay import EpisodeIndexError, RecordTrajectory, TrajectoryLog
from replay.errors import CheckpointError
from replay.train.checkpoints import load_policy, save_checkpoint
from replay.train.envs import EnvConfig, make_env
from replay.train.network import ActorCritic

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
ENV_ID = "ALE/Breakout-v5"
TOTAL_STEPS, NUM_STEPS = 1024, 64  # 16 updates of one env
QUICK = VideoConfig(fps=30, crf=18, preset="ultrafast", scale=2, progress=False)


def _play(env, rng: np.random.Generator, *, seed: int, version_every: int | None, start_version: int) -> None:
    env.policy_version = start_version
    env.reset(seed=seed)
    done, t = False, 0
    while not done:
        if version_every:
            env.policy_version = start_version + t // version_every
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        done, t = terminated or truncated, t + 1


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real run recorded like ``replay.train`` does: milestone checkpoints v0, v8 and v16 with one
    evaluation episode each, then 3 training episodes played by versions 0-1, 5-6 and 10-11 (random actions,
    episodes cut at 400 emulator frames)."""
    run = tmp_path_factory.mktemp("run")
    checkpoints = run / "checkpoints"
    torch.manual_seed(0)
    model = ActorCritic(4)
    config = EnvConfig(id=ENV_ID, max_episode_frames=400)
    rng = np.random.default_rng(0)
    train = RecordTrajectory(make_env(config), run / "trajectories.h5", tag="train", snapshot_interval=64)
    train.writer.set_metadata(
        "train_config_v000000",
        {
            "total_steps": TOTAL_STEPS,
            "ppo": {"num_envs": 1, "num_steps": NUM_STEPS, "learning_rate": 2.5e-4, "anneal_lr": True},
        },
    )
    evaluation = RecordTrajectory(make_env(config), train.writer, tag="eval")
    try:
        for version, milestone in ((0, 0.0), (8, 0.5), (16, 1.0)):
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(0.05 * torch.randn_like(parameter))
            save_checkpoint(
                checkpoints,
                model,
                policy_version=version,
                global_step=version * NUM_STEPS,
                env_id=ENV_ID,
                milestone=milestone,
            )
            evaluation.policy_version = version
            _play(evaluation, rng, seed=100 + version, version_every=None, start_version=version)
        for episode in range(3):
            _play(train, rng, seed=episode, version_every=NUM_STEPS, start_version=5 * episode)
    finally:
        evaluation.close()
        train.close()
    return run


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="render", overrides=overrides)


def test_cli_contract_raw_episode_is_the_upscaled_replay(run_dir: Path, tmp_path: Path) -> None:
    """``run=<dir> product=episode episode=<i> overlay=raw output=<file>``: one video frame per recorded
    frame."""
    out = tmp_path / "raw.mp4"
    cfg = _compose(
        [
            f"run={run_dir}",
            "product=episode",
            "episode=4",
            "overlay=raw",
            f"output={out}",
            "video.progress=false",
        ]
    )
    result = run_product(cfg, tmp_path / "unused")
    decoded = decode_video(out)
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        expected = list(log.frames(4))
    assert result.frames == len(decoded) == log.episodes[4].length + 1
    assert decoded[0].shape == (840, 640, 3)
    for k in (0, 1, len(expected) // 2, len(expected) - 1):
        assert_video_close(decoded[k], upscale_nearest(expected[k], 4))
    sidecar = json.loads(out.with_name("raw.mp4.json").read_text())
    assert sidecar["episodes"][0]["index"] == 4 and sidecar["config"]["overlay"]["kind"] == "raw"
    assert sidecar["log"] == str((run_dir / "trajectories.h5").resolve())


def test_emulator_frames_show_every_emulated_frame_at_the_games_speed(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "emulated.mp4"
    video = dataclasses.replace(QUICK, emulator_frames=True)
    source = RenderSource.resolve(run=run_dir, log=None, checkpoint=None)
    result = render_episode(source, out, episode=0, overlay=OverlayConfig(kind="raw"), video=video)
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        steps = list(log.replay(0, observations=False, emulator_frames=True))
    screens = [steps[0].frame] + [screen for step in steps[1:] for screen in step.screens]
    decoded = decode_video(out)
    assert result.frames == len(decoded) == len(screens) > 3 * len(steps)  # 4 emulated frames a step, and more
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == 60  # the Atari's own rate: real speed
    for k in (0, 1, 2, len(screens) // 2, len(screens) - 1):
        assert_video_close(decoded[k], upscale_nearest(screens[k], 2))
    assert json.loads(out.with_name("emulated.mp4.json").read_text())["fps"] == 60


def test_full_episode_states_checkpoints_and_lags(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "full.mp4"
    result = render_episode(RenderSource.resolve(run=run_dir, log=None, checkpoint=None), out, episode=5, video=QUICK)
    decoded = decode_video(out)
    assert len(decoded) == result.frames and decoded[0].shape == (720, 1280, 3)
    # episode 5 was played by versions 10 and 11; the nearest saved checkpoint is v8
    assert result.checkpoints == {"v000008.pt": 3}
    sidecar = json.loads(out.with_name("full.mp4.json").read_text())
    assert sidecar["checkpoints"] == {"v000008.pt": 3} and sidecar["overlay"] == "full"
    assert sidecar["checkpoint_dir"] == str((run_dir / "checkpoints").resolve())
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        first = next(log.frames(5))
    game = decoded[0][83 : 83 + 630, 16 : 16 + 480]  # where FullOverlay puts the 3x game at 1280x720
    assert_video_close(game, upscale_nearest(first, 3))


def test_eval_episode_lag_is_zero(run_dir: Path, tmp_path: Path) -> None:
    source = RenderSource.resolve(run=run_dir, log=None, checkpoint=None)
    product = EpisodeProductConfig(tag="eval", frame_stride=8)
    result = render_episode(source, tmp_path / "eval.mp4", episode="last", product=product, video=QUICK)
    assert result.episodes == (2,) and result.checkpoints == {"v000016.pt": 0}
    assert result.frames == len(decode_video(tmp_path / "eval.mp4"))


def test_log_without_checkpoint_renders_minimal_but_not_full(run_dir: Path, tmp_path: Path) -> None:
    log = run_dir / "trajectories.h5"
    source = RenderSource.resolve(run=None, log=log, checkpoint=None)
    stride = EpisodeProductConfig(frame_stride=10)
    result = render_episode(
        source,
        tmp_path / "min.mp4",
        episode=0,
        product=stride,
        overlay=OverlayConfig(kind="minimal"),
        video=QUICK,
    )
    assert decode_video(tmp_path / "min.mp4")[0].shape == (420, 748, 3) and result.frames == 11
    with pytest.raises(MissingCheckpointError, match="pass checkpoint=<file.pt>"):
        render_episode(source, tmp_path / "full.mp4", episode=0, overlay=OverlayConfig(kind="full"), video=QUICK)
    assert not (tmp_path / "full.mp4").exists()
    with_checkpoint = RenderSource.resolve(run=None, log=log, checkpoint=run_dir / "checkpoints" / "v000008.pt")
    result = render_episode(with_checkpoint, tmp_path / "full.mp4", episode=3, product=stride, video=QUICK)
    assert result.checkpoints == {"v000008.pt": -8}  # versions 0..1 played: v8 is up to 8 versions newer


def test_full_overlay_refuses_a_log_whose_observations_the_network_cannot_take(run_dir: Path, tmp_path: Path) -> None:
    """A log from someone else's trainer without the Atari preprocessing records raw screens: a clear error
    before any work, nothing at the output, and the log still renders raw."""
    log = tmp_path / "v5.h5"
    record_single(log, "Breakout", STICKY, 20)  # plain v5: (210, 160, 3) screens, one unfinished episode
    source = RenderSource.resolve(run=None, log=log, checkpoint=run_dir / "checkpoints" / "v000008.pt")
    with pytest.raises(RenderConfigError, match=r"uint8 observations of shape \[210, 160, 3\].*overlay=raw"):
        render_episode(source, tmp_path / "full.mp4", episode=0, video=QUICK)
    assert not (tmp_path / "full.mp4").exists()
    result = render_episode(source, tmp_path / "raw.mp4", episode=0, overlay=OverlayConfig(kind="raw"), video=QUICK)
    assert result.frames == 21 == len(decode_video(tmp_path / "raw.mp4"))


def test_overlay_settings_the_layout_cannot_hold_are_refused_naming_them(run_dir: Path, tmp_path: Path) -> None:
    source = RenderSource.resolve(run=run_dir, log=None, checkpoint=None)
    cases = [
        (
            OverlayConfig(kind="full", width=320, height=180),
            r"overlay=full with overlay.width=320 overlay.height=180 overlay.font_scale=1: .*too small.* no font_scale"
            r" fits; use a bigger canvas \(at least 640x360 at 16:9\)$",
        ),
        (
            OverlayConfig(kind="full", font_scale=4.0, width=1280, height=720),
            r"overlay.font_scale=4: .*too small.*\. the largest overlay.font_scale that fits is 1.85$",
        ),
        (
            OverlayConfig(kind="full", font_scale=1.85, width=1280, height=720),
            None,  # the scale the case above names does fit
        ),
        (
            OverlayConfig(kind="full", font_scale=1.5, width=1280, height=720),
            None,  # fits: the layout makes room
        ),
        (
            OverlayConfig(kind="minimal", font_scale=3.0),
            r"overlay=minimal with video.scale=2 overlay.font_scale=3: .*a smaller font_scale makes room.*\. the "
            r"largest overlay.font_scale that fits is 1.5$",
        ),
    ]
    product = EpisodeProductConfig(frame_stride=40)
    for overlay, expected in cases:
        out = tmp_path / f"{overlay.kind}-{overlay.font_scale}.mp4"
        if expected is None:
            result = render_episode(source, out, episode=0, product=product, overlay=overlay, video=QUICK)
            assert len(decode_video(out)) == result.frames
            continue
        with pytest.raises(RenderConfigError, match=expected):
            render_episode(source, out, episode=0, product=product, overlay=overlay, video=QUICK)
        assert not out.exists()


def test_an_episode_out_of_range_names_the_log_and_the_valid_choices(run_dir: Path, tmp_path: Path) -> None:
    source = RenderSource.resolve(run=run_dir, log=None, checkpoint=None)
    expected = rf"{re.escape(str(source.log))}: episode 99 is out of range; the log has 6 episodes: pick one of 0..5"
    with pytest.raises(SelectionError, match=expected):
        render_episode(source, tmp_path / "e.mp4", episode=99, overlay=OverlayConfig(kind="raw"), video=QUICK)
    assert not (tmp_path / "e.mp4").exists()


def test_a_timelapse_of_a_log_without_finished_episodes_says_what_the_log_has(tmp_path: Path) -> None:
    record_single(tmp_path / "v5.h5", "Breakout", STICKY, 20)  # one unfinished training episode
    source = RenderSource.resolve(run=None, log=tmp_path / "v5.h5", checkpoint=None)
    with pytest.raises(SelectionError, match=r"the log has 1 episodes, of them finished: 0 train, 0 eval"):
        render_timelapse(source, tmp_path / "t.mp4", overlay=OverlayConfig(kind="raw"), video=QUICK)
    assert not (tmp_path / "t.mp4").exists()


def _marker_x(frame: np.ndarray, band: Rect) -> float:
    """Where the highlighted marker stands on the learning curve in ``band`` of a decoded frame."""
    region = frame[band.slices].astype(int)
    orange = (region[..., 0] > 180) & (region[..., 2] < 150) & (region[..., 1] > 110)
    assert orange.any(), "no marker on the learning curve"
    return float(np.flatnonzero(orange.any(axis=0)).mean()) + band.x


def test_timelapse_fits_target_duration_and_captions_where_in_training_each_episode_was(
    run_dir: Path, tmp_path: Path
) -> None:
    cfg = _compose(
        [
            f"run={run_dir}",
            "product=timelapse",
            "product.target_duration=2",
            "overlay=raw",
            "video=preview",
            "video.progress=false",
            "selection=evenly",
            "selection.count=3",
        ]
    )
    result = run_product(cfg, tmp_path)
    frames = decode_video(tmp_path / "timelapse.mp4")
    assert result.episodes == (3, 4, 5) and len(frames) == result.frames
    assert 50 <= len(frames) <= 75  # ~2 s at 30 fps (stride rounding, last frames kept)
    # the 320x420 game with the caption strip under it: a line of text over the learning curve, whose marker
    # moves right with training (version 0 of 16 first, version 11 last)
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        curve = LearningCurve.of(log.episodes, TrainingSchedule.from_metadata(log.metadata))
    strip = CaptionedOverlay(RawOverlay(2), curve)
    assert frames[0].shape == (strip.height, 320, 3) and strip.height == 420 + strip_height(420)
    assert frames[0][strip.text.slices].max(axis=2).max() > 150  # caption text on the dark strip
    first, last = _marker_x(frames[0], strip.band), _marker_x(frames[-1], strip.band)
    assert first < strip.band.x + 0.1 * strip.band.w and strip.band.x + 0.6 * strip.band.w < last


def test_progression_shows_a_card_before_each_eval_episode(run_dir: Path, tmp_path: Path) -> None:
    source = RenderSource.resolve(run=run_dir, log=None, checkpoint=None)
    product = ProgressionProductConfig(card_seconds=0.5, frame_stride=4, closing_seconds=0.5)
    result = render_progression(
        source, tmp_path / "prog.mp4", product=product, overlay=OverlayConfig(kind="minimal"), video=QUICK
    )
    frames = decode_video(tmp_path / "prog.mp4")
    assert result.episodes == (0, 1, 2) and len(frames) == result.frames
    card = frames[0]
    assert (
        card.shape == (420 + strip_height(420), 748, 3) and card[:60].reshape(-1, 3).std(axis=0).max() < 2
    )  # a plain card, text only in the middle, as large as the overlay and its caption strip
    assert result.checkpoints == {}


def test_compose_defaults_and_overrides() -> None:
    cfg = _compose([])
    assert cfg.product.kind == "episode" and cfg.overlay.kind == "full" and cfg.video.scale == 4
    assert cfg.run == "data/sample/breakout" and (cfg.overlay.width, cfg.overlay.height) == (1280, 720)
    cfg = _compose(["product=timelapse", "overlay=minimal", "video=hq", "selection=range", "selection.start=0.5"])
    assert cfg.product.target_duration == 60.0 and cfg.video.preset == "medium" and cfg.selection.start == 0.5
    cfg = _compose(["product=timelapse"])
    assert cfg.selection.kind == "highlights" and cfg.product.caption
    cfg = _compose(["product=progression", "product.layout=grid"])
    assert (cfg.product.milestones, cfg.product.per_milestone, cfg.product.clip_seconds) == (None, "best", 30.0)


def test_compose_rejects_unknown_keys() -> None:
    with pytest.raises(Exception, match="overlay.colour"):
        _compose(["overlay.colour=red"])


def _multirun(run_dir: Path, cwd: Path, *extra: str) -> list[Path]:
    command = [
        sys.executable,
        "-m",
        "render",
        "-m",
        f"run={run_dir}",
        "episode=3",
        "overlay=raw,minimal",
        "video=preview",
        "product.frame_stride=10",
        "video.progress=false",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, timeout=300)
    return sorted(cwd.glob("multirun/render/*/*/*/episode.mp4"))


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_multirun_writes_one_video_per_job_into_its_own_folder(run_dir: Path, tmp_path: Path) -> None:
    videos = _multirun(run_dir, tmp_path)
    assert [v.parent.name for v in videos] == [
        "0_episode=3,overlay=raw,product.frame_stride=10,video=preview",
        "1_episode=3,overlay=minimal,product.frame_stride=10,video=preview",
    ]
    sizes = [decode_video(v)[0].shape for v in videos]
    assert sizes == [(420, 320, 3), (420, 748, 3)]
    assert all(v.with_name("episode.mp4.json").is_file() for v in videos)


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_a_sweep_job_with_bad_input_is_one_line_after_the_others_ran(run_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "render", "-m", f"run={run_dir}", "episode=5000,3", "overlay=raw"]
    command += ["video=preview", "product.frame_stride=10", "video.progress=false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    named, line = done.stderr.strip().splitlines()[-2:]
    assert named.startswith("Error executing job with overrides: [") and "'episode=5000'" in named, named
    assert line.startswith(f"error: {run_dir / 'trajectories.h5'}: episode 5000 is out of range"), line
    [video] = tmp_path.glob("multirun/render/*/*/1_episode=3*/episode.mp4")  # the other job ran
    assert len(decode_video(video)) > 0


@pytest.mark.slow
def test_multirun_with_the_joblib_launcher(run_dir: Path, tmp_path: Path) -> None:
    videos = _multirun(run_dir, tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert len(videos) == 2 and all(len(decode_video(v)) == 11 for v in videos)


def test_worker_processes_render_the_same_video_as_in_process(run_dir: Path, tmp_path: Path) -> None:
    source = RenderSource.resolve(run=run_dir, log=None, checkpoint=None)
    product = TimelapseProductConfig(frame_stride=5)
    videos = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.mp4"
        render_timelapse(source, out, product=product, overlay=OverlayConfig(kind="full"), video=QUICK, workers=workers)
        videos.append(decode_video(out))
    assert len(videos[0]) == len(videos[1]) > 0
    for a, b in zip(*videos, strict=True):
        np.testing.assert_array_equal(a, b)


def test_worker_errors_reach_the_renderer(run_dir: Path) -> None:
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        missing = dataclasses.replace(log.episodes[0], index=999)
    with ReplayFeed(run_dir / "trajectories.h5", [missing], 1, observations=False, workers=1) as feed:
        with pytest.raises(EpisodeIndexError, match="episode 999 is out of range"):
            list(feed.steps(0))


@pytest.mark.parametrize(
    "signum",
    [
        # ~13 s each (a render started and killed): the slow suite, for the fast suite's 5 minutes
        pytest.param(signal.SIGKILL, marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, marks=pytest.mark.slow),  # handled like SIGINT
        pytest.param(signal.SIGINT, marks=pytest.mark.slow),
    ],
    ids=["KILL", "TERM", "INT"],
)
def test_a_render_killed_mid_way_leaves_nothing_at_the_output_and_the_next_run_succeeds(
    run_dir: Path, tmp_path: Path, signum: int
) -> None:
    output = tmp_path / "killed.mp4"
    command = [
        sys.executable,
        "-m",
        "render",
        f"run={run_dir}",
        "product=timelapse",
        "overlay=full",
        "product.frame_stride=1",
        "product.caption=false",  # the overlay alone: what is killed is the encoder, and the caption costs time
        "video.preset=slow",  # a render of several seconds: the kill lands mid-way however fast the machine is
        f"output={output}",
    ]
    # A shell's background job (how CI may run) starts with SIGINT ignored, and children inherit that: then Python
    # installs no KeyboardInterrupt handler and the render ignores the signal. Start it as a terminal would.
    child = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".killed.mp4.*")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "the render should still be running when it is killed"
    time.sleep(0.5)  # mid-way through encoding
    assert child.poll() is None, "the render finished before it could be killed"
    os.kill(child.pid, signum)
    code = child.wait(timeout=60)
    assert not output.exists(), "a killed render must leave nothing at the output path"
    if signum != signal.SIGKILL:  # a signal it can handle: it stops and cleans up (SIGKILL leaves its temp file)
        assert code == (143 if signum == signal.SIGTERM else 130)
        assert not list(tmp_path.glob(".killed.mp4.*")), "the temporary file must go with a handled signal"
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    assert len(decode_video(output)) > 0


def test_the_sidecar_of_a_log_and_a_checkpoint_names_them_by_absolute_path(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given as relative paths, the log, the checkpoint and the output are recorded where they were found (an
    output that is a symlink as itself: the render replaces the link); the run the log replaced is not recorded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.mp4").write_bytes(b"old")
    (tmp_path / "link.mp4").symlink_to("old.mp4")
    log, checkpoint = run_dir / "trajectories.h5", run_dir / "checkpoints" / "v000008.pt"
    relative = [f"log={os.path.relpath(log)}", f"checkpoint={os.path.relpath(checkpoint)}", "output=link.mp4"]
    run_product(_compose([*relative, "episode=5", "video=preview"]), tmp_path)
    assert not (tmp_path / "link.mp4").is_symlink() and (tmp_path / "old.mp4").read_bytes() == b"old"
    sidecar = json.loads((tmp_path / "link.mp4.json").read_text())
    config = sidecar["config"]
    assert config["log"] == str(log) and config["checkpoint"] == str(checkpoint) and config["run"] is None
    assert config["output"] == str(tmp_path / "link.mp4")
    assert sidecar["checkpoint_dir"] == str(checkpoint.parent.resolve())
    assert sidecar["checkpoints"] == {"v000008.pt": 3}


def test_a_run_folder_that_does_not_exist_is_named_as_missing(tmp_path: Path) -> None:
    with pytest.raises(RenderConfigError, match=r"run=nope: there is no such folder \(/.*/nope\); a relative run="):
        RenderSource.resolve(run="nope", log=None, checkpoint=None)
    with pytest.raises(RenderConfigError, match=r"holds no trajectories.h5"):  # a folder, but no run
        RenderSource.resolve(run=tmp_path, log=None, checkpoint=None)


def test_the_command_line_reports_a_bad_input_in_one_line_and_exits_2(run_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "render", f"run={run_dir}", "episode=5000", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {run_dir / 'trajectories.h5'}: episode 5000 is out of range"), line


def slow(*values: str) -> object:
    """A case in the slow suite, for the fast suite's 5 minutes on the slower machines."""
    return pytest.param(*values, marks=pytest.mark.slow)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("overlay=fancy", r"Could not find 'overlay/fancy'; the options of overlay are: full, minimal, raw$"),
        slow("product=movie", r"Could not find 'product/movie'; the options of product are: episode, progression, "),
        ("episod=3", r"Could not override 'episod': no such setting; `python -m render --cfg job` lists every"),
        slow(
            "video.fps=abc", r"Error merging override video.fps=abc: Value 'abc' of type 'str' could not be converted"
        ),
        ("episode=null", r"Error merging override episode=null: field 'episode' is not Optional"),
    ],
)
def test_a_config_hydra_cannot_compose_is_one_line_and_exit_2(tmp_path: Path, override: str, expected: str) -> None:
    """Hydra's own refusals (before the app runs) read like the app's: one ``error:`` line naming the override,
    without the schemas' internal option names."""
    command = [sys.executable, "-m", "render", override, f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and re.search(expected, line), line
    assert "_schema" not in line


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a child that may write files of at most ``limit`` bytes: a write past it fails with
    EFBIG, as a write to a full disk fails with ENOSPC (ignoring SIGXFSZ, which would otherwise kill it)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow  # renders into a capped file size, twice: runs in CI's slow suite
@pytest.mark.parametrize(
    ("limit", "video"),
    [
        (20_000, ["video.crf=0", "video.preset=ultrafast"]),  # ~540 kB: a write while encoding fails
        (10_000, []),  # ~30 kB, held in the muxer's buffer: the flush at the end fails
    ],
    ids=["while-encoding", "at-the-end"],
)
def test_a_full_disk_while_rendering_is_one_line_naming_the_output_and_leaves_nothing(
    tmp_path: Path, limit: int, video: list[str]
) -> None:
    log = tmp_path / "breakout.h5"
    record_single(log, "Breakout", STICKY, 250)  # one episode of 251 frames
    before = hashlib.sha256(log.read_bytes()).hexdigest()
    output = tmp_path / "videos" / "x.mp4"
    command = [
        sys.executable, "-m", "render", f"log={log}", "product=episode", "episode=0", "overlay=raw",
        f"output={output}", "video.progress=false", *video, f"hydra.run.dir={tmp_path / 'hydra'}",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(limit)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: writing the video {output} ") and "File too large (EFBIG)" in line, line
    assert "choose another output=<file>" in line, line
    assert list(output.parent.iterdir()) == [], "neither the video, its sidecar nor the temporary file may be left"
    assert hashlib.sha256(log.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("product.frame_stride=-2", r"product.frame_stride must be at least 1, got -2"),
        ("product=timelapse product.frame_stride=0", r"product.frame_stride must be at least 1, got 0; or null"),
        ("product=progression product.card_seconds=-1", r"product.card_seconds must be 0 or more seconds, got -1"),
        ("product=progression product.per_milestone=worst", r"product.per_milestone='worst' is not an option"),
        ("product=progression product.layout=carousel", r"product.layout='carousel' is not an option; choose one of"),
        ("product=progression product.clip_seconds=0", r"product.clip_seconds must be a positive number of seconds"),
        ("product=progression product.milestones=-1", r"product.milestones must be at least 0, got -1; 0 shows"),
        ("selection.kind=best", r"selection.kind='best' is not an option; choose one of .*highlights"),
        ("overlay.batch_size=0", r"overlay.batch_size must be at least 1, got 0"),
        ("overlay.width=853 overlay.height=480", r"overlay.width=853 is odd, .* use 854"),
        ("selection=range selection.start=0.9 selection.stop=0.5", r"selection.start=0.9 and selection.stop=0.5"),
        ("workers=-1", r"workers must be at least 0, got -1"),
        ("torch_threads=0", r"torch_threads must be at least 1, got 0"),
        ("video.crf=60", r"video.crf must lie in 0..51"),
        ("overlay.font_scale=inf", r"overlay.font_scale must be positive, got inf"),
        ("product=progression product.card_seconds=nan", r"product.card_seconds must be 0 or more seconds, got nan"),
        ("overlay.thumbnails=50", r"50 feature-map thumbnails in a row .* fewer with overlay.thumbnails$"),
        ("output=${nope}.mp4", r"the settings cannot be resolved \(Interpolation key 'nope' not found\); fix or quote"),
    ],
)
def test_settings_out_of_range_are_refused_by_name_before_any_work(run_dir: Path, override: str, message: str) -> None:
    cfg = _compose([f"run={run_dir}", *override.split()])
    with pytest.raises(RenderConfigError, match=message):
        run_product(cfg, run_dir)


def test_a_path_of_the_wrong_kind_is_refused_with_the_key_that_fits_it(run_dir: Path, tmp_path: Path) -> None:
    log = run_dir / "trajectories.h5"
    with pytest.raises(RenderConfigError, match=rf"log={run_dir} is a folder; pass run={run_dir}"):
        RenderSource.resolve(run=None, log=run_dir, checkpoint=None)
    with pytest.raises(RenderConfigError, match=rf"run={log} is a file; pass log={log}"):
        RenderSource.resolve(run=log, log=None, checkpoint=None)
    with pytest.raises(CheckpointError, match=r"is a folder; name a checkpoint file in it"):
        load_policy(run_dir / "checkpoints")
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"or no checkpoint at all .* name a v<version>.pt file") as refused:
        load_policy(not_a_checkpoint)
    assert "delete" not in str(refused.value)  # a file passed by mistake must not be advised away
    with pytest.raises(EncoderError, match=r"cannot write the video .*x.mp4 \(.*\); choose an output in a folder"):
        VideoEncoder(not_a_checkpoint / "x.mp4", width=64, height=48, progress=False)


def test_a_palette_colour_is_set_by_its_key_on_the_command_line(run_dir: Path) -> None:
    from_code = OverlayConfig(palette={"background": [1, 2, 3]}).style()  # Python callers pass a dict
    assert from_code.palette.background == (1, 2, 3)
    with pytest.raises(RenderConfigError, match=r"unknown overlay.palette colours \['bakground'\]"):
        OverlayConfig(palette={"bakground": [1, 2, 3]})
    cfg = _compose([f"run={run_dir}", "overlay.palette.background=[250,240,230]"])
    style = OmegaConf.to_object(cfg).overlay.style()
    assert style.palette.background == (250, 240, 230) and style.palette.text == Palette().text
    with pytest.raises(ConfigCompositionException):  # a misspelt colour fails when the config is composed
        _compose([f"run={run_dir}", "overlay.palette.bakground=[1,2,3]"])
    cfg = _compose([f"run={run_dir}", "overlay.palette.text=[1,2]"])
    with pytest.raises(RenderConfigError, match=r"overlay.palette.text must be three 0..255 values"):
        OmegaConf.to_object(cfg).overlay.style()


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_a_render_without_output_goes_to_the_runs_videos_and_leaves_the_launch_folder_untouched(
    run_dir: Path, tmp_path: Path
) -> None:
    """A single render writes its video and sidecar into ``<run>/videos/`` and nothing else anywhere: no Hydra
    folder, no log file in the folder it was launched from; a refused render writes nothing at all."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    launch = tmp_path / "launch"
    launch.mkdir()
    command = [sys.executable, "-m", "render", f"run={run}", "episode=3", "overlay=raw", "video=preview"]
    done = subprocess.run([*command, "video.progress=false"], cwd=launch, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(launch.iterdir()) == []
    [video] = (run / "videos").glob("episode-*.mp4")
    assert sorted(p.name for p in (run / "videos").iterdir()) == [video.name, video.name + ".json"]
    assert f"wrote {video}" in done.stdout
    with TrajectoryLog(run / "trajectories.h5") as log:
        assert len(decode_video(video)) == log.episode(3).length + 1

    shutil.rmtree(run / "videos")
    refused = subprocess.run([*command[:-3], "episode=5000"], cwd=launch, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ")
    assert list(launch.iterdir()) == [] and not (run / "videos").exists()


@pytest.mark.slow  # three encodes of one episode
def test_the_video_presets_are_ordered_by_size_as_named(run_dir: Path, tmp_path: Path) -> None:
    """``preview`` makes smaller files than ``default``, and ``default`` than ``hq``, for the game alone and for
    the full overlay."""
    for overlay in ("raw", "full"):
        sizes = {}
        for preset in ("preview", "default", "hq"):
            output = tmp_path / f"{overlay}-{preset}.mp4"
            cfg = _compose([f"run={run_dir}", "episode=3", f"overlay={overlay}", f"video={preset}", f"output={output}"])
            run_product(cfg)
            sizes[preset] = output.stat().st_size
        assert sizes["preview"] < sizes["default"] < sizes["hq"], (overlay, sizes)
