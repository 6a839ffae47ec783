"""Rendering a log while training still writes it: the renderer reads what is flushed and harms neither side."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import assert_video_close, decode_video

from render.draw.compose import upscale_nearest
from replay import LogFormatError, TrajectoryLog, verify

ROOT = Path(__file__).resolve().parents[2]

# Records Breakout until the stop file appears (or two minutes pass, should the test die), at most 200 steps a
# second rather than flat out: the renderer gets its share of the two cores and verify() a log of a few thousand
# steps.
WRITER = textwrap.dedent(
    """
    import pathlib, sys, time, numpy as np, gymnasium as gym, ale_py
    from replay import RecordTrajectory
    gym.register_envs(ale_py)
    path, stop = sys.argv[1], pathlib.Path(sys.argv[2])
    env = RecordTrajectory(gym.make("ALE/Breakout-v5"), path, flush_seconds=0.2, snapshot_interval=300)
    rng = np.random.default_rng(0)
    env.reset(seed=3)
    print("recording", flush=True)
    deadline = time.monotonic() + 120
    while not stop.exists() and time.monotonic() < deadline:
        for _ in range(10):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            if terminated or truncated:
                env.reset()
        time.sleep(0.05)
    env.close()
    print("done", flush=True)
    """
)


def _wait_for_finished_episode(path: Path, writer: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while writer.poll() is None and time.monotonic() < deadline:
        try:
            with TrajectoryLog(path) as log:
                if log.episodes and log.episodes[0].finished:
                    return
        except LogFormatError:
            pass  # caught between two flushes: read again
        time.sleep(0.2)
    raise AssertionError(f"episode 0 of {path} was not flushed finished in {timeout} s (writer: {writer.poll()})")


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_an_episode_of_a_log_being_written_renders_and_the_writer_is_unharmed(tmp_path: Path) -> None:
    log, stop, output = tmp_path / "live.h5", tmp_path / "stop", tmp_path / "x.mp4"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "recording"
        _wait_for_finished_episode(log, writer)
        command = [
            sys.executable, "-m", "render", f"log={log}", "product=episode", "episode=0", "overlay=raw",
            f"output={output}", "video.progress=false", f"hydra.run.dir={tmp_path / 'hydra'}",
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert writer.poll() is None, "the writer should still have been recording during the render"
    finally:
        stop.touch()
    assert writer.wait(timeout=60) == 0, "the writer must not be harmed by the renderer"
    decoded = decode_video(output)
    with TrajectoryLog(log) as reader:
        episode = reader.episodes[0]
        reset_frame = next(reader.frames(0))
    assert len(decoded) == episode.length + 1
    assert_video_close(decoded[0], upscale_nearest(reset_frame, 4))
    assert verify(log, progress=False).ok
