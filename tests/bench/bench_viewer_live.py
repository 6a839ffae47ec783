"""The viewer on a run being trained: how soon a finished episode shows, and what watching costs the trainer.

Both parts run the real ``python -m replay.train`` (Breakout, 8 envs, ``eval.episodes=0 torch_threads=1``,
recording on) and the real viewer, ``python -m render.viewer --port 0``, each in its own process, over a
temporary runs folder.

- ``delay``: one run at the trainer's ``record.flush_seconds`` (``--flush-seconds``, 10 by default). Watchers in
  this process note when each training episode ended (its row in ``episodes.csv``, polled every 20 ms), when it
  reached the log (a ``TrajectoryLog`` opened every ``--log-poll`` s), and when the viewer first listed it finished
  in ``GET /api/runs/{id}/episodes`` (polled every ``--poll`` s) and served the PNG of its last frame
  (``overlay=raw``), asked for the newest episode each poll. The k-th training episode of the CSV is the k-th
  finished one of the log (both in the order they ended). Delays are per episode: from its end and from its flush.
- ``speed``: ``--rounds`` pairs of runs of ``--total-steps``, one with a client polling the viewer every second
  (``GET /api/runs``, the run's episodes, the last frame of its newest finished episode, as a page watching the
  run would) and one without (the viewer idle), the order alternating by round. A run's rate is the harmonic mean
  of ``updates.csv``'s steps/s after its first update; the ratio is taken within a pair, the median over pairs.

    python tests/bench/bench_viewer_live.py --json bench_viewer_live.json
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from replay import TrajectoryLog
from replay.errors import ReplayError

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


class Viewer:
    """``python -m render.viewer`` over ``folder`` on a free port, and an HTTP client for it."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "render.viewer", "--runs", str(folder), "--port", "0"],
            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"http://([^/]+):(\d+)/", line)
        if not found:
            raise SystemExit(f"the viewer did not start: {line!r}")
        self.host, self.port = found.group(1), int(found.group(2))

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        return json.loads(body) if status == 200 else None

    def cpu_seconds(self) -> float:
        """CPU seconds of the viewer and every process under it (its re-simulation workers)."""
        return tree_cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def tree_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()
        ]
    except OSError:  # ended meanwhile
        return 0.0
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS + sum(tree_cpu_seconds(c) for c in children)


def trainer(run_dir: Path, total_steps: int, flush_seconds: float, seed: int) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "replay.train", "env.id=ALE/Breakout-v5", f"total_steps={total_steps}", f"seed={seed}",
        f"run_dir={run_dir}", "progress=false", "eval.episodes=0", "torch_threads=1",
        f"record.flush_seconds={flush_seconds}",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> None:
    _, stderr = process.communicate(timeout=1800)
    if process.returncode:
        raise SystemExit(f"{' '.join(map(str, process.args))} failed ({process.returncode}):\n{stderr[-2000:]}")


def rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [r for r in csv.DictReader(f) if r.get("wall_time")]  # a row being written has no last field yet


def run_id_of(viewer: Viewer, run_dir: Path) -> str | None:
    for run in viewer.json("/api/runs") or []:
        if Path(run["path"]).resolve() == run_dir.resolve():
            return run["id"]
    return None


def newest_frame(viewer: Viewer, run_id: str, episodes: list[dict[str, Any]]) -> int | None:
    """Ask for the last frame of the newest finished training episode; its log index, or None if none."""
    finished = [e for e in episodes if e["finished"] and e["tag"] == "train"]
    if not finished:
        return None
    newest = finished[-1]
    status, body = viewer.get(
        f"/api/runs/{run_id}/episodes/{newest['index']}/frames/{newest['length']}.png?overlay=raw"
    )
    if status != 200:
        raise RuntimeError(f"the viewer refused the frame of episode {newest['index']}: {body[:300]!r}")
    return newest["index"]


@contextmanager
def every(seconds: float, task: Any, failures: list[str]) -> Iterator[None]:
    """Call ``task()`` every ``seconds`` in a thread until the block ends; what it raises goes to ``failures``."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                task()
            except (OSError, RuntimeError, ValueError, ReplayError) as error:
                failures.append(f"{time.time():.2f} {task.__name__}: {error}")
            stop.wait(max(0.0, seconds - (time.monotonic() - began)))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def measure_delay(viewer: Viewer, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = folder / "delay"
    ended: list[float] = []  # k-th training episode's row in episodes.csv
    in_log: list[float] = []  # k-th finished training episode in the log
    listed: dict[int, float] = {}  # k -> first listed finished by the API
    served: dict[int, float] = {}  # k -> PNG of its last frame returned
    failures: list[str] = []

    def watch_csv() -> None:
        count = sum(r["kind"] == "train" for r in rows(run_dir / "episodes.csv"))
        ended.extend([time.time()] * (count - len(ended)))

    def watch_log() -> None:
        if not (run_dir / "trajectories.h5").is_file():
            return
        try:
            with TrajectoryLog(run_dir / "trajectories.h5", check_environment=False) as log:
                count = sum(e.finished and e.tag == "train" for e in log.episodes)
        except ReplayError as error:
            failures.append(f"log: {error}")
            return
        in_log.extend([time.time()] * (count - len(in_log)))

    def watch_api() -> None:
        run_id = run_id_of(viewer, run_dir)
        episodes = viewer.json(f"/api/runs/{run_id}/episodes") if run_id else None
        if episodes is None:
            return
        now = time.time()
        finished = [e for e in episodes if e["finished"] and e["tag"] == "train"]
        for k in range(len(finished)):
            listed.setdefault(k, now)
        if newest_frame(viewer, run_id, episodes) is not None:
            served.setdefault(len(finished) - 1, time.time())

    process = trainer(run_dir, args.delay_steps, args.flush_seconds, args.seed)
    with (
        every(0.02, watch_csv, failures),
        every(args.log_poll, watch_log, failures),
        every(args.poll, watch_api, failures),
    ):
        finish(process)
        deadline = time.monotonic() + 30
        while len(listed) < len(in_log) and time.monotonic() < deadline:  # the last flush reaches the API too
            time.sleep(args.poll)
    count = min(len(ended), len(in_log))
    from_end = [listed[k] - ended[k] for k in range(count) if k in listed]
    from_flush = [listed[k] - in_log[k] for k in range(count) if k in listed]
    frame_from_end = [served[k] - ended[k] for k in range(count) if k in served]
    return {
        "episodes": count,
        "episodes_csv": len(ended),
        "episodes_log": len(in_log),
        "failures": failures,
        "listed_from_end": spread(from_end),
        "listed_from_flush": spread(from_flush),
        "frame_from_end": spread(frame_from_end),
        "log_from_end": spread([in_log[k] - ended[k] for k in range(count)]),
    }


def measure_speed(viewer: Viewer, folder: Path, round_: int, polled: bool, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = folder / f"speed-{round_}-{'polled' if polled else 'alone'}"
    polls: list[float] = []
    failures: list[str] = []

    def watch_like_a_page() -> None:
        began = time.monotonic()
        run_id = run_id_of(viewer, run_dir)
        episodes = viewer.json(f"/api/runs/{run_id}/episodes") if run_id else None
        if episodes:
            newest_frame(viewer, run_id, episodes)
        polls.append(time.monotonic() - began)

    cpu = viewer.cpu_seconds()
    started = time.perf_counter()
    process = trainer(run_dir, args.total_steps, args.flush_seconds, args.seed)
    if polled:
        with every(1.0, watch_like_a_page, failures):
            finish(process)
    else:
        finish(process)
    wall = time.perf_counter() - started
    updates = rows(run_dir / "updates.csv")
    if len(updates) < 2:
        raise SystemExit(f"{run_dir} trained {len(updates)} update(s); raise --total-steps for at least 2")
    return {
        "round": round_,
        "polled": polled,
        "steps_per_second": statistics.harmonic_mean([float(r["steps_per_second"]) for r in updates[1:]]),
        "wall_seconds": wall,
        "viewer_cores": (viewer.cpu_seconds() - cpu) / wall,
        "polls": len(polls),
        "poll_seconds": spread(polls),
        "failures": failures,
    }


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="delay,speed", help="comma-separated: delay, speed")
    parser.add_argument("--flush-seconds", type=float, default=10.0, help="the trainer's record.flush_seconds")
    parser.add_argument("--delay-steps", type=int, default=12288, help="the delay run's total_steps (~1 min)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between the delay part's API polls")
    parser.add_argument("--log-poll", type=float, default=0.1, help="seconds between the delay part's log reads")
    parser.add_argument("--rounds", type=int, default=3, help="speed: pairs of runs, polled and alone")
    parser.add_argument("--total-steps", type=int, default=4096, help="speed: per run, 4 updates of 8 x 128 steps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench_viewer_live.json"))
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_viewer_live-") as tmp:
        folder = Path(tmp) / "runs"
        folder.mkdir()
        viewer = Viewer(folder)
        try:
            if "delay" in parts:
                results["delay"] = delay = measure_delay(viewer, folder, args)
                print(f"delay, record.flush_seconds={args.flush_seconds:g}, API polled every {args.poll:g} s "
                      f"({delay['episodes']} training episodes):")  # fmt: skip
                print(f"  {'from':<44} {'median s':>9} {'min':>7} {'max':>7}")
                for key, label in [
                    ("log_from_end", "episode ended -> in the log (the flush)"),
                    ("listed_from_flush", "in the log -> listed by GET .../episodes"),
                    ("listed_from_end", "episode ended -> listed by GET .../episodes"),
                    ("frame_from_end", "episode ended -> its last frame's PNG served"),
                ]:
                    s = delay[key]
                    if s:
                        print(f"  {label:<44} {s['median']:>9.2f} {s['min']:>7.2f} {s['max']:>7.2f}")
                for failure in delay["failures"]:
                    print(f"  failed: {failure}")
            if "speed" in parts:
                runs = []
                for round_ in range(args.rounds):
                    for polled in (True, False) if round_ % 2 == 0 else (False, True):
                        runs.append(measure_speed(viewer, folder, round_, polled, args))
                        r = runs[-1]
                        label = "polled" if polled else "alone"
                        print(f"  round {round_} {label:<6}: {r['steps_per_second']:6.1f} steps/s, "
                              f"viewer {r['viewer_cores']:.2f} cores, {r['polls']} polls", flush=True)  # fmt: skip
                ratios = [
                    next(r for r in runs if r["round"] == k and r["polled"])["steps_per_second"]
                    / next(r for r in runs if r["round"] == k and not r["polled"])["steps_per_second"]
                    for k in range(args.rounds)
                ]
                polled = [r for r in runs if r["polled"]]
                results["speed"] = {"runs": runs, "ratio": spread(ratios)}
                print(f"speed, {args.rounds} rounds of {args.total_steps} steps:")
                print(f"  {'trainer':<28} {'steps/s median':>15} {'viewer cores':>13}")
                for label, kept in (("alone (viewer idle)", [r for r in runs if not r["polled"]]),
                                    ("viewer polled every 1 s", polled)):  # fmt: skip
                    print(f"  {label:<28} {statistics.median(r['steps_per_second'] for r in kept):>15.1f} "
                          f"{statistics.median(r['viewer_cores'] for r in kept):>13.2f}")  # fmt: skip
                q = results["speed"]["ratio"]
                print(f"  polled / alone: {q['median']:.3f} (rounds {q['min']:.3f}-{q['max']:.3f})")
        finally:
            viewer.close()
    args.json.write_text(
        json.dumps(
            {
                "config": vars(args) | {"json": str(args.json)},
                "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
