"""Training steps/s with no recording, with ``RecordVectorTrajectory``, and with gymnasium's ``RecordVideo``.

Same config, seed and process for every variant; each trains ``--total-steps`` steps from scratch (no
evaluation) and the rate is taken over the updates after the first (warm-up). Variants run in turns, so
machine noise hits them alike.

Side-by-side rates on a shared 2-core machine move by several percent from run to run, more than the recorder
costs. So the recorder variant is also timed from the inside: the wall time spent in ``RecordVectorTrajectory``'s
own code (its ``step`` and ``reset`` minus the vector env's, plus opening and closing the log) as a fraction of
the whole training run. That figure does not depend on what else the machine is doing.

    python tests/bench/bench_train.py --total-steps 8192 --repeats 2 --json bench_train.json
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import torch
from omegaconf import OmegaConf
from timing import timed

from replay.train import TrainConfig, train
from replay.train.envs import make_env

Wrap = Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]


def _video_on(lanes: Callable[[int], bool], config: TrainConfig, folder: Path) -> Wrap:
    def wrap(envs: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
        if not isinstance(envs, gym.vector.SyncVectorEnv):
            raise SystemExit("RecordVideo variants need env.vector=sync")
        for lane in range(envs.num_envs):
            if lanes(lane):
                envs.envs[lane].close()
                envs.envs[lane] = gym.wrappers.RecordVideo(
                    make_env(config.env, render_mode="rgb_array"),
                    str(folder / f"env{lane}"),
                    episode_trigger=lambda _: True,
                    disable_logger=True,
                )
        return envs

    return wrap


class _Timer:
    """Accumulated wall time of calls to some methods (patched onto classes for the length of one run)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._patches: list[tuple[type, str, Callable]] = []

    def patch(self, cls: type, method: str, label: str) -> None:
        original = getattr(cls, method)
        self._patches.append((cls, method, original))
        setattr(cls, method, timed(original, self.seconds, label))

    def restore(self) -> None:
        for cls, method, original in reversed(self._patches):
            setattr(cls, method, original)
        self._patches.clear()


def _inner_clock(envs: gym.vector.VectorEnv, timer: _Timer) -> gym.vector.VectorEnv:
    """Time the vector env under the recorder (its own step and reset), so the recorder's share is outer - inner."""
    for method in ("step", "reset"):
        setattr(envs, method, timed(getattr(envs, method), timer.seconds, f"inner_{method}"))
    return envs


def run_variant(name: str, config: TrainConfig, folder: Path) -> dict[str, object]:
    """Train once in ``folder``; steps/s over updates 2.. from ``updates.csv``, plus bytes written."""
    wrap: Wrap | None = None
    timer = _Timer()
    if name == "recorder":
        from replay.recorder import RecordVectorTrajectory

        timer.patch(RecordVectorTrajectory, "step", "outer_step")
        timer.patch(RecordVectorTrajectory, "reset", "outer_reset")
        timer.patch(RecordVectorTrajectory, "__init__", "open")
        timer.patch(RecordVectorTrajectory, "close", "close")
        wrap = lambda envs: _inner_clock(envs, timer)  # noqa: E731
    if name == "video_env0":
        wrap = _video_on(lambda lane: lane == 0, config, folder / "videos")
    elif name == "video_all":
        wrap = _video_on(lambda lane: True, config, folder / "videos")
    config.record.enabled = name == "recorder"
    config.run_dir = str(folder / "run")
    started = time.perf_counter()
    try:
        train(config, wrap_envs=wrap)
    finally:
        timer.restore()
    wall = time.perf_counter() - started
    t = timer.seconds
    recorder_seconds = (
        t.get("outer_step", 0.0)
        - t.get("inner_step", 0.0)
        + t.get("outer_reset", 0.0)
        - t.get("inner_reset", 0.0)
        + t.get("open", 0.0)
        + t.get("close", 0.0)
    )
    with (folder / "run" / "updates.csv").open() as f:
        rows = list(csv.DictReader(f))
    steady = rows[1:] or rows
    seconds = sum(config.ppo.batch_size / float(r["steps_per_second"]) for r in steady)
    written = sum(p.stat().st_size for p in (folder / "run").glob("trajectories.h5"))
    written += sum(p.stat().st_size for p in (folder / "videos").rglob("*.mp4")) if wrap else 0
    return {
        "variant": name,
        "steps_per_second": len(steady) * config.ppo.batch_size / seconds,
        "wall_seconds": wall,
        "bytes_written": written,
        "recorder_seconds": recorder_seconds if name == "recorder" else None,
        "recorder_share": recorder_seconds / wall if name == "recorder" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=8192)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--env-id", default="ALE/Breakout-v5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench_train.json"))
    args = parser.parse_args()

    variants = ["none", "recorder", "video_env0", "video_all"]
    have_moviepy = importlib.util.find_spec("moviepy") is not None
    results: dict[str, list[dict[str, object]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            shift = repeat % len(variants)  # rotate: later runs in a round tend to be slower on this machine
            for name in variants[shift:] + variants[:shift]:
                if name.startswith("video") and not have_moviepy:
                    continue
                config = OmegaConf.to_object(OmegaConf.structured(TrainConfig))
                config.env.id = args.env_id
                config.ppo.num_envs = args.num_envs
                config.total_steps = args.total_steps
                config.seed = args.seed
                config.torch_threads = args.torch_threads
                config.eval.episodes = 0
                config.progress = False
                results[name].append(run_variant(name, config, Path(tmp) / f"{name}-{repeat}"))

    table = []
    baseline = max((r["steps_per_second"] for r in results["none"]), default=float("nan"))
    for name in variants:
        if not results[name]:
            table.append({"variant": name, "status": "not installed (pip install moviepy)"})
            continue
        best = max(results[name], key=lambda r: r["steps_per_second"])
        table.append({**best, "status": "ok", "relative": best["steps_per_second"] / baseline})
    print(f"{'variant':<12} {'steps/s':>9} {'relative':>9} {'MB written':>11}  status")
    for row in table:
        if row["status"] != "ok":
            print(f"{row['variant']:<12} {'-':>9} {'-':>9} {'-':>11}  {row['status']}")
            continue
        print(
            f"{row['variant']:<12} {row['steps_per_second']:9.1f} {row['relative']:9.3f} "
            f"{row['bytes_written'] / 1e6:11.2f}  ok"
        )
    shares = [r["recorder_share"] for r in results["recorder"]]
    if shares:
        print(
            f"time inside the recorder's own code (timed from the inside): {min(shares):.2%} - {max(shares):.2%} "
            f"of training wall time over {len(shares)} run(s)"
        )
    args.json.write_text(
        json.dumps(
            {
                "config": vars(args) | {"json": str(args.json)},
                "machine": {"python": platform.python_version(), "torch": torch.__version__},
                "results": table,
                "runs": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
