"""Where the renderer's time goes, part by part, each against its alternative in the same process.

The figures behind the renderer notes in the README, on the bench run of ``bench_render.py`` (random Breakout):

- ``overlay``: CPU per frame of drawing the full overlay and converting it to I420: full redraw on a fresh
  template plus whole-frame conversion, against redrawing only what changed plus converting only the damage;
  each with OpenCV's default threading and with one thread (what ``encode_frames`` sets).
- ``kernels``: the compiled kernels (``render/kernels.py``) against the NumPy/OpenCV formulations they
  replaced, same contexts (the nodes' bytes compared here too), rounds alternating, medians, us CPU a frame: lighting
  the diagram's nodes (NumPy fancy-index scatter and float32 blend) and painting the feature-map thumbnails
  (ramp lookup, one nearest-neighbour ``cv2.resize`` per row, one strided copy; that row-wise resize showed
  a neighbour's last column at the left edge of some thumbnails, e.g. 7x7 maps in 50-pixel cells, which the
  kernel does not: ``tests/test_render_overlays.py`` checks every cell against its own map enlarged).
- ``handoff``: handing I420 planes to PyAV: ``VideoFrame.from_ndarray`` (allocates and copies) against
  ``from_numpy_buffer`` (wraps).
- ``checkpoint``: loading a checkpoint into a network built normally (orthogonal initialisation, then the
  weights) against one built on the ``meta`` device (``load_policy``).
- ``env``: one agent step of the trainer's env stack, the same stack as re-simulation builds it (base-env
  screens that ``AtariPreprocessing`` throws away not copied), ale-py's ``AtariEnv.step`` and ALE's own ``act``
  for the same 4 frames; rounds alternate, medians.
- ``producer``: CPU per frame of everything the product does except x264 (the encoder stubbed out,
  ``workers=0``).
- ``threads``: CPU per frame by thread, the whole product (``workers=0``) against x264 alone on the very planes
  the product handed it (rounds alternate, medians): the producer thread (re-simulation, analytics, overlay,
  conversion of the damage), the calling thread (writing the damage into the kept planes, x264's ``encode``
  call) and the rest (x264's own threads).
- ``queue``: the whole product with 8 and with 32 frames queued before x264 (rounds alternate): frames/s and
  cores kept busy (CPU time over wall time).

Run:  python tests/bench/bench_render_parts.py [--frames 1500] [--parts kernels,env] [--json bench_render_parts.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from unittest import mock

import av
import cv2
import gymnasium as gym
import numpy as np
import torch
from bench_render import Clock, EncoderTap, build_run

import render.pipeline as pipeline
import render.session as session
from render import RenderResult, RenderSource, render_timelapse
from render.analytics import ProbeSettings
from render.config import OverlayConfig, SelectionConfig, TimelapseProductConfig, VideoConfig
from render.draw.overlays import FullOverlay
from render.encoder import VideoEncoder
from render.feed import kept_steps
from render.pipeline import I420Converter, Rendered
from render.policies import PolicyLibrary
from render.scenes import SceneSettings, episode_scene
from render.schedule import TrainingSchedule
from replay import TrajectoryLog, rebuild
from replay.train.checkpoints import FORMAT, _load, _restore_weights, load_policy
from replay.train.envs import EnvConfig, make_env
from replay.train.network import ActorCritic

CONTEXTS = 600
SECTIONS = {  # --parts name: its section of the results
    "overlay": "overlay_cpu_ms_per_frame",
    "kernels": "kernels_cpu_us_per_frame",
    "handoff": "handoff_cpu_ms_per_frame",
    "checkpoint": "checkpoint_load_ms",
    "env": "env_cpu_us_per_agent_step",
    "producer": "producer",
    "threads": "threads_cpu_ms_per_frame",
    "queue": "queue",
}


def contexts(run: Path) -> tuple[FullOverlay, list]:
    """The full overlay and the first ``CONTEXTS`` frame contexts of the run, analysed."""
    with TrajectoryLog(run / "trajectories.h5") as log:
        schedule = TrainingSchedule.from_metadata(log.metadata)
        policies = PolicyLibrary(checkpoints=run / "checkpoints", settings=ProbeSettings(batch_size=64))
        probe, _ = policies.lookup(0)
        overlay = FullOverlay(log.game, log.action_meanings, probe.diagram_layers(), probe.feature_rows())
        found = []
        for episode in log.episodes:
            steps = kept_steps(log, episode, 1, observations=True)
            found.extend(episode_scene(episode, steps, schedule, SceneSettings(), policies))
            if len(found) >= CONTEXTS:
                break
    return overlay, found[:CONTEXTS]


def bench_overlay(overlay: FullOverlay, frames: list) -> dict:
    def full() -> None:
        for context in frames:
            image = overlay._canvas.template.copy()
            overlay.draw_dynamic(image, context)
            cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)

    def incremental() -> None:
        converter = I420Converter()
        for context in frames:
            converter.convert(Rendered(overlay.render(context), overlay.damage()))

    rows, default = {}, cv2.getNumThreads()
    for threads in (default, 1):
        cv2.setNumThreads(threads)
        for name, work in (("full redraw + whole conversion", full), ("damage only", incremental)):
            start = time.process_time()
            work()
            rows[f"{name}, OpenCV threads {threads}"] = 1000 * (time.process_time() - start) / len(frames)
    cv2.setNumThreads(default)
    return rows


def bench_kernels(overlay: FullOverlay, frames: list, rounds: int = 6) -> dict:
    diagram, maps = overlay.diagram, overlay.maps
    inner_pixels, inner_nodes, rim_pixels, rim_nodes, coverage, background = diagram._pixels
    levels = [context.analytics.levels for context in frames]
    stacks = [(context.observation, *context.analytics.feature_maps) for context in frames]
    compiled, reference = overlay._canvas.template.copy(), overlay._canvas.template.copy()

    def nodes_kernel() -> None:
        for level in levels:
            diagram.draw(compiled, level)

    # As the code before the kernel did it: flat byte indices (NumPy scatters bytes ~5x faster than (N, 3) rows).
    rgb = np.arange(3)
    inner_bytes, inner_sources, rim_bytes, rim_sources = (
        (indices.astype(np.int64)[:, None] * 3 + rgb).ravel()
        for indices in (inner_pixels, inner_nodes, rim_pixels, rim_nodes)
    )
    rim_coverage, rim_background = np.repeat(coverage, 3), background.reshape(-1)

    def nodes_numpy() -> None:
        channels = reference.reshape(-1)
        for level in levels:
            shades = np.clip(diagram._levels(level) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            colours = diagram._ramp[shades.astype(np.intp)].reshape(-1)
            channels[inner_bytes] = colours[inner_sources]
            channels[rim_bytes] = (rim_background + colours[rim_sources] * rim_coverage).astype(np.uint8)

    def thumbnails_kernel() -> None:
        for stack in stacks:
            maps.draw(compiled, stack)

    def thumbnails_opencv() -> None:
        cell, pitch = maps._cell, maps._cell + 6
        for stack in stacks:
            for shown, cells, grey in zip(stack, maps._cells, maps._grey, strict=True):
                count, h, w = shown.shape
                strip = np.ascontiguousarray(shown.transpose(1, 0, 2)).reshape(h, count * w)
                if grey:
                    strip = cv2.resize(strip, (count * cell, cell), interpolation=cv2.INTER_NEAREST)
                    coloured = cv2.cvtColor(strip, cv2.COLOR_GRAY2RGB)
                else:
                    coloured = cv2.resize(maps._ramp[strip], (count * cell, cell), interpolation=cv2.INTER_NEAREST)
                span = reference[cells[0].y : cells[0].y + cell, cells[0].x : cells[0].x + count * pitch]
                span.reshape(cell, count, pitch, 3)[:, :, :cell] = coloured.reshape(cell, count, cell, 3)

    pairs = {
        "diagram nodes": (nodes_numpy, nodes_kernel),
        "feature-map thumbnails": (thumbnails_opencv, thumbnails_kernel),
    }
    rows = {}
    for name, (before, after) in pairs.items():
        before(), after()  # warm-up (and the kernels' compilation)
        if name == "diagram nodes" and not np.array_equal(compiled, reference):
            raise AssertionError("the node kernel's picture differs from its NumPy formulation")
        times: dict[str, list[float]] = {"numpy/opencv": [], "kernel": []}
        for r in range(rounds):
            for label, work in (("numpy/opencv", before), ("kernel", after))[:: 1 if r % 2 == 0 else -1]:
                start = time.thread_time()
                work()
                times[label].append(1e6 * (time.thread_time() - start) / len(frames))
        for label, values in times.items():
            rows[f"{name}: {label}"] = float(np.median(values))
    return rows


def bench_handoff(planes: np.ndarray, repeats: int = 500) -> dict:
    rows = {}
    for name, wrap in (
        ("from_ndarray", av.VideoFrame.from_ndarray),
        ("from_numpy_buffer", av.VideoFrame.from_numpy_buffer),
    ):
        start = time.process_time()
        for _ in range(repeats):
            wrap(planes, format="yuv420p")
        rows[name] = 1000 * (time.process_time() - start) / repeats
    return rows


def bench_checkpoint(path: Path, repeats: int = 10) -> dict:
    def normal() -> None:
        payload = _load(path, FORMAT)
        _restore_weights(path, ActorCritic(int(payload["n_actions"])), payload["state_dict"])

    rows = {}
    for name, work in (("initialised, then loaded", normal), ("meta device (load_policy)", lambda: load_policy(path))):
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        rows[name] = 1000 * (time.perf_counter() - start) / repeats
    return rows


def bench_env(steps: int = 2000, rounds: int = 4) -> dict:
    env = make_env(EnvConfig(id="ALE/Breakout-v5"))
    atari = env.unwrapped
    actions = np.random.default_rng(0).integers(0, 4, steps * 4)

    def agent_steps(stack: gym.Env) -> Callable[[], None]:
        def work() -> None:
            stack.reset(seed=0)
            for action in actions[:steps]:
                _, _, terminated, truncated, _ = stack.step(int(action))
                if terminated or truncated:
                    stack.reset()

        return work

    def ale_env() -> None:
        env.reset(seed=0)
        for action in actions:
            _, _, terminated, truncated, _ = atari.step(int(action))
            if terminated or truncated:
                atari.reset()

    def ale() -> None:
        env.reset(seed=0)
        for action in actions:
            atari.ale.act(atari._action_set[int(action)])
            if atari.ale.game_over():
                atari.ale.reset_game()

    replayed = rebuild.make_env(env.spec)  # the same stack as re-simulation builds it: unread screens skipped
    variants = (
        ("trainer stack", agent_steps(env)),
        ("the stack as replay builds it (unread screens skipped)", agent_steps(replayed)),
        ("AtariEnv.step x4", ale_env),
        ("ALE act x4", ale),
    )
    found: dict[str, list[float]] = {name: [] for name, _ in variants}
    for r in range(rounds):
        for name, work in variants if r % 2 == 0 else variants[::-1]:
            start = time.process_time()
            work()
            found[name].append(1e6 * (time.process_time() - start) / steps)
    env.close()
    replayed.close()
    return {name: float(np.median(values)) for name, values in found.items()}


def _render(run: Path, out: Path) -> RenderResult:
    return render_timelapse(
        RenderSource.resolve(run=run, log=None, checkpoint=None),
        out,
        selection=SelectionConfig(kind="every", every=1),
        product=TimelapseProductConfig(frame_stride=1, caption=False),
        overlay=OverlayConfig(kind="full"),
        video=VideoConfig(fps=30, crf=23, preset="veryfast", progress=False),
        workers=0,
    )


class _NoEncoder:
    """Stands in for VideoEncoder: takes the planes and does nothing."""

    def __init__(self, *args: object, width: int, height: int, **kwargs: object) -> None:
        self.width, self.height = width, height

    def __enter__(self) -> _NoEncoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def write_i420(self, planes: np.ndarray) -> None:
        pass


def bench_producer(run: Path, out: Path) -> dict:
    with mock.patch.object(session, "VideoEncoder", _NoEncoder), Clock() as clock:
        result = _render(run, out)
    return clock.row(result.frames)


def bench_threads(run: Path, out: Path, rounds: int) -> dict:
    encode = pipeline.encode_frames
    found: dict[str, list[float]] = {}
    planes: list[np.ndarray] = []

    def timed(frames: Iterable, encoder: object) -> int:
        producer: list[float] = []

        def produced() -> Iterator:
            start = time.thread_time()  # the first item is asked for in the producer thread, as is the last
            yield from frames
            producer.append(time.thread_time() - start)

        calling, everything = time.thread_time(), time.process_time()
        written = encode(produced(), encoder)
        calling, everything = time.thread_time() - calling, time.process_time() - everything
        for name, seconds in (
            ("product: producer thread", producer[0]),
            ("product: calling thread", calling),
            ("product: x264's threads", everything - producer[0] - calling),
        ):
            found.setdefault(name, []).append(1000 * seconds / written)
        return written

    def alone() -> None:
        calling, everything = time.thread_time(), time.process_time()
        with VideoEncoder(out, width=1280, height=720, fps=30, crf=23, preset="veryfast", progress=False) as encoder:
            for item in planes:
                encoder.write_i420(item)
        calling, everything = time.thread_time() - calling, time.process_time() - everything
        found.setdefault("x264 alone: calling thread", []).append(1000 * calling / len(planes))
        found.setdefault("x264 alone: x264's threads", []).append(1000 * (everything - calling) / len(planes))

    with EncoderTap(keep=1 << 30) as tap:
        _render(run, out)  # a warm-up, and every plane x264 alone is given (1.4 MB a frame)
    planes.extend(tap.planes)
    for r in range(rounds):
        for kind in ("product", "alone") if r % 2 == 0 else ("alone", "product"):
            if kind == "alone":
                alone()
                continue
            with mock.patch.object(session, "encode_frames", timed):
                _render(run, out)
    return {name: float(np.median(values)) for name, values in found.items()}


def bench_queue(run: Path, out: Path, rounds: int) -> dict:
    rows: dict[str, list[dict]] = {"8": [], "32": []}
    encode = pipeline.encode_frames
    for r in range(rounds):
        for depth in ("8", "32") if r % 2 == 0 else ("32", "8"):
            queued = mock.patch.object(session, "encode_frames", lambda f, e, d=int(depth): encode(f, e, prefetch=d))
            with queued, Clock() as clock:
                result = _render(run, out)
            row = clock.row(result.frames)
            row["cores"] = row["cpu_ms_per_frame"] * row["fps"] / 1000
            rows[depth].append(row)
    return {
        depth: {key: float(np.median([row[key] for row in found])) for key in ("fps", "cores")}
        for depth, found in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1500, help="recorded frames of the bench run (default 1500)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the threads and queue comparisons (default 4)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the bench run here (default: temp dir)")
    parser.add_argument("--json", type=Path, default=Path("bench_render_parts.json"), help="where to write results")
    parser.add_argument(
        "--parts",
        default=",".join(SECTIONS),
        help="comma-separated subset to run (default: all)",
    )
    args = parser.parse_args()
    chosen = args.parts.split(",")
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {','.join(SECTIONS)}")
    torch.set_num_threads(1)  # as python -m render does
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-render-parts-"))
    work.mkdir(parents=True, exist_ok=True)
    run = build_run(work, args.frames)

    overlay, frames = contexts(run)
    parts: dict[str, Callable[[], object]] = {
        "overlay": lambda: bench_overlay(overlay, frames),
        "kernels": lambda: bench_kernels(overlay, frames),
        "handoff": lambda: bench_handoff(cv2.cvtColor(overlay.render(frames[-1]), cv2.COLOR_RGB2YUV_I420)),
        "checkpoint": lambda: bench_checkpoint(next((run / "checkpoints").glob("*.pt"))),
        "env": bench_env,
        "producer": lambda: bench_producer(run, work / "producer.mp4"),
        "threads": lambda: bench_threads(run, work / "threads.mp4", args.rounds),
        "queue": lambda: bench_queue(run, work / "queue.mp4", args.rounds),
    }
    results = {SECTIONS[name]: run_part() for name, run_part in parts.items() if name in chosen}

    print(f"\nrenderer parts, 1280x720 overlay=full, {os.cpu_count()} cores")
    for section, unit in (
        ("overlay_cpu_ms_per_frame", "ms CPU/frame"),
        ("kernels_cpu_us_per_frame", "us CPU/frame, medians"),
        ("handoff_cpu_ms_per_frame", "ms CPU/frame"),
        ("checkpoint_load_ms", "ms/load"),
        ("env_cpu_us_per_agent_step", "us CPU/agent step"),
        ("threads_cpu_ms_per_frame", "ms CPU/frame, medians"),
    ):
        if section not in results:
            continue
        print(f"{section} ({unit})")
        for name, value in results[section].items():
            print(f"  {name:<48}{value:>10.3f}")
    if "producer" in results:
        producer = results["producer"]
        print(
            f"producer without x264: {producer['cpu_ms_per_frame']:.2f} ms CPU/frame over {producer['frames']} frames"
        )
    for depth, row in results.get("queue", {}).items():
        print(f"queue of {depth:>2} frames: {row['fps']:.1f} frames/s, {row['cores']:.2f} cores busy (medians)")
    report = {**results, "cpu_count": os.cpu_count(), "machine": platform.platform()}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
