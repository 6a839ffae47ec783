"""Renderer throughput on this machine: log → MP4 with the full overlay at 1280x720.

Three figures, one table (and a JSON file):

- ``pipeline``: the product path (``render_timelapse`` with every frame): re-simulation in worker processes,
  batched analytics (batch 64), template compositing and I420 conversion in a producer thread feeding x264.
- ``naive``: the same picture made the common way: one thread, per frame a batch-1 forward pass with hooks,
  every element drawn with OpenCV on a blank canvas (text, edges, one circle per node), the same encoder.
- ``encode-only``: x264 alone at the same size and preset on the pipeline's own frames, through
  ``VideoEncoder.write`` (RGB, as any caller would) and through ``write_i420`` (planes converted beforehand:
  the fastest the encoder can go).

Every row also gives CPU milliseconds per frame (all threads and worker processes): on a machine shared with
other jobs the wall-clock figures move, the CPU cost much less.

With ``--sample <run_dir>`` (default ``data/sample/breakout`` when present) it also renders a 60-second
time-lapse of that run with full overlays and times it.

Run:  python tests/bench/bench_render.py [--frames 1500] [--preset veryfast] [--sample data/sample/breakout]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from timing import cpu_seconds

from render.analytics import ProbeSettings
from render.compose import blank
from render.config import OverlayConfig, SelectionConfig, TimelapseProductConfig, VideoConfig
from render.encoder import VideoEncoder
from render.feed import kept_steps
from render.overlays import FullOverlay
from render.policies import PolicyLibrary
from render.products import RenderSource, render_timelapse
from render.scenes import SceneSettings, episode_scene
from render.schedule import TrainingSchedule
from replay import RecordTrajectory, TrajectoryLog
from replay.atari import EnvConfig, make_env
from replay.checkpoints import save_checkpoint
from replay.network import ActorCritic

ENV_ID = "ALE/Breakout-v5"
ENCODE_ONLY_FRAMES = 300
DEFAULT_SAMPLE = Path("data/sample/breakout")


class Clock:
    """Wall time and CPU time (this process's threads plus finished child processes) of a block."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = cpu_seconds() - self._cpu

    def row(self, frames: int, **extra: object) -> dict:
        return {
            "frames": frames,
            "seconds": self.seconds,
            "fps": frames / self.seconds,
            "cpu_ms_per_frame": 1000 * self.cpu / frames,
            **extra,
        }


def build_run(directory: Path, frames: int) -> Path:
    """A Breakout run of at least ``frames`` recorded frames (random play, unseeded resets after the first, as
    a vector env's autoreset does) with one checkpoint and trainer-style metadata."""
    run = directory / "bench-run"
    if (run / "trajectories.h5").exists():
        return run
    torch.manual_seed(0)
    save_checkpoint(run / "checkpoints", ActorCritic(4), policy_version=0, global_step=0, env_id=ENV_ID, milestone=0.0)
    env = RecordTrajectory(make_env(EnvConfig(id=ENV_ID)), run / "trajectories.h5", tag="train")
    env.writer.set_metadata(
        "train_config_v000000",
        {
            "total_steps": 1_000_000,
            "ppo": {"num_envs": 8, "num_steps": 128, "learning_rate": 2.5e-4, "anneal_lr": True},
        },
    )
    rng = np.random.default_rng(0)
    recorded, seed = 0, 0
    while recorded < frames:
        env.reset(seed=seed)
        seed, done = None, False
        recorded += 1
        while not done:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            done, recorded = terminated or truncated, recorded + 1
    env.close()
    return run


def bench_pipeline(run: Path, out: Path, video: VideoConfig, workers: int | None) -> dict:
    with Clock() as clock:
        result = render_timelapse(
            RenderSource.resolve(run=run, log=None, checkpoint=None),
            out,
            selection=SelectionConfig(kind="every", every=1),
            product=TimelapseProductConfig(frame_stride=1),
            overlay=OverlayConfig(kind="full"),
            video=video,
            workers=workers,
        )
    return clock.row(result.frames, workers=workers)


def bench_naive(run: Path, out: Path, video: VideoConfig, frames: int) -> dict:
    written = 0
    with Clock() as clock, TrajectoryLog(run / "trajectories.h5") as log:
        schedule = TrainingSchedule.from_metadata(log.metadata)
        policies = PolicyLibrary(checkpoints=run / "checkpoints", settings=ProbeSettings(batch_size=1))
        probe, _ = policies.lookup(0)
        overlay = FullOverlay(log.game, log.action_meanings, probe.diagram_layers(), probe.feature_rows())
        background = overlay.style.palette.background
        scene = SceneSettings(stride=1, batch_size=1)
        with _encoder(out, video) as encoder:
            for episode in log.episodes:
                steps = kept_steps(log, episode, 1, observations=True)
                for context in episode_scene(episode, steps, schedule, scene, policies):
                    image = blank(overlay.width, overlay.height, background)
                    overlay.draw_static(image)
                    overlay.draw_dynamic(image, context, circles=True)
                    encoder.write(image)
                    written += 1
                if written >= frames:
                    break
    return clock.row(written)


def bench_encode_only(source: Path, out: Path, video: VideoConfig) -> tuple[dict, dict]:
    """x264 alone on the pipeline's frames: fed RGB (converted in ``write``) and fed ready I420 planes."""
    with av.open(str(source)) as container:
        images = []
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="rgb24"))
            if len(images) == ENCODE_ONLY_FRAMES:
                break
    with Clock() as rgb, _encoder(out, video) as encoder:
        for image in images:
            encoder.write(image)
    planes = [cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420) for image in images]
    with Clock() as i420, _encoder(out, video) as encoder:
        for item in planes:
            encoder.write_i420(item)
    return rgb.row(len(images)), i420.row(len(planes))


def bench_sample_timelapse(sample: Path, out: Path, video: VideoConfig, workers: int | None) -> dict:
    with Clock() as clock:
        result = render_timelapse(
            RenderSource.resolve(run=sample, log=None, checkpoint=None),
            out,
            product=TimelapseProductConfig(target_duration=60.0),
            overlay=OverlayConfig(kind="full"),
            video=video,
            workers=workers,
        )
    return clock.row(result.frames, video_seconds=result.frames / video.fps, episodes=len(result.episodes))


def _encoder(out: Path, video: VideoConfig) -> VideoEncoder:
    return VideoEncoder(out, width=1280, height=720, fps=video.fps, crf=video.crf, preset=video.preset, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1500, help="recorded frames to render (default 1500)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset for every contender")
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument(
        "--workers", type=int, default=None, help="re-simulation processes (default: as the products decide)"
    )
    parser.add_argument("--sample", type=Path, default=None, help="a run folder for the 60 s time-lapse check")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the bench log here (default: temp dir)")
    parser.add_argument("--json", type=Path, default=Path("bench_render.json"), help="where to write the results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-render-"))
    work.mkdir(parents=True, exist_ok=True)
    video = VideoConfig(fps=30, crf=args.crf, preset=args.preset, progress=False)
    run = build_run(work, args.frames)

    results = {"pipeline": bench_pipeline(run, work / "pipeline.mp4", video, args.workers)}
    results["naive"] = bench_naive(run, work / "naive.mp4", video, results["pipeline"]["frames"])
    results["encode_only_rgb"], results["encode_only_i420"] = bench_encode_only(
        work / "pipeline.mp4", work / "encode-only.mp4", video
    )
    pipeline = results["pipeline"]["fps"]
    ratios = {
        "pipeline_vs_naive": pipeline / results["naive"]["fps"],
        "pipeline_vs_encode_only_rgb": pipeline / results["encode_only_rgb"]["fps"],
        "pipeline_vs_encode_only_i420": pipeline / results["encode_only_i420"]["fps"],
    }
    sample = args.sample or (DEFAULT_SAMPLE if (DEFAULT_SAMPLE / "trajectories.h5").is_file() else None)
    if sample is not None:
        results["sample_timelapse_60s"] = bench_sample_timelapse(sample, work / "timelapse.mp4", video, args.workers)

    print(
        f"\nrenderer throughput, 1280x720 overlay=full, libx264 {args.preset} crf {args.crf}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'contender':<18}{'frames':>8}{'seconds':>10}{'frames/s':>10}{'cpu ms/frame':>14}")
    for name in ("pipeline", "naive", "encode_only_rgb", "encode_only_i420"):
        row = results[name]
        print(f"{name:<18}{row['frames']:>8}{row['seconds']:>10.2f}{row['fps']:>10.1f}{row['cpu_ms_per_frame']:>14.2f}")
    print(f"pipeline / naive             {ratios['pipeline_vs_naive']:.2f}x (goal >= 2)")
    print(f"pipeline / encode-only RGB   {ratios['pipeline_vs_encode_only_rgb']:.2f}  (goal >= 0.8)")
    print(f"pipeline / encode-only I420  {ratios['pipeline_vs_encode_only_i420']:.2f}")
    if sample is not None:
        row = results["sample_timelapse_60s"]
        print(
            f"60 s time-lapse of {sample}: {row['video_seconds']:.1f} s of video from {row['episodes']} "
            f"episodes rendered in {row['seconds']:.1f} s (goal < 60)"
        )
    else:
        print(f"60 s time-lapse: skipped, no run at {DEFAULT_SAMPLE} (pass --sample <run_dir>)")
    report = {
        "results": results,
        "ratios": ratios,
        "preset": args.preset,
        "crf": args.crf,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "machine": platform.platform(),
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
