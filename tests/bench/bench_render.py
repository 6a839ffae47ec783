"""Renderer throughput on this machine: log → MP4 with the full overlay at 1280x720.

Contenders, one table (and a JSON file):

- ``pipeline``: the product path (``render_timelapse`` with every frame): re-simulation, batched analytics
  (batch 64), compositing that redraws only what changed, I420 conversion of the changed regions in a producer
  thread feeding x264. Two rates: end to end (the whole call, opening the log, loading the checkpoint, building
  the layout) and steady (from the first frame handed to the encoder to the end), the throughput a long
  video sees.
- ``naive``: the same picture made the common way: one thread, per frame a batch-1 forward pass with hooks,
  every element drawn with OpenCV on a blank canvas (text, edges, one circle per node), the same encoder.
- ``encode-only``: x264 alone at the same size and preset on the pipeline's own frames (the first 600 it
  handed the encoder, encoded twice over in each run), through ``VideoEncoder.write`` (RGB, as any caller
  would, with OpenCV's default threading, the best for a lone conversion) and through ``write_i420`` (the
  very planes the pipeline produced: the fastest the encoder can go). The ratio goal is judged against the RGB
  one.
- ``pipeline + saliency``: the pipeline with ``overlay.saliency=true`` (one run after the rounds): the
  perturbation saliency's cost on top of everything else.
- ``encode-only, PyAV's stock path``: the same frames through ``av.VideoFrame.from_ndarray(frame, "rgb24")`` and
  ``stream.encode``, FFmpeg's swscale converting to yuv420p: how a script using PyAV encodes frames it already
  has, and the path the issue's figure for x264 alone (~165 frames/s here) describes. Shown for reference.

Each of ``--rounds`` rounds brackets one pipeline run between pairs of encode-only runs, in mirrored order
(RGB, I420, PyAV, pipeline, PyAV, I420, RGB), and takes the ratios within the round: this machine's speed
drifts by 10-30% over minutes, and a bracket cancels the part of that drift which is linear over the ~50 s of
a round. The medians over rounds go in the table. Every row also gives CPU milliseconds per frame (all
threads and worker processes).

With ``--sample <run_dir>`` (default ``data/sample/breakout`` when present) it also renders a 60-second
time-lapse of that run with full overlays and times it.

Run:  python tests/bench/bench_render.py [--frames 1500] [--rounds 9] [--preset veryfast] [--sample <run_dir>]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from timing import cpu_seconds

from render import RenderSource, render_timelapse
from render.analytics import ProbeSettings
from render.config import OverlayConfig, SelectionConfig, TimelapseProductConfig, VideoConfig
from render.draw.compose import blank
from render.draw.overlays import FullOverlay
from render.encoder import VideoEncoder
from render.feed import kept_steps
from render.policies import PolicyLibrary
from render.scenes import SceneSettings, episode_scene
from render.schedule import TrainingSchedule
from replay import RecordTrajectory, TrajectoryLog
from replay.train.checkpoints import save_checkpoint
from replay.train.envs import EnvConfig, make_env
from replay.train.network import ActorCritic

ENV_ID = "ALE/Breakout-v5"
ENCODE_ONLY_FRAMES = 600
DEFAULT_SAMPLE = Path("data/sample/breakout")


class Clock:
    """Wall time and CPU time (this process's threads plus finished child processes) of a block."""

    def __enter__(self) -> Clock:
        self.start, self._cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.start
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


class EncoderTap:
    """Notes when the encoder receives its first frame (the end of the pipeline's start-up) and keeps a copy of
    the first ``keep`` I420 frames it is given (the encode-only contenders encode exactly those)."""

    def __init__(self, keep: int = 0) -> None:
        self.keep = keep
        self.at: float | None = None
        self.planes: list[np.ndarray] = []

    def __enter__(self) -> EncoderTap:
        self._write = VideoEncoder.write_i420

        def write_i420(encoder: VideoEncoder, planes: np.ndarray) -> None:
            if self.at is None:
                self.at = time.perf_counter()
            if len(self.planes) < self.keep:
                self.planes.append(planes.copy())
            self._write(encoder, planes)

        VideoEncoder.write_i420 = write_i420
        return self

    def __exit__(self, *exc_info: object) -> None:
        VideoEncoder.write_i420 = self._write


def bench_pipeline(
    run: Path,
    out: Path,
    video: VideoConfig,
    workers: int | None,
    keep: list[np.ndarray] | None = None,
    *,
    saliency: bool = False,
) -> dict:
    """Render every frame of ``run``; ``keep``, when given, receives the first frames' I420 planes; ``saliency``
    adds the perturbation saliency to the full overlay."""
    with EncoderTap(ENCODE_ONLY_FRAMES if keep is not None else 0) as first, Clock() as clock:
        result = render_timelapse(
            RenderSource.resolve(run=run, log=None, checkpoint=None),
            out,
            selection=SelectionConfig(kind="every", every=1),
            product=TimelapseProductConfig(frame_stride=1, caption=False),  # the encode-only contenders' size
            overlay=OverlayConfig(kind="full", saliency=saliency),
            video=video,
            workers=workers,
        )
    end = clock.start + clock.seconds
    startup = first.at - clock.start
    steady = (result.frames - 1) / (end - first.at)
    if keep is not None:
        keep.extend(first.planes)
    return clock.row(result.frames, workers=workers, startup_seconds=startup, steady_fps=steady)


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


def bench_encode_only(frames: list[np.ndarray], out: Path, video: VideoConfig, *, rgb: bool) -> dict:
    """x264 alone on the pipeline's own frames, twice over: RGB images through ``write`` (converted there), or the
    very I420 planes the pipeline gave it through ``write_i420``. Twice over, because each run pays x264's
    start and its flush at the end (the last frames in flight encode with less parallelism) once, and a run as
    long as the pipeline's pays them as rarely as it does."""
    with Clock() as clock, _encoder(out, video) as encoder:
        write = encoder.write if rgb else encoder.write_i420
        for frame in frames + frames:
            write(frame)
    return clock.row(2 * len(frames))


def bench_encode_only_pyav(frames: list[np.ndarray], out: Path, video: VideoConfig) -> dict:
    """x264 alone fed the way a plain PyAV script feeds it: each RGB frame through ``VideoFrame.from_ndarray``,
    converted by FFmpeg's swscale inside ``encode``; same codec settings and frame threading as
    :class:`VideoEncoder`, the same frames twice over."""
    with Clock() as clock, av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=video.fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"crf": str(video.crf), "preset": video.preset}
        stream.thread_type = "FRAME"
        for frame in frames + frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return clock.row(2 * len(frames))


def merged(first: dict, second: dict) -> dict:
    """One row of two runs of the same contender: their frames over their summed time."""
    frames, seconds = first["frames"] + second["frames"], first["seconds"] + second["seconds"]
    cpu = first["cpu_ms_per_frame"] * first["frames"] + second["cpu_ms_per_frame"] * second["frames"]
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "cpu_ms_per_frame": cpu / frames}


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
    parser.add_argument("--rounds", type=int, default=9, help="bracketed pipeline rounds (default 9, ~9 min)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset for every contender")
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument(
        "--workers", type=int, default=None, help="re-simulation processes (default: as the products decide)"
    )
    parser.add_argument("--sample", type=Path, default=None, help="a run folder for the 60 s time-lapse check")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the bench log here (default: temp dir)")
    parser.add_argument("--json", type=Path, default=Path("bench_render.json"), help="where to write the results")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as python -m render does (torch_threads: 1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-render-"))
    work.mkdir(parents=True, exist_ok=True)
    video = VideoConfig(fps=30, crf=args.crf, preset=args.preset, progress=False)
    run = build_run(work, args.frames)

    rounds: list[dict] = []
    planes: list[np.ndarray] = []  # the encode-only contenders' input: the pipeline's first frames
    first = bench_pipeline(run, work / "pipeline.mp4", video, args.workers, keep=planes)  # also a warm-up
    inputs = {"rgb": [cv2.cvtColor(item, cv2.COLOR_YUV2RGB_I420) for item in planes], "i420": planes}
    for r in range(args.rounds):
        runs: dict[str, list[dict]] = {"rgb": [], "i420": [], "pyav": [], "pipeline": []}
        for name in ("rgb", "i420", "pyav", "pipeline", "pyav", "i420", "rgb"):  # mirrored: linear drift cancels
            if name == "pipeline":
                runs[name].append(bench_pipeline(run, work / "round.mp4", video, args.workers))
            elif name == "pyav":
                runs[name].append(bench_encode_only_pyav(inputs["rgb"], work / "encode-only-pyav.mp4", video))
            else:
                out = work / "encode-only.mp4"
                runs[name].append(bench_encode_only(inputs[name], out, video, rgb=name == "rgb"))
        row = {
            "pipeline": runs["pipeline"][0],
            "encode_only_rgb": merged(*runs["rgb"]),
            "encode_only_i420": merged(*runs["i420"]),
            "encode_only_pyav": merged(*runs["pyav"]),
        }
        row["ratios"] = {
            "steady_vs_encode_only_rgb": row["pipeline"]["steady_fps"] / row["encode_only_rgb"]["fps"],
            "end_to_end_vs_encode_only_rgb": row["pipeline"]["fps"] / row["encode_only_rgb"]["fps"],
            "steady_vs_encode_only_i420": row["pipeline"]["steady_fps"] / row["encode_only_i420"]["fps"],
            "steady_vs_encode_only_pyav": row["pipeline"]["steady_fps"] / row["encode_only_pyav"]["fps"],
        }
        rounds.append(row)
        print(
            f"round {r + 1}: pipeline {row['pipeline']['steady_fps']:.1f} fps steady "
            f"({row['pipeline']['fps']:.1f} end to end), x264 alone {row['encode_only_rgb']['fps']:.1f} fps, "
            f"ratio {row['ratios']['steady_vs_encode_only_rgb']:.2f}",
            flush=True,
        )
    naive = bench_naive(run, work / "naive.mp4", video, first["frames"])
    # saliency costs a forward pass per patch (196 a frame by default): one run, the same frames
    salient = bench_pipeline(run, work / "saliency.mp4", video, args.workers, saliency=True)
    ratios = {
        name: statistics.median(row["ratios"][name] for row in rounds)
        for name in (
            "steady_vs_encode_only_rgb",
            "end_to_end_vs_encode_only_rgb",
            "steady_vs_encode_only_i420",
            "steady_vs_encode_only_pyav",
        )
    }
    pipelines = [row["pipeline"] for row in rounds]
    ratios["end_to_end_vs_naive"] = statistics.median(p["fps"] for p in pipelines) / naive["fps"]
    ratios["saliency_vs_pipeline"] = salient["fps"] / statistics.median(p["fps"] for p in pipelines)
    sample = args.sample or (DEFAULT_SAMPLE if (DEFAULT_SAMPLE / "trajectories.h5").is_file() else None)
    timelapse = None
    if sample is not None:
        timelapse = bench_sample_timelapse(sample, work / "timelapse.mp4", video, args.workers)

    def median(name: str, key: str) -> float:
        return statistics.median(row[name][key] for row in rounds)

    print(
        f"\nrenderer throughput, 1280x720 overlay=full, libx264 {args.preset} crf {args.crf}, "
        f"{os.cpu_count()} cores, medians of {args.rounds} rounds"
    )
    print(f"{'contender':<22}{'frames':>8}{'frames/s':>10}{'cpu ms/frame':>14}")
    print(
        f"{'pipeline, end to end':<22}{first['frames']:>8}{median('pipeline', 'fps'):>10.1f}"
        f"{median('pipeline', 'cpu_ms_per_frame'):>14.2f}"
    )
    print(f"{'pipeline, steady':<22}{first['frames']:>8}{median('pipeline', 'steady_fps'):>10.1f}{'':>14}")
    print(f"{'naive':<22}{naive['frames']:>8}{naive['fps']:>10.1f}{naive['cpu_ms_per_frame']:>14.2f}")
    for name in ("encode_only_rgb", "encode_only_i420", "encode_only_pyav"):
        frames, fps, cpu = rounds[0][name]["frames"], median(name, "fps"), median(name, "cpu_ms_per_frame")
        print(f"{name:<22}{frames:>8}{fps:>10.1f}{cpu:>14.2f}")
    print(
        f"{'pipeline + saliency':<22}{salient['frames']:>8}{salient['fps']:>10.1f}{salient['cpu_ms_per_frame']:>14.2f}"
    )
    print(f"pipeline start-up (log, checkpoint, layout, first batch): {median('pipeline', 'startup_seconds'):.2f} s")
    print(f"pipeline / naive, end to end        {ratios['end_to_end_vs_naive']:.2f}x (goal >= 2)")
    print(f"pipeline steady / encode-only RGB   {ratios['steady_vs_encode_only_rgb']:.2f}  (goal >= 0.8)")
    print(f"pipeline end to end / encode-only   {ratios['end_to_end_vs_encode_only_rgb']:.2f}")
    print(f"pipeline steady / encode-only I420  {ratios['steady_vs_encode_only_i420']:.2f}")
    print(f"pipeline steady / PyAV's stock path {ratios['steady_vs_encode_only_pyav']:.2f}  (reference only)")
    print(f"pipeline + saliency / pipeline      {ratios['saliency_vs_pipeline']:.2f}  (end to end, one run)")
    if timelapse is not None:
        print(
            f"60 s time-lapse of {sample}: {timelapse['video_seconds']:.1f} s of video from {timelapse['episodes']} "
            f"episodes rendered in {timelapse['seconds']:.1f} s (goal < 60)"
        )
    else:
        print(f"60 s time-lapse: skipped, no run at {DEFAULT_SAMPLE} (pass --sample <run_dir>)")
    report = {
        "rounds": rounds,
        "naive": naive,
        "pipeline_with_saliency": salient,
        "sample_timelapse_60s": timelapse,
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
