"""The viewer's frame route: seeks and playback against the sequential render, on the sample run.

In one process, on ``data/sample/breakout`` (finished episodes, seeded):

- ``seek_new``: the first frame of a random step of an episode not opened yet, per overlay (``raw``, ``full``),
  with the run warm (the re-simulation worker started and the run opened by a frame of another episode):
  ``FrameCache.png`` against ``render_still`` (opens the run, re-simulates from the reset to the step).
- ``seek_played``: a random step of an episode already played (its greenzone complete), per overlay, against
  the previous behaviour: an open ``EpisodeFrames`` asked for an earlier step (it re-simulates from the reset).
- ``playback``: frames/s of steps asked for one after another, as fast as they come, per overlay: over real
  HTTP from a uvicorn server in this process (``GET .../frames/{k}.png``, one keep-alive connection) and
  in-process (``FrameCache.png``), against ``EpisodeFrames.frame`` + ``encode_png`` (sequential, no lookahead).
  Each starts on an episode already played, so it measures drawing and encoding, not the first re-simulation.
- ``parts``: where a full frame's time goes: re-simulation (the worker's steps/s), the scene (batched analytics
  and contexts), drawing (incremental, as played), PNG encoding (now and with OpenCV's default filters).

Run:  python tests/bench/bench_viewer.py [--episodes 6] [--frames 150] [--json bench_viewer.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from render import EpisodeFrames, RenderSource, render_still
from render.config import OverlayConfig
from render.episode import EpisodeScenes
from render.feed import kept_steps
from render.viewer import FrameCache, create_app, encode_png
from replay import TrajectoryLog

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "data" / "sample" / "breakout"
OVERLAYS = ("raw", "minimal", "full")


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def pick(source: RenderSource, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` (episode, step) pairs: finished episodes of 100+ steps, a random step of each."""
    rng = np.random.default_rng(seed)
    with TrajectoryLog(source.log) as log:
        episodes = [e for e in log.episodes if e.finished and e.length >= 100]
    chosen = rng.choice(len(episodes), count, replace=False)
    return [(episodes[i].index, int(rng.integers(0, episodes[i].length + 1))) for i in chosen]


def summary(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "max_s": max(seconds), "n": len(seconds)}


def bench_seek_new(source: RenderSource, args: argparse.Namespace) -> dict:
    results = {}
    for overlay in ("raw", "full"):
        cache = FrameCache()
        cache.start()
        warm = pick(source, 1, seed=99)[0]
        cache.png(source, warm[0], warm[1], overlay)  # the run opened, the worker up
        targets = pick(source, args.episodes, seed=1)
        ours, still, seeks = [], [], []
        distance = _seek_distances(source)
        for episode, step in targets:
            config = OverlayConfig(kind=overlay)
            ours.append(timed(lambda c=cache, e=episode, s=step, o=overlay: c.png(source, e, s, o)))
            still.append(timed(lambda e=episode, s=step, o=config: render_still(source, episode=e, step=s, overlay=o)))
            seeks.append(distance[episode])
        cache.close()
        results[overlay] = {
            "viewer": summary(ours), "render_still": summary(still), "targets": targets,
            "viewer_s": ours, "render_still_s": still, "seek_distance_steps": seeks,
        }  # fmt: skip
    return results


def _seek_distances(source: RenderSource) -> dict[int, int]:
    from render.feed import seek_distance

    with TrajectoryLog(source.log) as log:
        distance = seek_distance(log)
        return {e.index: distance(e) for e in log.episodes}


def bench_seek_played(source: RenderSource, args: argparse.Namespace) -> dict:
    results = {}
    episode = pick(source, 1, seed=2)[0][0]
    rng = np.random.default_rng(3)
    for overlay in OVERLAYS:
        cache = FrameCache()
        cache.start()
        cache.png(source, episode, 0, overlay)
        with TrajectoryLog(source.log) as log:
            length = log.episodes[episode].length
        cache.png(source, episode, length, overlay)  # the whole episode replayed and its contexts made
        steps = [int(k) for k in rng.integers(0, length + 1, args.seeks)]
        ours = [timed(lambda c=cache, k=k, o=overlay: c.png(source, episode, k, o)) for k in steps]
        cache.close()
        old = []
        with EpisodeFrames(source, episode=episode, overlay=OverlayConfig(kind=overlay)) as frames:
            frames.frame(length)
            for k in steps[:3]:  # each re-simulates from the reset: a few suffice
                old.append(timed(lambda k=k: encode_png(frames.frame(k))))
                frames.frame(length)
        results[overlay] = {"episode": episode, "viewer": summary(ours), "sequential_backwards": summary(old)}
    return results


class _Server:
    def __init__(self) -> None:
        import uvicorn

        config = uvicorn.Config(create_app([RUN.parent]), host="127.0.0.1", port=0, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def bench_playback(source: RenderSource, args: argparse.Namespace) -> dict:
    episode = pick(source, 1, seed=4)[0][0]
    with TrajectoryLog(source.log) as log:
        length = log.episodes[episode].length
    frames = min(args.frames, length)
    results = {}
    server = _Server()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)

    def get(path: str) -> bytes:
        nonlocal connection
        try:
            connection.request("GET", path)
            response = connection.getresponse()
        except http.client.RemoteDisconnected:  # a kept-alive connection the server closed: once more, anew
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            connection.request("GET", path)
            response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (path, body[:300])
        return body

    for overlay in OVERLAYS:
        route = f"/api/runs/sample-breakout/episodes/{episode}/frames/{{}}.png?overlay={overlay}"
        get(route.format(length))  # replayed whole, its contexts made, then played from the start
        get(route.format(0))
        start = time.perf_counter()
        for k in range(1, frames + 1):
            get(route.format(k))
        http_fps = frames / (time.perf_counter() - start)

        cache = FrameCache()
        cache.png(source, episode, length, overlay)
        cache.png(source, episode, 0, overlay)
        start = time.perf_counter()
        for k in range(1, frames + 1):
            cache.png(source, episode, k, overlay)
        cache_fps = frames / (time.perf_counter() - start)
        cache.close()

        with EpisodeFrames(source, episode=episode, overlay=OverlayConfig(kind=overlay)) as sequential:
            sequential.frame(0)
            start = time.perf_counter()
            for k in range(1, frames + 1):
                encode_png(sequential.frame(k))
            old_fps = frames / (time.perf_counter() - start)
        results[overlay] = {"http_fps": http_fps, "in_process_fps": cache_fps, "sequential_fps": old_fps}
    connection.close()
    server.stop()
    return {"episode": episode, "frames": frames, **results}


def bench_parts(source: RenderSource, args: argparse.Namespace) -> dict:
    episode = pick(source, 1, seed=4)[0][0]
    with TrajectoryLog(source.log) as log:
        record = log.episodes[episode]
        rewards = np.zeros(record.length)
        start = time.perf_counter()
        steps = list(kept_steps(log, record, 1, observations=True, rewards=rewards))
        resim = time.perf_counter() - start
    scenes = EpisodeScenes(source, OverlayConfig(kind="full"))
    start = time.perf_counter()
    contexts = list(scenes.scene(record, steps, rewards))
    scene = time.perf_counter() - start
    overlay = scenes.overlay(record)
    draw, png, png_default = [], [], []
    for context in contexts:
        start = time.perf_counter()
        image = overlay.render(context)
        draw.append(time.perf_counter() - start)
        png.append(timed(lambda image=image: encode_png(image)))
    for context in contexts[:50]:
        bgr = cv2.cvtColor(overlay.render(context), cv2.COLOR_RGB2BGR)
        png_default.append(timed(lambda bgr=bgr: cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])))
    scenes.close()
    n = len(steps)
    return {
        "episode": episode, "steps": n,
        "resim_ms_per_step_with_seek": resim / n * 1000, "scene_ms_per_frame": scene / n * 1000,
        "draw_ms_per_frame": statistics.mean(draw) * 1000, "png_ms_per_frame": statistics.mean(png) * 1000,
        "png_default_filters_ms_per_frame": statistics.mean(png_default) * 1000,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=6, help="new episodes to seek into, per overlay")
    parser.add_argument("--seeks", type=int, default=30, help="random seeks in a played episode, per overlay")
    parser.add_argument("--frames", type=int, default=150, help="frames played per overlay")
    parser.add_argument("--parts", default="seek_new,seek_played,playback,parts")
    parser.add_argument("--json", type=Path, default=Path("bench_viewer.json"), help="where to write results")
    args = parser.parse_args()
    source = RenderSource.resolve(run=RUN, log=None, checkpoint=None)
    benches = {"seek_new": bench_seek_new, "seek_played": bench_seek_played, "playback": bench_playback,
               "parts": bench_parts}  # fmt: skip
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    for part in args.parts.split(","):
        report[part] = benches[part](source, args)
        _print(part, report[part])
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


def _print(part: str, result: dict) -> None:
    print(f"\n## {part}")
    if part == "seek_new":
        print("| overlay | viewer median / max s | render_still median / max s |")
        for overlay, row in result.items():
            v, s = row["viewer"], row["render_still"]
            print(f"| {overlay} | {v['median_s']:.2f} / {v['max_s']:.2f} | {s['median_s']:.2f} / {s['max_s']:.2f} |")
    elif part == "seek_played":
        print("| overlay | viewer median / max ms | sequential (from the reset) median ms |")
        for overlay, row in result.items():
            v, s = row["viewer"], row["sequential_backwards"]
            print(f"| {overlay} | {v['median_s'] * 1e3:.0f} / {v['max_s'] * 1e3:.0f} | {s['median_s'] * 1e3:.0f} |")
    elif part == "playback":
        print("| overlay | HTTP frames/s | in-process frames/s | sequential + PNG frames/s |")
        for overlay in OVERLAYS:
            row = result[overlay]
            print(f"| {overlay} | {row['http_fps']:.1f} | {row['in_process_fps']:.1f} | {row['sequential_fps']:.1f} |")
    else:
        for key, value in result.items():
            print(f"| {key} | {value:.2f} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
